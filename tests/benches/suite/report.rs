//! `report`: turns the parts' JSON files into `docs/benchmarks.md`. Every figure in the document
//! is read from those files; a part that did not run or failed is said to be not measured, with
//! the reason.

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::Args;

/// A number with `d` decimals, or `–`.
fn num(v: &Value, d: usize) -> String {
    match v.as_f64() {
        Some(x) => {
            let s = format!("{x:.d$}");
            group(&s)
        }
        None => "–".into(),
    }
}

/// Thousands separated by commas.
fn group(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

fn mib(kib: &Value) -> String {
    kib.as_f64()
        .map(|k| format!("{:.1} MiB", k / 1024.0))
        .unwrap_or_else(|| "–".into())
}

fn bytes(b: &Value) -> String {
    match b.as_f64() {
        Some(x) if x >= 1024.0 * 1024.0 => format!("{:.2} MiB", x / 1048576.0),
        Some(x) if x >= 10.0 * 1024.0 => format!("{:.1} KiB", x / 1024.0),
        Some(x) => format!("{} B", group(&format!("{x:.0}"))),
        None => "–".into(),
    }
}

fn ratio(a: &Value, b: &Value) -> String {
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn ms(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x < 10.0 => format!("{x:.2} ms"),
        Some(x) => format!("{x:.1} ms"),
        None => "–".into(),
    }
}

/// `name 93 %, name 12 %` from a part's per-thread CPU.
fn threads(v: &Value) -> String {
    let parts: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .take(6)
        .map(|t| {
            format!(
                "`{}` {} %",
                t["thread"].as_str().unwrap_or("?"),
                num(&t["cpu_percent"], 0)
            )
        })
        .collect();
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(", ")
    }
}

fn yes(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not judged",
    }
}

struct Results {
    dir: std::path::PathBuf,
}

impl Results {
    /// The part's result, or why there is none.
    fn get(&self, name: &str) -> Result<Value, String> {
        let path = self.dir.join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path)
            .map_err(|_| format!("not measured in this run: `{name}` did not run"))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("not measured: {} is not JSON ({e})", path.display()))?;
        if let Some(e) = v["error"].as_str() {
            return Err(format!("not measured in this run: `{name}` failed: {e}"));
        }
        Ok(v)
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|k| format!("{:.1} GiB", k / 1048576.0))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|o| {
            o.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|s| s.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    format!("{cpu}, {cores} cores available, {mem} RAM, {os}, Linux {kernel}")
}

