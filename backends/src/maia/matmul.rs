//! Matmuls on the tensor unit: MatMul, Gemm and FusedMatMul (bias,
//! activation and residual fused into the vector-unit epilogue).
//!
//! The unit computes C = A · Bᵀ with B stored n × k, so B operands are put
//! in that layout first: weights at compile time (transposed and rounded
//! to the unit's dtype once), activations by a strided-DMA phase. f32
//! graphs on a unit without an f32 rate run in bf16, or, with
//! `Precision::F32`, as hi·hi + hi·lo + lo·hi of bf16 parts.

use super::lower::{Lw, TRef, unsup};
use super::movement::{self, View, strides};
use super::pipeline::{self, KStep, MmTile, Xfer};
use super::program::Mem;
use super::tiling::{self, MatmulTiling};
use super::unary::{self, Block};
use super::{Error, Precision, elementwise};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::{Dt, Op as Cmd, VOp, VSrc};
use std::collections::HashMap;

/// One epilogue step after the accumulation.
#[derive(Clone, Debug)]
pub enum Epi {
    Scale(f32),
    /// One value per output column (n elements).
    ColBias(TRef),
    /// One value per output row (m elements, per batch job).
    RowBias(TRef),
    /// A full m × n addend (per batch job, leading dim n).
    Residual(TRef),
    Act(Op, Option<Node>),
}

/// One independent product: element offsets of A, B, the output and the
/// per-job epilogue operands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Job {
    pub a: u64,
    pub b: u64,
    pub out: u64,
    pub res: u64,
    pub row: u64,
}

pub struct Spec {
    pub m: u64,
    /// Columns of each output (the first and every sibling's).
    pub n: u64,
    pub k: u64,
    /// A parts, each [.., m, k] in the unit's dtype.
    pub a: Vec<TRef>,
    /// B parts, each [.., n, k].
    pub b: Vec<TRef>,
    pub out: TRef,
    pub jobs: Vec<Job>,
    pub epi: Vec<Epi>,
    /// More products of the same A (same m, n, k and jobs) computed in the
    /// same phase: the A block a tile or cluster holds serves them all.
    pub siblings: Vec<Seg>,
}

/// One output of a phase's products: its B, output buffer and epilogue.
#[derive(Clone, Debug)]
pub struct Seg {
    pub b: Vec<TRef>,
    pub out: TRef,
    pub epi: Vec<Epi>,
}

/// The tensor unit's dtype for this matmul and whether operands are split.
pub fn unit_dtype(lw: &Lw) -> Result<(Dt, bool), Error> {
    let rate = &lw.p.hw.tile.tensor.rate;
    if lw.opts.precision == Precision::F32 && rate.contains_key("f32") {
        return Ok((Dt::F32, false));
    }
    if rate.contains_key("bf16") {
        return Ok((Dt::BF16, lw.opts.precision == Precision::F32));
    }
    if rate.contains_key("f32") {
        return Ok((Dt::F32, false));
    }
    Err(unsup(
        "MatMul",
        "the tensor unit takes neither bf16 nor f32",
    ))
}

fn gdt_of(dt: Dt) -> DType {
    if dt == Dt::F32 {
        DType::F32
    } else {
        DType::BF16
    }
}

/// A compile-time tensor [.., rows, k] (already in n×k / m×k layout) as
/// the unit's parts.
pub fn const_parts(
    lw: &mut Lw,
    name: &str,
    t: &Tensor,
    dt: Dt,
    split: bool,
) -> Result<Vec<TRef>, Error> {
    let v = t
        .to_f64_vec()
        .ok_or_else(|| unsup("MatMul", "non-float weights"))?;
    let gd = gdt_of(dt);
    let hi = Tensor::from_f64(gd, t.shape.clone(), v.clone());
    let mut parts = vec![lw.weight(&format!("{name}.hi"), &hi)?];
    if split {
        let lo: Vec<f64> = v
            .iter()
            .zip(hi.to_f64_vec().unwrap_or_default())
            .map(|(x, h)| x - h)
            .collect();
        let lo = Tensor::from_f64(gd, t.shape.clone(), lo);
        parts.push(lw.weight(&format!("{name}.lo"), &lo)?);
    }
    Ok(parts)
}

