//! The chat and push channels beyond plain webhooks: Microsoft Teams, Telegram, Gotify and
//! Pushover. Each builds its request from an [`AlertEvent`] in its own module; this module
//! reads `[[alerts.webhooks]]`'s `template` and the keys some channels need.

mod teams;

#[cfg(test)]
pub(super) mod tests;

use crate::config::ConfigError;

use super::notify::Request;
use super::rules::{RawWebhook, Template};
use super::AlertEvent;

/// The template of webhook `key` as configured.
pub(super) fn template(key: &str, w: &RawWebhook) -> Result<Template, ConfigError> {
    let template = match w.template.as_deref().unwrap_or("json") {
        "json" => Template::Json,
        "ntfy" => Template::Ntfy,
        "discord" => Template::Discord,
        "slack" => Template::Slack,
        "teams" => Template::Channel(Channel::Teams),
        other => {
            return Err(ConfigError::new(
                &format!("{key}.template"),
                format!("expected json, ntfy, discord, slack or teams, got {other:?}"),
            ))
        }
    };
    Ok(template)
}

/// A channel of this module, with what it needs besides the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Microsoft Teams (Workflows): a message with an Adaptive Card.
    Teams,
}

impl Channel {
    /// The request for `e`.
    pub fn render(&self, e: &AlertEvent) -> Request {
        match self {
            Channel::Teams => teams::render(e),
        }
    }
}

/// A JSON request.
fn json(body: serde_json::Value) -> Request {
    Request {
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string(),
    }
}
