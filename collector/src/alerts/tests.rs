//! The evaluator on an explicit clock: every time below is the `now_ms` handed to `evaluate`.

use super::*;
use ember_wire::{Temperature, Watched};

const S: u64 = 1000;
const MIN: u64 = 60 * S;

fn config(toml: &str) -> AlertsConfig {
    #[derive(Deserialize)]
    struct Doc {
        alerts: RawAlerts,
    }
    let doc: Doc = toml::from_str(&format!("[alerts]\ndefault-rules = false\n{toml}")).unwrap();
    RawAlerts::defaults().merge(doc.alerts).validate().unwrap()
}

fn engine(toml: &str) -> Engine {
    Engine::new(config(toml))
}

fn cpu(busy: f64) -> Sample {
    let mut s = Sample::default();
    s.cpu.busy = (busy * 10_000.0) as u16;
    s
}

/// A host and its state, fed to the engine.
struct Host {
    id: HostId,
    status: HostStatus,
    sample: Sample,
    trends: Vec<FsTrend>,
}

impl Host {
    fn new(id: &str) -> Self {
        Host {
            id: HostId::new(id).unwrap(),
            status: HostStatus::Online,
            sample: Sample::default(),
            trends: Vec::new(),
        }
    }

    fn facts(&self) -> HostFacts<'_> {
        HostFacts {
            id: &self.id,
            status: self.status,
            sample: Some(&self.sample),
            trends: &self.trends,
        }
    }
}

/// Evaluates `hosts` at `t` and returns `change rule@host` for each notification.
fn step(e: &mut Engine, t: u64, hosts: &[&Host]) -> Vec<String> {
    let facts: Vec<HostFacts<'_>> = hosts.iter().map(|h| h.facts()).collect();
    e.evaluate(t, &facts)
        .into_iter()
        .map(|n| {
            let c = match n.change {
                Change::Firing => "firing",
                Change::Resolved => "resolved",
            };
            format!("{c} {}@{}", n.alert.rule, n.alert.host)
        })
        .collect()
}

const CPU: &str = "[[alerts.rules]]\nname = \"cpu\"\nfor = \"2m\"\nwhen = { metric = \"cpu.busy\", above = 0.9, clear = 0.8 }\n";

#[test]
fn for_duration_holds_back_until_the_condition_has_lasted() {
    let mut e = engine(CPU);
    let mut h = Host::new("pi");
    h.sample = cpu(0.95);
    assert!(step(&mut e, 0, &[&h]).is_empty());
    assert_eq!(e.pending(0).len(), 1);
    assert!(step(&mut e, MIN, &[&h]).is_empty());
    assert!(step(&mut e, 2 * MIN - 1, &[&h]).is_empty());
    assert_eq!(step(&mut e, 2 * MIN, &[&h]), ["firing cpu@pi"]);
    assert!(step(&mut e, 3 * MIN, &[&h]).is_empty(), "fires once");
    let a = e.active(3 * MIN);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].since_ms, 2 * MIN);
    assert_eq!(a[0].summary, "cpu.busy 0.95 > 0.9");
    // A dip before the for-duration passes starts the wait again.
    let mut e = engine(CPU);
    step(&mut e, 0, &[&h]);
    h.sample = cpu(0.5);
    step(&mut e, MIN, &[&h]);
    assert!(e.pending(MIN).is_empty());
    h.sample = cpu(0.95);
    assert!(step(&mut e, MIN + S, &[&h]).is_empty());
    assert!(step(&mut e, 2 * MIN + 2 * S, &[&h]).is_empty());
    assert_eq!(step(&mut e, 3 * MIN + S, &[&h]), ["firing cpu@pi"]);
}

#[test]
fn hysteresis_holds_until_below_the_clear_level() {
    let mut e = engine(CPU);
    let mut h = Host::new("pi");
    h.sample = cpu(0.95);
    step(&mut e, 0, &[&h]);
    assert_eq!(step(&mut e, 2 * MIN, &[&h]), ["firing cpu@pi"]);
    // Between clear (0.8) and threshold (0.9): still firing.
    h.sample = cpu(0.85);
    assert!(step(&mut e, 3 * MIN, &[&h]).is_empty());
    assert_eq!(e.active(3 * MIN).len(), 1);
    h.sample = cpu(0.79);
    assert_eq!(step(&mut e, 4 * MIN, &[&h]), ["resolved cpu@pi"]);
    assert!(e.active(4 * MIN).is_empty());
    // 0.85 does not start a new alert: below the threshold.
    h.sample = cpu(0.85);
    assert!(step(&mut e, 5 * MIN, &[&h]).is_empty());
    assert!(e.pending(5 * MIN).is_empty());
}

