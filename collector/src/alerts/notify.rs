//! Webhook notifications: the body templates (plain functions) and one delivery task per webhook
//! that sends in order and retries with exponential backoff.
//!
//! The HTTP client is `ureq` (blocking, small, rustls for `https://`), called on tokio's blocking
//! pool; a delivery in progress never holds up evaluation or ingest: the alert thread only
//! queues (`try_send`), and a full queue drops the notification and counts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::mpsc;

use super::rules::{Template, Webhook};
use super::{AlertEvent, Change, Severity};

/// A rendered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: String,
}

/// One line for people: `[FIRING] cpu-high on pi4: cpu.busy 0.97 > 0.9`.
pub fn headline(e: &AlertEvent) -> String {
    let tag = match e.change {
        Change::Firing => "FIRING",
        Change::Resolved => "RESOLVED",
    };
    let a = &e.alert;
    if a.summary.is_empty() {
        format!("[{tag}] {} on {}", a.rule, a.host)
    } else {
        format!("[{tag}] {} on {}: {}", a.rule, a.host, a.summary)
    }
}

/// The zero-width space: after an `@`, it keeps the text as it reads and stops a mention.
pub(super) const ZWSP: char = '\u{200B}';

/// `text` for a Discord message: no `@everyone`, `@here`, `<@id>` or `<@&id>` mention (a
/// zero-width space follows every `@`).
pub fn discord_text(text: &str) -> String {
    text.replace('@', &format!("@{ZWSP}"))
}

/// `text` for a Slack message: `&`, `<` and `>` escaped as Slack documents, so that no
/// `<!channel>`, `<!here>`, `<@U…>` or link is formed, and no `@channel` either.
pub fn slack_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '@' => {
                out.push('@');
                out.push(ZWSP);
            }
            c => out.push(c),
        }
    }
    out
}

/// The request for `e` in `template`.
pub fn render(template: &Template, e: &AlertEvent) -> Request {
    let text = headline(e);
    let json_body = |v: serde_json::Value| Request {
        content_type: "application/json",
        headers: Vec::new(),
        body: v.to_string(),
    };
    match template {
        Template::Json => json_body(json!({
            "status": e.change,
            "at_ms": e.at_ms,
            "alert": e.alert,
            "text": text,
        })),
        // Host names, mount points and interface names come from agents: a chat message must
        // not let them ping a channel. Discord is also told to ping no one whatever the text.
        Template::Discord => json_body(json!({
            "content": discord_text(&text),
            "allowed_mentions": { "parse": [] },
        })),
        Template::Slack => json_body(json!({ "text": slack_text(&text) })),
        Template::Channel(c) => c.render(e),
        Template::Ntfy => {
            let a = &e.alert;
            let (priority, tags) = match (e.change, a.severity) {
                (Change::Resolved, _) => ("default", "white_check_mark"),
                (Change::Firing, Severity::Critical) => ("urgent", "rotating_light"),
                (Change::Firing, Severity::Warning) => ("high", "warning"),
                (Change::Firing, Severity::Info) => ("default", "information_source"),
            };
            let status = match e.change {
                Change::Firing => "firing",
                Change::Resolved => "resolved",
            };
            Request {
                content_type: "text/plain; charset=utf-8",
                headers: vec![
                    ("Title", format!("{} on {} {status}", a.rule, a.host)),
                    ("Priority", priority.to_string()),
                    ("Tags", tags.to_string()),
                ],
                body: text,
            }
        }
    }
}

/// Delivery counters, for `/api/alerts`.
#[derive(Debug, Default)]
pub struct Stats {
    delivered: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// Notifications a webhook accepted (2xx).
    pub delivered: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Notifications given up after every attempt failed.
    pub failed: u64,
    /// Notifications dropped because a webhook's queue was full.
    pub dropped: u64,
}

