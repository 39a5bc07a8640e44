//! The summary of a run (cycles, engine utilization, bytes per level,
//! roofline) and its Chrome trace.

use super::{EngineUse, QState, Report, Sim};
use crate::maia::isa::*;
use std::fmt::Write;

impl Sim<'_> {
    pub(super) fn report(&self) -> Report {
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
        Op::DmaGather { .. } => "dma.gather",
        Op::DmaScatter { .. } => "dma.scatter",
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