#[test]
fn a_flapping_value_notifies_once_per_episode() {
    // Flaps every 10 s between 0.95 and 0.85 for ten minutes: one firing, no resolve.
    let mut e = engine(CPU);
    let mut h = Host::new("pi");
    let mut sent = Vec::new();
    for i in 0..60u64 {
        h.sample = cpu(if i % 2 == 0 { 0.95 } else { 0.85 });
        sent.extend(step(&mut e, i * 10 * S, &[&h]));
    }
    // Pending resets on each dip below 0.9 before firing: a value that never stays above
    // the threshold for two minutes never fires.
    assert!(sent.is_empty(), "{sent:?}");
    // Once it has fired, flapping between 0.95 and 0.85 (above clear) never resolves it.
    h.sample = cpu(0.95);
    for i in 0..=12u64 {
        sent.extend(step(&mut e, 600 * S + i * 10 * S, &[&h]));
    }
    for i in 0..60u64 {
        h.sample = cpu(if i % 2 == 0 { 0.95 } else { 0.85 });
        sent.extend(step(&mut e, 800 * S + i * 10 * S, &[&h]));
    }
    assert_eq!(sent, ["firing cpu@pi"]);
    // Flapping across the clear level with a clear-for resolves once, after it stays clear.
    let mut e = engine(
        "[[alerts.rules]]\nname = \"cpu\"\nclear-for = \"1m\"\nwhen = { metric = \"cpu.busy\", above = 0.9, clear = 0.8 }\n",
    );
    let mut sent = Vec::new();
    for i in 0..30u64 {
        h.sample = cpu(if i % 2 == 0 { 0.95 } else { 0.5 });
        sent.extend(step(&mut e, i * 10 * S, &[&h]));
    }
    h.sample = cpu(0.5);
    for i in 30..40u64 {
        sent.extend(step(&mut e, i * 10 * S, &[&h]));
    }
    assert_eq!(sent, ["firing cpu@pi", "resolved cpu@pi"]);
    let hist = e.history(None, 10);
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].change, Change::Resolved);
    // The last high value was at 280 s, the first low one after it at 290 s.
    assert_eq!(hist[0].at_ms, 350 * S, "clear for a minute");
}

#[test]
fn and_or_combinations() {
    let rules = "[[alerts.rules]]\nname = \"hot-and-busy\"\nwhen = { all = [{ metric = \"cpu.busy\", above = 0.9 }, { metric = \"temp\", above = 70.0 }] }\n\
                 [[alerts.rules]]\nname = \"hot-or-busy\"\nwhen = { any = [{ metric = \"cpu.busy\", above = 0.9 }, { metric = \"temp\", above = 70.0 }] }\n";
    let mut e = engine(rules);
    let mut h = Host::new("pi");
    h.sample = cpu(0.95);
    assert_eq!(step(&mut e, 0, &[&h]), ["firing hot-or-busy@pi"]);
    h.sample
        .temperatures
        .push(Temperature {
            sensor: "cpu_thermal".into(),
            millicelsius: 75_000,
        })
        .unwrap();
    assert_eq!(step(&mut e, S, &[&h]), ["firing hot-and-busy@pi"]);
    let a = e.active(S);
    assert_eq!(
        a[0].summary,
        "cpu.busy 0.95 > 0.9 and temp cpu_thermal 75 > 70"
    );
    h.sample.cpu.busy = 0;
    assert_eq!(step(&mut e, 2 * S, &[&h]), ["resolved hot-and-busy@pi"]);
    h.sample.temperatures.clear();
    // No temperature at all: `any` is false only when every part is known to be false.
    assert!(step(&mut e, 3 * S, &[&h]).is_empty());
    h.sample.temperatures.push(Temperature::default()).unwrap();
    assert_eq!(step(&mut e, 4 * S, &[&h]), ["resolved hot-or-busy@pi"]);
}

#[test]
fn scope_by_host_and_tag() {
    let mut e = engine(
        "[alerts.tags]\ngarage = [\"pi-g*\"]\n\
         [[alerts.rules]]\nname = \"garage-cpu\"\ntags = [\"garage\"]\nwhen = { metric = \"cpu.busy\", above = 0.5 }\n\
         [[alerts.rules]]\nname = \"nas-cpu\"\nhosts = [\"nas\"]\nwhen = { metric = \"cpu.busy\", above = 0.5 }\n",
    );
    let mut hosts: Vec<Host> = ["pi-garage", "pi-kitchen", "nas"]
        .iter()
        .map(|id| Host::new(id))
        .collect();
    for h in &mut hosts {
        h.sample = cpu(0.9);
    }
    let refs: Vec<&Host> = hosts.iter().collect();
    let mut sent = step(&mut e, 0, &refs);
    sent.sort();
    assert_eq!(sent, ["firing garage-cpu@pi-garage", "firing nas-cpu@nas"]);
}

