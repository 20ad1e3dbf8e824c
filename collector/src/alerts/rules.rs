//! Alert rules, silences' matching and maintenance windows as configured: the raw TOML form
//! (`[alerts]` in the collector's config) and its validation into typed rules. Every refusal
//! names the key (`alerts.rules[2].when.above`) and the fix.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::metrics::{self, Metric};

/// `[alerts]`: every key optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAlerts {
    /// Evaluate rules at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Add the built-in rules (host offline, CPU, temperature, throttling, disk full) to
    /// `rules`; a rule of the same name in `rules` replaces the built-in one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_rules: Option<bool>,
    /// How often rules are evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluate_every: Option<String>,
    /// Alert events kept in the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
    /// Webhook delivery: attempts per notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_attempts: Option<u32>,
    /// Webhook delivery: the first wait after a failed attempt; doubles up to `retry-max`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_initial: Option<String>,
    /// Webhook delivery: the longest wait between attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_max: Option<String>,
    /// Tags: `tag = ["host", "prefix*"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, Vec<String>>>,
    /// `[[alerts.rules]]`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<RawRule>>,
    /// `[[alerts.webhooks]]`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<RawWebhook>>,
    /// `[[alerts.maintenance]]`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Vec<RawMaintenance>>,
}

/// `[[alerts.rules]]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRule {
    /// Unique name.
    pub name: String,
    /// `info`, `warning` (default) or `critical`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// How long the condition must hold before the alert fires (default 0s).
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    /// How long the condition must be clear before the alert resolves (default 0s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear_for: Option<String>,
    /// Only these hosts (`prefix*` allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Only hosts with one of these tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// The condition.
    pub when: RawCondition,
}

/// A condition: exactly one of a threshold (`metric` with `above` or `below`), `offline`,
/// `process`, `throttled`, `disk-full-within`, `all` or `any`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCondition {
    /// A metric of the history API (`cpu.busy`, `temp`), in base units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// For per-device metrics: only this series (a mount, sensor, interface); default: any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Fires when the value is above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Fires when the value is below this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    /// Hysteresis: once firing, holds until the value is back beyond this (default: the
    /// threshold itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clear: Option<f64>,
    /// The host is offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offline: Option<bool>,
    /// A process on the agent's watch-list has no instance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<String>,
    /// The board reports throttling, capping or under-voltage now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throttled: Option<bool>,
    /// A filesystem is predicted to fill within this long, from its trend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_full_within: Option<String>,
    /// With `disk-full-within`: only this mount; default: every filesystem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount: Option<String>,
    /// With `disk-full-within`: how much history the trend is fitted over (default 6h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trend_window: Option<String>,
    /// Every one of these holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<Vec<RawCondition>>,
    /// At least one of these holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub any: Option<Vec<RawCondition>>,
}

/// `[[alerts.webhooks]]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWebhook {
    /// `http://` or `https://` URL.
    pub url: String,
    /// `json` (default), `ntfy`, `discord`, `slack`, `teams`, `telegram`, `gotify` or
    /// `pushover`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Telegram: the chat (a number or `@channelusername`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chat_id: Option<super::channels::RawChatId>,
    /// Pushover: the file holding the application's API token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<std::path::PathBuf>,
    /// Pushover: the user or group key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Least severity sent (default `info`: everything).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
}

/// `[[alerts.maintenance]]`: a weekly window (UTC) during which notifications are held back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawMaintenance {
    /// A name for the API.
    pub name: String,
    /// Days the window starts on (`mon` … `sun`); default every day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<String>>,
    /// Start, `HH:MM` UTC.
    pub from: String,
    /// End, `HH:MM` UTC; before `from` means the next day.
    pub to: String,
    /// Only these hosts (`prefix*` allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// Only hosts with one of these tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Look soon.
    Warning,
    /// Look now.
    Critical,
}

