//! Telegram: the Bot API's `sendMessage` (`https://api.telegram.org/bot<TOKEN>/sendMessage` as
//! the URL, the chat as `chat-id`), with HTML formatting.

use serde_json::json;

use super::super::notify::{slack_text, Request};
use super::super::{AlertEvent, Change};
use crate::config::ConfigError;

/// Where the message goes: a chat's numeric id or a public channel's `@username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatId {
    /// A user, group or channel id (groups and channels are negative).
    Id(i64),
    /// `@channelusername`.
    Name(String),
}

/// `chat-id` as configured: a number (or a string of one) or `@channelusername`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum RawChatId {
    /// A number.
    Id(i64),
    /// A string.
    Name(String),
}

/// `chat-id` of webhook `key`, checked.
pub fn chat_id(key: &str, raw: Option<&RawChatId>) -> Result<ChatId, ConfigError> {
    let key = format!("{key}.chat-id");
    match raw {
        None => Err(ConfigError::new(
            &key,
            "template = \"telegram\" needs the chat: chat-id = -1001234567890 (or \"@channel\")",
        )),
        Some(RawChatId::Id(id)) => Ok(ChatId::Id(*id)),
        Some(RawChatId::Name(s)) => {
            if let Ok(id) = s.parse() {
                return Ok(ChatId::Id(id));
            }
            let name = s.strip_prefix('@').unwrap_or_default();
            if name.len() < 4
                || name.len() > 32
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(ConfigError::new(
                    &key,
                    format!("expected a chat id (a number) or \"@channelusername\", got {s:?}"),
                ));
            }
            Ok(ChatId::Name(s.clone()))
        }
    }
}

/// `text` for Telegram's HTML mode: `&`, `<` and `>` escaped, as the Bot API requires, so
/// agent-controlled names form no tag or link; and no `@username` mention (a zero-width
/// space follows every `@`). Slack escapes the same way.
fn text(text: &str) -> String {
    slack_text(text)
}

/// The `sendMessage` request for `e` to `chat`.
pub fn render(e: &AlertEvent, chat: &ChatId) -> Request {
    let a = &e.alert;
    let status = match e.change {
        Change::Firing => "FIRING",
        Change::Resolved => "RESOLVED",
    };
    let mut message = format!(
        "<b>[{status}] {}</b> on <b>{}</b> ({})",
        text(&a.rule),
        text(a.host.as_str()),
        a.severity.as_str()
    );
    if !a.summary.is_empty() {
        message.push('\n');
        message.push_str(&text(&a.summary));
    }
    let chat_id = match chat {
        ChatId::Id(id) => json!(id),
        ChatId::Name(name) => json!(name),
    };
    super::json(json!({
        "chat_id": chat_id,
        "text": message,
        "parse_mode": "HTML",
        "disable_web_page_preview": true,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::event;
    use super::*;
    use crate::alerts::Severity;

    #[test]
    fn send_message_with_html() {
        let r = render(
            &event(Change::Firing, Severity::Critical),
            &ChatId::Id(-1001234567890),
        );
        assert_eq!(r.content_type, "application/json");
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            v,
            json!({
                "chat_id": -1001234567890i64,
                "text": "<b>[FIRING] cpu-high</b> on <b>pi4</b> (critical)\ncpu.busy 0.97 &gt; 0.9",
                "parse_mode": "HTML",
                "disable_web_page_preview": true,
            })
        );
        let r = render(
            &event(Change::Resolved, Severity::Warning),
            &ChatId::Name("@ember_alerts".into()),
        );
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["chat_id"], "@ember_alerts");
        assert!(v["text"].as_str().unwrap().starts_with("<b>[RESOLVED] "));
    }

    #[test]
    fn agent_names_form_no_tag_link_or_mention() {
        let mut e = event(Change::Firing, Severity::Warning);
        e.alert.summary = "/mnt/<a href=\"https://evil.example\">x</a> @admin &amp; full".into();
        let v: serde_json::Value = serde_json::from_str(&render(&e, &ChatId::Id(1)).body).unwrap();
        let t = v["text"].as_str().unwrap();
        let summary = t.split_once('\n').unwrap().1;
        assert!(!summary.contains('<') && !summary.contains('>'), "{t}");
        assert!(!summary.contains("@admin"), "{t}");
        assert!(summary.contains("&amp;amp;"), "{t}");
    }

    #[test]
    fn chat_ids_are_checked() {
        let id = |s: &str| chat_id("w", Some(&RawChatId::Name(s.into())));
        assert_eq!(id("-42").unwrap(), ChatId::Id(-42));
        assert_eq!(
            id("@ember_alerts").unwrap(),
            ChatId::Name("@ember_alerts".into())
        );
        for bad in ["", "ember", "@a", "@bad name"] {
            let e = id(bad).unwrap_err().to_string();
            assert!(
                e.contains("w.chat-id") && e.contains("@channelusername"),
                "{e}"
            );
        }
        let e = chat_id("w", None).unwrap_err().to_string();
        assert!(
            e.contains("w.chat-id") && e.contains("needs the chat"),
            "{e}"
        );
    }
}