/// A run-time tensor given as a strided view with `shape` ([.., rows, k])
/// copied into the unit's layout and dtype, split if asked.
pub fn dyn_parts(
    lw: &mut Lw,
    x: &TRef,
    view: &View,
    shape: &[usize],
    dt: Dt,
    split: bool,
) -> Result<Vec<TRef>, Error> {
    // A contiguous operand is read as it is: the load DMA converts it.
    let contiguous = view.off == 0 && view.strides == strides(shape) && x.mult == 1 && !split;
    if contiguous {
        return Ok(vec![x.clone()]);
    }
    let mut staged = lw.temp_f32("mm.stage", shape);
    if !split {
        staged.dt = dt;
        staged.gdt = gdt_of(dt);
        let n = shape.iter().product::<usize>() as u64;
        staged.buf = lw.p.temp("mm.stage", dt.bytes(n));
    }
    lw.p.phase();
    movement::copy_nd(
        &mut lw.p,
        x,
        view,
        &staged,
        &movement::plain(&staged),
        shape,
    )?;
    if !split {
        return Ok(vec![staged]);
    }
    let n = shape.iter().product::<usize>() as u64;
    let mk = |lw: &mut Lw| TRef {
        buf: lw.p.temp("mm.part", dt.bytes(n)),
        off: 0,
        dt,
        mult: 1,
        gdt: gdt_of(dt),
        shape: shape.to_vec(),
    };
    let hi = mk(lw);
    let lo = mk(lw);
    lw.p.phase();
    movement::copy_flat(&mut lw.p, &staged, &hi)?;
    elementwise::run(
        lw,
        &lo,
        vec![(staged, None), (hi.clone(), None)],
        true,
        &|b, d, s, _| {
            let a = match s[0] {
                VSrc::Full(a) => a,
                _ => 0,
            };
            vec![b.v(VOp::Sub, d, a, s[1])]
        },
    )?;
    Ok(vec![hi, lo])
}

/// One output block of a matmul phase and the tile computing it.
#[derive(Clone, Copy)]
struct Item {
    job: usize,
    /// Which output (`Seg`) the block belongs to.
    seg: usize,
    m0: u64,
    n0: u64,
    /// The K range this item accumulates.
    k_lo: u64,
    k_hi: u64,
    tile: u16,
    /// The cluster L2 block (cluster, offset) the tile reads A from.
    l2: Option<(u16, u64)>,
}

