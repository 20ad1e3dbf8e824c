//! Ember's benchmark suite (issue #9). `.ci/bench` runs it; each part can also run alone:
//!
//! ```sh
//! cargo bench -p ember-e2e --bench suite -- PART --out DIR [--key value]...
//! ```
//!
//! Each part measures one thing and writes its figures to `DIR/NAME.json` (NAME is `--name`,
//! default the part); `report` turns a directory of them into `docs/benchmarks.md`. No part
//! asserts a target: the report compares the figures with the issue's targets.
//!
//! Parts (modules):
//! - `wire`: one sample as postcard beside its JSON form.
//! - `display`: render time per page, bus bytes per frame, full versus dirty-area updates.
//! - `history`: bytes per stored sample per tier; a 30-day range on many hosts through the API of
//!   a release collector that recovered them from disk.
//! - `footprint`: the release agent beside collectd and prometheus-node-exporter.
//! - `load`: N raw MQTT connections against the release collector or Mosquitto, paced (agents
//!   at an interval) or saturating; throughput, latency, loss, the broker's memory and CPU.
//! - `limits`: the collector at its connection limit, and a refused agent connecting again.
//! - `report`: writes the Markdown.
//!
//! Helpers: `mqtt` (a minimal MQTT 3.1.1 client), `procs` (processes and `/proc`).

#![recursion_limit = "256"]

mod display;
mod footprint;
mod history;
mod load;
mod mqtt;
mod procs;
mod report;
mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};

/// `--key value` options.
pub struct Args {
    part: String,
    opts: BTreeMap<String, String>,
    used: std::cell::RefCell<Vec<String>>,
}

impl Args {
    fn parse(argv: &[String]) -> anyhow::Result<Self> {
        let mut it = argv.iter().filter(|a| *a != "--bench");
        let part = it.next().cloned().unwrap_or_default();
        let mut opts = BTreeMap::new();
        while let Some(k) = it.next() {
            let Some(key) = k.strip_prefix("--") else {
                bail!("expected --key value, got {k:?}");
            };
            let value = it
                .next()
                .with_context(|| format!("--{key} needs a value"))?;
            opts.insert(key.to_string(), value.clone());
        }
        Ok(Args {
            part,
            opts,
            used: Default::default(),
        })
    }

    /// The option `key`, parsed, or `default`.
    pub fn get<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        self.used.borrow_mut().push(key.to_string());
        match self.opts.get(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow::anyhow!("--{key} {v:?}: {e}")),
        }
    }

    /// The option `key` as a string, or `default`.
    pub fn str(&self, key: &str, default: &str) -> String {
        self.used.borrow_mut().push(key.to_string());
        self.opts
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// The option `key` as a path, or `default`; a relative path is taken from the workspace's
    /// root (cargo runs benchmarks in the package's directory).
    pub fn path(&self, key: &str, default: &str) -> PathBuf {
        let p = PathBuf::from(self.str(key, default));
        if p.is_absolute() {
            return p;
        }
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|root| root.join(&p))
            .unwrap_or(p)
    }

    fn unused(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.opts
            .keys()
            .filter(|k| !used.contains(k))
            .cloned()
            .collect()
    }
}

const USAGE: &str = "usage: cargo bench -p ember-e2e --bench suite -- \
    (wire|display|history|footprint|load|limits|report) --out DIR [--key value]...\n\
    (.ci/bench runs every part and writes docs/benchmarks.md)";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("suite: {e:#}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    if args.part.is_empty() {
        // `cargo test --all-targets` runs this binary without arguments.
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let out = args.path("out", "target/bench/results");
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("suite: cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let name = args.str("name", &args.part);
    let started = Instant::now();
    let result = match args.part.as_str() {
        "wire" => wire::run(&args),
        "display" => display::run(&args),
        "history" => history::run(&args),
        "footprint" => footprint::run(&args),
        "load" => load::run(&args),
        "limits" => load::limits(&args),
        "report" => report::run(&args),
        other => Err(anyhow::anyhow!("unknown part {other:?}\n{USAGE}")),
    };
    let unused = args.unused();
    if !unused.is_empty() {
        eprintln!("suite: unknown options ignored: {unused:?}");
    }
    if args.part == "report" {
        return match result {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("suite report: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let mut doc = serde_json::json!({
        "part": args.part,
        "args": args.opts,
        "took_s": 0.0,
    });
    let code = match result {
        Ok(v) => {
            doc["result"] = v;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("suite {name}: {e:#}");
            doc["error"] = serde_json::Value::String(format!("{e:#}"));
            ExitCode::FAILURE
        }
    };
    doc["took_s"] = serde_json::json!(started.elapsed().as_secs_f64());
    let file = out.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    if let Err(e) = std::fs::write(&file, text) {
        eprintln!("suite: cannot write {}: {e}", file.display());
        return ExitCode::FAILURE;
    }
    println!(
        "suite {name}: {} ({:.0} s)",
        file.display(),
        started.elapsed().as_secs_f64()
    );
    code
}
