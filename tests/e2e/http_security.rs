//! Issue #8, the HTTP half: tokens for reading and commanding, the dashboard's login, security
//! headers on every response, and no secret in the logs. Real collector, real HTTP, real
//! Chromium.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ember_collector::auth::{generate_token, Role, TokenEntry, TokenHash};
use ember_collector::config::ReadAccessSetting;
use ember_collector::Config;

use crate::browser::Browser;
use crate::harness::Running;
use crate::support::{eventually, spawn_agent};

/// An HTTP answer: status, headers (lower-case names) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request with `headers` (and a body for methods that take one).
async fn request(method: &str, url: String, headers: &[(&str, &str)], body: &str) -> Reply {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let method = method.to_string();
    let body = body.to_string();
    tokio::task::spawn_blocking(move || {
        let agent = crate::harness::http_agent();
        macro_rules! with_headers {
            ($builder:expr) => {{
                let mut b = $builder;
                for (k, v) in &headers {
                    b = b.header(k.as_str(), v.as_str());
                }
                b
            }};
        }
        let body = body.as_bytes();
        let mut response = match method.as_str() {
            "GET" => with_headers!(agent.get(&url)).call(),
            "DELETE" => with_headers!(agent.delete(&url)).call(),
            "POST" => with_headers!(agent.post(&url).content_type("application/json")).send(body),
            "PUT" => with_headers!(agent.put(&url)).send(body),
            "PATCH" => with_headers!(agent.patch(&url)).send(body),
            other => panic!("method {other}"),
        }
        .expect("HTTP request");
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let status = response.status().as_u16();
        let body = if url.ends_with("/api/events") && status == 200 {
            String::new() // An endless stream: the status and headers are what is checked.
        } else {
            response.body_mut().read_to_string().unwrap_or_default()
        };
        Reply {
            status,
            headers,
            body,
        }
    })
    .await
    .unwrap()
}

/// Everything the collector logs, for the whole test binary (a global tracing subscriber).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let b = buf.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_env_filter("info,rumqttd=off")
            .with_writer(move || W(b.clone()))
            .init();
        buf
    })
    .clone()
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

struct Tokens {
    read: String,
    operator: String,
    read_name: String,
    operator_name: String,
}

/// A collector with one read and one operator token (fresh, so that the logs can be searched
/// for them), and `access` as its read-access setting.
async fn collector(access: ReadAccessSetting) -> (Running, Tokens) {
    let n = std::process::id() ^ (ember_collector::now_ms() as u32);
    let t = Tokens {
        read: generate_token().unwrap(),
        operator: generate_token().unwrap(),
        read_name: format!("viewer-{n}"),
        operator_name: format!("alice-{n}"),
    };
    let tokens = vec![
        TokenEntry {
            name: t.read_name.clone(),
            role: Role::Read,
            hash: TokenHash::of(&t.read),
        },
        TokenEntry {
            name: t.operator_name.clone(),
            role: Role::Operator,
            hash: TokenHash::of(&t.operator),
        },
    ];
    let running = Running::start(move |c: &mut Config| {
        c.http.read_access = access;
        c.http.tokens = tokens;
    })
    .await;
    (running, t)
}

