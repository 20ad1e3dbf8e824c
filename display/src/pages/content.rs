//! What each page shows: its title and its rows, most important first by priority.

use core::fmt::Write;

use heapless::{String, Vec};

use super::{Item, Row, Scale, Str, Title};
use crate::format::{cut_chars, load, percent, rate, ratio, temperature, uptime, Bytes};
use crate::layout::Layout;
use crate::model::Model;
use crate::overview::Overview;
use crate::settings::{Level, Settings};

/// Most rows a page describes.
pub const MAX_ITEMS: usize = 32;

pub(super) type Items<'a> = Vec<Item<'a>, MAX_ITEMS>;

fn s(text: &str) -> Str {
    cut_chars(text, 32)
}

fn text<'a>(priority: u8, left: &str, right: &str) -> Item<'a> {
    leveled(priority, left, Level::Normal, right, Level::Normal)
}

fn leveled<'a>(priority: u8, left: &str, ll: Level, right: &str, rl: Level) -> Item<'a> {
    Item::new(
        priority,
        Row::Text {
            left: s(left),
            left_level: ll,
            right: s(right),
            right_level: rl,
        },
    )
}

fn bar<'a>(priority: u8, label: &str, value: Option<u16>, level: Level) -> Item<'a> {
    Item::new(
        priority,
        Row::Bar {
            label: s(label),
            value,
            text: s(&percent(value)),
            level,
        },
    )
}

fn push<'a>(items: &mut Items<'a>, item: Item<'a>) {
    // Pages describe at most MAX_ITEMS rows by construction; one more is dropped, not a panic.
    let _ = items.push(item);
}

fn title(left: &str, short: Option<&'static str>, right: &str) -> Title {
    Title {
        left: s(left),
        short,
        right: s(right),
    }
}

/// The overview: `extra` adds swap, load and a CPU sparkline where there is room.
pub(super) fn overview<'a>(
    ov: &Overview,
    extra: Option<&Model<'a>>,
    settings: &Settings,
    _layout: &Layout,
) -> (Title, Items<'a>) {
    let t = &settings.thresholds;
    let mut items = Items::new();
    let mut ip: Str = Str::new();
    match ov.ipv4 {
        Some([a, b, c, e]) => {
            let _ = write!(ip, "IP {a}.{b}.{c}.{e}");
        }
        None => {
            let _ = ip.push_str("IP --");
        }
    }
    push(&mut items, text(5, &ip, ""));
    push(&mut items, bar(0, "CPU", Some(ov.cpu), t.cpu.level(ov.cpu)));
    let mem_level = ov.memory.map_or(Level::Normal, |m| t.memory.level(m));
    push(&mut items, bar(1, "MEM", ov.memory, mem_level));
    if let Some(m) = extra {
        let mem = &m.sample.memory;
        if mem.swap_total > 0 {
            let swap = ratio(mem.swap_used, mem.swap_total);
            push(&mut items, bar(7, "SWAP", swap, Level::Normal));
        }
    }
    let disk_level = ov.disk.map_or(Level::Normal, |v| t.disk.level(v));
    push(&mut items, bar(3, "DISK", ov.disk, disk_level));
    let temp_level = ov
        .temperature
        .map_or(Level::Normal, |v| t.temperature.level(v));
    let status = leveled(
        2,
        &temperature(ov.temperature, settings.temperature_unit),
        temp_level,
        &uptime(ov.uptime_s),
        Level::Normal,
    );
    push(&mut items, status);
    if let Some(m) = extra {
        let l = &m.sample.load;
        let mut loads: Str = Str::new();
        let _ = write!(
            loads,
            "{} {} {}",
            load(l.one),
            load(l.five),
            load(l.fifteen)
        );
        push(&mut items, text(6, "LOAD", &loads));
    }
    let net = Row::Net {
        label: Str::new(),
        rx: ov.rx_bps,
        tx: ov.tx_bps,
        unit: settings.rate_unit,
    };
    push(&mut items, Item::new(4, net));
    if let Some(m) = extra {
        let spark = Row::Spark {
            history: &m.history.cpu,
            scale: Scale::Fixed(10_000),
        };
        push(&mut items, Item::new(8, spark).spans(2, u8::MAX));
    }
    (title(&ov.host, None, ""), items)
}