impl Stats {
    /// The counters now.
    pub fn view(&self) -> StatsView {
        StatsView {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// How attempts are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per notification.
    pub attempts: u32,
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Retry {
    /// The wait after failed attempt `n` (1-based): `initial`, doubled each time, capped.
    pub fn wait(&self, n: u32) -> Duration {
        let factor = 1u32 << n.saturating_sub(1).min(20);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Notifications queued per webhook at most.
const QUEUE: usize = 1024;

/// The senders of the delivery tasks.
#[derive(Debug, Clone)]
pub struct Notifier {
    queues: Vec<(Severity, mpsc::Sender<AlertEvent>)>,
    stats: Arc<Stats>,
}

impl Notifier {
    /// Starts one delivery task per webhook on the current tokio runtime.
    pub fn spawn(webhooks: &[Webhook], retry: Retry) -> Self {
        let stats = Arc::new(Stats::default());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(15)))
            .http_status_as_error(true)
            .user_agent(concat!("ember-collector/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let queues = webhooks
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(deliver(w.clone(), retry, agent.clone(), rx, stats.clone()));
                (w.min_severity, tx)
            })
            .collect();
        Notifier { queues, stats }
    }

    /// Queues `e` for every webhook whose least severity it reaches; never waits.
    pub fn send(&self, e: &AlertEvent) {
        for (min, q) in &self.queues {
            if e.alert.severity < *min {
                continue;
            }
            if q.try_send(e.clone()).is_err() {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("a webhook's queue is full: notification dropped");
            }
        }
    }

    /// The delivery counters.
    pub fn stats(&self) -> StatsView {
        self.stats.view()
    }
}

async fn deliver(
    w: Webhook,
    retry: Retry,
    agent: ureq::Agent,
    mut rx: mpsc::Receiver<AlertEvent>,
    stats: Arc<Stats>,
) {
    while let Some(e) = rx.recv().await {
        let req = render(&w.template, &e);
        let mut attempt = 1;
        loop {
            let (agent, url, req2) = (agent.clone(), w.url.clone(), req.clone());
            let result = tokio::task::spawn_blocking(move || post(&agent, &url, &req2)).await;
            let error = match result {
                Ok(Ok(())) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(e)) => e,
                Err(e) => e.to_string(),
            };
            if attempt >= retry.attempts {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(url = %shown(&w.url), "webhook gave up after {attempt} attempts: {error}");
                break;
            }
            stats.retried.fetch_add(1, Ordering::Relaxed);
            let wait = retry.wait(attempt);
            tracing::warn!(url = %shown(&w.url), "webhook attempt {attempt} failed ({error}); again in {wait:?}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// `url` for logs: scheme and host only, since the path or query of a Telegram, Gotify,
/// Discord or Slack URL holds its token.
fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = rest[..end].rsplit('@').next().unwrap_or_default();
    let more = if end < rest.len() { "/…" } else { "" };
    format!("{scheme}://{host}{more}")
}

fn post(agent: &ureq::Agent, url: &str, req: &Request) -> Result<(), String> {
    let mut r = agent.post(url).header("Content-Type", req.content_type);
    for (k, v) in &req.headers {
        r = r.header(*k, v);
    }
    r.send(req.body.as_str())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::channels::tests::event;

    #[test]
    fn templates() {
        let fire = event(Change::Firing, Severity::Critical);
        let r = render(&Template::Json, &fire);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["status"], "firing");
        assert_eq!(v["alert"]["host"], "pi4");
        assert_eq!(v["alert"]["severity"], "critical");
        assert_eq!(r.content_type, "application/json");
        let r = render(&Template::Discord, &fire);
        assert_eq!(
            r.body,
            r#"{"allowed_mentions":{"parse":[]},"content":"[FIRING] cpu-high on pi4: cpu.busy 0.97 > 0.9"}"#
        );
        let r = render(
            &Template::Slack,
            &event(Change::Resolved, Severity::Warning),
        );
        assert_eq!(
            r.body,
            r#"{"text":"[RESOLVED] cpu-high on pi4: cpu.busy 0.97 &gt; 0.9"}"#
        );
        let r = render(&Template::Ntfy, &fire);
        assert_eq!(r.body, "[FIRING] cpu-high on pi4: cpu.busy 0.97 > 0.9");
        assert_eq!(
            r.headers,
            [
                ("Title", "cpu-high on pi4 firing".to_string()),
                ("Priority", "urgent".to_string()),
                ("Tags", "rotating_light".to_string()),
            ]
        );
    }

    #[test]
    fn logs_show_no_token_of_a_url() {
        let url = "https://api.telegram.org/bot123:SECRET/sendMessage";
        assert_eq!(shown(url), "https://api.telegram.org/…");
        assert_eq!(
            shown("https://u:SECRET@g.example?token=SECRET"),
            "https://g.example/…"
        );
        assert_eq!(shown("http://h.example"), "http://h.example");
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let r = Retry {
            attempts: 10,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
        };
        let waits: Vec<u64> = (1..=5).map(|n| r.wait(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(r.wait(1000), Duration::from_secs(5));
    }

    /// Issue #20: a mount point or interface name an agent reports ends up in the summary; in
    /// a Discord or Slack message it must not ping anyone.
    #[test]
    fn issue_20_chat_webhooks_carry_no_mention_from_agent_names() {
        let mut e = event(Change::Firing, Severity::Critical);
        e.alert.summary =
            "/mnt/@everyone @here <@123456> <@&42> <!channel> <!here|here> <@U0LAN0Z89> full"
                .into();
        let discord: serde_json::Value =
            serde_json::from_str(&render(&Template::Discord, &e).body).unwrap();
        assert_eq!(discord["allowed_mentions"], json!({ "parse": [] }));
        let content = discord["content"].as_str().unwrap();
        for mention in ["@everyone", "@here", "<@1", "<@&"] {
            assert!(!content.contains(mention), "{mention} in {content}");
        }
        assert_eq!(content.replace(ZWSP, ""), headline(&e), "reads the same");
        let slack: serde_json::Value =
            serde_json::from_str(&render(&Template::Slack, &e).body).unwrap();
        let text = slack["text"].as_str().unwrap();
        for mention in ["<!", "<@", "@here", "@everyone"] {
            assert!(!text.contains(mention), "{mention} in {text}");
        }
        assert!(text.contains("&lt;!channel&gt;"), "{text}");
    }
}
