//! The chat and push channels beyond plain webhooks: Microsoft Teams, Telegram, Gotify and
//! Pushover. Each builds its request from an [`AlertEvent`] in its own module; this module
//! reads `[[alerts.webhooks]]`'s `template` and the keys some channels need.

mod gotify;
mod pushover;
mod teams;
mod telegram;

pub use telegram::RawChatId;

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
        "telegram" => {
            if !url_path(&w.url).ends_with("/sendMessage") {
                return Err(ConfigError::new(
                    &format!("{key}.url"),
                    "template = \"telegram\" posts to the Bot API's sendMessage: \
                     https://api.telegram.org/bot<TOKEN>/sendMessage",
                ));
            }
            let chat = telegram::chat_id(key, w.chat_id.as_ref())?;
            Template::Channel(Channel::Telegram(chat))
        }
        "gotify" => {
            let query = w.url.split_once('?').map_or("", |(_, q)| q);
            if !url_path(&w.url).ends_with("/message")
                || !query
                    .split('&')
                    .any(|p| p.len() > 6 && p.starts_with("token="))
            {
                return Err(ConfigError::new(
                    &format!("{key}.url"),
                    "template = \"gotify\" posts to the server's /message with an \
                     application token: https://gotify.example/message?token=<TOKEN>",
                ));
            }
            Template::Channel(Channel::Gotify)
        }
        "pushover" => {
            let p = pushover::config(key, w.token_file.as_deref(), w.user.as_deref())?;
            Template::Channel(Channel::Pushover(p))
        }
        other => {
            return Err(ConfigError::new(
                &format!("{key}.template"),
                format!(
                    "expected json, ntfy, discord, slack, teams, telegram, gotify or pushover, got {other:?}"
                ),
            ))
        }
    };
    let telegram = matches!(template, Template::Channel(Channel::Telegram(_)));
    if w.chat_id.is_some() && !telegram {
        return Err(ConfigError::new(
            &format!("{key}.chat-id"),
            "only for template = \"telegram\": remove it or set the template",
        ));
    }
    let pushover = matches!(template, Template::Channel(Channel::Pushover(_)));
    for (k, set) in [
        ("token-file", w.token_file.is_some()),
        ("user", w.user.is_some()),
    ] {
        if set && !pushover {
            return Err(ConfigError::new(
                &format!("{key}.{k}"),
                "only for template = \"pushover\": remove it or set the template",
            ));
        }
    }
    Ok(template)
}

/// A channel of this module, with what it needs besides the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// Microsoft Teams (Workflows): a message with an Adaptive Card.
    Teams,
    /// Telegram's `sendMessage` to this chat.
    Telegram(telegram::ChatId),
    /// Gotify's `/message`.
    Gotify,
    /// Pushover's `messages.json`, with its token and user key.
    Pushover(pushover::Pushover),
}

impl Channel {
    /// The request for `e`.
    pub fn render(&self, e: &AlertEvent) -> Request {
        match self {
            Channel::Teams => teams::render(e),
            Channel::Telegram(chat) => telegram::render(e, chat),
            Channel::Gotify => gotify::render(e),
            Channel::Pushover(p) => pushover::render(e, p),
        }
    }
}

/// The path of `url`, without query or fragment.
fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    rest.find('/').map_or("", |i| &rest[i..])
}

/// A JSON request.
fn json(body: serde_json::Value) -> Request {
    Request {
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string(),
    }
}
