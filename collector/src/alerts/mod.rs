//! Alerts: rules evaluated over the hosts' newest values, silences, maintenance windows and the
//! alert history.
//!
//! [`Engine`] is plain state: [`Engine::evaluate`] takes the time and what is known of every host
//! ([`HostFacts`]) and returns the notifications to deliver. It reads no clock and does no I/O, so
//! for-durations, hysteresis and flapping are tested with explicit times. The edges are thin:
//! `run.rs` evaluates on an interval on a thread of its own, copying the hosts' facts out of the
//! store in short holds of its lock, and hands notifications to `notify.rs`, which delivers
//! webhooks with retries, and the MQTT alert topic and banners to the ingest thread to publish.
//!
//! An alert instance is one rule on one host. Its life:
//!
//! ```text
//!  (none) ──cond──► Pending ──held `for`──► Firing ──clear──► Clearing ──clear `clear-for`──► (none)
//!                      │                      ▲                 │
//!                      └──not cond──► (none)  └──────cond───────┘
//! ```
//!
//! While firing (or clearing) a threshold holds until the value is back beyond its `clear` level
//! (hysteresis). Notifications go out only on the transitions to firing and to resolved, so a
//! value that flaps around its threshold notifies at most once per real episode. A silenced
//! alert (silence or maintenance window) still changes state and is recorded, but notifies only
//! once nothing silences it; a resolve is sent only for an alert whose firing was sent.

pub mod channels;
pub mod notify;
pub mod rules;
pub mod run;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use ember_wire::{HostId, Sample};
use serde::{Deserialize, Serialize};

use crate::metrics;
use crate::store::HostStatus;
pub use rules::{AlertsConfig, Condition, Direction, RawAlerts, Rule, Severity};

/// A filesystem's recent use, for the disk-full prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct FsTrend {
    /// Mount point.
    pub mount: String,
    /// Size in bytes.
    pub total: f64,
    /// `(ms since the Unix epoch, used bytes)`, oldest first.
    pub points: Vec<(u64, f64)>,
}

/// What the engine knows of one host at one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts<'a> {
    /// The host.
    pub id: &'a HostId,
    /// Its status.
    pub status: HostStatus,
    /// Its newest sample.
    pub sample: Option<&'a Sample>,
    /// Filesystem trends (only filled when a rule predicts disk use).
    pub trends: &'a [FsTrend],
}

/// An alert as the API, the MQTT topic and notifications show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// The host.
    pub host: HostId,
    /// How bad.
    pub severity: Severity,
    /// What was seen, for people (`cpu.busy 0.97 > 0.9`).
    pub summary: String,
    /// When it fired, ms since the Unix epoch.
    pub since_ms: u64,
    /// Held back by a silence or a maintenance window.
    #[serde(default)]
    pub silenced: bool,
}

/// A transition worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// The alert fired.
    Firing,
    /// The alert resolved.
    Resolved,
}

/// One entry of the alert history, and one notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Fired or resolved.
    pub change: Change,
    /// The alert.
    pub alert: Alert,
}

/// A silence: notifications of matching alerts are held back until `until_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Chosen by the engine.
    pub id: u64,
    /// Only this rule; `None`: every rule.
    pub rule: Option<String>,
    /// Only this host or `prefix*`; `None`: every host.
    pub host: Option<String>,
    /// Ends at, ms since the Unix epoch.
    pub until_ms: u64,
    /// Why.
    pub comment: String,
    /// Who set it.
    pub created_by: String,
    /// When, ms since the Unix epoch.
    pub created_ms: u64,
}

impl Silence {
    fn matches(&self, rule: &str, host: &str, now_ms: u64) -> bool {
        now_ms < self.until_ms
            && self.rule.as_deref().is_none_or(|r| r == rule)
            && self
                .host
                .as_deref()
                .is_none_or(|p| rules::pattern_matches(p, host))
    }
}

