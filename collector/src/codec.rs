//! A [`Sample`] as a flat list of [`Tok`]ens for the [`Ring`](crate::ring::Ring), and back.
//!
//! Every field is visited in a fixed order; lists are written as their length then their items,
//! options as 0/1 then the value. The destructuring below names every field, so a field added to
//! the wire contract fails to compile here instead of being silently dropped from history.

use ember_wire::heapless::{String as HString, Vec as HVec};
use ember_wire::{
    Cpu, DiskIo, Filesystem, Load, Memory, NetIo, Probe, Process, Sample, Temperature, Watched,
    Wifi,
};

use crate::ring::Tok;

/// The sample as tokens.
pub fn flatten(s: &Sample) -> Vec<Tok> {
    let mut t = Vec::with_capacity(96);
    flatten_into(s, &mut t);
    t
}

/// Writes the sample's tokens into `out` over what it held, reusing the strings there: storing
/// a sample then allocates nothing once `out` has held one of the same shape.
pub fn flatten_into(s: &Sample, out: &mut Vec<Tok>) {
    let mut t = Writer { out, n: 0 };
    let int = |t: &mut Writer<'_>, v: u64| t.int(v);
    let str = |t: &mut Writer<'_>, v: &str| t.str(v);
    let Sample {
        seq,
        timestamp_ms,
        uptime_s,
        cpu,
        load,
        memory,
        filesystems,
        disks,
        networks,
        temperatures,
        throttled,
        top_cpu,
        top_memory,
        watched,
        probes,
        dropped,
    } = s;
    int(&mut t, *seq);
    int(&mut t, *timestamp_ms);
    int(&mut t, *uptime_s);
    let Cpu {
        busy,
        user,
        system,
        iowait,
        cores,
    } = cpu;
    for v in [busy, user, system, iowait] {
        int(&mut t, (*v).into());
    }
    int(&mut t, cores.len() as u64);
    for c in cores {
        int(&mut t, (*c).into());
    }
    let Load { one, five, fifteen } = load;
    for v in [one, five, fifteen] {
        int(&mut t, (*v).into());
    }
    let Memory {
        total,
        used,
        available,
        cached,
        swap_total,
        swap_used,
    } = memory;
    for v in [total, used, available, cached, swap_total, swap_used] {
        int(&mut t, *v);
    }
    int(&mut t, filesystems.len() as u64);
    for Filesystem { mount, total, used } in filesystems {
        str(&mut t, mount);
        int(&mut t, *total);
        int(&mut t, *used);
    }
    int(&mut t, disks.len() as u64);
    for DiskIo {
        device,
        read_bps,
        write_bps,
    } in disks
    {
        str(&mut t, device);
        int(&mut t, *read_bps);
        int(&mut t, *write_bps);
    }
    int(&mut t, networks.len() as u64);
    for NetIo {
        interface,
        rx_bps,
        tx_bps,
        rx_errors,
        tx_errors,
        wifi,
    } in networks
    {
        str(&mut t, interface);
        int(&mut t, *rx_bps);
        int(&mut t, *tx_bps);
        int(&mut t, (*rx_errors).into());
        int(&mut t, (*tx_errors).into());
        match wifi {
            Some(Wifi {
                signal_dbm,
                quality,
            }) => {
                int(&mut t, 1);
                int(&mut t, i64::from(*signal_dbm) as u64);
                int(&mut t, (*quality).into());
            }
            None => int(&mut t, 0),
        }
    }
    int(&mut t, temperatures.len() as u64);
    for Temperature {
        sensor,
        millicelsius,
    } in temperatures
    {
        str(&mut t, sensor);
        int(&mut t, i64::from(*millicelsius) as u64);
    }
    match throttled {
        Some(v) => {
            int(&mut t, 1);
            int(&mut t, (*v).into());
        }
        None => int(&mut t, 0),
    }
    for list in [top_cpu, top_memory] {
        int(&mut t, list.len() as u64);
        for Process {
            pid,
            name,
            cpu,
            memory,
        } in list
        {
            int(&mut t, (*pid).into());
            str(&mut t, name);
            int(&mut t, (*cpu).into());
            int(&mut t, *memory);
        }
    }
    int(&mut t, watched.len() as u64);
    for Watched { name, instances } in watched {
        str(&mut t, name);
        int(&mut t, (*instances).into());
    }
    int(&mut t, probes.len() as u64);
    for Probe {
        target,
        rtt_us,
        loss,
    } in probes
    {
        str(&mut t, target);
        match rtt_us {
            Some(v) => {
                int(&mut t, 1);
                int(&mut t, (*v).into());
            }
            None => int(&mut t, 0),
        }
        int(&mut t, (*loss).into());
    }
    int(&mut t, (*dropped).into());
    let n = t.n;
    out.truncate(n);
}

