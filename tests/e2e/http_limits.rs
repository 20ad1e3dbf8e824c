//! Issue #20, the HTTP half: no crowd of idle sockets locks the dashboard out (TLS handshakes,
//! half-sent requests), no web page reads the open loopback API through a rebound DNS name,
//! and no other site logs the browser in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ember_collector::Config;

use crate::harness::Running;

/// A collector serving HTTPS with a certificate for `localhost` from a new CA: the collector,
/// and the CA's certificate (PEM).
async fn https_collector(name: &str) -> (Running, Vec<u8>) {
    let (files, ca) = crate::harness::tls_files(name);
    let c = Running::start(move |c: &mut Config| c.http.tls = Some(files)).await;
    (c, ca.into_bytes())
}

/// Issue #20 (finding 4): 64 sockets that connect and say nothing held every TLS handshake
/// slot for 10 s each, and the dashboard stopped answering. Now 200 of them leave a real client
/// its page within 2 s, each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_idle_sockets_do_not_starve_https() {
    let (c, ca) = https_collector("https-idle").await;
    let addr = c.collector.http_addr;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let port = addr.port();
    let took = tokio::task::spawn_blocking(move || {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_pem(&ca).unwrap()]));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        (0..3)
            .map(|i| {
                let started = Instant::now();
                let r = agent
                    .get(format!("https://localhost:{port}/api/health"))
                    .header("Connection", "close")
                    .call()
                    .unwrap_or_else(|e| panic!("request {i} with 200 idle sockets open: {e}"));
                assert_eq!(r.status(), 200);
                started.elapsed()
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(took.iter().all(|t| *t < Duration::from_secs(2)), "{took:?}");
    drop(idle);
}

/// Sends `request` as it is (headers and all, `Connection: close` added) and returns the
/// whole answer.
async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = request.replacen("\r\n", "\r\nConnection: close\r\n", 1);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Issue #20 (finding 10): a page on any site could rebind its own name to 127.0.0.1 and read
/// the open loopback API; the request carries that name in `Host`, and is now refused (421).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_a_forged_host_is_refused_while_reading_is_open() {
    let c = Running::start(|c: &mut Config| c.http.allowed_hosts = vec!["ember.lan".into()]).await;
    let addr = c.collector.http_addr;
    let get = |host: &str| format!("GET /api/hosts HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let rebound = raw(addr, &get("attacker.example:8080")).await;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(rebound.contains("http.allowed-hosts"), "{rebound}");
    for ok in [addr.to_string(), "localhost".into(), "ember.lan".into()] {
        let answer = raw(addr, &get(&ok)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{ok}: {answer}");
    }
    // A bad name in the key is an error naming it.
    let e = ember_collector::config::RawConfig::from_toml(
        "[http]\nallowed-hosts = [\"http://ember.lan\"]\n",
    )
    .and_then(|r| r.validate())
    .unwrap_err()
    .to_string();
    assert!(e.contains("http.allowed-hosts"), "{e}");
}

/// Issue #20: `/login` took any content type, so another site's form (text/plain, no CORS
/// preflight) could log the browser into a session of the attacker's choosing. Now it takes
/// JSON from the dashboard's own origin only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_20_login_takes_json_from_the_same_origin_only() {
    use ember_collector::auth::{generate_token, Role, TokenEntry, TokenHash};
    let token = generate_token().unwrap();
    let entry = TokenEntry {
        name: "viewer".into(),
        role: Role::Read,
        hash: TokenHash::of(&token),
    };
    let c = Running::start(move |c: &mut Config| {
        c.http.read_access = ember_collector::config::ReadAccessSetting::Token;
        c.http.tokens = vec![entry];
    })
    .await;
    let addr = c.collector.http_addr;
    let body = format!(r#"{{"token":"{token}"}}"#);
    let login = |headers: &str| {
        format!(
            "POST /login HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases = [
        ("Content-Type: text/plain\r\n", "415"),
        ("Content-Type: application/x-www-form-urlencoded\r\n", "415"),
        (
            "Content-Type: application/json\r\nSec-Fetch-Site: cross-site\r\n",
            "403",
        ),
        (
            "Content-Type: application/json\r\nOrigin: http://attacker.example\r\n",
            "403",
        ),
        (
            "Content-Type: application/json\r\nSec-Fetch-Site: same-origin\r\n",
            "200",
        ),
        ("Content-Type: application/json\r\n", "200"),
    ];
    for (headers, status) in cases {
        let answer = raw(addr, &login(headers)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{headers:?}: {answer}"
        );
        let cookie = answer
            .to_ascii_lowercase()
            .contains("set-cookie: ember_session=");
        assert_eq!(cookie, status == "200", "{headers:?}: {answer}");
    }
}
