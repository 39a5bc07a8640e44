//! Cycle-approximate simulator of a `.smx` program. Every queue runs its
//! commands in order; the simulator always advances the queue whose next
//! command starts earliest, so effects happen in simulated-time order and a
//! correctly synchronized program computes the same values as the hardware.
//!
//! Timing model per command: `issue_cycles`, then
//! - DMA: bytes over the engine's bandwidth, and HBM and L2 are shared
//!   resources (a transfer cannot finish before the level has moved all bytes
//!   reserved on it so far at its own bandwidth);
//! - matmul: 2·m·n·k FLOP, padded up to the tensor unit's step shape, over
//!   the tile's rate for the dtype;
//! - vector: elements over lanes (narrow dtypes pack), times
//!   `transcendental_cycles` for exp/div/sqrt/...;
//! - waits start no earlier than the last signal; barriers release at the
//!   last arrival; collectives cost a ring algorithm over the links.
//!
//! Files: `exec.rs` runs data commands (values and their cycles),
//! `report.rs` sums up where the time went and writes Chrome traces,
//! `bench.rs` generates a synthetic stream to time the simulator itself.
//!
//! Values: compute in f32 (the tensor unit accumulates in f32), round to the
//! storage dtype on every write (`dtype::Dt::store`).

mod bench;
mod exec;
mod report;

pub use bench::bench_program;
pub use report::op_name;

use super::Error;
use super::artifact::{Artifact, Limits};
use super::dtype::Dt;
use super::isa::*;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Skip data: only timing (fast; for architecture exploration).
    pub timing_only: bool,
    /// Record one event per command for `chrome_trace`.
    pub trace: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct EngineUse {
    pub engine: &'static str,
    pub queues: usize,
    pub busy_cycles: f64,
    /// Busy time over (queues × total time).
    pub utilization: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    pub hbm_read: u64,
    pub hbm_write: u64,
    pub l2_read: u64,
    pub l2_write: u64,
    pub sram_read: u64,
    pub sram_write: u64,
    pub link: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub commands: usize,
    pub devices: u32,
    pub cycles: f64,
    pub seconds: f64,
    pub engines: Vec<EngineUse>,
    pub bytes: Traffic,
    /// Useful tensor-unit FLOP (2·m·n·k, unpadded) over all devices.
    pub flops: f64,
    pub achieved_flops_per_s: f64,
    /// Chip peak for the dtype that did the most FLOP, times devices.
    pub peak_flops_per_s: f64,
    /// max(FLOP / peak, HBM bytes / HBM bandwidth): no schedule beats it.
    pub roofline_seconds: f64,
    /// roofline_seconds / seconds (1.0 = at the roofline).
    pub roofline_fraction: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub index: u32,
    pub device: u32,
    pub start: f64,
    pub dur: f64,
}

struct QState {
    q: Queue,
    cmds: Vec<u32>,
    pc: usize,
    time: f64,
    busy: f64,
}

#[derive(Default, Clone)]
struct SemState {
    value: u64,
    ready: f64,
    /// Blocked (global queue, n).
    waiters: Vec<(usize, u64)>,
}

pub struct Sim<'a> {
    art: &'a Artifact,
    opts: Options,
    limits: Limits,
    nq: usize,
    qs: Vec<QState>,
    sems: Vec<SemState>,
    barriers: HashMap<(u32, u16), (Vec<usize>, f64)>,
    collectives: HashMap<u32, (Vec<usize>, f64)>,
    hbm_free: Vec<f64>,
    l2_free: Vec<f64>,
    hbm: Vec<Vec<u8>>,
    sram: Vec<Vec<u8>>,
    l2: Vec<Vec<u8>>,
    traffic: Traffic,
    flops_by_dt: BTreeMap<&'static str, f64>,
    events: Vec<Event>,
    scratch: [Vec<f32>; 3],
}