/// Total CPU, load, the time split, each core (as bars when they fit, else as a chart) and a
/// sparkline of the total.
pub(super) fn cpu<'a>(m: &Model<'a>, settings: &Settings, layout: &Layout) -> (Title, Items<'a>) {
    let t = &settings.thresholds;
    let cpu = &m.sample.cpu;
    let mut items = Items::new();
    push(
        &mut items,
        bar(0, "ALL", Some(cpu.busy), t.cpu.level(cpu.busy)),
    );
    let l = &m.sample.load;
    let mut loads: Str = Str::new();
    let _ = write!(
        loads,
        "{} {} {}",
        load(l.one),
        load(l.five),
        load(l.fifteen)
    );
    push(&mut items, text(2, "LOAD", &loads));
    let mut split: Str = Str::new();
    let _ = write!(
        split,
        "usr {} sys {} io {}",
        percent(Some(cpu.user)),
        percent(Some(cpu.system)),
        percent(Some(cpu.iowait))
    );
    push(&mut items, text(3, &split, ""));
    let cores = cpu.cores.len();
    if cores > 0 && cores + 2 <= layout.rows {
        for (k, &busy) in cpu.cores.iter().enumerate() {
            let mut label: Str = Str::new();
            let _ = write!(label, "C{k}");
            push(&mut items, bar(1, &label, Some(busy), t.cpu.level(busy)));
        }
    } else if cores > 0 {
        let values = cpu.cores.iter().map(|&v| (v, t.cpu.level(v))).collect();
        let chart = Row::Columns { values };
        push(&mut items, Item::new(1, chart).spans(2, 6));
    }
    let spark = Row::Spark {
        history: &m.history.cpu,
        scale: Scale::Fixed(10_000),
    };
    push(&mut items, Item::new(4, spark).spans(2, u8::MAX));
    (title("CPU", None, m.host), items)
}

/// Each interface: its rates, then a mirror sparkline (received up, sent down).
pub(super) fn network<'a>(
    m: &Model<'a>,
    settings: &Settings,
    _layout: &Layout,
) -> (Title, Items<'a>) {
    let mut items = Items::new();
    for (k, net) in (0u8..).zip(m.sample.networks.iter()) {
        let row = Row::Net {
            label: s(&net.interface),
            rx: net.rx_bps,
            tx: net.tx_bps,
            unit: settings.rate_unit,
        };
        push(&mut items, Item::new(2 * k, row));
        if let Some(h) = m.history.interface(&net.interface) {
            let spark = Row::Mirror {
                rx: &h.rx,
                tx: &h.tx,
            };
            push(&mut items, Item::new(2 * k + 1, spark).spans(2, 6));
        }
    }
    if items.is_empty() {
        push(&mut items, text(0, "no interfaces", ""));
    }
    (title("Network", Some("Net"), m.host), items)
}

/// Each filesystem: mount point and sizes, then its bar; then block devices' I/O.
pub(super) fn disks<'a>(
    m: &Model<'a>,
    settings: &Settings,
    _layout: &Layout,
) -> (Title, Items<'a>) {
    let t = &settings.thresholds;
    let mut items = Items::new();
    for (k, fs) in (0u8..).zip(m.sample.filesystems.iter()) {
        let mut sizes: Str = Str::new();
        let _ = write!(sizes, "{}/{}", Bytes(fs.used), Bytes(fs.total));
        push(&mut items, text(2 * k, &fs.mount, &sizes));
        let used = ratio(fs.used, fs.total);
        let level = used.map_or(Level::Normal, |u| t.disk.level(u));
        push(&mut items, bar(2 * k + 1, "", used, level));
    }
    for (k, io) in (0u8..).zip(m.sample.disks.iter()) {
        let mut rates: Str = Str::new();
        let _ = write!(
            rates,
            "R {} W {}",
            rate(io.read_bps, crate::settings::RateUnit::Bytes),
            rate(io.write_bps, crate::settings::RateUnit::Bytes)
        );
        push(&mut items, text(40 + k, &io.device, &rates));
    }
    if items.is_empty() {
        push(&mut items, text(0, "no filesystems", ""));
    }
    (title("Disks", None, m.host), items)
}