/// Emits the phase computing `spec`.
pub fn emit(lw: &mut Lw, spec: &Spec, dt: Dt) -> Result<(), Error> {
    let hw = lw.p.hw.clone();
    let tiles = lw.p.tiles() as u64;
    let rate = *hw
        .tile
        .tensor
        .rate
        .get(dt.name())
        .ok_or_else(|| unsup("MatMul", format!("the tensor unit does not take {dt}")))?;
    let segs: Vec<Seg> = std::iter::once(Seg {
        b: spec.b.clone(),
        out: spec.out.clone(),
        epi: spec.epi.clone(),
    })
    .chain(spec.siblings.iter().cloned())
    .collect();
    let residual = segs
        .iter()
        .flat_map(|s| &s.epi)
        .any(|e| matches!(e, Epi::Residual(_)));
    let parts = spec.a.len() as u64;
    let eb0 = dt.bytes(1);
    let shape = tiling::Shape {
        m: spec.m,
        n: spec.n,
        k: spec.k,
        batch: spec.jobs.len() as u64,
        elem: dt.bytes(1),
        a_bytes: spec.a.first().map_or(eb0, |t| t.dt.bytes(1)),
        b_bytes: spec.b.first().map_or(eb0, |t| t.dt.bytes(1)),
        parts,
        residual,
        // Partial blocks are added in f32 in HBM, so the output must be f32
        // and the epilogue must distribute over the sum.
        splittable: segs
            .iter()
            .all(|s| s.out.dt == Dt::F32 && !s.epi.iter().any(|e| matches!(e, Epi::Act(..)))),
        segs: segs.len() as u64,
    };
    let MatmulTiling {
        tm,
        tn,
        tk,
        share,
        kc,
    } = tiling::choose_matmul_tiling(&hw, &shape, rate)?;
    let (m, n, k) = (spec.m, spec.n, spec.k);
    // SRAM layout (two slots of everything double-buffered).
    let eb = dt.bytes(1);
    let a_sz = tm * tk * eb;
    let b_sz = tn * tk * eb;
    let in_slot = parts * (a_sz + b_sz);
    let acc0 = 2 * in_slot;
    let out0 = acc0 + 2 * 4 * tm * tn;
    let epi0 = out0 + 2 * 4 * tm * tn;
    let epi_sz = 4 * (tm + tn) + if residual { 4 * tm * tn } else { 0 };
    let tmp = epi0 + 2 * epi_sz;
    let pairs: Vec<(usize, usize)> = if parts == 2 {
        vec![(0, 0), (0, 1), (1, 0)]
    } else {
        vec![(0, 0)]
    };
    let mut per_tile: Vec<Vec<MmTile>> = (0..tiles).map(|_| Vec::new()).collect();
    let mut kcount = vec![0u64; tiles as usize];
    let mut order: Vec<Item> = Vec::new();
    let clusters = hw.clusters as u64;
    let tpc = hw.tiles_per_cluster as u64;
    let mut fills: Vec<Vec<pipeline::Fill>> = (0..clusters).map(|_| Vec::new()).collect();
    let mut item = 0u64;
    let mut group = 0u64;
    let ks = k.div_ceil(kc);
    for (ji, job) in spec.jobs.iter().enumerate() {
        for m0 in (0..m).step_by(tm as usize) {
            for kq in 0..ks {
                let (k_lo, k_hi) = (kq * kc, (kq * kc + kc).min(k));
                let cols: Vec<(usize, u64)> = (0..segs.len())
                    .flat_map(|sg| (0..n).step_by(tn as usize).map(move |n0| (sg, n0)))
                    .collect();
                let it = |(seg, n0), tile, l2| Item {
                    job: ji,
                    seg,
                    m0,
                    n0,
                    k_lo,
                    k_hi,
                    tile,
                    l2,
                };
                if share <= 1 {
                    for &n0 in &cols {
                        order.push(it(n0, (item % tiles) as u16, None));
                        item += 1;
                    }
                    continue;
                }
                // A group of column blocks on one cluster: its engine copies
                // this block of A into L2 chunk by chunk, its tiles read it.
                let mr = tm.min(m - m0);
                let kw = k_hi - k_lo;
                for blocks in cols.chunks(share as usize) {
                    let cl = group % clusters;
                    let region = (group / clusters) * tiling::l2_block_bytes(&shape, tm, kc);
                    group += 1;
                    let readers: Vec<u16> = (0..blocks.len() as u64)
                        .map(|j| (cl * tpc + j) as u16)
                        .collect();
                    for (j, &n0) in blocks.iter().enumerate() {
                        order.push(it(n0, readers[j], Some((cl as u16, region))));
                    }
                    for k0 in (k_lo..k_hi).step_by(tk as usize) {
                        let kr = tk.min(k_hi - k0);
                        let xfers = spec
                            .a
                            .iter()
                            .enumerate()
                            .map(|(p, t)| {
                                let part = region + p as u64 * tm * kw * t.dt.bytes(1);
                                Xfer {
                                    src: t.at(job.a + m0 * k + k0),
                                    dst: Mem::L2(cl as u16, part + t.dt.bytes(k0 - k_lo)),
                                    sdt: t.dt,
                                    ddt: t.dt,
                                    rows: mr,
                                    cols: kr,
                                    sstride: k,
                                    dstride: kw,
                                }
                            })
                            .collect();
                        fills[cl as usize].push(pipeline::Fill {
                            xfers,
                            readers: readers.clone(),
                        });
                    }
                }
            }
        }
    }
    // Split K: the first part of a block stores it with the epilogue, then
    // tells the tiles holding the other parts, which add theirs.
    let mut adders: HashMap<(usize, usize, u64, u64), Vec<u16>> = HashMap::new();
    for it in order.iter().filter(|it| it.k_lo > 0) {
        adders
            .entry((it.job, it.seg, it.m0, it.n0))
            .or_default()
            .push(it.tile);
    }
    let rows_idx = if ks > 1 {
        let idx: Vec<i64> = (0..m as i64).collect();
        Some(lw.weight(
            "mm.rows",
            &Tensor::from_i64(DType::I32, vec![m as usize], idx),
        )?)
    } else {
        None
    };
    for &Item {
        job: ji,
        seg,
        m0,
        n0,
        k_lo,
        k_hi,
        tile,
        l2,
    } in &order
    {
        let job = &spec.jobs[ji];
        let sg = &segs[seg];
        {
            {
                let o = (per_tile[tile as usize].len() % 2) as u64;
                let (mr, nr) = (tm.min(m - m0), tn.min(n - n0));
                let c = (acc0 + o * 4 * tm * tn) as u32;
                let out = (out0 + o * 4 * tm * tn) as u32;
                let epi = epi0 + o * epi_sz;
                let mut ksteps = Vec::new();
                for (j, k0) in (k_lo..k_hi).step_by(tk as usize).enumerate() {
                    let kr = tk.min(k_hi - k0);
                    let s = kcount[tile as usize] % 2;
                    kcount[tile as usize] += 1;
                    let base = s * in_slot;
                    let mut loads = Vec::new();
                    let mut loads_b = Vec::new();
                    for (p, t) in spec.a.iter().enumerate() {
                        let kw = k_hi - k_lo;
                        let (src, sstride) = match l2 {
                            Some((cl, region)) => (
                                Mem::L2(
                                    cl,
                                    region
                                        + p as u64 * tm * kw * t.dt.bytes(1)
                                        + t.dt.bytes(k0 - k_lo),
                                ),
                                kw,
                            ),
                            None => (t.at(job.a + m0 * k + k0), k),
                        };
                        loads.push(Xfer {
                            src,
                            dst: Mem::Sram(tile, base + p as u64 * a_sz),
                            sdt: t.dt,
                            ddt: dt,
                            rows: mr,
                            cols: kr,
                            sstride,
                            dstride: kr,
                        });
                    }
                    for (p, t) in sg.b.iter().enumerate() {
                        loads_b.push(Xfer {
                            src: t.at(job.b + n0 * k + k0),
                            dst: Mem::Sram(tile, base + parts * a_sz + p as u64 * b_sz),
                            sdt: t.dt,
                            ddt: dt,
                            rows: nr,
                            cols: kr,
                            sstride: k,
                            dstride: kr,
                        });
                    }
                    let matmuls = pairs
                        .iter()
                        .enumerate()
                        .map(|(q, &(pa, pb))| Cmd::Matmul {
                            dt,
                            m: mr as u32,
                            n: nr as u32,
                            k: kr as u32,
                            a: (base + pa as u64 * a_sz) as u32,
                            b: (base + parts * a_sz + pb as u64 * b_sz) as u32,
                            c,
                            acc: j > 0 || q > 0,
                        })
                        .collect();
                    ksteps.push(KStep {
                        loads,
                        loads_b,
                        matmuls,
                        shared: l2.is_some(),
                    });
                }
                // Epilogue operands and commands.
                let blk = Block {
                    rows: mr as u32,
                    cols: nr as u32,
                };
                let mut epi_loads = Vec::new();
                let mut ops = vec![blk.v(VOp::Copy, out, c, VSrc::None)];
                // Only the first part of a split block adds bias and residual.
                for e in sg
                    .epi
                    .iter()
                    .filter(|e| k_lo == 0 || matches!(e, Epi::Scale(_)))
                {
                    match e {
                        Epi::Scale(x) => ops.push(blk.v(VOp::Mul, out, out, VSrc::Imm(*x))),
                        Epi::ColBias(t) => {
                            let a = epi;
                            epi_loads.push(Xfer::flat(
                                t.at(n0),
                                Mem::Sram(tile, a),
                                t.dt,
                                Dt::F32,
                                nr,
                            ));
                            ops.push(blk.v(VOp::Add, out, out, VSrc::Col(a as u32)));
                        }
                        Epi::RowBias(t) => {
                            let a = epi + 4 * tn;
                            epi_loads.push(Xfer::flat(
                                t.at(job.row + m0),
                                Mem::Sram(tile, a),
                                t.dt,
                                Dt::F32,
                                mr,
                            ));
                            ops.push(blk.v(VOp::Add, out, out, VSrc::Row(a as u32)));
                        }
                        Epi::Residual(t) => {
                            let a = epi + 4 * (tm + tn);
                            epi_loads.push(Xfer {
                                src: t.at(job.res + m0 * n + n0),
                                dst: Mem::Sram(tile, a),
                                sdt: t.dt,
                                ddt: Dt::F32,
                                rows: mr,
                                cols: nr,
                                sstride: n,
                                dstride: nr,
                            });
                            ops.push(blk.v(VOp::Add, out, out, VSrc::Full(a as u32)));
                        }
                        Epi::Act(op, node) => {
                            let v = unary::unary(*op, node.as_ref(), blk, out, out, tmp as u32)
                                .ok_or_else(|| unsup(*op, "as a matmul activation"))?;
                            ops.extend(v);
                        }
                    }
                }
                if ops.len() > 1 {
                    // The first epilogue op can read the accumulator directly.
                    if let Cmd::Vector { a, dst, .. } = &mut ops[1]
                        && *a == out
                        && *dst == out
                    {
                        *a = c;
                        ops.remove(0);
                    }
                }
                // A 16-bit output is narrowed in SRAM so that its store
                // moves 2 bytes per element, not the f32 block's 4 (the
                // same rounding as a converting DMA).
                let sdt = if matches!(sg.out.dt, Dt::BF16 | Dt::F16) && k_lo == 0 {
                    let n_el = (mr * nr) as u32;
                    if matches!(ops.as_slice(), [Cmd::Vector { op: VOp::Copy, .. }]) {
                        ops.clear();
                    }
                    let src = if ops.is_empty() { c } else { out };
                    ops.push(Cmd::Convert {
                        src_dt: Dt::F32,
                        dst_dt: sg.out.dt,
                        n: n_el,
                        dst: out,
                        src,
                    });
                    sg.out.dt
                } else {
                    Dt::F32
                };
                let stores = vec![Xfer {
                    src: Mem::Sram(tile, out as u64),
                    // An added part names rows by index from the block's column.
                    dst: sg.out.at(job.out + if k_lo > 0 { 0 } else { m0 * n } + n0),
                    sdt,
                    ddt: sg.out.dt,
                    rows: mr,
                    cols: nr,
                    sstride: nr,
                    dstride: n,
                }];
                let (add, notify) = if k_lo > 0 {
                    (rows_idx.as_ref().map(|r| (r.at(m0), m)), Vec::new())
                } else {
                    let key = (ji, seg, m0, n0);
                    (None, adders.get(&key).cloned().unwrap_or_default())
                };
                per_tile[tile as usize].push(MmTile {
                    ksteps,
                    epi_loads,
                    epi_ops: ops,
                    stores,
                    add,
                    notify,
                });
            }
        }
    }
    lw.p.phase();
    for (c, f) in fills.iter().enumerate() {
        pipeline::fill_l2(&mut lw.p, c as u16, f)?;
    }
    for (t, items) in per_tile.iter().enumerate() {
        pipeline::matmul(&mut lw.p, t as u16, items)?;
    }
    Ok(())
}