/// How long after it was saved a pending alert's `for` timer is restored
/// ([`Engine::restore_pending`]); after a longer stop it starts over.
pub const PENDING_KEPT_FOR: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Pending { since: u64 },
    Firing { since: u64 },
    Clearing { since: u64, clear_since: u64 },
}

#[derive(Debug, Clone)]
struct Instance {
    phase: Phase,
    summary: String,
    /// The firing notification went out (so the resolve must too).
    notified: bool,
}

/// The result of evaluating a condition: true, false or unknown (no data), and what was seen.
#[derive(Debug, Clone, PartialEq)]
struct Truth {
    value: Option<bool>,
    detail: String,
}

impl Truth {
    fn unknown() -> Self {
        Truth {
            value: None,
            detail: String::new(),
        }
    }

    fn is(value: bool, detail: String) -> Self {
        Truth {
            value: Some(value),
            detail,
        }
    }
}

/// The alert engine's state.
#[derive(Debug)]
pub struct Engine {
    config: AlertsConfig,
    instances: BTreeMap<(usize, HostId), Instance>,
    history: VecDeque<AlertEvent>,
    silences: Vec<Silence>,
    next_silence: u64,
    /// Events recorded since [`Engine::take_recorded`], for the history file.
    recorded: Vec<AlertEvent>,
}