#[test]
fn host_offline_and_unknown_values_while_offline() {
    let mut e = engine(
        "[[alerts.rules]]\nname = \"offline\"\nfor = \"1m\"\nwhen = { offline = true }\n\
         [[alerts.rules]]\nname = \"cpu\"\nwhen = { metric = \"cpu.busy\", above = 0.9 }\n",
    );
    let mut h = Host::new("pi");
    h.sample = cpu(0.95);
    assert_eq!(step(&mut e, 0, &[&h]), ["firing cpu@pi"]);
    h.status = HostStatus::Offline;
    h.sample = cpu(0.1);
    // Its last sample is not news: the CPU alert neither resolves nor changes.
    assert!(step(&mut e, 30 * S, &[&h]).is_empty());
    assert_eq!(step(&mut e, 90 * S, &[&h]), ["firing offline@pi"]);
    h.status = HostStatus::Online;
    let mut sent = step(&mut e, 100 * S, &[&h]);
    sent.sort();
    assert_eq!(sent, ["resolved cpu@pi", "resolved offline@pi"]);
    // A short outage never fires.
    h.status = HostStatus::Offline;
    step(&mut e, 200 * S, &[&h]);
    h.status = HostStatus::Online;
    assert!(step(&mut e, 230 * S, &[&h]).is_empty());
}

#[test]
fn process_missing_and_throttling() {
    let mut e = engine(
        "[[alerts.rules]]\nname = \"nginx\"\nwhen = { process = \"nginx\" }\n\
         [[alerts.rules]]\nname = \"throttled\"\nwhen = { throttled = true }\n",
    );
    let mut h = Host::new("pi");
    // Not watched and no throttling flags: unknown, nothing happens.
    assert!(step(&mut e, 0, &[&h]).is_empty());
    h.sample
        .watched
        .push(Watched {
            name: "nginx".into(),
            instances: 0,
        })
        .unwrap();
    // Only "has occurred since boot" bits: not throttled now.
    h.sample.throttled = Some(0x5_0000);
    assert_eq!(step(&mut e, S, &[&h]), ["firing nginx@pi"]);
    h.sample.throttled = Some(0x5_0005);
    assert_eq!(step(&mut e, 2 * S, &[&h]), ["firing throttled@pi"]);
    h.sample.watched[0].instances = 2;
    assert_eq!(step(&mut e, 3 * S, &[&h]), ["resolved nginx@pi"]);
}

#[test]
fn disk_full_is_predicted_from_the_trend() {
    let rules = "[[alerts.rules]]\nname = \"disk\"\nwhen = { disk-full-within = \"24h\", trend-window = \"6h\", mount = \"/\" }\n";
    let mut e = engine(rules);
    assert_eq!(e.trend_window(), Some(Duration::from_secs(6 * 3600)));
    let hour = 60 * MIN;
    let now = 100 * hour;
    let gb = 1e9;
    // 32 GB, 20 GB used, growing 1 GB an hour: full in 12 h.
    let trend = |growth: f64| FsTrend {
        mount: "/".into(),
        total: 32.0 * gb,
        points: (0..=36u64)
            .map(|i| {
                let t = now - 6 * hour + i * 10 * MIN;
                (t, 20.0 * gb - growth * (36 - i) as f64 / 6.0)
            })
            .collect(),
    };
    let mut h = Host::new("pi");
    h.trends = vec![trend(gb)];
    let eta = time_to_full(&h.trends[0], now - 6 * hour, 0).unwrap();
    assert!((eta - 12.0 * hour as f64).abs() < 60_000.0, "{eta}");
    assert_eq!(step(&mut e, now, &[&h]), ["firing disk@pi"]);
    assert_eq!(e.active(now)[0].summary, "/ full in 12h");
    // Growth slows to a tenth: 120 h left, resolved.
    h.trends = vec![trend(gb / 10.0)];
    assert_eq!(step(&mut e, now + S, &[&h]), ["resolved disk@pi"]);
    // Shrinking: never full. Too short a history: unknown.
    h.trends = vec![trend(-gb)];
    assert_eq!(
        time_to_full(&h.trends[0], 0, 0),
        Some(f64::INFINITY),
        "shrinking"
    );
    h.trends[0].points.truncate(2);
    assert_eq!(time_to_full(&h.trends[0], 0, 0), None);
}

