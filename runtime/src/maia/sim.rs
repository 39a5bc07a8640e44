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
//! Values: compute in f32 (the tensor unit accumulates in f32), round to the
//! storage dtype on every write (`dtype::Dt::store`).

use super::Error;
use super::artifact::{Artifact, Limits};
use super::dtype::Dt;
use super::isa::*;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write;

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

    /// Runs a data command (functionally unless timing-only) and returns its
    /// cycles after issue.
    fn execute(&mut self, dev: usize, ci: usize, start: f64) -> Result<f64, Error> {
        let hw = &self.art.hw;
        let cmd = &self.art.commands[ci];
        let tile = cmd.queue.unit as usize;
        match &cmd.op {
            Op::Dma {
                src,
                dst,
                src_dt,
                dst_dt,
                rows,
                cols,
                ..
            } => {
                let n = *rows as u64 * *cols as u64;
                let (rb, wb) = (src_dt.bytes(n), dst_dt.bytes(n));
                let bw = match cmd.queue.engine {
                    Engine::ClusterDma => hw.cluster.dma.bandwidth,
                    _ => hw.tile.dma.bandwidth,
                } / hw.clock_hz;
                let mut end = start + rb.max(wb) as f64 / bw;
                for (space, b, read) in [(src.space, rb, true), (dst.space, wb, false)] {
                    let t = &mut self.traffic;
                    let free = match space {
                        Space::Hbm => {
                            if read {
                                t.hbm_read += b
                            } else {
                                t.hbm_write += b
                            }
                            Some((&mut self.hbm_free[dev], hw.hbm.bandwidth))
                        }
                        Space::L2(c) => {
                            if read {
                                t.l2_read += b
                            } else {
                                t.l2_write += b
                            }
                            let port = hw.cluster.dma.bandwidth * hw.cluster.dma.engines as f64;
                            Some((
                                &mut self.l2_free[dev * hw.clusters as usize + c as usize],
                                port,
                            ))
                        }
                        Space::Sram(_) => {
                            if read {
                                t.sram_read += b
                            } else {
                                t.sram_write += b
                            }
                            None
                        }
                    };
                    // A shared level moves bytes at its own rate for everyone:
                    // this transfer ends no earlier than the level drains.
                    if let Some((f, level_bw)) = free {
                        *f = f.max(start) + b as f64 / (level_bw / hw.clock_hz);
                        end = end.max(*f);
                    }
                }
                if !self.opts.timing_only {
                    self.dma_data(dev, ci)?;
                }
                Ok(end - start)
            }
            Op::Matmul {
                dt,
                m,
                n,
                k,
                a,
                b,
                c,
                acc,
            } => {
                let fpc = hw
                    .tensor_flops_per_cycle(*dt)
                    .ok_or_else(|| Error::Unsupported {
                        index: ci,
                        why: format!(
                            "the tensor unit does not accept {dt} (accepts {})",
                            hw.tile
                                .tensor
                                .rate
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })?;
                let [tm, tn, tk] = hw.tile.tensor.shape.map(|x| x as u64);
                let pad = |x: u32, t: u64| (x as u64).div_ceil(t) * t;
                let padded = 2.0 * (pad(*m, tm) * pad(*n, tn) * pad(*k, tk)) as f64;
                let useful = 2.0 * *m as f64 * *n as f64 * *k as f64;
                *self.flops_by_dt.entry(dt.name()).or_insert(0.0) += useful;
                let (m, n, k) = (*m as usize, *n as usize, *k as usize);
                self.traffic.sram_read +=
                    dt.bytes((m * k + n * k) as u64) + if *acc { 4 * (m * n) as u64 } else { 0 };
                self.traffic.sram_write += 4 * (m * n) as u64;
                if !self.opts.timing_only {
                    let (a, b, c, acc, dt) = (*a as usize, *b as usize, *c as usize, *acc, *dt);
                    let mem = sram(&mut self.sram, hw, dev, tile);
                    let [sa, sb, sc] = &mut self.scratch;
                    load(mem, dt, a, m * k, sa);
                    load(mem, dt, b, n * k, sb);
                    load(mem, Dt::F32, c, m * n, sc);
                    for i in 0..m {
                        for j in 0..n {
                            let ar = &sa[i * k..(i + 1) * k];
                            let br = &sb[j * k..(j + 1) * k];
                            let dot: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
                            sc[i * n + j] = if acc { sc[i * n + j] + dot } else { dot };
                        }
                    }
                    Dt::F32.store(sc, &mut mem[c..c + 4 * m * n]);
                }
                Ok(padded / fpc)
            }
            Op::Vector {
                op,
                dt,
                rows,
                cols,
                dst,
                a,
                b,
            } => {
                let epc = self.vector_rate(ci, *dt)?;
                let n = *rows as usize * *cols as usize;
                self.traffic.sram_read +=
                    dt.bytes(n as u64) * if matches!(b, VSrc::Full(_)) { 2 } else { 1 };
                self.traffic.sram_write += dt.bytes(n as u64);
                if !self.opts.timing_only {
                    let (rows, cols) = (*rows as usize, *cols as usize);
                    let mem = sram(&mut self.sram, hw, dev, tile);
                    let [sa, sb, _] = &mut self.scratch;
                    load(mem, *dt, *a as usize, n, sa);
                    let bval = |sb: &[f32], i: usize| -> f32 {
                        match b {
                            VSrc::None => 0.0,
                            VSrc::Imm(x) => *x,
                            VSrc::Full(_) => sb[i],
                            VSrc::Row(_) => sb[i / cols.max(1)],
                            VSrc::Col(_) => sb[i % cols.max(1)],
                        }
                    };
                    match b {
                        VSrc::Full(x) => load(mem, *dt, *x as usize, n, sb),
                        VSrc::Row(x) => load(mem, *dt, *x as usize, rows, sb),
                        VSrc::Col(x) => load(mem, *dt, *x as usize, cols, sb),
                        _ => {}
                    }
                    for (i, v) in sa.iter_mut().enumerate() {
                        let (x, y) = (*v, bval(sb, i));
                        *v = match op {
                            VOp::Add => x + y,
                            VOp::Sub => x - y,
                            VOp::Mul => x * y,
                            VOp::Div => x / y,
                            VOp::Max => x.max(y),
                            VOp::Min => x.min(y),
                            VOp::Copy => x,
                            VOp::Neg => -x,
                            VOp::Exp => x.exp(),
                            VOp::Recip => 1.0 / x,
                            VOp::Sqrt => x.sqrt(),
                            VOp::Rsqrt => 1.0 / x.sqrt(),
                            VOp::Tanh => x.tanh(),
                            VOp::Relu => x.max(0.0),
                        };
                    }
                    let d = *dst as usize;
                    dt.store(sa, &mut mem[d..d + dt.bytes(n as u64) as usize]);
                }
                let mult = if op.transcendental() {
                    hw.tile.vector.transcendental_cycles
                } else {
                    1.0
                };
                Ok(n as f64 / epc * mult)
            }
            Op::Reduce {
                op,
                dt,
                rows,
                cols,
                dst,
                src,
            } => {
                let epc = self.vector_rate(ci, *dt)?;
                let (rows, cols) = (*rows as usize, *cols as usize);
                self.traffic.sram_read += dt.bytes((rows * cols) as u64);
                self.traffic.sram_write += dt.bytes(rows as u64);
                if !self.opts.timing_only {
                    let mem = sram(&mut self.sram, hw, dev, tile);
                    let [sa, sb, _] = &mut self.scratch;
                    load(mem, *dt, *src as usize, rows * cols, sa);
                    sb.clear();
                    for r in 0..rows {
                        let row = &sa[r * cols..(r + 1) * cols];
                        sb.push(match op {
                            ROp::Sum => row.iter().sum(),
                            ROp::Max => row.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                        });
                    }
                    let d = *dst as usize;
                    dt.store(sb, &mut mem[d..d + dt.bytes(rows as u64) as usize]);
                }
                Ok((rows * cols) as f64 / epc)
            }
            Op::Convert {
                src_dt,
                dst_dt,
                n,
                dst,
                src,
            } => {
                let epc = self
                    .vector_rate(ci, *src_dt)
                    .or_else(|_| self.vector_rate(ci, *dst_dt))?;
                let n = *n as usize;
                self.traffic.sram_read += src_dt.bytes(n as u64);
                self.traffic.sram_write += dst_dt.bytes(n as u64);
                if !self.opts.timing_only {
                    let mem = sram(&mut self.sram, hw, dev, tile);
                    let [sa, _, _] = &mut self.scratch;
                    load(mem, *src_dt, *src as usize, n, sa);
                    let d = *dst as usize;
                    dst_dt.store(sa, &mut mem[d..d + dst_dt.bytes(n as u64) as usize]);
                }
                Ok(n as f64 / epc)
            }
            _ => Ok(0.0),
        }
    }

    fn vector_rate(&self, ci: usize, dt: Dt) -> Result<f64, Error> {
        self.art
            .hw
            .vector_elems_per_cycle(dt)
            .ok_or_else(|| Error::Unsupported {
                index: ci,
                why: format!(
                    "the vector unit does not compute in {dt} (computes in {})",
                    self.art.hw.tile.vector.dtypes.join(", ")
                ),
            })
    }

    fn dma_data(&mut self, dev: usize, ci: usize) -> Result<(), Error> {
        let Op::Dma {
            src,
            dst,
            src_dt,
            dst_dt,
            rows,
            cols,
            src_stride,
            dst_stride,
        } = &self.art.commands[ci].op
        else {
            return Ok(());
        };
        let hw = &self.art.hw;
        let cols = *cols as usize;
        let mut buf = std::mem::take(&mut self.scratch[0]);
        let mut raw = Vec::new();
        for r in 0..*rows as u64 {
            let so = (src.offset + src_dt.bytes(r * *src_stride as u64)) as usize;
            let sl = src_dt.bytes(cols as u64) as usize;
            let m = mem(
                &mut self.hbm,
                &mut self.l2,
                &mut self.sram,
                hw,
                dev,
                src.space,
            );
            raw.clear();
            raw.extend_from_slice(&m[so..so + sl]);
            let d_o = (dst.offset + dst_dt.bytes(r * *dst_stride as u64)) as usize;
            let dl = dst_dt.bytes(cols as u64) as usize;
            let m = mem(
                &mut self.hbm,
                &mut self.l2,
                &mut self.sram,
                hw,
                dev,
                dst.space,
            );
            if src_dt == dst_dt {
                m[d_o..d_o + dl].copy_from_slice(&raw);
            } else {
                buf.resize(cols, 0.0);
                src_dt.load(&raw, &mut buf);
                dst_dt.store(&buf, &mut m[d_o..d_o + dl]);
            }
        }
        self.scratch[0] = buf;
        Ok(())
    }

    /// Performs a collective on every device and returns its cycles.
    fn collective(&mut self, ci: usize) -> Result<f64, Error> {
        let hw = &self.art.hw;
        let d = self.art.devices as u64;
        let (dt, n) = match &self.art.commands[ci].op {
            Op::AllReduce { dt, n, .. } | Op::AllGather { dt, n, .. } => (*dt, *n as u64),
            _ => return Ok(0.0),
        };
        if d <= 1 {
            return Ok(0.0);
        }
        let bw = hw.links.count as f64 * hw.links.bandwidth / hw.clock_hz;
        let lat = hw.links.latency * hw.clock_hz;
        let bytes = dt.bytes(n) as f64;
        let steps = (d - 1) as f64;
        let (moved, cycles) = match &self.art.commands[ci].op {
            // Ring all-reduce: reduce-scatter then all-gather, 2(d-1) steps of bytes/d.
            Op::AllReduce { .. } => (
                2.0 * steps / d as f64 * bytes,
                2.0 * steps * (bytes / d as f64 / bw + lat),
            ),
            _ => (steps * bytes, steps * (bytes / bw + lat)),
        };
        self.traffic.link += (moved * d as f64) as u64;
        if !self.opts.timing_only {
            match self.art.commands[ci].op {
                Op::AllReduce { addr, .. } => {
                    let (o, l) = (addr as usize, dt.bytes(n) as usize);
                    let mut sum = vec![0f32; n as usize];
                    let mut tmp = vec![0f32; n as usize];
                    for m in &self.hbm {
                        dt.load(&m[o..o + l], &mut tmp);
                        sum.iter_mut().zip(&tmp).for_each(|(s, t)| *s += t);
                    }
                    for m in &mut self.hbm {
                        dt.store(&sum, &mut m[o..o + l]);
                    }
                }
                Op::AllGather { src, dst, .. } => {
                    let l = dt.bytes(n) as usize;
                    let parts: Vec<Vec<u8>> = self
                        .hbm
                        .iter()
                        .map(|m| m[src as usize..src as usize + l].to_vec())
                        .collect();
                    for m in &mut self.hbm {
                        for (i, p) in parts.iter().enumerate() {
                            let o = dst as usize + i * l;
                            m[o..o + l].copy_from_slice(p);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(cycles)
    }

    fn report(&self) -> Report {
        let hw = &self.art.hw;
        let cycles = self.qs.iter().map(|q| q.time).fold(0.0, f64::max);
        let seconds = cycles / hw.clock_hz;
        let mut engines = Vec::new();
        for e in Engine::ALL {
            let qs: Vec<&QState> = self.qs.iter().filter(|q| q.q.engine == e).collect();
            if qs.is_empty() {
                continue;
            }
            let busy: f64 = qs.iter().map(|q| q.busy).sum();
            let util = if cycles > 0.0 {
                busy / (qs.len() as f64 * cycles)
            } else {
                0.0
            };
            engines.push(EngineUse {
                engine: e.name(),
                queues: qs.len(),
                busy_cycles: busy,
                utilization: util,
            });
        }
        let flops: f64 = self.flops_by_dt.values().sum();
        let main_dt = self
            .flops_by_dt
            .iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(d, _)| *d);
        let peak = main_dt
            .and_then(|d| hw.tile.tensor.rate.get(d))
            .map(|r| r * hw.tiles() as f64 * self.art.devices as f64)
            .unwrap_or(0.0);
        let hbm_bytes = (self.traffic.hbm_read + self.traffic.hbm_write) as f64;
        let roof = (if peak > 0.0 { flops / peak } else { 0.0 })
            .max(hbm_bytes / (hw.hbm.bandwidth * self.art.devices as f64));
        Report {
            commands: self.art.commands.len() * self.art.devices as usize,
            devices: self.art.devices,
            cycles,
            seconds,
            engines,
            bytes: self.traffic.clone(),
            flops,
            achieved_flops_per_s: if seconds > 0.0 { flops / seconds } else { 0.0 },
            peak_flops_per_s: peak,
            roofline_seconds: roof,
            roofline_fraction: if seconds > 0.0 { roof / seconds } else { 0.0 },
        }
    }

    /// Chrome trace JSON (open in Perfetto or chrome://tracing): one process
    /// per device tile (cluster DMA: its own), one thread per engine queue.
    pub fn chrome_trace(&self) -> String {
        let hw = &self.art.hw;
        let us = 1e6 / hw.clock_hz;
        let mut s = String::from("{\"traceEvents\":[\n");
        let mut first = true;
        let pid_of = |dev: u32, q: Queue| -> u64 {
            let base = dev as u64 * 100_000;
            match q.engine {
                Engine::ClusterDma => base + 10_000 + q.unit as u64,
                _ => base + q.unit as u64,
            }
        };
        let tid_of = |q: Queue| (q.engine as u64) * 16 + q.lane as u64;
        let mut named = std::collections::BTreeSet::new();
        for (g, q) in self.qs.iter().enumerate() {
            let dev = (g / self.nq.max(1)) as u32;
            let pid = pid_of(dev, q.q);
            let pname = match q.q.engine {
                Engine::ClusterDma => format!("dev{dev} cluster {}", q.q.unit),
                _ => format!("dev{dev} tile {}", q.q.unit),
            };
            if named.insert(pid) {
                sep(&mut s, &mut first);
                let _ = write!(
                    s,
                    "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"args\":{{\"name\":\"{pname}\"}}}}"
                );
            }
            sep(&mut s, &mut first);
            let _ = write!(
                s,
                "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{},\"args\":{{\"name\":\"{}\"}}}}",
                tid_of(q.q),
                q.q
            );
        }
        for e in &self.events {
            let c = &self.art.commands[e.index as usize];
            let name = match &c.op {
                Op::Vector { op, .. } => op.name(),
                Op::Reduce { op, .. } => op.name(),
                o => op_name(o),
            };
            sep(&mut s, &mut first);
            let _ = write!(
                s,
                "{{\"name\":\"{name}\",\"ph\":\"X\",\"ts\":{:.4},\"dur\":{:.4},\"pid\":{},\"tid\":{},\"args\":{{\"index\":{}}}}}",
                e.start * us,
                e.dur * us,
                pid_of(e.device, c.queue),
                tid_of(c.queue),
                e.index
            );
        }
        s.push_str("\n]}\n");
        s
    }
}

fn sep(s: &mut String, first: &mut bool) {
    if !*first {
        s.push_str(",\n");
    }
    *first = false;
}

pub fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Dma { .. } => "dma",
        Op::Matmul { .. } => "matmul",
        Op::Vector { op, .. } => op.name(),
        Op::Reduce { .. } => "reduce",
        Op::Convert { .. } => "cvt",
        Op::Signal { .. } => "signal",
        Op::Wait { .. } => "wait",
        Op::Barrier { .. } => "barrier",
        Op::AllReduce { .. } => "allreduce",
        Op::AllGather { .. } => "allgather",
    }
}

fn sram<'m>(
    srams: &'m mut [Vec<u8>],
    hw: &super::hw::HwConfig,
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
    hw: &super::hw::HwConfig,
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

/// A synthetic program of about `n` commands for measuring the simulator's
/// own speed: on every tile, DMA loads and signals, the tensor unit waits
/// and multiplies, the vector unit waits and adds, in rounds.
pub fn bench_program(hw: &super::hw::HwConfig, n: usize) -> Artifact {
    let tiles = hw.tiles() as u16;
    let [m, nn, k] = hw.tile.tensor.shape;
    let dt = ["bf16", "f32"]
        .into_iter()
        .chain(hw.tile.tensor.rate.keys().map(|s| s.as_str()))
        .find_map(|d| {
            hw.tile
                .tensor
                .rate
                .contains_key(d)
                .then(|| Dt::from_name(d))
                .flatten()
        });
    let dt = dt.unwrap_or(Dt::F32);
    let q = |engine, unit| Queue {
        engine,
        unit,
        lane: 0,
    };
    let mut commands = Vec::with_capacity(n + 8);
    while commands.len() < n {
        for t in 0..tiles {
            let s0 = Sem { tile: t, idx: 0 };
            let s1 = Sem { tile: t, idx: 1 };
            let dma = Op::Dma {
                src: Loc {
                    space: Space::Hbm,
                    offset: 0,
                },
                dst: Loc {
                    space: Space::Sram(t),
                    offset: 0,
                },
                src_dt: dt,
                dst_dt: dt,
                rows: m,
                cols: k,
                src_stride: k,
                dst_stride: k,
            };
            let mm = Op::Matmul {
                dt,
                m,
                n: nn,
                k,
                a: 0,
                b: 0,
                c: 0,
                acc: true,
            };
            let v = Op::Vector {
                op: VOp::Add,
                dt: Dt::F32,
                rows: 1,
                cols: m,
                dst: 0,
                a: 0,
                b: VSrc::Imm(1.0),
            };
            for (e, op) in [
                (Engine::Dma, dma),
                (Engine::Dma, Op::Signal { sem: s0, n: 1 }),
                (Engine::Tensor, Op::Wait { sem: s0, n: 1 }),
                (Engine::Tensor, mm),
                (Engine::Tensor, Op::Signal { sem: s1, n: 1 }),
                (Engine::Vector, Op::Wait { sem: s1, n: 1 }),
                (Engine::Vector, v),
            ] {
                commands.push(Command { queue: q(e, t), op });
            }
        }
    }
    let bytes = dt.bytes(m as u64 * k as u64);
    let region = super::artifact::Region {
        name: "src".into(),
        kind: super::artifact::RegionKind::Input,
        offset: 0,
        bytes,
        dtype: dt.name().into(),
        shape: vec![m as u64, k as u64],
        init: false,
        data: None,
    };
    Artifact {
        devices: 1,
        hw: hw.clone(),
        regions: vec![region],
        commands,
    }
}