fn fattr(n: &Node, k: &str, d: f32) -> f32 {
    match n.attr(k) {
        Some(Attr::Float(x)) => *x,
        _ => d,
    }
}

fn iattr(n: &Node, k: &str, d: i64) -> i64 {
    match n.attr(k) {
        Some(Attr::Int(x)) => *x,
        _ => d,
    }
}

/// Batch offsets of a [batch.., r, c] operand broadcast to `batch` dims.
fn batch_offsets(shape: &[usize], batch: &[usize]) -> Vec<u64> {
    let r = shape.len().saturating_sub(2);
    let mat = (shape[r..].iter().product::<usize>()) as u64;
    let own = &shape[..r];
    let off = batch.len() - own.len().min(batch.len());
    // Strides of own batch dims (in matrices), 0 where broadcast.
    let mut st = vec![0u64; batch.len()];
    let mut acc = 1u64;
    for i in (0..own.len()).rev() {
        if own[i] != 1 {
            st[i + off] = acc;
        }
        acc *= own[i] as u64;
    }
    let total: usize = batch.iter().product();
    let mut v = Vec::with_capacity(total);
    let mut idx = vec![0usize; batch.len()];
    for _ in 0..total {
        v.push(
            idx.iter()
                .zip(&st)
                .map(|(&i, &s)| i as u64 * s)
                .sum::<u64>()
                * mat,
        );
        for d in (0..batch.len()).rev() {
            idx[d] += 1;
            if idx[d] < batch[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    v
}

/// How far ahead of a matmul its siblings are looked for.
const SIBLING_WINDOW: usize = 32;

/// Later MatMul/FusedMatMul nodes that multiply the same run-time A by a
/// weight of the same shape and whose inputs are all computed already, so
/// they can run in `n`'s phase (the Q, K and V projections of attention).
fn siblings<'g>(lw: &mut Lw<'g>, n: &Node) -> Result<Vec<(usize, &'g Node)>, Error> {
    let g = lw.g;
    let none = Ok(Vec::new());
    // Split f32 operands are staged per node; nothing to share there.
    if !matches!(n.op, Op::MatMul | Op::FusedMatMul) || unit_dtype(lw)?.1 {
        return none;
    }
    let (Some(&Some(a)), Some(&Some(b)), Some(&Some(out))) =
        (n.inputs.first(), n.inputs.get(1), n.outputs.first())
    else {
        return none;
    };
    if lw.is_known(a) || !lw.is_known(b) {
        return none;
    }
    let (Ok(bt), Ok(ot)) = (lw.static_ty(b), lw.static_ty(out)) else {
        return none;
    };
    if bt.0.len() != 2 {
        return none;
    }
    let float = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16);
    let mut found = Vec::new();
    for (j, s) in g
        .nodes
        .iter()
        .enumerate()
        .skip(lw.pos + 1)
        .take(SIBLING_WINDOW)
    {
        if lw.done.contains(&j) || s.op != n.op || s.inputs.first() != Some(&Some(a)) {
            continue;
        }
        let (Some(&Some(sb)), Some(&Some(so))) = (s.inputs.get(1), s.outputs.first()) else {
            continue;
        };
        if s.outputs.len() != 1
            || !lw.is_known(sb)
            || s.inputs.iter().flatten().any(|&v| !lw.available(v))
        {
            continue;
        }
        lw.refine(s);
        let same = lw.static_ty(sb).is_ok_and(|t| t.0 == bt.0)
            && lw.static_ty(so).is_ok_and(|t| t == ot)
            && s.inputs
                .iter()
                .flatten()
                .all(|&v| lw.static_ty(v).is_ok_and(|t| float(t.1)));
        if same {
            found.push((j, s));
        }
    }
    Ok(found)
}

/// Lowers a matmul node, together with its siblings (`siblings`) as one
/// phase: one item list over all their column blocks, each block taking
/// its B, output and epilogue from its own node, A read once per block row.
pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let sibs = siblings(lw, n)?;
    let (mut spec, dt) = prepare(lw, n)?;
    for (j, s) in sibs {
        lw.done.insert(j);
        lw.node_op = s.op.to_string();
        let (sp, sdt) = prepare(lw, s)?;
        let same_a = sp.a.len() == spec.a.len()
            && sp
                .a
                .iter()
                .zip(&spec.a)
                .all(|(x, y)| x.buf == y.buf && x.off == y.off && x.dt == y.dt);
        if sdt == dt
            && same_a
            && (sp.m, sp.n, sp.k) == (spec.m, spec.n, spec.k)
            && sp.jobs == spec.jobs
        {
            spec.siblings.push(Seg {
                b: sp.b,
                out: sp.out,
                epi: sp.epi,
            });
        } else {
            // Its inputs are all there: it can run on its own, here.
            emit(lw, &sp, sdt)?;
        }
    }
    lw.node_op = n.op.to_string();
    emit(lw, &spec, dt)
}