#[test]
fn silences_hold_notifications_back_until_they_end() {
    let mut e = engine(
        "[[alerts.rules]]\nname = \"cpu\"\nwhen = { metric = \"cpu.busy\", above = 0.9, clear = 0.8 }\n",
    );
    let mut h = Host::new("pi");
    let s = e.silence(
        Some("cpu".into()),
        Some("pi*".into()),
        MIN,
        "reboot".into(),
        "ops".into(),
        0,
    );
    h.sample = cpu(0.95);
    assert!(step(&mut e, S, &[&h]).is_empty(), "silenced");
    let a = e.active(S);
    assert!(a[0].silenced);
    assert_eq!(e.history(None, 10).len(), 1, "recorded all the same");
    // Still firing when the silence ends: the firing goes out then.
    assert_eq!(step(&mut e, MIN, &[&h]), ["firing cpu@pi"]);
    // A silence set while firing holds back the resolve? No: the firing went out, so the
    // resolve does too, whatever silences say.
    e.silence(None, None, 10 * MIN, String::new(), "ops".into(), MIN);
    h.sample = cpu(0.1);
    assert_eq!(step(&mut e, 2 * MIN, &[&h]), ["resolved cpu@pi"]);
    // Fired and resolved within a silence: nothing at all is sent.
    h.sample = cpu(0.95);
    assert!(step(&mut e, 3 * MIN, &[&h]).is_empty());
    h.sample = cpu(0.1);
    assert!(step(&mut e, 4 * MIN, &[&h]).is_empty());
    assert_eq!(e.history(None, 10).len(), 4);
    assert!(e.unsilence(s.id) || e.silences(4 * MIN).len() == 1);
    assert!(!e.unsilence(999));
}

/// The alert thread evaluates a share of the hosts at a time (`evaluate_hosts`, then `finish`):
/// the same notifications, in the same order, and the same state as one `evaluate` of them all,
/// a silence's end included.
#[test]
fn evaluating_in_parts_is_evaluating_at_once() {
    let rules = "[[alerts.rules]]\nname = \"cpu\"\nfor = \"1m\"\nwhen = { metric = \"cpu.busy\", above = 0.9, clear = 0.8 }\n";
    let (mut whole, mut parts) = (engine(rules), engine(rules));
    for e in [&mut whole, &mut parts] {
        e.silence(
            None,
            Some("pi-1*".into()),
            3 * MIN,
            String::new(),
            "ops".into(),
            0,
        );
    }
    let mut hosts: Vec<Host> = (0..25).map(|i| Host::new(&format!("pi-{i:02}"))).collect();
    let render = |out: Vec<AlertEvent>| -> Vec<String> {
        out.iter()
            .map(|n| format!("{:?} {}@{}", n.change, n.alert.rule, n.alert.host))
            .collect()
    };
    let mut fired = 0;
    for minute in 0..6u64 {
        let t = minute * MIN;
        for (i, h) in hosts.iter_mut().enumerate() {
            // Odd hosts busy from the start, even ones from minute 2 to 4.
            let busy = i % 2 == 1 || (2..4).contains(&minute);
            h.sample = cpu(if busy { 0.95 } else { 0.1 });
        }
        let facts: Vec<HostFacts<'_>> = hosts.iter().map(Host::facts).collect();
        let at_once = render(whole.evaluate(t, &facts));
        let mut out = Vec::new();
        for part in facts.chunks(4) {
            parts.evaluate_hosts(t, part, &mut out);
        }
        parts.finish(t, &mut out);
        assert_eq!(render(out), at_once, "minute {minute}");
        assert_eq!(parts.active(t), whole.active(t), "minute {minute}");
        fired += at_once.len();
    }
    // Not a comparison of two silences: notifications went out, the silenced hosts' too once
    // the silence ended (minute 3).
    assert!(fired > 12, "{fired} notifications");
    assert_eq!(parts.history(None, 1000), whole.history(None, 1000));
}

#[test]
fn maintenance_windows_silence_their_hosts() {
    // Every day 00:00 to 01:00 UTC for pi only.
    let mut e = engine(
        "[[alerts.rules]]\nname = \"cpu\"\nwhen = { metric = \"cpu.busy\", above = 0.9 }\n\
         [[alerts.maintenance]]\nname = \"nightly\"\nfrom = \"00:00\"\nto = \"01:00\"\nhosts = [\"pi\"]\n",
    );
    let mut pi = Host::new("pi");
    let mut nas = Host::new("nas");
    pi.sample = cpu(0.95);
    nas.sample = cpu(0.95);
    let day = 20_000 * 86_400_000u64;
    assert_eq!(
        step(&mut e, day + 30 * MIN, &[&pi, &nas]),
        ["firing cpu@nas"]
    );
    assert_eq!(
        step(&mut e, day + 61 * MIN, &[&pi, &nas]),
        ["firing cpu@pi"]
    );
}

