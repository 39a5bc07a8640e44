//! Data commands: what a DMA, matmul, vector, reduce, convert or collective
//! command does to memory, and how many cycles it takes.

use super::{Sim, load, mem, sram};
use crate::maia::Error;
use crate::maia::dtype::Dt;
use crate::maia::isa::*;

impl Sim<'_> {
    /// Runs a data command (functionally unless timing-only) and returns its
    /// cycles after issue.
    pub(super) fn execute(&mut self, dev: usize, ci: usize, start: f64) -> Result<f64, Error> {
        let art = self.art;
        let hw = &art.hw;
        let cmd = &art.commands[ci];
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
                let moves = [(src.space, rb, true), (dst.space, wb, false)];
                let end = self.transfer(dev, cmd.queue.engine, start, rb.max(wb), &moves);
                if !self.opts.timing_only {
                    self.dma_data(dev, ci)?;
                }
                Ok(end - start)
            }
            Op::DmaGather {
                src,
                dst,
                idx,
                dt,
                idx_dt,
                rows,
                cols,
                ..
            } => {
                // The engine reads the indices, then the rows they name.
                let b = dt.bytes(*rows as u64 * *cols as u64);
                let ib = idx_dt.bytes(*rows as u64);
                let moves = [
                    (idx.space, ib, true),
                    (src.space, b, true),
                    (dst.space, b, false),
                ];
                let end = self.transfer(dev, cmd.queue.engine, start, b + ib, &moves);
                if !self.opts.timing_only {
                    self.gather_data(dev, ci)?;
                }
                Ok(end - start)
            }
            Op::DmaScatter {
                src,
                dst,
                idx,
                dt,
                idx_dt,
                red,
                rows,
                cols,
                ..
            } => {
                // The engine reads the indices, then the source rows, and
                // writes them; a combining scatter also reads the rows it
                // overwrites.
                let b = dt.bytes(*rows as u64 * *cols as u64);
                let ib = idx_dt.bytes(*rows as u64);
                let rmw = *red != SRed::None;
                let moves = [
                    (idx.space, ib, true),
                    (src.space, b, true),
                    (dst.space, if rmw { b } else { 0 }, true),
                    (dst.space, b, false),
                ];
                let eb = ib + b + if rmw { 2 * b } else { b };
                let end = self.transfer(dev, cmd.queue.engine, start, eb, &moves);
                if !self.opts.timing_only {
                    self.scatter_data(dev, ci)?;
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
                if !self.opts.timing_only && dt.is_int() {
                    let mem = sram(&mut self.sram, hw, dev, tile);
                    vector_int(mem, *op, *dt, *rows as usize, *cols as usize, *dst, *a, b);
                } else if !self.opts.timing_only {
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
                            VOp::Pow => x.powf(y),
                            VOp::Lt => f32::from(x < y),
                            VOp::Le => f32::from(x <= y),
                            VOp::Gt => f32::from(x > y),
                            VOp::Ge => f32::from(x >= y),
                            VOp::Eq => f32::from(x == y),
                            // A select, not a product: NaN and infinities in
                            // the unselected lanes do not leak.
                            VOp::Sel => {
                                if x != 0.0 {
                                    y
                                } else {
                                    0.0
                                }
                            }
                            VOp::Log => x.ln(),
                            VOp::Erf => erf(x as f64) as f32,
                            VOp::Sigmoid => (1.0 / (1.0 + (-x as f64).exp())) as f32,
                            VOp::Abs => x.abs(),
                            VOp::Floor => x.floor(),
                            VOp::Ceil => x.ceil(),
                            VOp::Sin => x.sin(),
                            VOp::Cos => x.cos(),
                            VOp::Round => x.round_ties_even(),
                            // Rust's `%` on floats is C's fmod (exact).
                            VOp::Mod => x % y,
                            VOp::Asin => x.asin(),
                            VOp::Acos => x.acos(),
                            VOp::Atan => x.atan(),
                            VOp::Asinh => x.asinh(),
                            VOp::Acosh => x.acosh(),
                            VOp::Atanh => x.atanh(),
                            // Integer-only: rejected at load for float dtypes.
                            VOp::Shl | VOp::Shr | VOp::And | VOp::Or | VOp::Xor => x,
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

    /// Books the bytes of one DMA on the levels they cross and returns
    /// when it ends: `engine_bytes` at the engine's bandwidth, but no
    /// earlier than each shared level (HBM, the L2 port) has moved every
    /// byte reserved on it.
    fn transfer(
        &mut self,
        dev: usize,
        engine: Engine,
        start: f64,
        engine_bytes: u64,
        moves: &[(Space, u64, bool)],
    ) -> f64 {
        let art = self.art;
        let hw = &art.hw;
        let bw = match engine {
            Engine::ClusterDma => hw.cluster.dma.bandwidth,
            _ => hw.tile.dma.bandwidth,
        } / hw.clock_hz;
        let mut end = start + engine_bytes as f64 / bw;
        for &(space, b, read) in moves {
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
        end
    }

    fn gather_data(&mut self, dev: usize, ci: usize) -> Result<(), Error> {
        let Op::DmaGather {
            src,
            dst,
            idx,
            dt,
            idx_dt,
            rows,
            cols,
            src_stride,
            dst_stride,
            idx_stride,
            bound,
        } = self.art.commands[ci].op
        else {
            return Ok(());
        };
        let art = self.art;
        let hw = &art.hw;
        let ib = idx_dt.bytes(1) as usize;
        let row = dt.bytes(cols as u64) as usize;
        let mut raw = Vec::with_capacity(row);
        for r in 0..rows as u64 {
            let io = (idx.offset + idx_dt.bytes(r * idx_stride as u64)) as usize;
            let mut v = [0i64];
            let _ = idx_dt.load_int(
                &mem(
                    &mut self.hbm,
                    &mut self.l2,
                    &mut self.sram,
                    hw,
                    dev,
                    idx.space,
                )[io..io + ib],
                &mut v,
            );
            let b = bound as i64;
            let i = if v[0] < 0 { v[0] + b } else { v[0] };
            if !(0..b).contains(&i) {
                return Err(Error::OutOfRange {
                    index: ci,
                    why: format!(
                        "dma.gather index {} at row {r} is outside [-{b}, {b})",
                        v[0]
                    ),
                });
            }
            let so = (src.offset + dt.bytes(i as u64 * src_stride as u64)) as usize;
            raw.clear();
            raw.extend_from_slice(
                &mem(
                    &mut self.hbm,
                    &mut self.l2,
                    &mut self.sram,
                    hw,
                    dev,
                    src.space,
                )[so..so + row],
            );
            let d_o = (dst.offset + dt.bytes(r * dst_stride as u64)) as usize;
            mem(
                &mut self.hbm,
                &mut self.l2,
                &mut self.sram,
                hw,
                dev,
                dst.space,
            )[d_o..d_o + row]
                .copy_from_slice(&raw);
        }
        Ok(())
    }

    fn scatter_data(&mut self, dev: usize, ci: usize) -> Result<(), Error> {
        let Op::DmaScatter {
            src,
            dst,
            idx,
            dt,
            idx_dt,
            red,
            rows,
            cols,
            src_stride,
            dst_stride,
            idx_stride,
            bound,
        } = self.art.commands[ci].op
        else {
            return Ok(());
        };
        let hw = &self.art.hw;
        let ib = idx_dt.bytes(1) as usize;
        let row = dt.bytes(cols as u64) as usize;
        let n = cols as usize;
        let mut raw = Vec::with_capacity(row);
        let (mut fa, mut fb) = (vec![0f32; n], vec![0f32; n]);
        let (mut ia, mut ib_) = (vec![0i64; n], vec![0i64; n]);
        for r in 0..rows as u64 {
            let io = (idx.offset + idx_dt.bytes(r * idx_stride as u64)) as usize;
            let mut v = [0i64];
            let m = mem(
                &mut self.hbm,
                &mut self.l2,
                &mut self.sram,
                hw,
                dev,
                idx.space,
            );
            let _ = idx_dt.load_int(&m[io..io + ib], &mut v);
            let b = bound as i64;
            let i = if v[0] < 0 { v[0] + b } else { v[0] };
            if !(0..b).contains(&i) {
                return Err(Error::OutOfRange {
                    index: ci,
                    why: format!(
                        "dma.scatter index {} at row {r} is outside [-{b}, {b})",
                        v[0]
                    ),
                });
            }
            let so = (src.offset + dt.bytes(r * src_stride as u64)) as usize;
            let m = mem(
                &mut self.hbm,
                &mut self.l2,
                &mut self.sram,
                hw,
                dev,
                src.space,
            );
            raw.clear();
            raw.extend_from_slice(&m[so..so + row]);
            let d_o = (dst.offset + dt.bytes(i as u64 * dst_stride as u64)) as usize;
            let m = mem(
                &mut self.hbm,
                &mut self.l2,
                &mut self.sram,
                hw,
                dev,
                dst.space,
            );
            let out = &mut m[d_o..d_o + row];
            if red == SRed::None {
                out.copy_from_slice(&raw);
            } else if dt.is_int() {
                // Exact, wrapping at the dtype's width.
                let _ = dt.load_int(out, &mut ia);
                let _ = dt.load_int(&raw, &mut ib_);
                for (x, &y) in ia.iter_mut().zip(&ib_) {
                    *x = match red {
                        SRed::Add => x.wrapping_add(y),
                        SRed::Mul => x.wrapping_mul(y),
                        SRed::Max => (*x).max(y),
                        SRed::Min => (*x).min(y),
                        SRed::None => y,
                    };
                }
                let _ = dt.store_int(&ia, out);
            } else {
                // In f32, rounded to dt once per update.
                dt.load(out, &mut fa);
                dt.load(&raw, &mut fb);
                for (x, &y) in fa.iter_mut().zip(&fb) {
                    *x = match red {
                        SRed::Add => *x + y,
                        SRed::Mul => *x * y,
                        SRed::Max => x.max(y),
                        SRed::Min => x.min(y),
                        SRed::None => y,
                    };
                }
                dt.store(&fa, out);
            }
        }
        Ok(())
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
            saturate,
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
            } else if src_dt.is_int() && dst_dt.is_int() {
                // Integer to integer is exact: extend, then wrap.
                let mut v = vec![0i64; cols];
                let _ = src_dt.load_int(&raw, &mut v);
                let _ = dst_dt.store_int(&v, &mut m[d_o..d_o + dl]);
            } else {
                buf.resize(cols, 0.0);
                src_dt.load(&raw, &mut buf);
                dst_dt.store_with(&buf, &mut m[d_o..d_o + dl], *saturate);
            }
        }
        self.scratch[0] = buf;
        Ok(())
    }

    /// Performs a collective on every device and returns its cycles.
    pub(super) fn collective(&mut self, ci: usize) -> Result<f64, Error> {
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
}

/// An integer vector op: exact, wrapping to the dtype's width. The
/// immediate operand is an f32 and is used truncated to an integer.
/// Checked at load: `op` is one of `VOp::integer`.
#[allow(clippy::too_many_arguments)]
fn vector_int(
    mem: &mut [u8],
    op: VOp,
    dt: Dt,
    rows: usize,
    cols: usize,
    dst: u32,
    a: u32,
    b: &VSrc,
) {
    let n = rows * cols;
    let read = |off: u32, k: usize| -> Vec<i64> {
        let o = off as usize;
        let mut v = vec![0i64; k];
        let _ = dt.load_int(&mem[o..o + dt.bytes(k as u64) as usize], &mut v);
        v
    };
    let xa = read(a, n);
    let xb = match b {
        VSrc::Full(x) => read(*x, n),
        VSrc::Row(x) => read(*x, rows),
        VSrc::Col(x) => read(*x, cols),
        _ => Vec::new(),
    };
    let out: Vec<i64> = xa
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = match b {
                VSrc::None => 0,
                VSrc::Imm(v) => *v as i64,
                VSrc::Full(_) => xb[i],
                VSrc::Row(_) => xb[i / cols.max(1)],
                VSrc::Col(_) => xb[i % cols.max(1)],
            };
            match op {
                VOp::Add => x.wrapping_add(y),
                VOp::Sub => x.wrapping_sub(y),
                VOp::Mul => x.wrapping_mul(y),
                VOp::Div => x.checked_div(y).unwrap_or(0),
                VOp::Max => x.max(y),
                VOp::Min => x.min(y),
                VOp::Lt => i64::from(x < y),
                VOp::Le => i64::from(x <= y),
                VOp::Gt => i64::from(x > y),
                VOp::Ge => i64::from(x >= y),
                VOp::Eq => i64::from(x == y),
                VOp::Sel => {
                    if x != 0 {
                        y
                    } else {
                        0
                    }
                }
                VOp::Neg => x.wrapping_neg(),
                VOp::Abs => x.wrapping_abs(),
                VOp::Relu => x.max(0),
                // A shift by a negative amount or by the lane width or
                // more empties the value (sign fill for shr of a negative).
                VOp::Shl if (0..64).contains(&y) => x.wrapping_shl(y as u32),
                VOp::Shr if (0..64).contains(&y) => x >> y,
                VOp::Shl => 0,
                VOp::Shr => {
                    if x < 0 {
                        -1
                    } else {
                        0
                    }
                }
                VOp::And => x & y,
                VOp::Or => x | y,
                VOp::Xor => x ^ y,
                _ => x,
            }
        })
        .collect();
    let d = dst as usize;
    let _ = dt.store_int(&out, &mut mem[d..d + dt.bytes(n as u64) as usize]);
}

/// The error function to f64 accuracy (the vector unit's `erf`; std has
/// none): its Maclaurin series converges fast enough below 4.5, and beyond
/// that erf rounds to ±1 in every dtype the unit computes in.
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() >= 4.5 {
        return x.signum();
    }
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let x2 = x * x;
    let mut term = x;
    let mut sum = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x2 / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_matches_known_values() {
        // Values of erf from Abramowitz & Stegun table 7.1 (10 digits).
        for (x, want) in [
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (3.0, 0.999_977_909_5),
        ] {
            assert!((super::erf(x) - want).abs() < 1e-9, "erf({x})");
            assert!((super::erf(-x) + want).abs() < 1e-9, "erf(-{x})");
        }
        assert_eq!(super::erf(0.0), 0.0);
        assert_eq!(super::erf(10.0), 1.0);
    }
}
