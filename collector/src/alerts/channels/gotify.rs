//! Gotify: `POST /message?token=<app token>` with a title, a plain-text message and a priority.

use serde_json::json;

use super::super::notify::{headline, Request};
use super::super::{AlertEvent, Change, Severity};

/// The Gotify priority of `e`: critical 8, warning 5, info 2 when firing; 2 when resolved.
pub fn priority(e: &AlertEvent) -> u8 {
    match (e.change, e.alert.severity) {
        (Change::Resolved, _) | (Change::Firing, Severity::Info) => 2,
        (Change::Firing, Severity::Warning) => 5,
        (Change::Firing, Severity::Critical) => 8,
    }
}

/// The message for `e`. Markdown is off (`client::display` `text/plain`), so agent names
/// are shown as they are and form no link or image.
pub fn render(e: &AlertEvent) -> Request {
    let a = &e.alert;
    let status = match e.change {
        Change::Firing => "firing",
        Change::Resolved => "resolved",
    };
    super::json(json!({
        "title": format!("{} on {} {status}", a.rule, a.host),
        "message": headline(e),
        "priority": priority(e),
        "extras": { "client::display": { "contentType": "text/plain" } },
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    #[test]
    fn title_message_priority_and_plain_text() {
        let r = render(&event(Change::Firing, Severity::Critical));
        assert_eq!(r.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v,
            json!({
                "title": "cpu-high on pi4 firing",
                "message": "[FIRING] cpu-high on pi4: cpu.busy 0.97 > 0.9",
                "priority": 8,
                "extras": { "client::display": { "contentType": "text/plain" } },
            })
        );
        let p = |c, s| priority(&event(c, s));
        assert_eq!(p(Change::Firing, Severity::Warning), 5);
        assert_eq!(p(Change::Firing, Severity::Info), 2);
        assert_eq!(p(Change::Resolved, Severity::Critical), 2);
        let v: serde_json::Value =
            serde_json::from_str(&render(&event(Change::Resolved, Severity::Critical)).body)
                .unwrap();
        assert_eq!(v["title"], "cpu-high on pi4 resolved");
        assert_eq!(v["priority"], 2);
    }
}