impl Severity {
    fn parse(key: &str, s: &str) -> Result<Severity, ConfigError> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            _ => Err(cerr(
                key,
                format!("expected info, warning or critical, got {s:?}"),
            )),
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Which hosts something applies to: listed hosts (`prefix*` patterns) and tags; both empty
/// means every host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scope {
    /// Host patterns.
    pub hosts: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
}

impl Scope {
    /// Whether `host`, carrying `tags`, is in scope.
    pub fn matches(&self, host: &str, tags: &[String]) -> bool {
        (self.hosts.is_empty() && self.tags.is_empty())
            || self.hosts.iter().any(|p| pattern_matches(p, host))
            || self.tags.iter().any(|t| tags.contains(t))
    }
}

/// `pi4` matches only `pi4`; `pi*` matches every host starting with `pi`.
pub fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => host.starts_with(prefix),
        None => pattern == host,
    }
}

/// Which way a threshold points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Fires above the level.
    Above,
    /// Fires below the level.
    Below,
}

/// A validated condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A metric beyond a level, with hysteresis.
    Threshold {
        /// The metric.
        metric: &'static Metric,
        /// Only this series of a per-device metric.
        label: Option<String>,
        /// Above or below.
        direction: Direction,
        /// Where it fires.
        level: f64,
        /// Where, once firing, it clears.
        clear: f64,
    },
    /// The host is offline.
    Offline,
    /// A watched process has no instance.
    ProcessMissing(String),
    /// Throttled, capped or under-voltage now.
    Throttled,
    /// A filesystem predicted full within `within`, fitted over `window`.
    DiskFull {
        /// Only this mount.
        mount: Option<String>,
        /// The horizon.
        within: Duration,
        /// The history the trend is fitted over.
        window: Duration,
    },
    /// Every one holds.
    All(Vec<Condition>),
    /// One holds.
    Any(Vec<Condition>),
}

impl Condition {
    /// The longest trend window in this condition, if it has a disk-full test.
    pub fn trend_window(&self) -> Option<Duration> {
        match self {
            Condition::DiskFull { window, .. } => Some(*window),
            Condition::All(c) | Condition::Any(c) => {
                c.iter().filter_map(Condition::trend_window).max()
            }
            _ => None,
        }
    }
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// How bad.
    pub severity: Severity,
    /// The condition must hold this long before the alert fires.
    pub for_: Duration,
    /// The condition must be clear this long before the alert resolves.
    pub clear_for: Duration,
    /// Which hosts.
    pub scope: Scope,
    /// What.
    pub when: Condition,
}

/// Which template a webhook's body follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// Ember's own JSON document.
    Json,
    /// ntfy: the text as body, title, priority and tags as headers.
    Ntfy,
    /// Discord: `{"content": …}`.
    Discord,
    /// Slack-compatible (Slack, Mattermost, Rocket.Chat): `{"text": …}`.
    Slack,
    /// Teams, Telegram, Gotify or Pushover.
    Channel(super::channels::Channel),
}

/// A validated webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    /// URL.
    pub url: String,
    /// Body template.
    pub template: Template,
    /// Least severity sent.
    pub min_severity: Severity,
}

/// A weekly maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct Maintenance {
    /// Name.
    pub name: String,
    /// Days it starts on, 0 = Monday; a bit per day.
    pub days: u8,
    /// Start, minutes after midnight UTC.
    pub from_min: u32,
    /// End, minutes after midnight UTC (≤ `from_min`: the next day).
    pub to_min: u32,
    /// Which hosts.
    pub scope: Scope,
}

const DAY_MS: u64 = 86_400_000;

impl Maintenance {
    /// Whether the window is open at `now_ms` (Unix epoch).
    pub fn open_at(&self, now_ms: u64) -> bool {
        let day = now_ms / DAY_MS;
        // 1970-01-01 was a Thursday (3 with Monday = 0).
        let weekday = ((day + 3) % 7) as u8;
        let yesterday = (weekday + 6) % 7;
        let minute = ((now_ms % DAY_MS) / 60_000) as u32;
        let on = |d: u8| self.days & (1 << d) != 0;
        if self.from_min < self.to_min {
            on(weekday) && (self.from_min..self.to_min).contains(&minute)
        } else {
            (on(weekday) && minute >= self.from_min) || (on(yesterday) && minute < self.to_min)
        }
    }
}

