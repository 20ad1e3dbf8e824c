//! Every metric source, read from a Raspberry Pi 4's `/proc` and `/sys` (`tests/fixtures/pi4`).
//! The tree is copied to a scratch folder so that a second reading can be written between two
//! samples; rates are computed over exactly one second.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ember_agent::{AgentConfig, Sampler};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn pi_tree(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi4");
    let dst = std::env::temp_dir().join(format!("ember-fixture-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dst);
    copy_tree(&src, &dst);
    dst
}

/// Filesystem sizes for the fixture's mounts (statvfs cannot be faked).
fn usage(path: &Path) -> Option<(u64, u64)> {
    let p = path.to_string_lossy();
    if p.ends_with("/mnt/usb ssd") {
        Some((500_000_000_000, 125_000_000_000))
    } else if p.ends_with("/boot/firmware") {
        Some((535_805_952, 66_060_288))
    } else {
        // `/`: the root of the scratch tree.
        Some((31_254_528_000, 5_368_709_120))
    }
}

fn config(watch: &[&str], sensors: &[&str]) -> AgentConfig {
    let mut c = AgentConfig::new("127.0.0.1:1883", Some("pi4"), "1s", None).unwrap();
    c.watch = watch.iter().map(|s| s.to_string()).collect();
    c.temperature_sensors = sensors.iter().map(|s| s.to_string()).collect();
    // Walk the processes at every sample, so that one second gives the CPU shares.
    c.process_interval = Duration::from_secs(1);
    c
}

fn write(root: &Path, rel: &str, text: &str) {
    std::fs::write(root.join(rel), text).unwrap();
}

/// The second reading: one second later on the Pi.
fn advance(root: &Path) {
    write(
        root,
        "proc/stat",
        "cpu  91536 12 41379 6931871 2860 0 1203 0 0 0\n\
         cpu0 22964 3 10520 1732309 723 0 612 0 0 0\n\
         cpu1 22903 2 10266 1733210 679 0 222 0 0 0\n\
         cpu2 22812 4 10361 1733072 702 0 198 0 0 0\n\
         cpu3 22857 3 10232 1733130 756 0 171 0 0 0\n",
    );
    let dev = std::fs::read_to_string(root.join("proc/net/dev")).unwrap();
    let dev = dev
        .replace("912834501  901233    0", "913834501  901233    0")
        .replace("48211092  312001", "48311092  312001")
        .replace("5512033   20311    3", "5512033   20311    5");
    write(root, "proc/net/dev", &dev);
    let disks = std::fs::read_to_string(root.join("proc/diskstats")).unwrap();
    let disks = disks.replace(
        "mmcblk0 14890 5243 1149382 88514 9871 8712 390116",
        "mmcblk0 14890 5243 1151430 88514 9871 8712 394212",
    );
    write(root, "proc/diskstats", &disks);
    // python3 used 50 ticks (0.5 s of one core at 100 Hz) in the second.
    let py = std::fs::read_to_string(root.join("proc/612/stat")).unwrap();
    write(
        root,
        "proc/612/stat",
        &py.replace(" 41200 3020 ", " 41240 3030 "),
    );
}

#[test]
fn a_raspberry_pi_4_read_from_its_proc_and_sys() {
    let root = pi_tree("pi");
    let mut sampler =
        Sampler::with_root(&config(&["python3", "mosquitto"], &[]), root.clone(), usage).unwrap();
    advance(&root);
    let s = sampler.sample_over(Duration::from_secs(1));
    assert_eq!(s.seq, 1);

    // CPU: 500 ticks passed: user 100, system 50, iowait 50, idle 300.
    assert_eq!(
        (s.cpu.busy, s.cpu.user, s.cpu.system, s.cpu.iowait),
        (3000, 2000, 1000, 1000)
    );
    // cpu0 all user (100 %), cpu1 all idle, cpu2 half system and half idle, cpu3 all iowait
    // (waiting is not busy).
    assert_eq!(s.cpu.cores.as_slice(), &[10_000, 0, 5_000, 0]);

    assert_eq!((s.load.one, s.load.five, s.load.fifteen), (52, 40, 31));
    assert_eq!(s.uptime_s, 86_400);

    let m = s.memory;
    assert_eq!(m.total, 3_885_432 * 1024);
    assert_eq!(m.available, 3_287_380 * 1024);
    assert_eq!(m.used, (3_885_432 - 3_287_380) * 1024);
    assert_eq!(m.cached, 1_012_480 * 1024);
    assert_eq!((m.swap_total, m.swap_used), (102_396 * 1024, 0));

    // Real filesystems only, one per device, mount escapes undone.
    let mounts: Vec<&str> = s.filesystems.iter().map(|f| f.mount.as_str()).collect();
    assert_eq!(mounts, ["/", "/boot/firmware", "/mnt/usb ssd"]);
    assert_eq!(s.filesystems[2].used, 125_000_000_000);

    // Whole disks only (no partitions, loop or RAM devices), rates over one second.
    let disks: Vec<(&str, u64, u64)> = s
        .disks
        .iter()
        .map(|d| (d.device.as_str(), d.read_bps, d.write_bps))
        .collect();
    assert_eq!(disks, [("mmcblk0", 2048 * 512, 4096 * 512), ("sda", 0, 0)]);

    // Interfaces without loopback; Wi-Fi quality 49/70 and -61 dBm; errors in the interval.
    assert_eq!(s.networks.len(), 2);
    let eth = &s.networks[0];
    assert_eq!(
        (eth.interface.as_str(), eth.rx_bps, eth.tx_bps),
        ("eth0", 1_000_000, 100_000)
    );
    assert_eq!(eth.wifi, None);
    let wlan = &s.networks[1];
    assert_eq!((wlan.interface.as_str(), wlan.rx_errors), ("wlan0", 2));
    let wifi = wlan.wifi.expect("wlan0 is wireless");
    assert_eq!((wifi.quality, wifi.signal_dbm), (70, -61));

    // cpu-thermal reads 48.686 °C; gpu-thermal has no reading and is absent, not 0 °C.
    assert_eq!(s.temperatures.len(), 1);
    assert_eq!(s.temperatures[0].sensor.as_str(), "cpu-thermal");
    assert_eq!(s.temperatures[0].millicelsius, 48_686);

    // Soft temperature limit occurred + under-voltage occurred (bits 16 and 18).
    assert_eq!(s.throttled, Some(0x5_0000));

    // python3 used half a core; "Web Content (x)" (a name with spaces and brackets) has the
    // most memory.
    assert_eq!(s.top_cpu[0].name.as_str(), "python3");
    assert_eq!(s.top_cpu[0].cpu, 5_000);
    let page = rustix::param::page_size() as u64;
    assert_eq!(s.top_memory[0].name.as_str(), "Web Content (x)");
    assert_eq!(s.top_memory[0].memory, 65_536 * page);
    assert_eq!(s.top_memory.len(), 3);

    let watched: Vec<(&str, u16)> = s
        .watched
        .iter()
        .map(|w| (w.name.as_str(), w.instances))
        .collect();
    assert_eq!(watched, [("python3", 1), ("mosquitto", 0)]);

    let info = sampler.host_info();
    assert_eq!(info.board.as_str(), "Raspberry Pi 4 Model B Rev 1.4");
    let disks: Vec<(&str, u64)> = info
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.size))
        .collect();
    assert_eq!(
        disks,
        [("mmcblk0", 62_333_952 * 512), ("sda", 488_397_168 * 512)]
    );
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_chosen_sensor_that_is_missing_is_absent_never_zero() {
    let root = pi_tree("sensors");
    let mut sampler = Sampler::with_root(
        &config(&[], &["gpu-thermal", "cpu-thermal"]),
        root.clone(),
        usage,
    )
    .unwrap();
    let s = sampler.sample_over(Duration::from_secs(1));
    let sensors: Vec<(&str, i32)> = s
        .temperatures
        .iter()
        .map(|t| (t.sensor.as_str(), t.millicelsius))
        .collect();
    assert_eq!(sensors, [("cpu-thermal", 48_686)]);
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn a_machine_without_the_optional_files_gives_empty_parts_not_errors() {
    let root = pi_tree("bare");
    for gone in [
        "proc/net/wireless",
        "sys/class/thermal",
        "sys/devices",
        "proc/device-tree",
        "proc/diskstats",
    ] {
        let p = root.join(gone);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut sampler = Sampler::with_root(&config(&[], &[]), root.clone(), usage).unwrap();
    let s = sampler.sample_over(Duration::from_secs(1));
    assert!(s.temperatures.is_empty());
    assert_eq!(s.throttled, None);
    assert!(s.disks.is_empty());
    assert!(s.networks.iter().all(|n| n.wifi.is_none()));
    assert!(s.memory.total > 0);
    assert_eq!(sampler.host_info().board.as_str(), "");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn no_proc_at_all_is_a_clear_error() {
    let err = Sampler::with_root(&config(&[], &[]), PathBuf::from("/nonexistent"), usage)
        .err()
        .expect("no /proc/stat");
    assert!(err.to_string().contains("/nonexistent/proc/stat"), "{err}");
}

#[test]
fn processes_are_walked_every_process_interval_and_repeated_between() {
    let root = pi_tree("procs");
    let mut c = config(&["python3"], &[]);
    c.process_interval = Duration::from_secs(2);
    let mut sampler = Sampler::with_root(&c, root.clone(), usage).unwrap();
    advance(&root);
    // The first sample walks: python3 used 50 ticks in the second.
    let first = sampler.sample_over(Duration::from_secs(1));
    assert_eq!(first.top_cpu[0].name.as_str(), "python3");
    assert_eq!(first.top_cpu[0].cpu, 5_000);
    // One second later: no walk, the lists are repeated.
    let second = sampler.sample_over(Duration::from_secs(1));
    assert_eq!(second.top_cpu, first.top_cpu);
    assert_eq!(second.watched, first.watched);
    // Two seconds after the walk: a new walk; python3 used nothing since.
    let third = sampler.sample_over(Duration::from_secs(1));
    let python = third
        .top_cpu
        .iter()
        .find(|p| p.name.as_str() == "python3")
        .unwrap();
    assert_eq!(python.cpu, 0);
    std::fs::remove_dir_all(root).unwrap();
}
