//! Every channel delivered by the real delivery task to a local HTTP receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use ember_wire::HostId;

use super::super::notify::{Notifier, Retry};
use super::super::rules::{RawWebhook, Webhook};
use super::super::{Alert, AlertEvent, Change, Severity};

/// An event of rule `cpu-high` on `pi4`.
pub fn event(change: Change, severity: Severity) -> AlertEvent {
    AlertEvent {
        at_ms: 1000,
        change,
        alert: Alert {
            rule: "cpu-high".into(),
            host: HostId::new("pi4").unwrap(),
            severity,
            summary: "cpu.busy 0.97 > 0.9".into(),
            since_ms: 900,
            silenced: false,
        },
    }
}

/// A request as the receiver saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

/// A tiny HTTP/1.1 server on a thread answering 200 and passing on every request.
fn receiver() -> (u16, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            let mut parts = first.split_whitespace();
            let method = parts.next().unwrap_or_default().to_string();
            let path = parts.next().unwrap_or_default().to_string();
            let (mut length, mut content_type) = (0usize, String::new());
            let mut line = String::new();
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.trim_end().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    } else if k.eq_ignore_ascii_case("content-type") {
                        content_type = v.trim().to_string();
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let body = String::from_utf8_lossy(&body).into_owned();
            let seen = Seen {
                method,
                path,
                content_type,
                body,
            };
            if tx.send(seen).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

/// A webhook of `template` to `url` with the channel's other keys in TOML.
fn webhook(url: &str, template: &str, keys: &str) -> Webhook {
    let raw: RawWebhook =
        toml::from_str(&format!("url = {url:?}\ntemplate = {template:?}\n{keys}")).unwrap();
    Webhook {
        url: raw.url.clone(),
        template: super::template("alerts.webhooks[0]", &raw).unwrap(),
        min_severity: Severity::Info,
    }
}

/// Firing and resolving, through [`Notifier`] and `ureq`, to the receiver of each channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_its_documented_request() {
    let (port, seen) = receiver();
    let base = format!("http://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("ember-channels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("pushover-token");
    std::fs::write(&token_file, "azGDORePK8gMaC0QOYAMyEEuzJnyUi").unwrap();
    let pushover = format!(
        "token-file = {:?}\nuser = \"uQiRzpo4DXghDmr9QzzfQu27cmVRsG\"",
        token_file.display().to_string()
    );
    // (template, path, other keys, what the body must hold)
    let channels: Vec<(&str, String, &str, serde_json::Value)> = vec![
        (
            "pushover",
            "/1/messages.json".to_string(),
            &pushover,
            serde_json::json!({
                "token": "azGDORePK8gMaC0QOYAMyEEuzJnyUi",
                "user": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
            }),
        ),
        (
            "teams",
            "/workflows/abc".to_string(),
            "",
            serde_json::json!({ "type": "message" }),
        ),
        (
            "telegram",
            "/bot123:abc/sendMessage".to_string(),
            "chat-id = -100123",
            serde_json::json!({ "chat_id": -100123, "parse_mode": "HTML" }),
        ),
        (
            "gotify",
            "/message?token=AbC.123".to_string(),
            "",
            serde_json::json!({ "extras": { "client::display": { "contentType": "text/plain" } } }),
        ),
    ];
    for (template, path, keys, want) in &channels {
        let w = webhook(&format!("{base}{path}"), template, keys);
        let retry = Retry {
            attempts: 1,
            initial: Duration::from_millis(10),
            max: Duration::from_millis(10),
        };
        let notifier = Notifier::spawn(&[w], retry);
        for change in [Change::Firing, Change::Resolved] {
            notifier.send(&event(change, Severity::Critical));
            let s = tokio::task::block_in_place(|| seen.recv_timeout(Duration::from_secs(10)))
                .unwrap_or_else(|e| panic!("{template}: nothing delivered ({e})"));
            assert_eq!(s.method, "POST", "{template}");
            assert_eq!(&s.path, path, "{template}");
            // Pushover takes a form (its fields as a JSON object here); the others JSON.
            let body: serde_json::Value = if *template == "pushover" {
                assert_eq!(s.content_type, "application/x-www-form-urlencoded");
                let form: std::collections::BTreeMap<String, String> =
                    serde_urlencoded::from_str(&s.body).unwrap();
                serde_json::to_value(form).unwrap()
            } else {
                assert_eq!(s.content_type, "application/json", "{template}");
                serde_json::from_str(&s.body).unwrap()
            };
            for (k, v) in want.as_object().unwrap() {
                assert_eq!(&body[k], v, "{template}: {k} in {body}");
            }
            let text = body.to_string();
            let status = match change {
                Change::Firing => "FIRING",
                Change::Resolved => "RESOLVED",
            };
            assert!(text.contains(status), "{template}: {status} in {text}");
            assert!(text.contains("pi4"), "{template}: the host in {text}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