/// The validated `[alerts]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    /// Evaluate at all.
    pub enabled: bool,
    /// How often.
    pub evaluate_every: Duration,
    /// Events kept in the history.
    pub history: usize,
    /// Attempts per webhook notification.
    pub retry_attempts: u32,
    /// First wait after a failure.
    pub retry_initial: Duration,
    /// Longest wait.
    pub retry_max: Duration,
    /// Tag → host patterns.
    pub tags: BTreeMap<String, Vec<String>>,
    /// Rules, built-in ones first.
    pub rules: Vec<Rule>,
    /// Webhooks.
    pub webhooks: Vec<Webhook>,
    /// Maintenance windows.
    pub maintenance: Vec<Maintenance>,
    /// The section as given, for `--print-config`.
    pub raw: RawAlerts,
}

impl AlertsConfig {
    /// The tags of `host`.
    pub fn tags_of(&self, host: &str) -> Vec<String> {
        tags_in(&self.tags, host)
    }
}

/// The tags of `host` in a tag → host patterns map (`[alerts.tags]`).
pub fn tags_in(tags: &BTreeMap<String, Vec<String>>, host: &str) -> Vec<String> {
    tags.iter()
        .filter(|(_, hosts)| hosts.iter().any(|p| pattern_matches(p, host)))
        .map(|(t, _)| t.clone())
        .collect()
}

fn cerr(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(key, reason)
}

fn toml_rule(text: &str) -> RawRule {
    toml::from_str(text).expect("the built-in rules parse")
}

/// The built-in rules: what a fleet wants with no configuration.
pub fn default_rules() -> Vec<RawRule> {
    [
        "name = \"host-offline\"\nseverity = \"critical\"\nfor = \"1m\"\nwhen = { offline = true }",
        "name = \"cpu-high\"\nfor = \"2m\"\nwhen = { metric = \"cpu.busy\", above = 0.9, clear = 0.8 }",
        "name = \"temperature-high\"\nfor = \"1m\"\nwhen = { metric = \"temp\", above = 80.0, clear = 75.0 }",
        "name = \"throttled\"\nfor = \"1m\"\nwhen = { throttled = true }",
        "name = \"disk-filling\"\nseverity = \"critical\"\nfor = \"10m\"\nwhen = { disk-full-within = \"24h\", trend-window = \"6h\" }",
    ]
    .iter()
    .map(|t| toml_rule(t))
    .collect()
}

impl RawAlerts {
    /// The built-in defaults.
    pub fn defaults() -> Self {
        RawAlerts {
            enabled: Some(true),
            default_rules: Some(true),
            evaluate_every: Some("5s".into()),
            history: Some(1000),
            retry_attempts: Some(8),
            retry_initial: Some("1s".into()),
            retry_max: Some("5m".into()),
            tags: None,
            rules: None,
            webhooks: None,
            maintenance: None,
        }
    }

    /// `over` on top of this layer, key by key (lists are replaced whole).
    pub fn merge(self, over: RawAlerts) -> RawAlerts {
        RawAlerts {
            enabled: over.enabled.or(self.enabled),
            default_rules: over.default_rules.or(self.default_rules),
            evaluate_every: over.evaluate_every.or(self.evaluate_every),
            history: over.history.or(self.history),
            retry_attempts: over.retry_attempts.or(self.retry_attempts),
            retry_initial: over.retry_initial.or(self.retry_initial),
            retry_max: over.retry_max.or(self.retry_max),
            tags: over.tags.or(self.tags),
            rules: over.rules.or(self.rules),
            webhooks: over.webhooks.or(self.webhooks),
            maintenance: over.maintenance.or(self.maintenance),
        }
    }