fn key(t: f64) -> u64 {
    // Non-negative floats order like their bit patterns.
    t.to_bits()
}

impl<'a> Sim<'a> {
    pub fn new(art: &'a Artifact, opts: Options) -> Sim<'a> {
        let mut index: BTreeMap<Queue, usize> = BTreeMap::new();
        for c in &art.commands {
            let n = index.len();
            index.entry(c.queue).or_insert(n);
        }
        let mut per: Vec<(Queue, Vec<u32>)> = vec![
            (
                Queue {
                    engine: Engine::Ctrl,
                    unit: 0,
                    lane: 0
                },
                vec![]
            );
            index.len()
        ];
        for (&q, &i) in &index {
            per[i].0 = q;
        }
        for (i, c) in art.commands.iter().enumerate() {
            per[index[&c.queue]].1.push(i as u32);
        }
        let d = art.devices as usize;
        let mut qs = Vec::with_capacity(per.len() * d);
        for _ in 0..d {
            for (q, cmds) in &per {
                qs.push(QState {
                    q: *q,
                    cmds: cmds.clone(),
                    pc: 0,
                    time: 0.0,
                    busy: 0.0,
                });
            }
        }
        let hw = &art.hw;
        let tiles = hw.tiles() as usize;
        let hbm_used = art.hbm_used();
        let mut hbm = Vec::new();
        if !opts.timing_only {
            for _ in 0..d {
                let mut m = vec![0u8; hbm_used as usize];
                for r in &art.regions {
                    if let Some(data) = &r.data {
                        m[r.offset as usize..(r.offset + r.bytes) as usize].copy_from_slice(data);
                    }
                }
                hbm.push(m);
            }
        }
        Sim {
            art,
            opts,
            limits: Limits::new(hw, hbm_used, art.devices),
            nq: per.len(),
            qs,
            sems: vec![SemState::default(); d * tiles * hw.tile.semaphores as usize],
            barriers: HashMap::new(),
            collectives: HashMap::new(),
            hbm_free: vec![0.0; d],
            l2_free: vec![0.0; d * hw.clusters as usize],
            hbm,
            sram: vec![Vec::new(); d * tiles],
            l2: vec![Vec::new(); d * hw.clusters as usize],
            traffic: Traffic::default(),
            flops_by_dt: BTreeMap::new(),
            events: Vec::new(),
            scratch: [Vec::new(), Vec::new(), Vec::new()],
        }
    }

    fn region(&self, name: &str, dt: Dt) -> Result<(usize, usize), Error> {
        let r = self
            .art
            .region(name)
            .ok_or_else(|| Error::Meta(format!("no region `{name}`")))?;
        if r.dtype != dt.name() {
            return Err(Error::Meta(format!(
                "region `{name}` holds {}, not {dt}",
                r.dtype
            )));
        }
        Ok((r.offset as usize, r.bytes as usize))
    }

    /// Writes f32 values, rounded to the region's dtype, into a region of
    /// one device's HBM.
    pub fn write_region(&mut self, device: usize, name: &str, vals: &[f32]) -> Result<(), Error> {
        let r = self
            .art
            .region(name)
            .ok_or_else(|| Error::Meta(format!("no region `{name}`")))?;
        let dt = Dt::from_name(&r.dtype)
            .ok_or_else(|| Error::Meta(format!("region `{name}`: bad dtype")))?;
        let (off, bytes) = self.region(name, dt)?;
        if dt.bytes(vals.len() as u64) != bytes as u64 {
            return Err(Error::Meta(format!(
                "region `{name}` holds {bytes} bytes, got {} values",
                vals.len()
            )));
        }
        let m = self
            .hbm
            .get_mut(device)
            .ok_or_else(|| Error::Meta(format!("no device {device} (or timing-only)")))?;
        dt.store(vals, &mut m[off..off + bytes]);
        Ok(())
    }

    pub fn read_region(&self, device: usize, name: &str) -> Result<Vec<f32>, Error> {
        let r = self
            .art
            .region(name)
            .ok_or_else(|| Error::Meta(format!("no region `{name}`")))?;
        let dt = Dt::from_name(&r.dtype)
            .ok_or_else(|| Error::Meta(format!("region `{name}`: bad dtype")))?;
        let m = self
            .hbm
            .get(device)
            .ok_or_else(|| Error::Meta(format!("no device {device} (or timing-only)")))?;
        let n: u64 = r.shape.iter().product();
        let mut out = vec![0f32; n as usize];
        dt.load(
            &m[r.offset as usize..(r.offset + r.bytes) as usize],
            &mut out,
        );
        Ok(out)
    }

    /// Writes raw bytes (the region's whole contents) into one device's HBM:
    /// how a host feeds data of any width (an i64 region holds i32 words).
    pub fn write_region_bytes(
        &mut self,
        device: usize,
        name: &str,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let r = self
            .art
            .region(name)
            .ok_or_else(|| Error::Meta(format!("no region `{name}`")))?;
        if bytes.len() as u64 != r.bytes {
            return Err(Error::Meta(format!(
                "region `{name}` holds {} bytes, got {}",
                r.bytes,
                bytes.len()
            )));
        }
        let (off, len) = (r.offset as usize, r.bytes as usize);
        let m = self
            .hbm
            .get_mut(device)
            .ok_or_else(|| Error::Meta(format!("no device {device} (or timing-only)")))?;
        m[off..off + len].copy_from_slice(bytes);
        Ok(())
    }

    pub fn read_region_bytes(&self, device: usize, name: &str) -> Result<Vec<u8>, Error> {
        let r = self
            .art
            .region(name)
            .ok_or_else(|| Error::Meta(format!("no region `{name}`")))?;
        let m = self
            .hbm
            .get(device)
            .ok_or_else(|| Error::Meta(format!("no device {device} (or timing-only)")))?;
        Ok(m[r.offset as usize..(r.offset + r.bytes) as usize].to_vec())
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    fn issue(&self) -> f64 {
        self.art.hw.tile.issue_cycles
    }

    pub fn run(&mut self) -> Result<Report, Error> {
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::with_capacity(self.qs.len());
        for (g, q) in self.qs.iter().enumerate() {
            if !q.cmds.is_empty() {
                heap.push(Reverse((0, g)));
            }
        }
        while let Some(Reverse((_, g))) = heap.pop() {
            let dev = g / self.nq.max(1);
            let ci = self.qs[g].cmds[self.qs[g].pc] as usize;
            let cmd = &self.art.commands[ci];
            self.limits.check(ci, cmd)?;
            let t0 = self.qs[g].time;
            let issue = self.issue();
            let dur = match &cmd.op {
                Op::Wait { sem, n } => {
                    let s = self.sem_index(dev, *sem);
                    let st = &mut self.sems[s];
                    if st.value >= *n as u64 {
                        st.value -= *n as u64;
                        let start = t0.max(st.ready);
                        self.qs[g].time = start;
                        issue
                    } else {
                        st.waiters.push((g, *n as u64));
                        continue;
                    }
                }
                Op::Signal { sem, n } => {
                    let s = self.sem_index(dev, *sem);
                    let done = t0 + issue;
                    let st = &mut self.sems[s];
                    st.value += *n as u64;
                    st.ready = st.ready.max(done);
                    let mut woken = Vec::new();
                    while let Some(&(w, need)) = st.waiters.first() {
                        if st.value < need {
                            break;
                        }
                        st.value -= need;
                        st.waiters.remove(0);
                        woken.push(w);
                    }
                    for w in woken {
                        self.finish(w, done, issue, &mut heap);
                    }
                    issue
                }
                Op::Barrier { id, count } => {
                    let e = self
                        .barriers
                        .entry((dev as u32, *id))
                        .or_insert((Vec::new(), 0.0));
                    e.0.push(g);
                    e.1 = e.1.max(t0);
                    if e.0.len() >= *count as usize {
                        let (who, at) =
                            self.barriers.remove(&(dev as u32, *id)).unwrap_or_default();
                        for w in who {
                            self.finish(w, at, issue, &mut heap);
                        }
                    }
                    continue;
                }
                Op::AllReduce { .. } | Op::AllGather { .. } => {
                    let e = self
                        .collectives
                        .entry(ci as u32)
                        .or_insert((Vec::new(), 0.0));
                    e.0.push(g);
                    e.1 = e.1.max(t0);
                    if e.0.len() >= self.art.devices as usize {
                        let (who, at) = self.collectives.remove(&(ci as u32)).unwrap_or_default();
                        let cost = self.collective(ci)?;
                        for w in who {
                            self.finish(w, at, issue + cost, &mut heap);
                        }
                    }
                    continue;
                }
                _ => issue + self.execute(dev, ci, t0 + issue)?,
            };
            self.finish(g, self.qs[g].time, dur, &mut heap);
        }
        self.deadlock_check()?;
        Ok(self.report())
    }

    /// Completes the current command of queue `g` started at `start`.
    fn finish(
        &mut self,
        g: usize,
        start: f64,
        dur: f64,
        heap: &mut BinaryHeap<Reverse<(u64, usize)>>,
    ) {
        let q = &mut self.qs[g];
        let start = start.max(q.time);
        if self.opts.trace {
            self.events.push(Event {
                index: q.cmds[q.pc],
                device: (g / self.nq.max(1)) as u32,
                start,
                dur,
            });
        }
        q.time = start + dur;
        q.busy += dur;
        q.pc += 1;
        if q.pc < q.cmds.len() {
            heap.push(Reverse((key(q.time), g)));
        }
    }

    fn sem_index(&self, dev: usize, s: Sem) -> usize {
        let hw = &self.art.hw;
        (dev * hw.tiles() as usize + s.tile as usize) * hw.tile.semaphores as usize + s.idx as usize
    }

    fn deadlock_check(&self) -> Result<(), Error> {
        let stuck = self
            .qs
            .iter()
            .filter(|q| q.pc < q.cmds.len())
            .map(|q| (q.cmds[q.pc] as usize, q.q))
            .min();
        if let Some((index, q)) = stuck {
            let what = format!(
                "{} on {q}",
                super::asm::command_text(&self.art.commands[index].op)
            );
            return Err(Error::Deadlock { index, what });
        }
        Ok(())
    }
}

fn sram<'m>(
    srams: &'m mut [Vec<u8>],
    hw: &crate::maia::hw::HwConfig,
    dev: usize,
    tile: usize,
) -> &'m mut Vec<u8> {
    let m = &mut srams[dev * hw.tiles() as usize + tile];
    if m.is_empty() {
        m.resize(hw.tile.sram_bytes as usize, 0);
    }
    m
}

fn mem<'m>(
    hbm: &'m mut [Vec<u8>],
    l2: &'m mut [Vec<u8>],
    srams: &'m mut [Vec<u8>],
    hw: &crate::maia::hw::HwConfig,
    dev: usize,
    space: Space,
) -> &'m mut Vec<u8> {
    match space {
        Space::Hbm => &mut hbm[dev],
        Space::L2(c) => {
            let m = &mut l2[dev * hw.clusters as usize + c as usize];
            if m.is_empty() {
                m.resize(hw.cluster.l2_bytes as usize, 0);
            }
            m
        }
        Space::Sram(t) => sram(srams, hw, dev, t as usize),
    }
}

fn load(mem: &[u8], dt: Dt, off: usize, n: usize, out: &mut Vec<f32>) {
    out.clear();
    out.resize(n, 0.0);
    dt.load(&mem[off..off + dt.bytes(n as u64) as usize], out);
}