/// Whether `n`'s f32 output can be stored in bf16: its only reader is a
/// matmul taking it as A or B on a bf16 unit, which rounds it to bf16 on
/// load or in a conversion phase anyway (one rounding of the f32 value
/// either way, so results are identical), while the store moves half the
/// bytes and the reader needs no conversion phase.
fn stores_bf16(lw: &mut Lw, n: &Node, dt: Dt, split: bool) -> Result<bool, Error> {
    if dt != Dt::BF16 || split || n.outputs.len() != 1 {
        return Ok(false);
    }
    let Some(&Some(v)) = n.outputs.first() else {
        return Ok(false);
    };
    let g = lw.g;
    if g.outputs.contains(&v) || lw.static_ty(v)?.1 != DType::F32 {
        return Ok(false);
    }
    let mut readers = g.nodes.iter().flat_map(|r| {
        r.inputs
            .iter()
            .enumerate()
            .filter(move |(_, x)| **x == Some(v))
            .map(move |(i, _)| (r, i))
    });
    let (Some((r, i)), None) = (readers.next(), readers.next()) else {
        return Ok(false);
    };
    Ok(matches!(r.op, Op::MatMul | Op::FusedMatMul | Op::MatMulNT) && i < 2)
}

/// The product `n` computes, its operands in the unit's layout (phases
/// staging them are emitted here), not yet emitted.
fn prepare(lw: &mut Lw, n: &Node) -> Result<(Spec, Dt), Error> {
    for v in n.inputs.iter().flatten().chain(n.outputs.iter().flatten()) {
        let (_, d) = lw.static_ty(*v)?;
        if !matches!(d, DType::F32 | DType::F16 | DType::BF16) {
            return Err(unsup(n.op, format!("dtype {d}")));
        }
    }
    let (dt, split) = unit_dtype(lw)?;
    let mut a = lw.input(n, 0)?;
    let b = lw.input(n, 1)?;
    let out = if stores_bf16(lw, n, dt, split)? {
        lw.output_stored(n, 0, DType::BF16)?
    } else {
        lw.output(n, 0)?
    };
    let (mut trans_a, mut trans_b) = (false, false);
    let mut epi = Vec::new();
    if n.op == Op::Gemm {
        trans_a = iattr(n, "transA", 0) != 0;
        trans_b = iattr(n, "transB", 0) != 0;
        let alpha = fattr(n, "alpha", 1.0);
        if alpha != 1.0 {
            epi.push(Epi::Scale(alpha));
        }
    }
    if n.op == Op::MatMulNT {
        trans_b = true;
    }
    // Promote 1-D operands as numpy does.
    let a1 = a.shape.len() == 1;
    if a1 {
        a.shape.insert(0, 1);
    }
    let mut b = b;
    let b1 = b.shape.len() == 1;
    if b1 {
        b.shape.push(1);
    }
    let ra = a.shape.len();
    let rb = b.shape.len();
    if ra < 2 || rb < 2 {
        return Err(unsup(n.op, "rank"));
    }
    let (m, ka) = if trans_a {
        (a.shape[ra - 1], a.shape[ra - 2])
    } else {
        (a.shape[ra - 2], a.shape[ra - 1])
    };
    let (kb, nn) = if trans_b {
        (b.shape[rb - 1], b.shape[rb - 2])
    } else {
        (b.shape[rb - 2], b.shape[rb - 1])
    };
    if ka != kb {
        return Err(Error::Graph(format!(
            "{}: inner dims {ka} and {kb} differ",
            n.describe()
        )));
    }
    let k = ka;
    let ba = &a.shape[..ra - 2];
    let bb = &b.shape[..rb - 2];
    let rbatch = ba.len().max(bb.len());
    let mut batch = vec![1usize; rbatch];
    for i in 0..rbatch {
        let x = |s: &[usize]| {
            let off = rbatch - s.len();
            if i < off { 1 } else { s[i - off] }
        };
        batch[i] = x(ba).max(x(bb));
    }
    // Epilogue (Gemm's C, FusedMatMul's bias/activation/residual).
    match n.op {
        Op::Gemm if Lw::has_input(n, 2) => {
            let c = lw.input(n, 2)?;
            let beta = fattr(n, "beta", 1.0);
            let c = scaled(lw, &c, beta)?;
            epi.push(bias_epi(lw, c, m, nn)?);
        }
        Op::FusedMatMul => {
            if Lw::has_input(n, 2) {
                let bias = lw.input(n, 2)?;
                epi.push(bias_epi(lw, bias, m, nn)?);
            }
            if let Some(Attr::String(act)) = n.attr("activation")
                && !act.is_empty()
            {
                let op: Op = act
                    .parse()
                    .map_err(|_| unsup(n.op, format!("activation {act}")))?;
                epi.push(Epi::Act(op, None));
            }
            if Lw::has_input(n, 3) {
                let r = lw.input(n, 3)?;
                let full = if r.shape == out.shape {
                    r
                } else {
                    let t = lw.temp_like("res", &r, &out.shape);
                    lw.p.phase();
                    movement::expand_into(&mut lw.p, &r, &t)?;
                    t
                };
                epi.push(Epi::Residual(full));
            }
        }
        _ => {}
    }
    // A in [batch.., m, k]; B in [batch.., n, k].
    let a_shape: Vec<usize> = ba.iter().copied().chain([m, k]).collect();
    let b_shape: Vec<usize> = bb.iter().copied().chain([nn, k]).collect();
    let a_view = {
        let st = strides(&a.shape);
        let mut s = st.clone();
        if trans_a {
            s.swap(ra - 2, ra - 1);
        }
        View { off: 0, strides: s }
    };
    let b_view = {
        let st = strides(&b.shape);
        let mut s = st.clone();
        if !trans_b {
            s.swap(rb - 2, rb - 1);
        }
        View { off: 0, strides: s }
    };
    let av = n.inputs[0].and_then(|v| lw.known(v));
    // Every column tile re-reads A: when there are several, one pass
    // converting A to the unit's narrower dtype costs less than re-reading
    // it wide (read 4 + write 2 bytes once, against 2 bytes per re-read).
    let rereads = nn.div_ceil(lw.p.hw.tile.tensor.shape[1] as usize);
    let narrow = a.dt.bytes(1) > dt.bytes(1) && rereads > 3 && !split;
    let a_parts = match av {
        Some(t) if !trans_a && !a1 => const_parts(lw, "a", &t, dt, split)?,
        _ if narrow => {
            // Q, K and V projections read the same activation: convert once.
            let key = format!(
                "narrow {:?} {} {:?} {:?} {dt}",
                a.buf, a.off, a_view, a_shape
            );
            if let Some(t) = lw.memo.get(&key) {
                vec![t.clone()]
            } else {
                let mut staged = lw.temp_like("mm.a", &a, &a_shape);
                let n_el = a_shape.iter().product::<usize>() as u64;
                staged.buf = lw.p.temp("mm.a", dt.bytes(n_el));
                staged.dt = dt;
                staged.gdt = gdt_of(dt);
                lw.p.phase();
                movement::copy_nd(
                    &mut lw.p,
                    &a,
                    &a_view,
                    &staged,
                    &movement::plain(&staged),
                    &a_shape,
                )?;
                lw.memo.insert(key, staged.clone());
                vec![staged]
            }
        }
        _ => dyn_parts(lw, &a, &a_view, &a_shape, dt, split)?,
    };
    let bv = n.inputs[1].and_then(|v| lw.known(v));
    let b_parts = match bv {
        Some(t) if !b1 => {
            let t = if trans_b { t } else { transpose_last2(&t)? };
            const_parts(lw, "b", &t, dt, split)?
        }
        _ => dyn_parts(lw, &b, &b_view, &b_shape, dt, split)?,
    };
    let ao = batch_offsets(&a_shape, &batch);
    let bo = batch_offsets(&b_shape, &batch);
    let mn = (m * nn) as u64;
    let jobs: Vec<Job> = ao
        .iter()
        .zip(&bo)
        .enumerate()
        .map(|(i, (&a, &b))| Job {
            a,
            b,
            out: i as u64 * mn,
            res: i as u64 * mn,
            row: 0,
        })
        .collect();
    let spec = Spec {
        m: m as u64,
        n: nn as u64,
        k: k as u64,
        a: a_parts,
        b: b_parts,
        out,
        jobs,
        epi,
        siblings: Vec::new(),
    };
    Ok((spec, dt))
}