    /// Validates the (merged) section.
    pub fn validate(&self) -> Result<AlertsConfig, ConfigError> {
        let dur = |key: &str, v: &Option<String>, min: Duration, max: Duration| {
            duration(key, v.as_deref().unwrap_or_default(), min, max)
        };
        let ms = Duration::from_millis;
        let evaluate_every = dur(
            "alerts.evaluate-every",
            &self.evaluate_every,
            ms(100),
            ms(600_000),
        )?;
        let history = self.history.unwrap_or(1000);
        if !(1..=1_000_000).contains(&history) {
            return Err(cerr(
                "alerts.history",
                format!("must be 1 to 1000000 events, got {history}"),
            ));
        }
        let retry_attempts = self.retry_attempts.unwrap_or(8);
        if !(1..=100).contains(&retry_attempts) {
            return Err(cerr(
                "alerts.retry-attempts",
                format!("must be 1 to 100, got {retry_attempts}"),
            ));
        }
        let retry_initial = dur(
            "alerts.retry-initial",
            &self.retry_initial,
            ms(10),
            ms(3_600_000),
        )?;
        let retry_max = dur("alerts.retry-max", &self.retry_max, ms(10), ms(86_400_000))?;
        if retry_max < retry_initial {
            return Err(cerr(
                "alerts.retry-max",
                "must be at least alerts.retry-initial",
            ));
        }
        let tags = self.tags.clone().unwrap_or_default();
        for (tag, hosts) in &tags {
            let key = format!("alerts.tags.{tag}");
            if tag.is_empty() {
                return Err(cerr(&key, "a tag needs a name"));
            }
            check_patterns(&key, hosts)?;
        }
        let mut raw_rules: Vec<(String, RawRule)> = Vec::new();
        if self.default_rules.unwrap_or(true) {
            for r in default_rules() {
                raw_rules.push((format!("built-in rule {:?}", r.name), r));
            }
        }
        for (i, r) in self.rules.iter().flatten().enumerate() {
            let key = format!("alerts.rules[{i}]");
            // A configured rule of a built-in's name replaces it.
            raw_rules.retain(|(k, b)| !(k.starts_with("built-in") && b.name == r.name));
            raw_rules.push((key, r.clone()));
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (key, r) in &raw_rules {
            let rule = rule(key, r, &tags)?;
            if rules.iter().any(|o| o.name == rule.name) {
                return Err(cerr(
                    &format!("{key}.name"),
                    format!(
                        "{:?} is used by another rule: names must be unique",
                        rule.name
                    ),
                ));
            }
            rules.push(rule);
        }
        let mut webhooks = Vec::new();
        for (i, w) in self.webhooks.iter().flatten().enumerate() {
            let key = format!("alerts.webhooks[{i}]");
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) || w.url.len() < 10
            {
                return Err(cerr(
                    &format!("{key}.url"),
                    format!("expected an http:// or https:// URL, got {:?}", w.url),
                ));
            }
            let template = super::channels::template(&key, w)?;
            let min_severity = Severity::parse(
                &format!("{key}.min-severity"),
                w.min_severity.as_deref().unwrap_or("info"),
            )?;
            webhooks.push(Webhook {
                url: w.url.clone(),
                template,
                min_severity,
            });
        }
        let mut maintenance = Vec::new();
        for (i, m) in self.maintenance.iter().flatten().enumerate() {
            let key = format!("alerts.maintenance[{i}]");
            let mut days = 0u8;
            match &m.days {
                None => days = 0x7f,
                Some(list) => {
                    for d in list {
                        let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                        let n = names.iter().position(|n| *n == d.as_str()).ok_or_else(|| {
                            cerr(
                                &format!("{key}.days"),
                                format!("expected mon, tue, wed, thu, fri, sat or sun, got {d:?}"),
                            )
                        })?;
                        days |= 1 << n;
                    }
                }
            }
            let from_min = clock(&format!("{key}.from"), &m.from)?;
            let to_min = clock(&format!("{key}.to"), &m.to)?;
            let scope = scope(&key, &m.hosts, &m.tags, &tags)?;
            maintenance.push(Maintenance {
                name: m.name.clone(),
                days,
                from_min,
                to_min,
                scope,
            });
        }
        Ok(AlertsConfig {
            enabled: self.enabled.unwrap_or(true),
            evaluate_every,
            history,
            retry_attempts,
            retry_initial,
            retry_max,
            tags,
            rules,
            webhooks,
            maintenance,
            raw: self.clone(),
        })
    }
}