pub fn run(args: &Args) -> anyhow::Result<Value> {
    let dir = args.path("out", "target/bench/results");
    let doc = args.path("doc", "docs/benchmarks.md");
    let mode = args.str("mode", "full");
    let commands =
        std::fs::read_to_string(args.path("commands", &format!("{}/commands.txt", dir.display())))
            .unwrap_or_default();
    let took = args.str("took", "");
    let r = Results { dir: dir.clone() };
    let mut md = String::new();
    let loadavg = std::fs::read_to_string(dir.join("loadavg.txt"))
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "));
    header(&mut md, &mode, &took, loadavg);
    summary(&mut md, &r, &mode);
    load(&mut md, &r);
    baseline(&mut md, &r);
    footprint(&mut md, &r);
    wire(&mut md, &r);
    display(&mut md, &r);
    history(&mut md, &r);
    limits(&mut md, &r);
    store_bench(&mut md, &dir);
    let _ = writeln!(md, "## Commands\n");
    let _ = writeln!(
        md,
        "Everything above came from one run of `.ci/bench{}`, which ran these commands in \
         this order (`cargo bench` builds the bench profile, the release profile's settings):\n",
        if mode == "quick" { " --quick" } else { "" }
    );
    let _ = writeln!(md, "```sh\n{}```", commands);
    write(&doc, &md)?;
    println!("wrote {}", doc.display());
    Ok(Value::Null)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn header(md: &mut String, mode: &str, took: &str, load_at_start: Option<String>) {
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `.ci/bench{}` on {date}{}. **Every figure below was measured by that run on \
         this machine**; comparisons were run side by side in the same run and are given as \
         ratios. Rerun `.ci/bench` (full sizes, about half an hour) or `.ci/bench --quick` (every \
         part at small sizes, a few minutes) to regenerate this file.\n",
        if mode == "quick" { " --quick" } else { "" },
        if took.is_empty() {
            String::new()
        } else {
            format!(" in {took}")
        }
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    if let Some(l) = load_at_start {
        let _ = writeln!(
            md,
            "- Load average (1, 5, 15 min) when the run began: {l} (other work on the machine \
             shares the cores with the benchmarks)"
        );
    }
    let _ = writeln!(
        md,
        "- Toolchain: {rustc}; release profile (`opt-level = \"s\"`, fat LTO, one codegen unit)"
    );
    let _ = writeln!(
        md,
        "- Mode: **{mode}**{}\n",
        if mode == "quick" {
            " — a smoke run at small sizes: the issue's targets are judged only by a full run"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "The load generator, the brokers and the peers share this machine's cores; the \
         generator's own CPU is reported beside each load figure.\n"
    );
}

fn summary(md: &mut String, r: &Results, mode: &str) {
    let _ = writeln!(md, "## Targets (issue #9)\n");
    let _ = writeln!(md, "| Target | Measured | |\n|---|---|---|");
    let full = mode != "quick";
    match r.get("load-ember") {
        Ok(v) => {
            let x = &v["result"];
            let agents = x["agents"].as_u64().unwrap_or(0);
            let secs = x["secs"].as_u64().unwrap_or(0);
            let connected = x["connected"].as_u64().unwrap_or(0);
            let lost = x["lost"].as_u64().unwrap_or(u64::MAX);
            let sized = full && agents >= 10_000 && secs >= 300;
            // A full run the machine's descriptor limit cut short (`.ci/bench` writes why): the
            // size target is not met; the others are judged at the size that ran.
            let cut = r.get("cut").ok().filter(|_| full && secs >= 300);
            let verdict = match &cut {
                Some(c) => format!(
                    "**not met**: this machine's open-file limit ({}, which cannot be raised \
                     here) fits {agents} agents, with 1,000 descriptors spare",
                    c["open_file_limit"]
                ),
                None => yes(sized.then_some(connected as usize == agents as usize && lost == 0))
                    .to_string(),
            };
            let _ = writeln!(
                md,
                "| 10,000 agents at 1 Hz for 5 min, no loss | {connected} of {agents} agents \
                 connected for {secs} s; {} samples sent, {} stored, **{} lost** | {verdict} |",
                num(&x["sent"], 0),
                num(&x["received"], 0),
                num(&x["lost"], 0),
            );
            let sized = sized || cut.is_some();
            let at = if cut.is_some() {
                format!(" at {agents} agents")
            } else {
                String::new()
            };
            let p99 = x["latency_ms"]["consumer"]["p99"].as_f64();
            let api99 = x["latency_ms"]["api"]["p99"].as_f64();
            let latency_ok =
                yes(sized
                    .then(|| p99.is_some_and(|p| p <= 50.0) && api99.is_none_or(|p| p <= 50.0)));
            let _ = writeln!(
                md,
                "| p99 ≤ 50 ms, publish → visible | event stream p99 {}; API p99 {} | \
                 {latency_ok}{at} |",
                ms(&x["latency_ms"]["consumer"]["p99"]),
                ms(&x["latency_ms"]["api"]["p99"]),
            );
            let peak = x["peak_rss_kib"].as_f64();
            let rss_ok = yes(sized.then(|| peak.is_some_and(|p| p <= 256.0 * 1024.0)));
            let _ = writeln!(
                md,
                "| collector RSS ≤ 256 MiB with its history | {} at the end, {} peak ({} before \
                 the bench's own `/api/hosts` at the end) | {rss_ok}{at} |",
                mib(&x["rss_end_kib"]),
                mib(&x["peak_rss_kib"]),
                mib(&x["peak_rss_load_kib"]),
            );
        }
        Err(e) => {
            let _ = writeln!(md, "| collector load | {e} | not judged |");
        }
    }
    match (r.get("saturate-ember"), r.get("saturate-mosquitto")) {
        (Ok(e), Ok(m)) => {
            let (e, m) = (&e["result"], &m["result"]);
            let ratio_v = match (
                e["steady_rate_per_s"].as_f64(),
                m["steady_rate_per_s"].as_f64(),
            ) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            let _ = writeln!(
                md,
                "| Ember's ingest ≥ 0.8 × Mosquitto's forwarding rate | {} stored/s vs {} \
                 delivered/s: **{}** | {} |",
                num(&e["steady_rate_per_s"], 0),
                num(&m["steady_rate_per_s"], 0),
                ratio(&e["steady_rate_per_s"], &m["steady_rate_per_s"]),
                yes(full.then(|| ratio_v.is_some_and(|x| x >= 0.8)))
            );
        }
        (a, b) => {
            let why = a.err().or(b.err()).unwrap_or_default();
            let _ = writeln!(md, "| ingest vs Mosquitto | {why} | not judged |");
        }
    }
    let _ = writeln!(md);
}

fn load(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Collector load\n");
    let (e, m) = (r.get("load-ember"), r.get("load-mosquitto"));
    let e = match e {
        Ok(v) => v,
        Err(why) => {
            let _ = writeln!(md, "{why}\n");
            return;
        }
    };
    let x = &e["result"];
    let m = m.map(|v| v["result"].clone());
    let mo = m.as_ref().ok();
    let _ = writeln!(
        md,
        "{} agents, each a real MQTT connection publishing a realistic postcard sample (from \
         `ember_agent::simulate::Synth`, about 150 bytes) at QoS 1 every {} ms, spread evenly over \
         the interval, for {} s, after their CONNECT (with last will) and retained status and \
         inventory. Against the release `ember-collector` (embedded rumqttd, decode, store, \
         write-ahead log, event stream; default configuration{}) and, with the same load in \
         the same run, against Debian's Mosquitto with one plain subscriber (`ember/v1/+/sample`, \
         QoS 0).\n",
        num(&x["agents"], 0),
        x["interval_ms"],
        x["secs"],
        e["args"]["collector-config"]
            .as_str()
            .map(|c| format!(" but `{}`", c.trim()))
            .unwrap_or_default()
    );
    let col = |f: &dyn Fn(&Value) -> String| -> (String, String) {
        (f(x), mo.map(f).unwrap_or_else(|| "–".into()))
    };
    let rows: Vec<(&str, (String, String))> = vec![
        (
            "connections (agents + API probes)",
            col(&|v| num(&v["connected"], 0)),
        ),
        (
            "connect time for all",
            col(&|v| format!("{} s", num(&v["connect_s"], 1))),
        ),
        (
            "connections failed / lost",
            col(&|v| {
                format!(
                    "{} / {}",
                    num(&v["connect_failed"], 0),
                    num(&v["connections_lost"], 0)
                )
            }),
        ),
        ("samples sent", col(&|v| num(&v["sent"], 0))),
        ("acknowledged (PUBACK)", col(&|v| num(&v["acked"], 0))),
        (
            "stored (Ember) / delivered to the subscriber (Mosquitto)",
            col(&|v| num(&v["received"], 0)),
        ),
        (
            "**lost** (sent − stored/delivered)",
            col(&|v| format!("**{}**", num(&v["lost"], 0))),
        ),
        (
            "sequence gaps / duplicates seen by the collector",
            col(&|v| {
                if v["target"] == "ember" {
                    format!("{} / {}", num(&v["missing"], 0), num(&v["duplicates"], 0))
                } else {
                    "–".into()
                }
            }),
        ),
        (
            "throughput (stored or delivered per s)",
            col(&|v| num(&v["steady_rate_per_s"], 0)),
        ),
        (
            "latency p50 / p99, publish → event stream (Ember) or subscriber (Mosquitto)",
            col(&|v| {
                format!(
                    "{} / {}",
                    ms(&v["latency_ms"]["consumer"]["p50"]),
                    ms(&v["latency_ms"]["consumer"]["p99"])
                )
            }),
        ),
        (
            "latency p50 / p99 / max, publish → visible in `/api/hosts/{id}/samples`",
            col(&|v| {
                if v["target"] == "ember" {
                    format!(
                        "{} / {} / {}",
                        ms(&v["latency_ms"]["api"]["p50"]),
                        ms(&v["latency_ms"]["api"]["p99"]),
                        ms(&v["latency_ms"]["api"]["max"])
                    )
                } else {
                    "–".into()
                }
            }),
        ),
        (
            "latency p50 / p99, publish → PUBACK",
            col(&|v| {
                format!(
                    "{} / {}",
                    ms(&v["latency_ms"]["puback"]["p50"]),
                    ms(&v["latency_ms"]["puback"]["p99"])
                )
            }),
        ),
        (
            "latency samples (event stream or subscriber / API)",
            col(&|v| {
                format!(
                    "{} / {}",
                    num(&v["latency_ms"]["consumer"]["n"], 0),
                    num(&v["latency_ms"]["api"]["n"], 0)
                )
            }),
        ),
        (
            "followed samples never seen (event stream or subscriber / API, 10 s)",
            col(&|v| {
                format!(
                    "{} / {}",
                    num(&v["followed_not_seen"], 0),
                    num(&v["api_not_seen"], 0)
                )
            }),
        ),
        (
            "broker RSS: idle / all connected / end",
            col(&|v| {
                format!(
                    "{} / {} / {}",
                    mib(&v["rss_base_kib"]),
                    mib(&v["rss_connected_kib"]),
                    mib(&v["rss_end_kib"])
                )
            }),
        ),
        ("broker peak RSS (VmHWM)", col(&|v| mib(&v["peak_rss_kib"]))),
        (
            "broker CPU while publishing (% of one core)",
            col(&|v| format!("{} %", num(&v["broker_cpu_percent"], 1))),
        ),
        (
            "broker threads, % of one core (by thread name)",
            col(&|v| threads(&v["broker_threads"])),
        ),
        (
            "load generator CPU (% of one core) / RSS",
            col(&|v| {
                format!(
                    "{} % / {}",
                    num(&v["generator_cpu_percent"], 1),
                    mib(&v["generator_rss_kib"])
                )
            }),
        ),
        (
            "generator ticks > 100 ms late / worst",
            col(&|v| {
                format!(
                    "{} / {}",
                    num(&v["late_ticks"], 0),
                    ms(&v["worst_tick_lag_ms"])
                )
            }),
        ),
    ];
    let _ = writeln!(
        md,
        "| | Ember collector | Mosquitto + subscriber |\n|---|---:|---:|"
    );
    for (k, (a, b)) in rows {
        let _ = writeln!(md, "| {k} | {a} | {b} |");
    }
    if let Err(why) = &m {
        let _ = writeln!(md, "\nMosquitto: {why}");
    }
    for (who, v) in std::iter::once(("Ember", x)).chain(mo.map(|m| ("Mosquitto", m))) {
        for e in v["errors"].as_array().into_iter().flatten() {
            let _ = writeln!(md, "\n{who}'s run reported: {}", e.as_str().unwrap_or("?"));
        }
    }
    if let Some(mo) = mo {
        let (acked, received) = (mo["acked"].as_f64(), mo["received"].as_f64());
        if let (Some(acked), Some(received)) = (acked, received) {
            if received < 0.9 * acked {
                let _ = writeln!(
                    md,
                    "\n**Mosquitto's column is not a valid comparison in this run**: Mosquitto \
                     acknowledged {} publishes, but its one plain subscriber (QoS 0) received \
                     only {}. Its latency and \"lost\" figures describe that subscriber, not \
                     the broker.",
                    num(&mo["acked"], 0),
                    num(&mo["received"], 0),
                );
            }
        }
    }
    let _ = writeln!(
        md,
        "\nEmber uses {} the broker CPU of Mosquitto for the same load (Mosquitto only forwards; \
         Ember also decodes, stores, logs and serves).\n",
        mo.map(|m| ratio(&x["broker_cpu_percent"], &m["broker_cpu_percent"]))
            .unwrap_or_else(|| "–".into())
    );
    let _ = writeln!(md, "### Collector memory, per agent and per sample\n");
    let _ = writeln!(
        md,
        "| | |\n|---|---:|\n\
         | RSS with no agent | {} |\n\
         | per connected agent (connection, retained status and inventory, host entry; before any sample) | {} |\n\
         | per stored sample (slope of RSS over samples stored, after the warm-up) | {} |\n\
         | per publishing agent (its fixed part once sampling: open tier buckets, latest sample, buffers) | {} |\n\
         | the store's own count: raw samples held / bytes per raw sample (memory and disk) / tier bytes in memory | {} / {} / {} |\n\
         | history on disk (`history.spill`: full blocks, read back through the page cache) | {} in {} segments |\n",
        mib(&x["rss_base_kib"]),
        bytes(&x["per_agent_idle_bytes"]),
        bytes(&x["per_sample_bytes"]),
        bytes(&x["per_agent_active_bytes"]),
        num(&x["health_end"]["memory"]["raw_samples"], 0),
        num(&x["health_end"]["memory"]["bytes_per_sample"], 1),
        bytes(&x["health_end"]["memory"]["tier_bytes"]),
        bytes(&x["health_end"]["spill"]["disk_bytes"]),
        num(&x["health_end"]["spill"]["segments"], 0),
    );
    let _ = writeln!(
        md,
        "So the collector's RSS is about *idle + agents × per-publishing-agent + samples held × \
         per-sample*. Only each ring's open block (32 records) is in memory; full blocks are on \
         disk (`history.spill`, the default), so the per-sample slope is small and the history's \
         size is mostly on disk, at the bytes per raw sample above; samples held per host are at \
         most `history.raw-samples` (3600 by default, an hour at 1 Hz), and the tiers' cost per \
         host is in [History](#history). These are this run's figures, read from \
         `/proc/<pid>/status` (VmRSS), which includes allocator slack.\n"
    );
    if let Some(t) = x["timeline"].as_array() {
        let _ = writeln!(
            md,
            "<details><summary>Ember, every {} s of the run</summary>\n",
            t.get(1)
                .and_then(|r| r["t_s"].as_f64())
                .zip(t.first().and_then(|r| r["t_s"].as_f64()))
                .map(|(b, a)| format!("{:.0}", b - a))
                .unwrap_or_else(|| "few".into())
        );
        let _ = writeln!(md, "| t (s) | stored | stored/s | acked/s | RSS | CPU % of one core |\n|---:|---:|---:|---:|---:|---:|");
        for row in t {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                num(&row["t_s"], 0),
                num(&row["delivered"], 0),
                num(&row["rate"], 0),
                num(&row["acked_rate"], 0),
                mib(&row["rss_kib"]),
                num(&row["cpu_percent"], 1)
            );
        }
        let _ = writeln!(md, "\n</details>\n");
    }
    let _ = writeln!(
        md,
        "What each latency measures: the generator keeps the send time (µs, before the write to \
         the socket) of every sample of one host in every {}. **Event stream**: one client of \
         `/api/events?hosts=…` (those hosts) timestamps each `sample` event as its line is read, \
         so the figure covers broker, ingest, store, event fan-out, JSON and HTTP. **API**: {} \
         further agents each publish once per interval and then poll \
         `/api/hosts/{{id}}/samples?after_seq=…` every millisecond until the sample is there (the \
         figure is the first poll that sees it, so it is up to ~1 ms plus one request late). \
         **Subscriber** (Mosquitto): the plain subscriber's read of the message. **PUBACK**: the \
         broker's acknowledgement back at the publisher. All on one clock (one process).\n",
        num(&x["probe_every"], 0),
        num(&x["api_probes"], 0)
    );
}

fn baseline(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Broker baseline: capacity beside Mosquitto\n");
    let (e, m) = match (r.get("saturate-ember"), r.get("saturate-mosquitto")) {
        (Ok(e), Ok(m)) => (e["result"].clone(), m["result"].clone()),
        (a, b) => {
            let _ = writeln!(md, "{}\n", a.err().or(b.err()).unwrap_or_default());
            return;
        }
    };
    let _ = writeln!(
        md,
        "{} connections, each keeping {} QoS 1 publishes in flight (the next goes when a PUBACK \
         comes) for {} s: the most each can take. Ember's rate is samples **stored** (decoded, \
         validated, delta-encoded into the host's ring, folded into the tiers, logged), read from \
         `/api/health`; Mosquitto's is messages **delivered** to its one plain subscriber. Rates \
         are taken after a warm-up of a fifth of the run.\n",
        num(&e["agents"], 0),
        e["window"],
        e["secs"]
    );
    let rows: Vec<(&str, String, String)> = vec![
        (
            "accepted by the broker (PUBACK/s)",
            num(
                &e["acked"]
                    .as_f64()
                    .map(|a| a / e["run_s"].as_f64().unwrap_or(1.0))
                    .into(),
                0,
            ),
            num(
                &m["acked"]
                    .as_f64()
                    .map(|a| a / m["run_s"].as_f64().unwrap_or(1.0))
                    .into(),
                0,
            ),
        ),
        (
            "**stored (Ember) / delivered (Mosquitto) per s**",
            format!("**{}**", num(&e["steady_rate_per_s"], 0)),
            format!("**{}**", num(&m["steady_rate_per_s"], 0)),
        ),
        (
            "sent / stored or delivered / lost",
            format!(
                "{} / {} / {}",
                num(&e["sent"], 0),
                num(&e["received"], 0),
                num(&e["lost"], 0)
            ),
            format!(
                "{} / {} / {}",
                num(&m["sent"], 0),
                num(&m["received"], 0),
                num(&m["lost"], 0)
            ),
        ),
        (
            "broker CPU (% of one core)",
            num(&e["broker_cpu_percent"], 0),
            num(&m["broker_cpu_percent"], 0),
        ),
        (
            "broker peak RSS",
            mib(&e["peak_rss_kib"]),
            mib(&m["peak_rss_kib"]),
        ),
        (
            "broker threads, % of one core (by thread name)",
            threads(&e["broker_threads"]),
            threads(&m["broker_threads"]),
        ),
        (
            "generator CPU (% of one core)",
            num(&e["generator_cpu_percent"], 0),
            num(&m["generator_cpu_percent"], 0),
        ),
    ];
    let _ = writeln!(
        md,
        "| | Ember collector | Mosquitto + subscriber |\n|---|---:|---:|"
    );
    for (k, a, b) in rows {
        let _ = writeln!(md, "| {k} | {a} | {b} |");
    }
    let _ = writeln!(
        md,
        "\n**Ember's full ingest runs at {} Mosquitto's raw forwarding rate** (target ≥ 0.8×).\n",
        ratio(&e["steady_rate_per_s"], &m["steady_rate_per_s"])
    );
}

fn footprint(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Agent footprint beside collectd and node_exporter\n");
    let v = match r.get("footprint") {
        Ok(v) => v["result"].clone(),
        Err(why) => {
            let _ = writeln!(md, "{why}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "The three ran side by side for {} s at a 1 s interval. RSS sampled every few seconds; CPU \
         is the process's user + system time over the run, as a share of one core.\n",
        num(&v["secs"], 0)
    );
    let rows = v["rows"].as_array().cloned().unwrap_or_default();
    let ember = rows.first().cloned().unwrap_or_default();
    let _ = writeln!(
        md,
        "| | RSS mean (max) | × Ember | CPU, % of one core | × Ember | binary | × Ember | installed package |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in &rows {
        let pkg = match &row["package"] {
            Value::Null => "–".to_string(),
            p => format!(
                "{} KiB ({})",
                num(&p["installed_kib"], 0),
                p["version"].as_str().unwrap_or("")
            ),
        };
        let _ = writeln!(
            md,
            "| {} | {} ({}) | {} | {} | {} | {} | {} | {} |",
            row["name"].as_str().unwrap_or(""),
            mib(&row["rss_kib_mean"]),
            mib(&row["rss_kib_max"]),
            ratio(&row["rss_kib_mean"], &ember["rss_kib_mean"]),
            num(&row["cpu_percent"], 3),
            ratio(&row["cpu_percent"], &ember["cpu_percent"]),
            bytes(&row["binary_bytes"]),
            ratio(&row["binary_bytes"], &ember["binary_bytes"]),
            pkg
        );
    }
    let _ = writeln!(md);
    for row in &rows {
        let _ = writeln!(
            md,
            "- {}: {}",
            row["name"].as_str().unwrap_or(""),
            row["note"].as_str().unwrap_or("")
        );
    }
    let _ = writeln!(
        md,
        "- node_exporter answered {} scrapes of {} each (text exposition, uncompressed); an \
         Ember sample is a couple of hundred bytes (see [Wire size](#wire-size)).",
        num(&v["node_exporter_scrapes"], 0),
        bytes(&v["node_exporter_bytes_per_scrape"])
    );
    for m in v["missing"].as_array().into_iter().flatten() {
        let _ = writeln!(md, "- not measured: {}", m.as_str().unwrap_or(""));
    }
    let _ = writeln!(md);
}

fn wire(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Wire size\n");
    let v = match r.get("wire") {
        Ok(v) => v["result"].clone(),
        Err(why) => {
            let _ = writeln!(md, "{why}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "One whole envelope (version, host id, message) as postcard, as agents send it, beside \
         the same value as compact JSON (`serde_json`, the same serde derive).\n"
    );
    let _ = writeln!(
        md,
        "| | postcard | JSON | JSON ÷ postcard |\n|---|---:|---:|---:|"
    );
    for row in v["rows"].as_array().into_iter().flatten() {
        let extra = match (row.get("postcard_min"), row.get("postcard_max")) {
            (Some(a), Some(b)) => format!(" ({}–{})", a, b),
            _ => String::new(),
        };
        let _ = writeln!(
            md,
            "| {} | {} B{extra} | {} B | {:.2}× |",
            row["what"].as_str().unwrap_or(""),
            num(&row["postcard"], 0),
            num(&row["json"], 0),
            row["ratio"].as_f64().unwrap_or(0.0)
        );
    }
    let t = &v["timing_ns"];
    let _ = writeln!(
        md,
        "\nThe Pi sample takes {} ns to encode and {} ns to decode as postcard, {} ns and {} ns as \
         JSON (this machine, one core). The largest possible envelope is {} bytes \
         (`MAX_ENCODED_LEN`).\n",
        num(&t["postcard_encode"], 0),
        num(&t["postcard_decode"], 0),
        num(&t["json_encode"], 0),
        num(&t["json_decode"], 0),
        v["max_encoded_len"]
    );
}

fn display(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Display\n");
    let v = match r.get("display") {
        Ok(v) => v["result"].clone(),
        Err(why) => {
            let _ = writeln!(md, "{why}\n");
            return;
        }
    };
    let renders = v["renders"].as_array().cloned().unwrap_or_default();
    let mut boards: Vec<(String, String)> = Vec::new();
    for row in &renders {
        let b = (
            row["board"].as_str().unwrap_or("").to_string(),
            row["size"].as_str().unwrap_or("").to_string(),
        );
        if !boards.contains(&b) {
            boards.push(b);
        }
    }
    let _ = writeln!(
        md,
        "Render time per page (the agent's `Renderer` into its frame: a 1-bit framebuffer, an \
         RGB565 frame or character lines), µs on this machine (x86-64; a Pi's Cortex-A72 is \
         several times slower):\n"
    );
    let _ = write!(md, "| page |");
    for (b, s) in &boards {
        let _ = write!(md, " {b} ({s}) |");
    }
    let _ = write!(md, "\n|---|");
    for _ in &boards {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    let mut pages: Vec<String> = Vec::new();
    for row in &renders {
        let p = row["page"].as_str().unwrap_or("").to_string();
        if !pages.contains(&p) {
            pages.push(p);
        }
    }
    for p in &pages {
        let _ = write!(md, "| {p} |");
        for (b, _) in &boards {
            let cell = renders
                .iter()
                .find(|r| r["page"] == p.as_str() && r["board"] == b.as_str())
                .map(|r| num(&r["us"], 0))
                .unwrap_or_else(|| "–".into());
            let _ = write!(md, " {cell} |");
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\nBus bytes per frame through the agent's drivers into recording buses, over {} s of \
         frames at 1 Hz, a new page every {} s. *Full* is a whole frame (the first one, or what \
         a driver without dirty areas sends every time); *same page* is the changed area sent \
         while a page stays up; *page change* the frame after a new page; the time is the bus's \
         at the board's configured clock:\n",
        v["seconds"], v["page_every_s"]
    );
    let _ = writeln!(
        md,
        "| board | bus | full frame | same page | page change | average | full ÷ average |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for row in v["buses"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} ({}) | {} ({}) | {} ({}) | {} ({}) | {}× |",
            row["board"].as_str().unwrap_or(""),
            row["bus"].as_str().unwrap_or(""),
            bytes(&row["full_bytes"]),
            ms(&row["full_ms"]),
            bytes(&row["same_page_bytes"]),
            ms(&row["same_page_ms"]),
            bytes(&row["page_change_bytes"]),
            ms(&row["page_change_ms"]),
            bytes(&row["average_bytes"]),
            ms(&row["average_ms"]),
            num(&row["full_over_average"], 1)
        );
    }
    let _ = writeln!(
        md,
        "\nI2C bytes include the address byte of each transaction; the time counts 9 clocks a \
         byte plus START/STOP. SPI counts the bytes clocked out.\n"
    );
}

fn history(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## History\n");
    let v = match r.get("history") {
        Ok(v) => v["result"].clone(),
        Err(why) => {
            let _ = writeln!(md, "{why}\n");
            return;
        }
    };
    let _ = writeln!(
        md,
        "Bytes per stored entry in each tier of the default configuration (the store's own count \
         of its delta-encoded rings), one simulated host; a tier's entry is a bucket with min, \
         avg and max of every series, whatever the number of samples folded in:\n"
    );
    let _ = writeln!(
        md,
        "| tier | kept | entries | bytes per entry | bytes per 1 Hz sample |\n|---|---|---:|---:|---:|"
    );
    for t in v["tiers"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            t["tier"].as_str().unwrap_or(""),
            t["kept"].as_str().unwrap_or(""),
            num(&t["entries"], 0),
            num(&t["bytes_per_entry"], 1),
            num(&t["bytes_per_1hz_sample"], 2)
        );
    }
    let m = &v["memory"];
    let _ =
        writeln!(
        md,
        "\n{} hosts with {} days each ({} samples per host: the last hour at 1 s, the last day at \
         1 min, the rest at 15 min, so every ring and tier is full; {} samples in all, folded in \
         {} s). The store counts {} in raw rings and {} in tiers ({} per host). The collector's \
         own persister wrote them as a snapshot of {} in {} s; the release collector recovered \
         it in {} s and then held **{}** RSS.\n",
        num(&v["hosts"], 0),
        v["days"],
        num(&v["samples_per_host"], 0),
        num(&v["samples"], 0),
        num(&v["fill_s"], 1),
        bytes(&m["raw_bytes"]),
        bytes(&m["tier_bytes"]),
        bytes(&(m["raw_bytes"].as_f64().unwrap_or(0.0) + m["tier_bytes"].as_f64().unwrap_or(0.0))
            .div_euclid(v["hosts"].as_f64().unwrap_or(1.0).max(1.0))
            .into()),
        bytes(&v["snapshot_bytes"]),
        num(&v["snapshot_s"], 1),
        num(&v["recovery_s"], 1),
        mib(&v["collector_rss_kib"])
    );
    let _ = writeln!(
        md,
        "API latency on that collector, {} requests each, one after another, different hosts:\n",
        v["queries"]
    );
    let _ = writeln!(md, "| request | resolution | points | response | p50 | p99 | max |\n|---|---|---:|---:|---:|---:|---:|");
    for a in v["api"].as_array().into_iter().flatten() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            a["what"].as_str().unwrap_or(""),
            a["resolution"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("–"),
            num(&a["points"], 0),
            bytes(&a["bytes"]),
            ms(&a["p50"]),
            ms(&a["p99"]),
            ms(&a["max"])
        );
    }
    let _ = writeln!(md);
}

fn store_bench(md: &mut String, dir: &Path) {
    let _ = writeln!(md, "## The collector's own store benchmark\n");
    match std::fs::read_to_string(dir.join("collector-ingest.txt")) {
        Ok(text) if !text.trim().is_empty() => {
            let _ = writeln!(
                md,
                "`collector/benches/ingest.rs` (in-process: `Store::ingest` alone, then MQTT → \
                 embedded broker → ingest in one process), its output from this run:\n"
            );
            let _ = writeln!(md, "```text\n{}\n```\n", text.trim_end());
        }
        _ => {
            let _ = writeln!(md, "Not measured in this run: `cargo bench -p ember-collector --bench ingest` did not run or failed (see the log next to the results).\n");
        }
    }
}

fn limits(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "## At the connection limit
"
    );
    let v = match r.get("limits") {
        Ok(v) => v["result"].clone(),
        Err(why) => {
            let _ = writeln!(md, "{why}\n");
            return;
        }
    };
    let alive = v["collector_alive"].as_bool() == Some(true);
    let _ = writeln!(
        md,
        "With `max-connections = {}`, {} clients connected one after another: **{} admitted**, {} \
         refused. Each refused client id then connected once more, as an agent reconnecting \
         would ({} tried before the end): the collector **{}**.{}\n",
        v["max_connections"],
        v["tried"],
        v["admitted"],
        v["refused"],
        v["retried"],
        if alive { "kept running" } else { "stopped" },
        match (alive, v["exit"].as_str(), v["panic"].as_str()) {
            (false, exit, panic) => format!(
                " Exit: {}; its log: `{}`. The load runs above therefore set \
                 `max-connections` above the number of agents.",
                exit.unwrap_or("?"),
                panic.unwrap_or("no panic logged")
            ),
            _ => String::new(),
        }
    );
}
