//! Alert evaluation benchmark: prints figures, asserts nothing.
//!
//! ```sh
//! cargo bench -p ember-collector --bench alerts            # 1000 and 10000 hosts
//! cargo bench -p ember-collector --bench alerts -- 5000    # other fleet sizes
//! ```
//!
//! A fleet of Raspberry Pi–like hosts (4 cores, 2 filesystems, 2 sensors, a watched process),
//! each with an hour of one-minute samples, under the built-in rules plus a process rule and
//! an AND/OR rule. Figures: one evaluation of every rule on every host (`Engine::evaluate`); the
//! longest hold of the store's read lock by a tick with the filesystem trends cached and by one
//! that refits them from the history (once a minute), before (the whole tick under one hold, as
//! the ingest thread used to run it) and after (the alert thread's short holds); and how long a
//! tick takes on the alert thread.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use ember_collector::alerts::run::{Evaluator, CHUNK, SLOW_HOLD};
use ember_collector::alerts::{HostFacts, RawAlerts};
use ember_collector::config::RawConfig;
use ember_collector::store::StoreConfig;
use ember_collector::Store;
use ember_wire::{
    Envelope, Filesystem, HostId, Message, Sample, Status, Temperature, Watched, MAX_ENCODED_LEN,
};

const RULES: &str = "[[rules]]\nname = \"web\"\nwhen = { process = \"nginx\" }\n\
    [[rules]]\nname = \"hot-and-busy\"\nfor = \"1m\"\n\
    when = { all = [{ metric = \"temp\", above = 70.0 }, { any = [{ metric = \"cpu.busy\", above = 0.9 }, { metric = \"load.one\", above = 4.0 }] }] }\n";

fn sample(host: u64, minute: u64, t0: u64) -> Sample {
    let mut s = Sample {
        seq: minute + 1,
        timestamp_ms: t0 + minute * 60_000,
        ..Sample::default()
    };
    s.cpu.busy = ((host * 37 + minute * 11) % 10_000) as u16;
    for c in 0..4 {
        let _ = s.cpu.cores.push(((host + c) * 1000 % 10_000) as u16);
    }
    s.load.one = 120;
    s.memory.total = 4 << 30;
    s.memory.used = 1 << 30;
    for (mount, total) in [("/", 32u64 << 30), ("/data", 500 << 30)] {
        let _ = s.filesystems.push(Filesystem {
            mount: mount.into(),
            total,
            used: total / 2 + minute * (host % 5) * (1 << 20),
        });
    }
    for sensor in ["cpu_thermal", "rp1_adc"] {
        let _ = s.temperatures.push(Temperature {
            sensor: sensor.into(),
            millicelsius: (40_000 + host * 7 % 40_000) as i32,
        });
    }
    s.throttled = Some(0);
    let _ = s.watched.push(Watched {
        name: "nginx".into(),
        instances: (host % 7) as u16,
    });
    s
}

fn enc(host: &HostId, m: Message) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED_LEN];
    Envelope::new(host.clone(), m)
        .encode(&mut buf)
        .unwrap()
        .to_vec()
}