impl Engine {
    /// An engine with nothing firing.
    pub fn new(config: AlertsConfig) -> Self {
        Engine {
            config,
            instances: BTreeMap::new(),
            history: VecDeque::new(),
            silences: Vec::new(),
            next_silence: 1,
            recorded: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// The longest trend window of any disk-full rule: how much filesystem history
    /// [`HostFacts::trends`] should cover. `None`: no rule needs trends.
    pub fn trend_window(&self) -> Option<Duration> {
        self.config
            .rules
            .iter()
            .filter_map(|r| r.when.trend_window())
            .max()
    }

    /// Rebuilds the history and the firing alerts from recorded events (oldest first), so that a
    /// restart neither repeats nor loses a firing notification. Events of unknown rules are kept
    /// in the history only.
    pub fn restore(&mut self, events: impl IntoIterator<Item = AlertEvent>) {
        for e in events {
            if let Some(i) = self.rule_index(&e.alert.rule) {
                let key = (i, e.alert.host.clone());
                match e.change {
                    Change::Firing => {
                        self.instances.insert(
                            key,
                            Instance {
                                phase: Phase::Firing {
                                    since: e.alert.since_ms,
                                },
                                summary: e.alert.summary.clone(),
                                notified: !e.alert.silenced,
                            },
                        );
                    }
                    Change::Resolved => {
                        self.instances.remove(&key);
                    }
                }
            }
            self.record(e);
        }
    }

    /// Restarts the `for` timers of alerts that were pending when `pending` was saved, at
    /// `saved_ms`, so that a restart does not push their firing back by a whole `for`. The time
    /// the collector was down counts as the condition holding (as Prometheus restores its
    /// `for` state), but only after a short stop: a pending alert saved more than
    /// [`PENDING_KEPT_FOR`] before `now_ms` starts over. An alert pending for a rule that is
    /// gone, or already known (firing), is ignored. The next evaluation decides as usual: a
    /// condition no longer true ends it.
    pub fn restore_pending(&mut self, pending: Vec<Alert>, saved_ms: u64, now_ms: u64) {
        if now_ms.saturating_sub(saved_ms) > PENDING_KEPT_FOR.as_millis() as u64 {
            return;
        }
        for a in pending {
            let Some(i) = self.rule_index(&a.rule) else {
                continue;
            };
            if a.since_ms > now_ms {
                continue;
            }
            self.instances
                .entry((i, a.host.clone()))
                .or_insert(Instance {
                    phase: Phase::Pending { since: a.since_ms },
                    summary: a.summary,
                    notified: false,
                });
        }
    }

    fn rule_index(&self, name: &str) -> Option<usize> {
        self.config.rules.iter().position(|r| r.name == name)
    }

    /// The events recorded since the last call, oldest first.
    pub fn take_recorded(&mut self) -> Vec<AlertEvent> {
        std::mem::take(&mut self.recorded)
    }

    fn record(&mut self, e: AlertEvent) {
        if self.recorded.len() < self.config.history {
            self.recorded.push(e.clone());
        }
        self.history.push_back(e);
        while self.history.len() > self.config.history {
            self.history.pop_front();
        }
    }

    /// Whether notifications about `rule` on `host` are held back at `now_ms`.
    pub fn silenced(&self, rule: &str, host: &HostId, now_ms: u64) -> bool {
        let tags = self.config.tags_of(host.as_str());
        self.silences
            .iter()
            .any(|s| s.matches(rule, host.as_str(), now_ms))
            || self
                .config
                .maintenance
                .iter()
                .any(|m| m.scope.matches(host.as_str(), &tags) && m.open_at(now_ms))
    }

    /// Evaluates every rule on every host at `now_ms` and returns what to notify, oldest
    /// transition first. Also records the history.
    pub fn evaluate(&mut self, now_ms: u64, hosts: &[HostFacts<'_>]) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.evaluate_hosts(now_ms, hosts, &mut out);
        self.finish(now_ms, &mut out);
        out
    }

    /// [`Engine::evaluate`] in parts, for facts that are not all at hand at once: each host's
    /// rules, a share of the hosts per call (what to notify appended to `out`), then
    /// [`Engine::finish`] once. The alert thread decodes 256 hosts' newest samples at a time
    /// this way: all of them at once were 2.6 KB each, 26 MB for 10,000 hosts every
    /// evaluation (issue #9).
    pub fn evaluate_hosts(
        &mut self,
        now_ms: u64,
        hosts: &[HostFacts<'_>],
        out: &mut Vec<AlertEvent>,
    ) {
        // (An expired silence holds nothing back: `Silence::matches` checks its end. `finish`
        // drops them.)
        if !self.config.enabled {
            return;
        }
        for h in hosts {
            let tags = self.config.tags_of(h.id.as_str());
            for i in 0..self.config.rules.len() {
                let rule = &self.config.rules[i];
                if !rule.scope.matches(h.id.as_str(), &tags) {
                    continue;
                }
                let key = (i, h.id.clone());
                let phase = self.instances.get(&key).map(|x| x.phase);
                let holding = matches!(phase, Some(Phase::Firing { .. } | Phase::Clearing { .. }));
                let truth = eval(&rule.when, h, now_ms, holding);
                self.step(i, h.id, phase, truth, now_ms, out);
            }
        }
    }

    /// Ends an evaluation made of [`Engine::evaluate_hosts`] calls: expired silences go, and
    /// firing alerts a silence held back are notified (appended to `out`) once nothing
    /// silences them.
    pub fn finish(&mut self, now_ms: u64, out: &mut Vec<AlertEvent>) {
        self.silences.retain(|s| s.until_ms > now_ms);
        if !self.config.enabled {
            return;
        }
        // Firing notifications held back by a silence go out once nothing silences them.
        let mut due = Vec::new();
        for ((i, host), x) in &self.instances {
            let firing = matches!(x.phase, Phase::Firing { .. } | Phase::Clearing { .. });
            if firing && !x.notified && !self.silenced(&self.config.rules[*i].name, host, now_ms) {
                due.push((*i, host.clone()));
            }
        }
        for key in due {
            if let Some(x) = self.instances.get_mut(&key) {
                x.notified = true;
            }
            if let Some(alert) = self.alert(&key, now_ms) {
                out.push(AlertEvent {
                    at_ms: now_ms,
                    change: Change::Firing,
                    alert,
                });
            }
        }
    }

    fn step(
        &mut self,
        i: usize,
        host: &HostId,
        phase: Option<Phase>,
        truth: Truth,
        now_ms: u64,
        out: &mut Vec<AlertEvent>,
    ) {
        let rule = &self.config.rules[i];
        let for_ms = rule.for_.as_millis() as u64;
        let clear_for_ms = rule.clear_for.as_millis() as u64;
        let key = (i, host.clone());
        let Some(value) = truth.value else {
            // Unknown: nothing changes until the data is back.
            return;
        };
        let next = match (phase, value) {
            (None, false) => return,
            (None, true) if for_ms == 0 => Some(Phase::Firing { since: now_ms }),
            (None, true) => Some(Phase::Pending { since: now_ms }),
            (Some(Phase::Pending { .. }), false) => None,
            (Some(Phase::Pending { since }), true) if now_ms.saturating_sub(since) >= for_ms => {
                Some(Phase::Firing { since: now_ms })
            }
            (Some(p @ Phase::Pending { .. }), true) => Some(p),
            (Some(p @ Phase::Firing { .. }), true) => Some(p),
            (Some(Phase::Firing { .. }), false) if clear_for_ms == 0 => None,
            (Some(Phase::Firing { since }), false) => Some(Phase::Clearing {
                since,
                clear_since: now_ms,
            }),
            (Some(Phase::Clearing { since, .. }), true) => Some(Phase::Firing { since }),
            (Some(Phase::Clearing { clear_since, .. }), false)
                if now_ms.saturating_sub(clear_since) >= clear_for_ms =>
            {
                None
            }
            (Some(p @ Phase::Clearing { .. }), false) => Some(p),
        };
        let was_firing = matches!(phase, Some(Phase::Firing { .. } | Phase::Clearing { .. }));
        match next {
            Some(p) => {
                let fired_now = matches!(p, Phase::Firing { .. }) && !was_firing;
                let x = self.instances.entry(key.clone()).or_insert(Instance {
                    phase: p,
                    summary: String::new(),
                    notified: false,
                });
                x.phase = p;
                // What was seen when it started; a firing alert keeps that (its value may
                // sit between the clear level and the threshold).
                if value && !was_firing {
                    x.summary = truth.detail;
                }
                if fired_now {
                    let silenced = self.silenced(&self.config.rules[i].name, host, now_ms);
                    if let Some(x) = self.instances.get_mut(&key) {
                        x.notified = !silenced;
                    }
                    if let Some(alert) = self.alert(&key, now_ms) {
                        let e = AlertEvent {
                            at_ms: now_ms,
                            change: Change::Firing,
                            alert,
                        };
                        self.record(e.clone());
                        if !silenced {
                            out.push(e);
                        }
                    }
                }
            }
            None => {
                let alert = self.alert(&key, now_ms);
                let Some(x) = self.instances.remove(&key) else {
                    return;
                };
                if !was_firing {
                    return;
                }
                if let Some(mut alert) = alert {
                    if !truth.detail.is_empty() {
                        alert.summary = truth.detail;
                    }
                    let e = AlertEvent {
                        at_ms: now_ms,
                        change: Change::Resolved,
                        alert,
                    };
                    self.record(e.clone());
                    if x.notified {
                        out.push(e);
                    }
                }
            }
        }
    }

    fn alert(&self, key: &(usize, HostId), now_ms: u64) -> Option<Alert> {
        let x = self.instances.get(key)?;
        let rule = self.config.rules.get(key.0)?;
        let since_ms = match x.phase {
            Phase::Pending { since } | Phase::Firing { since } | Phase::Clearing { since, .. } => {
                since
            }
        };
        Some(Alert {
            rule: rule.name.clone(),
            host: key.1.clone(),
            severity: rule.severity,
            summary: x.summary.clone(),
            since_ms,
            silenced: self.silenced(&rule.name, &key.1, now_ms),
        })
    }

    /// The firing alerts (including those held back by a silence), by host and rule.
    pub fn active(&self, now_ms: u64) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .instances
            .iter()
            .filter(|(_, x)| matches!(x.phase, Phase::Firing { .. } | Phase::Clearing { .. }))
            .filter_map(|(k, _)| self.alert(k, now_ms))
            .collect();
        v.sort_by(|a, b| (&a.host, &a.rule).cmp(&(&b.host, &b.rule)));
        v
    }

    /// Alerts whose condition holds but whose `for` has not passed yet.
    pub fn pending(&self, now_ms: u64) -> Vec<Alert> {
        self.instances
            .iter()
            .filter(|(_, x)| matches!(x.phase, Phase::Pending { .. }))
            .filter_map(|(k, _)| self.alert(k, now_ms))
            .collect()
    }

    /// The newest `limit` history events (of `host`, if given), newest first.
    pub fn history(&self, host: Option<&HostId>, limit: usize) -> Vec<AlertEvent> {
        self.history
            .iter()
            .rev()
            .filter(|e| host.is_none_or(|h| &e.alert.host == h))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Adds a silence and returns it.
    pub fn silence(
        &mut self,
        rule: Option<String>,
        host: Option<String>,
        until_ms: u64,
        comment: String,
        created_by: String,
        now_ms: u64,
    ) -> Silence {
        let s = Silence {
            id: self.next_silence,
            rule,
            host,
            until_ms,
            comment,
            created_by,
            created_ms: now_ms,
        };
        self.next_silence += 1;
        self.silences.push(s.clone());
        s
    }

    /// Puts back silences saved before a restart (those already over are dropped).
    pub fn restore_silences(&mut self, silences: Vec<Silence>, now_ms: u64) {
        self.next_silence = silences
            .iter()
            .map(|s| s.id + 1)
            .max()
            .unwrap_or(1)
            .max(self.next_silence);
        self.silences = silences;
        self.silences.retain(|s| s.until_ms > now_ms);
    }

    /// Removes a silence; `false` if there was none of that id.
    pub fn unsilence(&mut self, id: u64) -> bool {
        let before = self.silences.len();
        self.silences.retain(|s| s.id != id);
        self.silences.len() != before
    }

    /// The silences in force at `now_ms`.
    pub fn silences(&self, now_ms: u64) -> Vec<Silence> {
        self.silences
            .iter()
            .filter(|s| s.until_ms > now_ms)
            .cloned()
            .collect()
    }
}

/// Whether the host's newest values can be trusted: not while it is offline.
fn fresh<'a>(h: &HostFacts<'a>) -> Option<&'a Sample> {
    (h.status != HostStatus::Offline).then_some(h.sample?)
}

fn eval(c: &Condition, h: &HostFacts<'_>, now_ms: u64, holding: bool) -> Truth {
    match c {
        Condition::Threshold {
            metric,
            label,
            direction,
            level,
            clear,
        } => {
            let Some(s) = fresh(h) else {
                return Truth::unknown();
            };
            let limit = if holding { *clear } else { *level };
            // The worst series: the highest for `above`, the lowest for `below`.
            let mut worst: Option<(f64, String)> = None;
            metrics::for_each(s, |m, l, x| {
                if m.name != metric.name || (label.is_some() && label.as_deref() != l) {
                    return;
                }
                let v = metrics::scaled(m, x as f64);
                let worse = worst.as_ref().is_none_or(|(w, _)| match direction {
                    Direction::Above => v > *w,
                    Direction::Below => v < *w,
                });
                if worse {
                    worst = Some((v, l.map(str::to_string).unwrap_or_default()));
                }
            });
            let Some((v, l)) = worst else {
                return Truth::unknown();
            };
            let (beyond, sign) = match direction {
                Direction::Above => (v > limit, if v > limit { ">" } else { "≤" }),
                Direction::Below => (v < limit, if v < limit { "<" } else { "≥" }),
            };
            let name = if l.is_empty() {
                metric.name.to_string()
            } else {
                format!("{} {l}", metric.name)
            };
            Truth::is(beyond, format!("{name} {} {sign} {limit}", round(v)))
        }
        Condition::Offline => match h.status {
            HostStatus::Offline => Truth::is(true, "offline".into()),
            HostStatus::Unknown => Truth::unknown(),
            HostStatus::Online | HostStatus::Stale => Truth::is(false, "back online".into()),
        },
        Condition::ProcessMissing(name) => {
            let Some(s) = fresh(h) else {
                return Truth::unknown();
            };
            match s.watched.iter().find(|w| w.name.as_str() == name) {
                Some(w) if w.instances == 0 => Truth::is(true, format!("process {name} missing")),
                Some(w) => Truth::is(
                    false,
                    format!("process {name} running ({} instances)", w.instances),
                ),
                None => Truth::unknown(),
            }
        }
        Condition::Throttled => {
            let Some(flags) = fresh(h).and_then(|s| s.throttled) else {
                return Truth::unknown();
            };
            // The low bits are "now": under-voltage, frequency capped, throttled, soft limit.
            let now = flags & 0xf;
            Truth::is(now != 0, format!("throttling flags {flags:#x}"))
        }
        Condition::DiskFull {
            mount,
            within,
            window,
        } => {
            if h.status == HostStatus::Offline {
                return Truth::unknown();
            }
            let mut result = Truth::unknown();
            for t in h.trends {
                if mount.as_deref().is_some_and(|m| m != t.mount) {
                    continue;
                }
                let from = now_ms.saturating_sub(window.as_millis() as u64);
                let Some(eta) = time_to_full(t, from, window.as_millis() as u64 / 4) else {
                    continue;
                };
                let full = eta <= within.as_millis() as f64;
                let detail = if eta.is_finite() {
                    format!(
                        "{} full in {}",
                        t.mount,
                        humantime::format_duration(Duration::from_secs((eta / 1000.0) as u64))
                    )
                } else {
                    format!("{} not filling", t.mount)
                };
                if full || result.value.is_none() {
                    result = Truth::is(full, detail);
                }
                if full {
                    break;
                }
            }
            result
        }
        Condition::All(parts) => {
            let mut unknown = false;
            let mut details = Vec::new();
            for p in parts {
                let t = eval(p, h, now_ms, holding);
                match t.value {
                    Some(false) => return t,
                    Some(true) => details.push(t.detail),
                    None => unknown = true,
                }
            }
            if unknown {
                Truth::unknown()
            } else {
                Truth::is(true, details.join(" and "))
            }
        }
        Condition::Any(parts) => {
            let mut unknown = false;
            let mut yes = Vec::new();
            let mut no = Vec::new();
            for p in parts {
                let t = eval(p, h, now_ms, holding);
                match t.value {
                    Some(true) => yes.push(t.detail),
                    Some(false) => no.push(t.detail),
                    None => unknown = true,
                }
            }
            if !yes.is_empty() {
                Truth::is(true, yes.join(" or "))
            } else if unknown {
                Truth::unknown()
            } else {
                Truth::is(false, no.join(" and "))
            }
        }
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Milliseconds until the filesystem is full, from a least-squares line through the points at or
/// after `from_ms`; infinite when it is not filling. `None` when the points span less than
/// `min_span_ms` or are fewer than three: too little to judge.
pub fn time_to_full(t: &FsTrend, from_ms: u64, min_span_ms: u64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = t
        .points
        .iter()
        .filter(|(at, _)| *at >= from_ms)
        .map(|(at, v)| ((*at - from_ms) as f64, *v))
        .collect();
    let (first, last) = (pts.first()?, pts.last()?);
    if pts.len() < 3 || last.0 - first.0 < min_span_ms as f64 {
        return None;
    }
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx <= 0.0 {
        return None;
    }
    let slope = sxy / sxx; // bytes per ms
    if slope <= 0.0 {
        return Some(f64::INFINITY);
    }
    let now_used = my + slope * (last.0 - mx);
    Some(((t.total - now_used) / slope).max(0.0))
}

#[cfg(test)]
mod tests;
