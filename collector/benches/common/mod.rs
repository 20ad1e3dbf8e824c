//! What the collector's benches share: a synthetic Raspberry Pi–like host.

use ember_wire::{Envelope, HostId, Message, Sample, MAX_ENCODED_LEN};

/// The process's resident set, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A Raspberry Pi–like sample that drifts a little each time.
pub struct Synth {
    x: u64,
    seq: u64,
}

impl Synth {
    pub fn new(seed: u64) -> Self {
        Synth {
            x: seed | 1,
            seq: 0,
        }
    }
    fn rnd(&mut self, n: u64) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x % n
    }
    pub fn next(&mut self, host: &HostId, ts: u64) -> Vec<u8> {
        self.seq += 1;
        let mut s = Sample {
            seq: self.seq,
            timestamp_ms: ts,
            uptime_s: 86_400 + self.seq,
            ..Sample::default()
        };
        s.cpu.busy = self.rnd(3000) as u16;
        s.cpu.user = s.cpu.busy / 2;
        s.cpu.system = s.cpu.busy / 4;
        for _ in 0..4 {
            let v = self.rnd(5000) as u16;
            let _ = s.cpu.cores.push(v);
        }
        s.load.one = 30 + self.rnd(20) as u32;
        s.load.five = 40;
        s.load.fifteen = 35;
        s.memory.total = 4 << 30;
        s.memory.used = (1 << 30) + self.rnd(1 << 12) * 4096;
        s.memory.available = s.memory.total - s.memory.used;
        s.memory.cached = 2 << 30;
        let _ = s.filesystems.push(ember_wire::Filesystem {
            mount: "/".into(),
            total: 31 << 30,
            used: (9 << 30) + self.seq * 4096,
        });
        let _ = s.networks.push(ember_wire::NetIo {
            interface: "eth0".into(),
            rx_bps: self.rnd(20_000),
            tx_bps: self.rnd(5_000),
            ..Default::default()
        });
        let _ = s.temperatures.push(ember_wire::Temperature {
            sensor: "cpu_thermal".into(),
            millicelsius: 48_000 + self.rnd(3) as i32 * 487,
        });
        for (i, name) in ["ember-agent", "sshd", "systemd"].iter().enumerate() {
            let _ = s.top_cpu.push(ember_wire::Process {
                pid: 100 + i as u32,
                name: (*name).into(),
                cpu: self.rnd(500) as u32,
                memory: 10 << 20,
            });
        }
        let mut buf = [0u8; MAX_ENCODED_LEN];
        Envelope::new(host.clone(), Message::Sample(s))
            .encode(&mut buf)
            .expect("fits")
            .to_vec()
    }
}