/// Overwrites tokens in place.
struct Writer<'a> {
    out: &'a mut Vec<Tok>,
    n: usize,
}

impl Writer<'_> {
    fn int(&mut self, v: u64) {
        match self.out.get_mut(self.n) {
            Some(tok) => *tok = Tok::Int(v),
            None => self.out.push(Tok::Int(v)),
        }
        self.n += 1;
    }

    fn str(&mut self, v: &str) {
        match self.out.get_mut(self.n) {
            Some(Tok::Str(s)) => {
                s.clear();
                s.push_str(v);
            }
            Some(tok) => *tok = Tok::Str(v.to_string()),
            None => self.out.push(Tok::Str(v.to_string())),
        }
        self.n += 1;
    }
}

struct Reader<'a> {
    toks: &'a [Tok],
    at: usize,
}

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let t = self.toks.get(self.at)?;
        self.at += 1;
        match t {
            Tok::Int(v) => Some(*v),
            Tok::Str(_) => None,
        }
    }
    fn int<T: TryFrom<u64>>(&mut self) -> Option<T> {
        T::try_from(self.u64()?).ok()
    }
    fn signed<T: TryFrom<i64>>(&mut self) -> Option<T> {
        T::try_from(self.u64()? as i64).ok()
    }
    fn str<const N: usize>(&mut self) -> Option<HString<N>> {
        let t = self.toks.get(self.at)?;
        self.at += 1;
        match t {
            Tok::Str(s) => {
                let mut out = HString::new();
                out.push_str(s).ok()?;
                Some(out)
            }
            Tok::Int(_) => None,
        }
    }
    fn len(&mut self) -> Option<usize> {
        self.int::<usize>()
    }
    fn list<T, const N: usize>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<HVec<T, N>> {
        let n = self.len()?;
        let mut out = HVec::new();
        for _ in 0..n {
            let v = item(self)?;
            out.push(v).ok()?;
        }
        Some(out)
    }
    fn option<T>(&mut self, item: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        match self.u64()? {
            0 => Some(None),
            1 => Some(Some(item(self)?)),
            _ => None,
        }
    }
}