fn main() {
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    for hosts in sizes {
        run(hosts);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn run(hosts: u64) {
    println!("{hosts} hosts:");
    let config = RawConfig::default().validate().unwrap();
    let mut store = Store::new(StoreConfig::from_config(&config));
    let t0 = ember_collector::now_ms() - 3_600_000;
    let now_ms = t0 + 3_600_000;
    for h in 0..hosts {
        let id = HostId::new(&format!("pi-{h:05}")).unwrap();
        let t = format!("ember/v1/{id}");
        let online = enc(&id, Message::Status(Status::Online { interval_ms: 1000 }));
        store.ingest(&format!("{t}/status"), &online, t0).unwrap();
        for m in 0..60 {
            let s = enc(&id, Message::Sample(sample(h, m, t0)));
            store
                .ingest(&format!("{t}/sample"), &s, t0 + m * 60_000)
                .unwrap();
        }
    }
    let raw: RawAlerts = toml::from_str(RULES).unwrap();
    let alerts = RawAlerts::defaults().merge(raw).validate().unwrap();
    let rules = alerts.rules.len();

    // The engine alone.
    let mut engine = ember_collector::alerts::Engine::new(alerts.clone());
    let summaries = store.summaries(now_ms);
    // Decoded once, as `alerts::run` copies them out of the store.
    let latest: Vec<_> = summaries.iter().map(|h| h.latest()).collect();
    let facts: Vec<HostFacts<'_>> = summaries
        .iter()
        .zip(&latest)
        .map(|(h, s)| HostFacts {
            id: h.id,
            status: h.status,
            sample: s.as_ref(),
            trends: &[],
        })
        .collect();
    let runs = (50_000 / hosts).clamp(5, 50);
    let started = Instant::now();
    let mut fired = 0;
    for i in 0..runs {
        fired += engine
            .evaluate(now_ms + i * 5000, &facts)
            .iter()
            .filter(|e| e.change == ember_collector::alerts::Change::Firing)
            .count();
    }
    let per = started.elapsed() / runs as u32;
    println!(
        "  Engine::evaluate: {hosts} hosts x {rules} rules in {:.2} ms ({:.2} us per host); {fired} firing",
        ms(per),
        per.as_secs_f64() * 1e6 / hosts as f64
    );
    drop(facts);
    drop(summaries);

    let dir = std::env::temp_dir().join(format!("ember-bench-alerts-{}", std::process::id()));
    let store = RwLock::new(store);
    // Ticks 5 s apart after the first: fewer than 12, so that none refits again (once a minute).
    let cached_runs = (20_000 / hosts).clamp(3, 11) as u32;
    let at = |base: Instant, i: u32| base + Duration::from_secs(5 * u64::from(i));

    // Before: the whole tick under one hold of the read lock, as the ingest thread ran it.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut edge, _shared) = Evaluator::start(alerts.clone(), &dir);
    let base = Instant::now();
    let held = |edge: &mut Evaluator, now: Instant| {
        let guard = store.read().unwrap();
        let started = Instant::now();
        edge.tick(&*guard, now, now_ms);
        started.elapsed()
    };
    let refit = held(&mut edge, base);
    let mut tick = Duration::ZERO;
    for i in 1..=cached_runs {
        tick = tick.max(held(&mut edge, at(base, i)));
    }
    println!(
        "  before (one lock hold per tick): longest hold {:.2} ms per tick with cached trends, \
         {:.2} ms when it refits {} filesystem trends",
        ms(tick),
        ms(refit),
        hosts * 2
    );

    // After: the tick takes the lock itself, in short holds.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (mut edge, _shared) = Evaluator::start(alerts, &dir);
    let base = Instant::now();
    let started = Instant::now();
    edge.tick(&store, base, now_ms);
    let refit = started.elapsed();
    let refit_holds = edge.holds();
    let started = Instant::now();
    let mut facts_hold = Duration::ZERO;
    let (mut count, mut slow) = (0, 0);
    for i in 1..=cached_runs {
        edge.tick(&store, at(base, i), now_ms);
        let h = edge.holds();
        facts_hold = facts_hold.max(h.facts);
        count += h.count;
        slow += h.slow;
    }
    let cached = started.elapsed() / cached_runs;
    println!(
        "  after (chunks of {CHUNK} hosts): longest hold {:.3} ms per tick with cached trends \
         ({slow} of {count} holds over {} ms)",
        ms(facts_hold),
        ms(SLOW_HOLD)
    );
    println!(
        "  after (one host's trends per hold): longest hold {:.3} ms per trend refit, {:.3} ms \
         copying facts when refitting ({} of {} holds over {} ms)",
        ms(refit_holds.trends),
        ms(refit_holds.facts),
        refit_holds.slow,
        refit_holds.count,
        ms(SLOW_HOLD)
    );
    println!(
        "  after: Evaluator::tick takes {:.2} ms with cached trends, {:.2} ms when it refits \
         (on the alert thread, not holding the lock)",
        ms(cached),
        ms(refit)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