/// A duration between `min` and `max`, as every duration of the collector's config is read.
fn duration(key: &str, s: &str, min: Duration, max: Duration) -> Result<Duration, ConfigError> {
    crate::config::parse_duration(key, s, min, max)
}

fn clock(key: &str, s: &str) -> Result<u32, ConfigError> {
    let bad = || {
        cerr(
            key,
            format!("expected HH:MM (UTC, 00:00 to 23:59), got {s:?}"),
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn check_patterns(key: &str, hosts: &[String]) -> Result<(), ConfigError> {
    for p in hosts {
        let bare = p.strip_suffix('*').unwrap_or(p);
        if bare.contains('*') || (bare.is_empty() && p.is_empty()) {
            return Err(cerr(
                key,
                format!("{p:?} is not a host id or `prefix*` pattern"),
            ));
        }
    }
    Ok(())
}

fn scope(
    key: &str,
    hosts: &Option<Vec<String>>,
    tags: &Option<Vec<String>>,
    known: &BTreeMap<String, Vec<String>>,
) -> Result<Scope, ConfigError> {
    let hosts = hosts.clone().unwrap_or_default();
    check_patterns(&format!("{key}.hosts"), &hosts)?;
    let tags = tags.clone().unwrap_or_default();
    for t in &tags {
        if !known.contains_key(t) {
            return Err(cerr(
                &format!("{key}.tags"),
                format!("unknown tag {t:?}: define it under [alerts.tags] as {t} = [\"host\", …]"),
            ));
        }
    }
    Ok(Scope { hosts, tags })
}

fn rule(key: &str, r: &RawRule, tags: &BTreeMap<String, Vec<String>>) -> Result<Rule, ConfigError> {
    if r.name.is_empty()
        || r.name.len() > 64
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(cerr(
            &format!("{key}.name"),
            format!(
                "must be 1 to 64 letters, digits, `-`, `_` or `.`, got {:?}",
                r.name
            ),
        ));
    }
    let severity = Severity::parse(
        &format!("{key}.severity"),
        r.severity.as_deref().unwrap_or("warning"),
    )?;
    let week = Duration::from_secs(7 * 86_400);
    let for_ = duration(
        &format!("{key}.for"),
        r.for_.as_deref().unwrap_or("0s"),
        Duration::ZERO,
        week,
    )?;
    let clear_for = duration(
        &format!("{key}.clear-for"),
        r.clear_for.as_deref().unwrap_or("0s"),
        Duration::ZERO,
        week,
    )?;
    let scope = scope(key, &r.hosts, &r.tags, tags)?;
    let when = condition(&format!("{key}.when"), &r.when, 0)?;
    Ok(Rule {
        name: r.name.clone(),
        severity,
        for_,
        clear_for,
        scope,
        when,
    })
}

fn condition(key: &str, c: &RawCondition, depth: usize) -> Result<Condition, ConfigError> {
    let k = |field: &str| format!("{key}.{field}");
    if depth > 8 {
        return Err(cerr(key, "conditions nest at most 8 deep"));
    }
    let kinds = [
        c.metric.is_some(),
        c.offline.is_some(),
        c.process.is_some(),
        c.throttled.is_some(),
        c.disk_full_within.is_some(),
        c.all.is_some(),
        c.any.is_some(),
    ];
    let n = kinds.iter().filter(|k| **k).count();
    if n != 1 {
        return Err(cerr(
            key,
            format!(
                "needs exactly one of `metric` (with `above` or `below`), `offline`, `process`, \
                 `throttled`, `disk-full-within`, `all` or `any`; {n} given"
            ),
        ));
    }
    let stray = |fields: &[(&str, bool)]| -> Result<(), ConfigError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((f, _)) => Err(cerr(
                &k(f),
                "does not belong to this kind of condition: remove it",
            )),
            None => Ok(()),
        }
    };
    let threshold_fields = [
        ("label", c.label.is_some()),
        ("above", c.above.is_some()),
        ("below", c.below.is_some()),
        ("clear", c.clear.is_some()),
    ];
    let disk_fields = [
        ("mount", c.mount.is_some()),
        ("trend-window", c.trend_window.is_some()),
    ];
    if let Some(name) = &c.metric {
        stray(&disk_fields)?;
        let metric = metrics::by_name(name).ok_or_else(|| {
            let known: Vec<&str> = metrics::ALL.iter().map(|m| m.name).collect();
            cerr(
                &k("metric"),
                format!("unknown metric {name:?}; known: {}", known.join(", ")),
            )
        })?;
        if c.label.is_some() && metric.label.is_none() {
            return Err(cerr(
                &k("label"),
                format!("{name} has one series only: remove `label`"),
            ));
        }
        let (direction, level) = match (c.above, c.below) {
            (Some(a), None) => (Direction::Above, a),
            (None, Some(b)) => (Direction::Below, b),
            _ => {
                return Err(cerr(
                    &k("above"),
                    "a threshold needs exactly one of `above` or `below`",
                ))
            }
        };
        if !level.is_finite() {
            return Err(cerr(&k("above"), "must be a finite number"));
        }
        let clear = c.clear.unwrap_or(level);
        let ok = clear.is_finite()
            && match direction {
                Direction::Above => clear <= level,
                Direction::Below => clear >= level,
            };
        if !ok {
            return Err(cerr(
                &k("clear"),
                format!(
                    "must be on the quiet side of the threshold ({} {level}), got {clear}",
                    if direction == Direction::Above {
                        "at most"
                    } else {
                        "at least"
                    }
                ),
            ));
        }
        return Ok(Condition::Threshold {
            metric,
            label: c.label.clone(),
            direction,
            level,
            clear,
        });
    }
    stray(&threshold_fields)?;
    if let Some(within) = &c.disk_full_within {
        let day = Duration::from_secs(86_400);
        let within = duration(
            &k("disk-full-within"),
            within,
            Duration::from_secs(60),
            day * 365,
        )?;
        let window = duration(
            &k("trend-window"),
            c.trend_window.as_deref().unwrap_or("6h"),
            Duration::from_secs(60),
            day * 30,
        )?;
        return Ok(Condition::DiskFull {
            mount: c.mount.clone(),
            within,
            window,
        });
    }
    stray(&disk_fields)?;
    let yes = |field: &str, v: Option<bool>| -> Result<(), ConfigError> {
        if v == Some(false) {
            Err(cerr(
                &k(field),
                "only `true` means something here: remove the condition instead",
            ))
        } else {
            Ok(())
        }
    };
    if c.offline.is_some() {
        yes("offline", c.offline)?;
        return Ok(Condition::Offline);
    }
    if c.throttled.is_some() {
        yes("throttled", c.throttled)?;
        return Ok(Condition::Throttled);
    }
    if let Some(p) = &c.process {
        if p.is_empty() {
            return Err(cerr(&k("process"), "needs the name of a watched process"));
        }
        return Ok(Condition::ProcessMissing(p.clone()));
    }
    let (list, field, all) = match (&c.all, &c.any) {
        (Some(l), _) => (l, "all", true),
        (_, Some(l)) => (l, "any", false),
        _ => unreachable!("exactly one kind is set"),
    };
    if list.is_empty() {
        return Err(cerr(&k(field), "needs at least one condition"));
    }
    let parts = list
        .iter()
        .enumerate()
        .map(|(i, c)| condition(&format!("{key}.{field}[{i}]"), c, depth + 1))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if all {
        Condition::All(parts)
    } else {
        Condition::Any(parts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, ConfigError> {
        #[derive(Deserialize)]
        struct Doc {
            alerts: RawAlerts,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| cerr("toml", e.to_string()))?;
        RawAlerts::defaults().merge(doc.alerts).validate()
    }

    #[test]
    fn defaults_give_the_built_in_rules() {
        let c = RawAlerts::defaults().validate().unwrap();
        let names: Vec<&str> = c.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "host-offline",
                "cpu-high",
                "temperature-high",
                "throttled",
                "disk-filling"
            ]
        );
        assert_eq!(c.rules[1].for_, Duration::from_secs(120));
        assert!(matches!(
            c.rules[1].when,
            Condition::Threshold { level, clear, .. } if level == 0.9 && clear == 0.8
        ));
    }

    #[test]
    fn a_configured_rule_replaces_the_built_in_of_its_name() {
        let c = parse(
            "[alerts]\n[[alerts.rules]]\nname = \"cpu-high\"\nfor = \"5m\"\nwhen = { metric = \"cpu.busy\", above = 0.95 }\n",
        )
        .unwrap();
        let cpu: Vec<&Rule> = c.rules.iter().filter(|r| r.name == "cpu-high").collect();
        assert_eq!(cpu.len(), 1);
        assert_eq!(cpu[0].for_, Duration::from_secs(300));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let check = |toml: &str, key: &str, hint: &str| {
            let e = parse(toml).unwrap_err();
            assert_eq!(e.key, key, "{toml}: {e}");
            assert!(e.reason.contains(hint), "{toml}: {e}");
        };
        let rule =
            |when: &str| format!("[alerts]\n[[alerts.rules]]\nname = \"r\"\nwhen = {{ {when} }}\n");
        check(
            &rule("metric = \"cpu.bsy\", above = 1.0"),
            "alerts.rules[0].when.metric",
            "known: cpu.busy",
        );
        check(
            &rule("metric = \"cpu.busy\""),
            "alerts.rules[0].when.above",
            "exactly one of `above` or `below`",
        );
        check(
            &rule("metric = \"cpu.busy\", above = 0.9, clear = 0.95"),
            "alerts.rules[0].when.clear",
            "at most 0.9",
        );
        check(
            &rule("metric = \"cpu.busy\", label = \"x\", above = 0.9"),
            "alerts.rules[0].when.label",
            "remove `label`",
        );
        check(&rule(""), "alerts.rules[0].when", "0 given");
        check(
            &rule("offline = true, metric = \"cpu.busy\""),
            "alerts.rules[0].when",
            "2 given",
        );
        check(
            &rule("offline = true, above = 1.0"),
            "alerts.rules[0].when.above",
            "remove it",
        );
        check(
            &rule("any = [{ offline = true }, { disk-full-within = \"soon\" }]"),
            "alerts.rules[0].when.any[1].disk-full-within",
            "examples",
        );
        check(
            &rule("all = []"),
            "alerts.rules[0].when.all",
            "at least one",
        );
        check(
            "[alerts]\n[[alerts.rules]]\nname = \"a b\"\nwhen = { offline = true }\n",
            "alerts.rules[0].name",
            "letters",
        );
        check(
            "[alerts]\n[[alerts.rules]]\nname = \"x\"\ntags = [\"garage\"]\nwhen = { offline = true }\n",
            "alerts.rules[0].tags",
            "[alerts.tags]",
        );
        check(
            "[alerts]\n[[alerts.rules]]\nname = \"x\"\nwhen = { offline = true }\n[[alerts.rules]]\nname = \"x\"\nwhen = { offline = true }\n",
            "alerts.rules[1].name",
            "unique",
        );
        check(
            "[alerts]\n[[alerts.rules]]\nname = \"x\"\nfor = \"2 fortnights\"\nwhen = { offline = true }\n",
            "alerts.rules[0].for",
            "examples",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"ftp://x.example\"\n",
            "alerts.webhooks[0].url",
            "http",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://ntfy.sh/x\"\ntemplate = \"pagerduty\"\n",
            "alerts.webhooks[0].template",
            "ntfy",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://api.telegram.org/botX/getMe\"\ntemplate = \"telegram\"\nchat-id = 1\n",
            "alerts.webhooks[0].url",
            "bot<TOKEN>/sendMessage",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://api.telegram.org/botX/sendMessage\"\ntemplate = \"telegram\"\n",
            "alerts.webhooks[0].chat-id",
            "needs the chat",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://ntfy.sh/x\"\nchat-id = 1\n",
            "alerts.webhooks[0].chat-id",
            "only for template = \"telegram\"",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://gotify.example/message\"\ntemplate = \"gotify\"\n",
            "alerts.webhooks[0].url",
            "/message?token=<TOKEN>",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://api.pushover.net/1/messages.json\"\ntemplate = \"pushover\"\n",
            "alerts.webhooks[0].token-file",
            "needs the application token",
        );
        check(
            "[alerts]\n[[alerts.webhooks]]\nurl = \"https://ntfy.sh/x\"\nuser = \"u\"\n",
            "alerts.webhooks[0].user",
            "only for template = \"pushover\"",
        );
        check(
            "[alerts]\n[[alerts.maintenance]]\nname = \"m\"\nfrom = \"25:00\"\nto = \"02:00\"\n",
            "alerts.maintenance[0].from",
            "HH:MM",
        );
        check(
            "[alerts]\n[[alerts.maintenance]]\nname = \"m\"\ndays = [\"sunday\"]\nfrom = \"01:00\"\nto = \"02:00\"\n",
            "alerts.maintenance[0].days",
            "sun",
        );
        check(
            "[alerts]\nretry-attempts = 0",
            "alerts.retry-attempts",
            "1 to 100",
        );
    }

    #[test]
    fn scopes_match_hosts_patterns_and_tags() {
        let c = parse("[alerts.tags]\ngarage = [\"pi-g*\", \"nas\"]\n").unwrap();
        assert_eq!(c.tags_of("pi-garage"), ["garage"]);
        assert_eq!(c.tags_of("nas"), ["garage"]);
        assert!(c.tags_of("pi-kitchen").is_empty());
        let s = Scope {
            hosts: vec!["pi4".into()],
            tags: vec!["garage".into()],
        };
        assert!(s.matches("pi4", &[]));
        assert!(s.matches("nas", &["garage".into()]));
        assert!(!s.matches("pi5", &[]));
        assert!(Scope::default().matches("any", &[]));
    }

    #[test]
    fn maintenance_windows_follow_the_week_in_utc() {
        // Sunday 02:00 to 04:00, and a window across midnight from Saturday.
        let c = parse(
            "[[alerts.maintenance]]\nname = \"backup\"\ndays = [\"sun\"]\nfrom = \"02:00\"\nto = \"04:00\"\n\
             [[alerts.maintenance]]\nname = \"night\"\ndays = [\"sat\"]\nfrom = \"23:00\"\nto = \"01:00\"\n",
        )
        .unwrap();
        // 2026-11-29 is a Sunday.
        let sunday = 1_795_910_400_000u64;
        let at = |h: u64, m: u64| sunday + (h * 60 + m) * 60_000;
        let backup = &c.maintenance[0];
        assert!(!backup.open_at(at(1, 59)));
        assert!(backup.open_at(at(2, 0)));
        assert!(backup.open_at(at(3, 59)));
        assert!(!backup.open_at(at(4, 0)));
        assert!(!backup.open_at(at(2, 30) + 86_400_000));
        let night = &c.maintenance[1];
        assert!(
            night.open_at(at(0, 30)),
            "Saturday's window runs into Sunday"
        );
        assert!(!night.open_at(at(1, 0)));
        assert!(night.open_at(at(23, 30) - 86_400_000));
        assert!(!night.open_at(at(23, 30)), "not Sunday night");
    }
}