/// The sample back from its tokens; `None` if they are not a sample's.
pub fn unflatten(toks: &[Tok]) -> Option<Sample> {
    let mut r = Reader { toks, at: 0 };
    let process = |r: &mut Reader| {
        Some(Process {
            pid: r.int()?,
            name: r.str()?,
            cpu: r.int()?,
            memory: r.u64()?,
        })
    };
    let s = Sample {
        seq: r.u64()?,
        timestamp_ms: r.u64()?,
        uptime_s: r.u64()?,
        cpu: Cpu {
            busy: r.int()?,
            user: r.int()?,
            system: r.int()?,
            iowait: r.int()?,
            cores: r.list(|r| r.int())?,
        },
        load: Load {
            one: r.int()?,
            five: r.int()?,
            fifteen: r.int()?,
        },
        memory: Memory {
            total: r.u64()?,
            used: r.u64()?,
            available: r.u64()?,
            cached: r.u64()?,
            swap_total: r.u64()?,
            swap_used: r.u64()?,
        },
        filesystems: r.list(|r| {
            Some(Filesystem {
                mount: r.str()?,
                total: r.u64()?,
                used: r.u64()?,
            })
        })?,
        disks: r.list(|r| {
            Some(DiskIo {
                device: r.str()?,
                read_bps: r.u64()?,
                write_bps: r.u64()?,
            })
        })?,
        networks: r.list(|r| {
            Some(NetIo {
                interface: r.str()?,
                rx_bps: r.u64()?,
                tx_bps: r.u64()?,
                rx_errors: r.int()?,
                tx_errors: r.int()?,
                wifi: r.option(|r| {
                    Some(Wifi {
                        signal_dbm: r.signed()?,
                        quality: r.int()?,
                    })
                })?,
            })
        })?,
        temperatures: r.list(|r| {
            Some(Temperature {
                sensor: r.str()?,
                millicelsius: r.signed()?,
            })
        })?,
        throttled: r.option(|r| r.int())?,
        top_cpu: r.list(process)?,
        top_memory: r.list(process)?,
        watched: r.list(|r| {
            Some(Watched {
                name: r.str()?,
                instances: r.int()?,
            })
        })?,
        probes: r.list(|r| {
            Some(Probe {
                target: r.str()?,
                rtt_us: r.option(|r| r.int())?,
                loss: r.int()?,
            })
        })?,
        dropped: r.int()?,
    };
    (r.at == toks.len()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Sample {
        let mut s = Sample {
            seq: 42,
            timestamp_ms: 1_700_000_000_123,
            uptime_s: 99,
            throttled: Some(0x5_0005),
            dropped: 3,
            ..Sample::default()
        };
        s.cpu.busy = 10_000;
        s.cpu.cores.extend([1, 2, 3]);
        s.load.one = 150;
        s.memory.total = u64::MAX;
        s.filesystems
            .push(Filesystem {
                mount: "/".into(),
                total: 32 << 30,
                used: 9 << 30,
            })
            .unwrap();
        s.disks
            .push(DiskIo {
                device: "mmcblk0".into(),
                read_bps: 1,
                write_bps: 2,
            })
            .unwrap();
        s.networks
            .push(NetIo {
                interface: "wlan0".into(),
                rx_bps: 5,
                tx_bps: 6,
                rx_errors: 7,
                tx_errors: 8,
                wifi: Some(Wifi {
                    signal_dbm: -67,
                    quality: 70,
                }),
            })
            .unwrap();
        s.temperatures
            .push(Temperature {
                sensor: "cpu_thermal".into(),
                millicelsius: -12_345,
            })
            .unwrap();
        s.top_cpu
            .push(Process {
                pid: 1,
                name: "init".into(),
                cpu: 20_000,
                memory: 1 << 20,
            })
            .unwrap();
        s.watched
            .push(Watched {
                name: "sshd".into(),
                instances: 0,
            })
            .unwrap();
        s.probes
            .push(Probe {
                target: "192.168.1.1".into(),
                rtt_us: None,
                loss: 10_000,
            })
            .unwrap();
        s
    }

    #[test]
    fn flatten_into_overwrites_whatever_the_buffer_held() {
        let (full, empty) = (full(), Sample::default());
        let mut buf = Vec::new();
        for s in [&full, &empty, &full, &full, &empty] {
            flatten_into(s, &mut buf);
            assert_eq!(buf, flatten(s));
        }
        // Strings where integers were, and the other way round.
        let mut buf: Vec<Tok> = (0..200).map(|i| Tok::Str(i.to_string())).collect();
        flatten_into(&full, &mut buf);
        assert_eq!(buf, flatten(&full));
    }

    #[test]
    fn round_trips() {
        for s in [Sample::default(), full()] {
            assert_eq!(unflatten(&flatten(&s)), Some(s));
        }
    }

    #[test]
    fn wrong_tokens_are_none() {
        let toks = flatten(&full());
        assert_eq!(unflatten(&toks[..toks.len() - 1]), None);
        let mut extra = toks.clone();
        extra.push(Tok::Int(0));
        assert_eq!(unflatten(&extra), None);
        let mut swapped = toks.clone();
        swapped[0] = Tok::Str("x".into());
        assert_eq!(unflatten(&swapped), None);
        // A list longer than the wire contract allows.
        let mut long = flatten(&Sample::default());
        long[7] = Tok::Int(1000);
        assert_eq!(unflatten(&long), None);
    }
}