/// Transposes the last two axes of a compile-time tensor.
pub fn transpose_last2(t: &Tensor) -> Result<Tensor, Error> {
    let r = t.shape.len();
    let v = t
        .to_f64_vec()
        .ok_or_else(|| unsup("MatMul", "non-float weights"))?;
    let (rows, cols) = (t.shape[r - 2], t.shape[r - 1]);
    let batch: usize = t.shape[..r - 2].iter().product();
    let mut out = vec![0.0; v.len()];
    for b in 0..batch {
        for i in 0..rows {
            for j in 0..cols {
                out[b * rows * cols + j * rows + i] = v[b * rows * cols + i * cols + j];
            }
        }
    }
    let mut shape = t.shape.clone();
    shape.swap(r - 2, r - 1);
    Ok(Tensor::from_f64(t.dtype, shape, out))
}

/// beta · C (a new weight when C is known, else C when beta is 1).
fn scaled(lw: &mut Lw, c: &TRef, beta: f32) -> Result<TRef, Error> {
    if beta == 1.0 {
        return Ok(c.clone());
    }
    let t = lw.temp_like("beta", c, &c.shape);
    elementwise::run(lw, &t, vec![(c.clone(), None)], true, &move |b, d, s, _| {
        let a = match s[0] {
            VSrc::Full(a) => a,
            _ => 0,
        };
        vec![b.v(VOp::Mul, d, a, VSrc::Imm(beta))]
    })?;
    Ok(t)
}

/// A bias broadcast to the m × n output: per column, per row or full.
fn bias_epi(lw: &mut Lw, c: TRef, m: usize, n: usize) -> Result<Epi, Error> {
    let numel = c.numel() as usize;
    let last = c.shape.last().copied().unwrap_or(1);
    if numel == n && last == n && n > 1 || (numel == 1 && n == 1) {
        return Ok(Epi::ColBias(c));
    }
    if numel == m && last == 1 && m > 1 {
        return Ok(Epi::RowBias(c));
    }
    let t = lw.temp_like("bias", &c, &[m, n]);
    lw.p.phase();
    movement::expand_into(&mut lw.p, &c, &t)?;
    Ok(Epi::Residual(t))
}