fn assert_security_headers(what: &str, r: &Reply) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP in {:?}", r.headers));
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        r.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_an_unauthenticated_command_request_is_refused() {
    let _ = logs();
    let (c, t) = collector(ReadAccessSetting::Auto).await;
    let bearer = |tok: &str| format!("Bearer {tok}");
    // GET-only routes, the command and silence routes, and ones nobody serves: the middleware
    // stands in front of every non-GET under /api.
    for path in [
        "/api/hosts",
        "/api/hosts/some-pi/commands",
        "/api/alerts/silences",
        "/api/alerts/silences/1",
        "/api/silences",
        "/api/anything/else",
    ] {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let what = format!("{method} {path}");
            let r = request(method, c.url(path), &[], "{}").await;
            assert_eq!(r.status, 401, "{what}: {}", r.body);
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
            assert!(r.body.contains("operator token"), "{what}: {}", r.body);
            assert_security_headers(&what, &r);

            let r = request(
                method,
                c.url(path),
                &[("Authorization", "Bearer nope")],
                "{}",
            )
            .await;
            assert_eq!(r.status, 401, "{what} with an unknown token: {}", r.body);

            let r = request(
                method,
                c.url(path),
                &[("Authorization", &bearer(&t.read))],
                "{}",
            )
            .await;
            assert_eq!(r.status, 403, "{what} with a read token: {}", r.body);
            assert!(r.body.contains("may only read"), "{}", r.body);

            // An operator passes the middleware: what answers is the router (no such route or
            // method: 404 or 405) or the handler (`{}` is not a command or a silence, and there
            // is no silence 1: 400 or 404), not the guard.
            let r = request(
                method,
                c.url(path),
                &[("Authorization", &bearer(&t.operator))],
                "{}",
            )
            .await;
            assert!(
                [400, 404, 405].contains(&r.status),
                "{what} with an operator token: {} {}",
                r.status,
                r.body
            );
            assert_security_headers(&what, &r);
        }
    }
    // A session cookie never commands, even an operator's.
    let login = request(
        "POST",
        c.url("/login"),
        &[],
        &format!(r#"{{"token":"{}"}}"#, t.operator),
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap();
    let r = request(
        "POST",
        c.url("/api/hosts/x/commands"),
        &[("Cookie", session)],
        "{}",
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Who commanded is logged by name; no token is logged, right or wrong.
    let logs = log_text();
    assert!(
        logs.contains(&format!("by operator \"{}\"", t.operator_name)),
        "{logs}"
    );
    assert!(logs.contains("refused"), "{logs}");
    for secret in [&t.read, &t.operator, &TokenHash::of(&t.operator).to_hex()] {
        assert!(!logs.contains(secret.as_str()), "a secret in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_needs_a_token_where_configured_and_is_open_on_loopback_otherwise() {
    let _ = logs();
    // Loopback, no read token: open (an operator token alone does not close it).
    let (open, _) = {
        let n = generate_token().unwrap();
        let entry = TokenEntry {
            name: "only-op".into(),
            role: Role::Operator,
            hash: TokenHash::of(&n),
        };
        (
            Running::start(move |c: &mut Config| c.http.tokens = vec![entry]).await,
            n,
        )
    };
    for path in ["/api/hosts", "/metrics", "/api/health", "/"] {
        let r = request("GET", open.url(path), &[], "").await;
        assert_eq!(r.status, 200, "open {path}: {}", r.body);
        assert_security_headers(path, &r);
    }

    // Token mode (as on a non-loopback listener; set by config here).
    let (c, t) = collector(ReadAccessSetting::Token).await;
    let read = format!("Bearer {}", t.read);
    let op = format!("Bearer {}", t.operator);
    for path in [
        "/api/hosts",
        "/api/hosts/nobody",
        "/api/hosts/nobody/history?from=0",
        "/api/events",
        "/metrics",
    ] {
        let r = request("GET", c.url(path), &[], "").await;
        assert_eq!(r.status, 401, "{path} without a token: {}", r.body);
        assert!(r.body.contains("reading needs a token"), "{}", r.body);
        assert_security_headers(path, &r);
        let r = request("GET", c.url(path), &[("Authorization", "Bearer wrong")], "").await;
        assert_eq!(r.status, 401, "{path} with a wrong token");
        for token in [&read, &op] {
            let r = request("GET", c.url(path), &[("Authorization", token)], "").await;
            assert!(
                r.status == 200 || (path.contains("nobody") && r.status == 404),
                "{path} with a token: {} {}",
                r.status,
                r.body
            );
        }
    }
    // Health and the API's description stay open; so does the page that shows the login form.
    for path in ["/api/health", "/api/openapi.json", "/"] {
        let r = request("GET", c.url(path), &[], "").await;
        assert_eq!(r.status, 200, "{path}");
    }

    // The dashboard's login: a wrong token is refused and not echoed; a right one gives a
    // session cookie that reads, including the event stream (EventSource sends cookies only).
    let r = request("POST", c.url("/login"), &[], r#"{"token":"ember_guess"}"#).await;
    assert_eq!(r.status, 401);
    assert!(!r.body.contains("ember_guess"), "{}", r.body);
    assert!(r.header("set-cookie").is_none());
    let r = request("POST", c.url("/login"), &[], "not json").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = request(
        "POST",
        c.url("/login"),
        &[],
        &format!(r#"{{"token":"{}"}}"#, t.read),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&t.read_name), "{}", r.body);
    let session = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    for path in ["/api/hosts", "/metrics", "/api/events"] {
        let r = request("GET", c.url(path), &[("Cookie", &session)], "").await;
        assert_eq!(r.status, 200, "{path} with the session: {}", r.body);
    }
    let forged = format!("{}x", &session[..session.len() - 1]);
    let r = request("GET", c.url("/api/hosts"), &[("Cookie", &forged)], "").await;
    assert_eq!(r.status, 401, "a forged session");
    let r = request("POST", c.url("/logout"), &[], "").await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));

    let logs = log_text();
    assert!(logs.contains("dashboard login refused"), "{logs}");
    assert!(
        logs.contains(&format!("dashboard login by \"{}\"", t.read_name)),
        "{logs}"
    );
    for secret in [&t.read, &t.operator] {
        assert!(!logs.contains(secret.as_str()), "a token in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_open_to_the_network_without_tokens_does_not_start() {
    let dir = std::env::temp_dir().join(format!("ember-e2e-sec-{}", std::process::id()));
    let mut config = Config::ephemeral(dir.clone());
    config.http_listen = "0.0.0.0:0".parse().unwrap();
    let e = match ember_collector::start(config, std::future::pending()).await {
        Ok(_) => panic!("started without tokens on 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("invalid `http.tokens`"), "{e}");
    assert!(e.contains("token add NAME --role read"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `http.tls-cert` and `http.tls-key`: the API and dashboard over HTTPS with a certificate
/// from Ember's own CA (as `ember-collector ca init` makes), the session cookie `Secure`, and
/// nothing in clear text on the port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_api_and_dashboard_with_the_collectors_certificate() {
    let (files, ca_pem) = crate::harness::tls_files("https");
    let dir = files.cert.parent().unwrap().to_path_buf();
    let read = generate_token().unwrap();
    let tokens = vec![TokenEntry {
        name: "viewer".into(),
        role: Role::Read,
        hash: TokenHash::of(&read),
    }];
    let tls = files.clone();
    let c = Running::start(move |c: &mut Config| {
        c.http.read_access = ReadAccessSetting::Token;
        c.http.tokens = tokens;
        c.http.tls = Some(tls);
    })
    .await;
    assert!(c.collector.https);
    let port = c.collector.http_addr.port();

    let ca_pem = ca_pem.into_bytes();
    let (health, login, dashboard, plain) = tokio::task::spawn_blocking(move || {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = vec![Certificate::from_pem(&ca_pem).unwrap()];
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .build(),
            )
            .build()
            .into();
        let health = agent
            .get(format!("https://localhost:{port}/api/health"))
            .header("Authorization", format!("Bearer {read}"))
            .call()
            .expect("HTTPS request");
        let health_status = health.status().as_u16();
        let login = agent
            .post(format!("https://localhost:{port}/login"))
            .content_type("application/json")
            .send(format!(r#"{{"token": "{read}"}}"#).as_bytes())
            .expect("HTTPS login");
        let cookie = login
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut page = agent
            .get(format!("https://localhost:{port}/"))
            .call()
            .expect("HTTPS dashboard");
        let dashboard = (
            page.status().as_u16(),
            page.body_mut().read_to_string().unwrap_or_default(),
        );
        // Plain HTTP on the HTTPS port: no answer in clear text.
        let plain = crate::harness::http_agent()
            .get(format!("http://127.0.0.1:{port}/api/health"))
            .call();
        (health_status, cookie, dashboard, plain.map(|r| r.status()))
    })
    .await
    .unwrap();
    assert_eq!(health, 200);
    assert!(login.contains("HttpOnly"), "{login}");
    assert!(
        login.contains("; Secure"),
        "the session cookie over HTTPS: {login}"
    );
    assert_eq!(dashboard.0, 200);
    assert!(dashboard.1.contains("<html"), "the dashboard's page");
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // A key without its certificate is a configuration error naming the key.
    let e = ember_collector::config::RawConfig::from_toml(&format!(
        "[http]\ntls-key = {:?}\n",
        files.key
    ))
    .and_then(|r| r.validate())
    .unwrap_err()
    .to_string();
    assert!(e.contains("http.tls-cert"), "{e}");
    // A certificate that is not one: the collector does not start, and says which file.
    std::fs::write(&files.cert, "not a certificate").unwrap();
    let mut config = Config::ephemeral(dir.join("data"));
    config.http.tls = Some(files.clone());
    let e = match ember_collector::start(config, std::future::pending()).await {
        Ok(_) => panic!("started with a bad certificate"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("http.tls-cert"), "{e}");
    assert!(e.contains("server.pem"), "{e}");
    drop(c);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_with_a_read_token_under_its_csp() {
    let (c, t) = collector(ReadAccessSetting::Token).await;
    let (_stop, _agent) = spawn_agent(c.agent_config("sec-pi", "500ms"));
    eventually(Duration::from_secs(15), "a sample", || async {
        let r = request(
            "GET",
            c.url("/api/hosts/sec-pi"),
            &[("Authorization", &format!("Bearer {}", t.read))],
            "",
        )
        .await;
        (r.status == 200 && r.body.contains("\"latest\":{")).then_some(())
    })
    .await;
    let url = c.url("/");
    let token = t.read.clone();
    tokio::task::spawn_blocking(move || {
        let b = Browser::start(1024, 800, false);
        b.goto(&url);
        b.wait_for(
            "the login form",
            Duration::from_secs(10),
            "return !!document.querySelector('#login #token');",
        );
        // The stylesheet applies (its CSP hash matches): the header is sticky.
        let position = b.eval("return getComputedStyle(document.querySelector('header')).position;");
        assert_eq!(position, "sticky");
        // A wrong token first.
        b.eval("document.querySelector('#token').value = 'ember_wrong';");
        b.click("#login-submit");
        b.wait_for(
            "the refusal",
            Duration::from_secs(10),
            "return document.querySelector('#login-error').textContent || null;",
        );
        b.eval(&format!(
            "document.querySelector('#token').value = {};",
            serde_json::to_string(&token).unwrap()
        ));
        b.click("#login-submit");
        b.wait_for(
            "the fleet",
            Duration::from_secs(10),
            "return document.querySelectorAll('#fleet tbody tr').length === 1 || null;",
        );
        // Styles set from script go through CSSOM (no inline style attributes under the CSP).
        let width = b.wait_for(
            "a CPU meter",
            Duration::from_secs(10),
            "const i = document.querySelector('#fleet .bar i'); return i && i.style.width || null;",
        );
        assert!(width.as_str().unwrap().ends_with('%'), "{width}");
        // The event stream connects with the session cookie.
        b.wait_for(
            "the live stream",
            Duration::from_secs(10),
            "return document.querySelector('#live').title === 'live' || null;",
        );
        // The panel image loads with the cookie too.
        b.eval("location.hash = '#/host/sec-pi';");
        b.wait_for(
            "the panel image",
            Duration::from_secs(10),
            "const i = document.querySelector('#panel'); return i && i.complete && i.naturalWidth > 0 || null;",
        );
        // The token is not kept by the page.
        let kept = b.eval(
            "return JSON.stringify(sessionStorage) + JSON.stringify(localStorage) + document.cookie;",
        );
        assert!(!kept.as_str().unwrap().contains("ember_"), "{kept}");
    })
    .await
    .unwrap();
}