/// The Pi's throttling, each sensor, and the hottest sensor's history.
pub(super) fn temperatures<'a>(
    m: &Model<'a>,
    settings: &Settings,
    _layout: &Layout,
) -> (Title, Items<'a>) {
    let t = &settings.thresholds;
    let mut items = Items::new();
    if let Some(flags) = m.sample.throttled {
        let (state, level, priority) = if flags & 0x1 != 0 {
            ("UNDER-VOLTAGE", Level::Crit, 0)
        } else if flags & 0x6 != 0 {
            ("THROTTLED", Level::Crit, 0)
        } else if flags & 0xF_0000 != 0 {
            ("since boot", Level::Warn, 10)
        } else {
            ("ok", Level::Normal, 30)
        };
        push(
            &mut items,
            leveled(priority, "power", Level::Normal, state, level),
        );
    }
    for (k, sensor) in (1u8..).zip(m.sample.temperatures.iter()) {
        let value = temperature(Some(sensor.millicelsius), settings.temperature_unit);
        let level = t.temperature.level(sensor.millicelsius);
        push(
            &mut items,
            leveled(k, &sensor.sensor, Level::Normal, &value, level),
        );
    }
    if m.sample.temperatures.is_empty() {
        push(&mut items, text(1, "no sensors", ""));
    } else {
        let spark = Row::Spark {
            history: &m.history.hottest,
            scale: Scale::Range(5_000),
        };
        push(&mut items, Item::new(20, spark).spans(2, u8::MAX));
    }
    (title("Temperatures", Some("Temps"), m.host), items)
}

/// CPU use of a process, in hundredths of a percent of one core: `12%`, `250%`.
fn process_cpu(hundredths: u32) -> String<8> {
    let mut out = String::new();
    let _ = write!(out, "{}%", (u64::from(hundredths) + 50) / 100);
    out
}

/// The busiest processes with their memory; the largest ones below when there is room.
pub(super) fn processes<'a>(m: &Model<'a>, layout: &Layout) -> (Title, Items<'a>) {
    let mut items = Items::new();
    let top = &m.sample.top_cpu;
    for (k, p) in (0u8..).zip(top.iter()) {
        let mut right: Str = Str::new();
        let _ = write!(right, "{} {}", process_cpu(p.cpu), Bytes(p.memory));
        push(&mut items, text(k, &p.name, &right));
    }
    if top.is_empty() {
        push(&mut items, text(0, "no processes", ""));
    }
    let by_memory = &m.sample.top_memory;
    if !by_memory.is_empty() && layout.rows >= top.len() + 3 {
        push(&mut items, text(10, "by memory:", ""));
        for (k, p) in (11u8..).zip(by_memory.iter()) {
            let mut right: Str = Str::new();
            let _ = write!(right, "{}", Bytes(p.memory));
            push(&mut items, text(k, &p.name, &right));
        }
    }
    (title("Processes", Some("Top"), m.host), items)
}

/// Hosts of the fleet, down ones first when not all fit, and how many more there are.
pub(super) fn fleet<'a>(m: &Model<'a>, layout: &Layout) -> (Title, Items<'a>) {
    let mut items = Items::new();
    let hosts = m.fleet;
    let up = hosts.iter().filter(|h| h.up).count();
    let mut heading: Str = Str::new();
    let _ = write!(heading, "Fleet {up}/{} up", hosts.len());
    if hosts.is_empty() {
        push(&mut items, text(0, "no fleet data", ""));
        return (title(&heading, Some("Fleet"), ""), items);
    }
    let slots = layout.rows.min(MAX_ITEMS);
    let shown = if hosts.len() > slots {
        slots.saturating_sub(1)
    } else {
        hosts.len()
    };
    // Down hosts first, then up ones, each in the fleet's order; shown in the fleet's order.
    let mut picked = 0;
    let mut chosen: Vec<usize, MAX_ITEMS> = Vec::new();
    for want_up in [false, true] {
        for (k, h) in hosts.iter().enumerate() {
            if picked < shown && h.up == want_up {
                let _ = chosen.push(k);
                picked += 1;
            }
        }
    }
    chosen.sort_unstable();
    for &k in &chosen {
        let h = &hosts[k];
        let (state, level) = if h.up {
            ("up", Level::Normal)
        } else {
            ("DOWN", Level::Crit)
        };
        push(&mut items, leveled(0, &h.name, Level::Normal, state, level));
    }
    if shown < hosts.len() {
        let mut more: Str = Str::new();
        let _ = write!(more, "+{} more", hosts.len() - shown);
        push(&mut items, text(0, &more, ""));
    }
    (title(&heading, Some("Fleet"), ""), items)
}
