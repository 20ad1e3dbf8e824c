//! Microsoft Teams through a Workflows webhook ("Send webhook alerts to a channel"): a
//! `message` with one Adaptive Card attachment, as Microsoft documents for Workflows.
//!
//! The collector knows no public URL of its dashboard, so the card has no `Action.OpenUrl`.

use serde_json::json;

use super::super::notify::{headline, Request, ZWSP};
use super::super::{AlertEvent, Change, Severity};

/// `text` for an Adaptive Card `TextBlock` or fact, which read Markdown: no link
/// (`[text](url)`) can form from agent-controlled names, a zero-width space parts `](`.
/// Teams mentions need `msteams.entities`, which the card never has.
pub fn text(text: &str) -> String {
    text.replace("](", &format!("]{ZWSP}("))
}

/// The Workflows payload for `e`.
pub fn render(e: &AlertEvent) -> Request {
    let a = &e.alert;
    let (status, color) = match (e.change, a.severity) {
        (Change::Resolved, _) => ("resolved", "Good"),
        (Change::Firing, Severity::Critical) => ("firing", "Attention"),
        (Change::Firing, Severity::Warning) => ("firing", "Warning"),
        (Change::Firing, Severity::Info) => ("firing", "Accent"),
    };
    let mut facts = vec![
        json!({ "title": "Status", "value": status }),
        json!({ "title": "Severity", "value": a.severity.as_str() }),
        json!({ "title": "Host", "value": text(a.host.as_str()) }),
        json!({ "title": "Rule", "value": text(&a.rule) }),
    ];
    if !a.summary.is_empty() {
        facts.push(json!({ "title": "Value", "value": text(&a.summary) }));
    }
    let card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": text(&headline(e)),
                "weight": "Bolder",
                "size": "Medium",
                "color": color,
                "wrap": true,
            },
            { "type": "FactSet", "facts": facts },
        ],
    });
    super::json(json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;

    #[test]
    fn an_adaptive_card_in_a_message() {
        let r = render(&event(Change::Firing, Severity::Critical));
        assert_eq!(r.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["type"], "message");
        let attachments = v["attachments"].as_array().unwrap();
        assert_eq!(attachments.len(), 1);
        assert_eq!(
            attachments[0]["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &attachments[0]["content"];
        assert_eq!(
            card["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        let body = card["body"].as_array().unwrap();
        assert_eq!(body[0]["type"], "TextBlock");
        assert_eq!(
            body[0]["text"],
            "[FIRING] cpu-high on pi4: cpu.busy 0.97 > 0.9"
        );
        assert_eq!(body[0]["color"], "Attention");
        assert_eq!(body[0]["wrap"], true);
        assert_eq!(body[1]["type"], "FactSet");
        let facts: Vec<(String, String)> = body[1]["facts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let s = |k: &str| f[k].as_str().unwrap().to_string();
                (s("title"), s("value"))
            })
            .collect();
        let want = [
            ("Status", "firing"),
            ("Severity", "critical"),
            ("Host", "pi4"),
            ("Rule", "cpu-high"),
            ("Value", "cpu.busy 0.97 > 0.9"),
        ];
        assert_eq!(
            facts,
            want.map(|(t, v)| (t.to_string(), v.to_string())).to_vec()
        );
        assert!(card.get("actions").is_none(), "no URL known: no action");

        let r = render(&event(Change::Resolved, Severity::Warning));
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let card = &v["attachments"][0]["content"];
        assert_eq!(card["body"][0]["color"], "Good");
        assert_eq!(card["body"][1]["facts"][0]["value"], "resolved");
    }

    #[test]
    fn agent_names_form_no_link() {
        let mut e = event(Change::Firing, Severity::Warning);
        e.alert.summary = "/mnt/[click](https://evil.example) full".into();
        let v: serde_json::Value = serde_json::from_str(&render(&e).body).unwrap();
        let body = v["attachments"][0]["content"]["body"].to_string();
        assert!(!body.contains("]("), "{body}");
        assert!(body.contains(&format!("[click]{ZWSP}(https://evil.example)")));
    }
}