#[test]
fn restore_keeps_firing_alerts_without_notifying_again() {
    let mut e = engine(CPU);
    let mut h = Host::new("pi");
    h.sample = cpu(0.95);
    step(&mut e, 0, &[&h]);
    step(&mut e, 2 * MIN, &[&h]);
    let recorded: Vec<AlertEvent> = e.history(None, 100).into_iter().rev().collect();
    let mut again = engine(CPU);
    again.restore(recorded);
    assert_eq!(again.active(3 * MIN).len(), 1);
    assert!(step(&mut again, 3 * MIN, &[&h]).is_empty());
    h.sample = cpu(0.1);
    assert_eq!(step(&mut again, 4 * MIN, &[&h]), ["resolved cpu@pi"]);
}

/// A restart keeps a pending alert's `for` timer: it fires when it would have, not a whole
/// `for` later. After a long stop, or for a condition no longer true, it starts over.
#[test]
fn restore_pending_keeps_the_for_timers_of_a_short_stop() {
    let mut e = engine(CPU);
    let mut h = Host::new("pi");
    h.sample = cpu(0.95);
    assert!(step(&mut e, 0, &[&h]).is_empty());
    assert!(step(&mut e, MIN, &[&h]).is_empty());
    let saved = e.pending(MIN);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].since_ms, 0);

    // Back 30 s later: fires at 2 min, as without the restart.
    let mut again = engine(CPU);
    again.restore_pending(saved.clone(), MIN, MIN + 30 * S);
    assert!(step(&mut again, MIN + 30 * S, &[&h]).is_empty());
    assert_eq!(step(&mut again, 2 * MIN, &[&h]), ["firing cpu@pi"]);

    // Without it the timer starts at the first evaluation after the restart.
    let mut fresh = engine(CPU);
    assert!(step(&mut fresh, MIN + 30 * S, &[&h]).is_empty());
    assert!(step(&mut fresh, 2 * MIN, &[&h]).is_empty());

    // A stop longer than PENDING_KEPT_FOR: the timer starts over.
    let late = MIN + PENDING_KEPT_FOR.as_millis() as u64 + S;
    let mut long = engine(CPU);
    long.restore_pending(saved.clone(), MIN, late);
    assert!(step(&mut long, late, &[&h]).is_empty());
    assert!(step(&mut long, late + MIN, &[&h]).is_empty());
    assert_eq!(step(&mut long, late + 2 * MIN, &[&h]), ["firing cpu@pi"]);

    // The condition is no longer true after the restart: nothing fires, nothing stays pending.
    let mut cleared = engine(CPU);
    cleared.restore_pending(saved.clone(), MIN, MIN + 30 * S);
    h.sample = cpu(0.1);
    assert!(step(&mut cleared, MIN + 30 * S, &[&h]).is_empty());
    assert!(cleared.pending(MIN + 30 * S).is_empty());

    // A rule that no longer exists is ignored.
    let mut other = engine(&CPU.replace("\"cpu\"", "\"load\""));
    other.restore_pending(saved, MIN, MIN + 30 * S);
    assert!(other.pending(MIN + 30 * S).is_empty());
}

#[test]
fn the_history_is_bounded() {
    let mut e = engine(&format!("history = 3\n{CPU}").replace("for = \"2m\"", ""));
    let mut h = Host::new("pi");
    for i in 0..10u64 {
        h.sample = cpu(if i % 2 == 0 { 0.95 } else { 0.1 });
        step(&mut e, i * S, &[&h]);
    }
    let hist = e.history(None, 100);
    assert_eq!(hist.len(), 3);
    assert_eq!(hist[0].at_ms, 9 * S);
}

#[test]
fn restored_silences_keep_their_ids_and_drop_the_expired() {
    let mut e = engine(CPU);
    let a = e.silence(
        None,
        Some("pi".into()),
        10 * MIN,
        String::new(),
        "ops".into(),
        0,
    );
    let b = e.silence(None, None, MIN, String::new(), "ops".into(), 0);
    let saved = e.silences(0);
    let mut again = engine(CPU);
    again.restore_silences(saved, 2 * MIN);
    let left = again.silences(2 * MIN);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, a.id);
    let c = again.silence(None, None, 20 * MIN, String::new(), "ops".into(), 2 * MIN);
    assert!(c.id > b.id, "ids are not reused");
}
