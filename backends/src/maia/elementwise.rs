//! Elementwise ops on the vector unit. The output is viewed as rows ×
//! columns so that every operand is one of: the full block, one value per
//! row, one value per column, or a scalar (an immediate when known at
//! compile time). Operands that fit none of these are broadcast in HBM
//! first. Work is cut into chunks sized from tile SRAM, dealt to all
//! tiles, and run through the double-buffered vector pipeline.

use super::Error;
use super::lower::{Lw, TRef, unsup};
use super::movement;
use super::pipeline::{self, Step, Xfer};
use super::program::Mem;
use super::unary::{self, Block};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::{Dt, Op as Cmd, VOp, VSrc};

/// Makes the vector commands of one block: (block, dst, operand sources,
/// scratch address).
pub type Build = dyn Fn(Block, u32, &[VSrc], u32) -> Vec<Cmd>;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Full,
    /// One value per row (a scalar buffer is a row operand of stride 0).
    Row {
        stride0: bool,
    },
    Col,
    Imm(f32),
}

#[derive(Clone, Debug)]
pub struct Operand {
    pub t: Option<TRef>,
    pub kind: Kind,
}

/// Classifies each input shape against `out` for a split of out's axes at
/// `p` (rows = axes before p). None if some input fits no kind.
fn classify(out: &[usize], ins: &[Vec<usize>], p: usize) -> Option<Vec<Kind>> {
    let r = out.len();
    let mut kinds = Vec::new();
    for s in ins {
        if s.len() > r {
            return None;
        }
        let off = r - s.len();
        let dim = |i: usize| if i < off { 1 } else { s[i - off] };
        let present = |range: std::ops::Range<usize>| range.clone().all(|i| dim(i) == out[i]);
        let bcast = |range: std::ops::Range<usize>| range.clone().all(|i| dim(i) == 1);
        let k = match (present(0..p), present(p..r), bcast(0..p), bcast(p..r)) {
            (true, true, _, _) => Kind::Full,
            (_, true, true, _) => Kind::Col,
            (true, _, _, true) => Kind::Row { stride0: false },
            (_, _, true, true) => Kind::Row { stride0: true },
            _ => return None,
        };
        kinds.push(k);
    }
    Some(kinds)
}

/// Picks the row/column split for `ins` broadcast to `out`: the first
/// split (fewest rows) where every input fits a kind.
fn split(out: &[usize], ins: &[Vec<usize>]) -> Option<(usize, Vec<Kind>)> {
    (0..=out.len()).find_map(|p| classify(out, ins, p).map(|k| (p, k)))
}

/// Computes `out` from operands with `build(block, dst, srcs, tmp)`. Known
/// scalar operands become immediates; operand 0 must end up `Full` when
/// `first_full`, and is broadcast in HBM if needed.
pub fn run(
    lw: &mut Lw,
    out: &TRef,
    ins: Vec<(TRef, Option<f32>)>,
    first_full: bool,
    build: &Build,
) -> Result<(), Error> {
    run_in(lw, out, ins, first_full, Dt::F32, build)
}

/// `run` with the vector unit computing in `cd` (f32, or an integer dtype
/// for exact integer arithmetic: operands are converted to `cd` by the
/// loads and the result back to the output's dtype by the stores).
pub fn run_in(
    lw: &mut Lw,
    out: &TRef,
    ins: Vec<(TRef, Option<f32>)>,
    first_full: bool,
    cd: Dt,
    build: &Build,
) -> Result<(), Error> {
    let mut ins = ins;
    let shapes: Vec<Vec<usize>> = ins.iter().map(|(t, _)| t.shape.clone()).collect();
    let mut plan = split(&out.shape, &shapes);
    let need_first = |plan: &Option<(usize, Vec<Kind>)>| {
        first_full && plan.as_ref().is_some_and(|(_, k)| k[0] != Kind::Full)
    };
    if plan.is_none() || need_first(&plan) {
        // Broadcast the operands that spoil the split (or operand 0) in HBM.
        lw.p.phase();
        for (i, (t, imm)) in ins.iter_mut().enumerate() {
            if imm.is_some() && !(first_full && i == 0) {
                continue;
            }
            if t.shape != out.shape && (plan.is_none() || i == 0) {
                let full = lw.temp_like("bcast", t, &out.shape);
                movement::expand_into(&mut lw.p, t, &full)?;
                *t = full;
                *imm = None;
            }
        }
        let shapes: Vec<Vec<usize>> = ins.iter().map(|(t, _)| t.shape.clone()).collect();
        plan = split(&out.shape, &shapes);
    }
    let (p, kinds) = plan.ok_or_else(|| unsup("broadcast", "shapes"))?;
    let ops: Vec<Operand> = ins
        .into_iter()
        .zip(kinds)
        .map(|((t, imm), k)| match (k, imm) {
            (Kind::Row { stride0: true }, Some(x)) => Operand {
                t: None,
                kind: Kind::Imm(x),
            },
            _ => Operand {
                t: Some(t),
                kind: k,
            },
        })
        .collect();
    let rows: usize = out.shape[..p].iter().product();
    let cols: usize = out.shape[p..].iter().product();
    blocks(lw, out, rows as u64, cols as u64, &ops, cd, build)
}

/// The command-stream dtype of one graph element of an integer (or
/// boolean) value, as the DMA reads and writes it (i64 and u64 travel as
/// i64; u64 arithmetic on it is exact only where it is modular).
pub fn int_dt(d: DType) -> Option<Dt> {
    Some(match d {
        DType::I8 => Dt::I8,
        DType::U8 | DType::Bool => Dt::U8,
        DType::I16 => Dt::I16,
        DType::U16 => Dt::U16,
        DType::I32 => Dt::I32,
        DType::U32 => Dt::U32,
        DType::I64 | DType::U64 => Dt::I64,
        _ => return None,
    })
}

/// The dtype the DMA moves `t` as, for a computation in `cd` (integer
/// data is read as its own integer dtype also when the unit computes in
/// f32: the DMA converts it, e.g. a Pow exponent).
fn xfer_dt(t: &TRef, cd: Dt) -> Dt {
    if cd.is_int() || t.gdt.is_int() {
        int_dt(t.gdt).unwrap_or(t.dt)
    } else {
        t.dt
    }
}

/// Chunks rows × cols over the tiles and emits the pipelines.
pub fn blocks(
    lw: &mut Lw,
    out: &TRef,
    rows: u64,
    cols: u64,
    ops: &[Operand],
    cd: Dt,
    build: &Build,
) -> Result<(), Error> {
    let hw = lw.p.hw.clone();
    // Bytes of one element in SRAM.
    let eb = cd.bytes(1);
    let tiles = lw.p.tiles() as u64;
    let n = rows * cols;
    if n == 0 {
        return Ok(());
    }
    let full = ops.iter().filter(|o| o.kind == Kind::Full).count() as u64;
    let small = ops
        .iter()
        .filter(|o| matches!(o.kind, Kind::Row { .. } | Kind::Col))
        .count() as u64;
    // Per slot: full operands, the output and one scratch block, plus the
    // row/column vectors; two slots.
    let slot = hw.tile.sram_bytes / 2;
    let per_elem = eb * (full + 2);
    let width = hw.tile.vector.width as u64;
    let cap = (slot / (per_elem + eb * small)).max(1);
    let want = n.div_ceil(tiles).next_multiple_of(width).min(cap).max(1);
    let nc = cols.min(want).max(1);
    let nr = (want / nc).clamp(1, rows.max(1));
    let bytes = eb * ((full + 2) * nr * nc + small * (nr + nc));
    if bytes > slot {
        return Err(Error::TooLarge(format!(
            "an elementwise block of {nr}x{nc} needs {bytes} bytes per slot, SRAM gives {slot}"
        )));
    }
    let mut chunks = Vec::new();
    let mut r0 = 0;
    while r0 < rows {
        let mut c0 = 0;
        while c0 < cols {
            chunks.push((r0, c0, nr.min(rows - r0), nc.min(cols - c0)));
            c0 += nc;
        }
        r0 += nr;
    }
    lw.p.phase();
    let mut per_tile: Vec<Vec<Step>> = (0..tiles).map(|_| Vec::new()).collect();
    for (ci, &(r0, c0, mr, mc)) in chunks.iter().enumerate() {
        let tile = (ci as u64 % tiles) as u16;
        let s = (per_tile[tile as usize].len() % 2) as u64;
        let mut at = s * slot;
        let mut alloc = |b: u64| {
            let a = at;
            at += b;
            a as u32
        };
        let blk = Block {
            rows: mr as u32,
            cols: mc as u32,
        };
        let mut loads = Vec::new();
        let mut srcs = Vec::new();
        for o in ops {
            let src = match (o.kind, &o.t) {
                (Kind::Imm(x), _) => VSrc::Imm(x),
                (Kind::Full, Some(t)) => {
                    let a = alloc(eb * mr * mc);
                    loads.push(Xfer {
                        src: t.at(r0 * cols + c0),
                        dst: Mem::Sram(tile, a as u64),
                        sdt: xfer_dt(t, cd),
                        ddt: cd,
                        rows: mr,
                        cols: mc,
                        sstride: cols,
                        dstride: mc,
                    });
                    VSrc::Full(a)
                }
                (Kind::Row { stride0 }, Some(t)) => {
                    let a = alloc(eb * mr);
                    loads.push(Xfer {
                        src: t.at(if stride0 { 0 } else { r0 }),
                        dst: Mem::Sram(tile, a as u64),
                        sdt: xfer_dt(t, cd),
                        ddt: cd,
                        rows: mr,
                        cols: 1,
                        sstride: if stride0 { 0 } else { 1 },
                        dstride: 1,
                    });
                    VSrc::Row(a)
                }
                (Kind::Col, Some(t)) => {
                    let a = alloc(eb * mc);
                    loads.push(Xfer::flat(
                        t.at(c0),
                        Mem::Sram(tile, a as u64),
                        xfer_dt(t, cd),
                        cd,
                        mc,
                    ));
                    VSrc::Col(a)
                }
                _ => return Err(Error::Graph("operand without data".into())),
            };
            srcs.push(src);
        }
        let dst = alloc(eb * mr * mc);
        let tmp = alloc(eb * mr * mc);
        let stores = vec![Xfer {
            src: Mem::Sram(tile, dst as u64),
            dst: out.at(r0 * cols + c0),
            sdt: cd,
            ddt: xfer_dt(out, cd),
            rows: mr,
            cols: mc,
            sstride: mc,
            dstride: cols,
        }];
        per_tile[tile as usize].push(Step {
            loads,
            ops: retype(build(blk, dst, &srcs, tmp), cd),
            stores,
        });
    }
    for (t, steps) in per_tile.iter().enumerate() {
        pipeline::vector(&mut lw.p, t as u16, steps)?;
    }
    Ok(())
}

/// Sets the compute dtype of the vector commands `build` made (it makes
/// them in f32).
fn retype(mut cmds: Vec<Cmd>, cd: Dt) -> Vec<Cmd> {
    for c in &mut cmds {
        if let Cmd::Vector { dt, .. } = c {
            *dt = cd;
        }
    }
    cmds
}

fn known_scalar(lw: &mut Lw, n: &Node, i: usize) -> Option<f32> {
    let t = lw.known_input(n, i)?;
    if t.numel() != 1 {
        return None;
    }
    t.to_f64_vec()?.first().map(|&x| x as f32)
}

fn check_float(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    // Dropout's ratio, mode and mask are not data the unit computes on.
    let data = if n.op == Op::Dropout { 1 } else { usize::MAX };
    let ins = n.inputs.iter().take(data).flatten();
    for v in ins.chain(n.outputs.iter().take(data).flatten()) {
        let (_, d) = lw.static_ty(*v)?;
        if !matches!(
            d,
            smelt_ir::DType::F32 | smelt_ir::DType::F16 | smelt_ir::DType::BF16
        ) {
            return Err(unsup(
                n.op,
                format!("dtype {d} (the vector unit computes in floats)"),
            ));
        }
    }
    Ok(())
}

/// The unary chain of a FusedElementwise node.
fn chain(n: &Node) -> Result<Vec<Op>, Error> {
    let Some(Attr::Strings(names)) = n.attr("ops") else {
        return Err(Error::Graph("FusedElementwise without `ops`".into()));
    };
    names
        .iter()
        .map(|s| {
            s.parse::<Op>()
                .map_err(|_| unsup(n.op, format!("unknown op {s}")))
        })
        .collect()
}

/// Dtypes a comparison, logic op or Where can read and write: the DMA
/// widens them to f32 exactly (booleans as 0/1).
fn check_small(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    for v in n.inputs.iter().flatten().chain(n.outputs.iter().flatten()) {
        let (_, d) = lw.static_ty(*v)?;
        if !matches!(
            d,
            smelt_ir::DType::F32
                | smelt_ir::DType::F16
                | smelt_ir::DType::BF16
                | smelt_ir::DType::Bool
                | smelt_ir::DType::I8
                | smelt_ir::DType::I32
        ) {
            return Err(unsup(n.op, format!("dtype {d}")));
        }
    }
    Ok(())
}

/// Comparisons, boolean logic and Where on 0/1 values.
fn logic(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    check_small(lw, n)?;
    let out = lw.output(n, 0)?;
    let mut ins = Vec::new();
    for i in 0..n.inputs.len() {
        let t = lw.input(n, i)?;
        ins.push((t, known_scalar(lw, n, i)));
    }
    let vop = match n.op {
        Op::Less => VOp::Lt,
        Op::LessOrEqual => VOp::Le,
        Op::Greater => VOp::Gt,
        Op::GreaterOrEqual => VOp::Ge,
        Op::Equal => VOp::Eq,
        Op::And => VOp::Mul,
        Op::Or => VOp::Max,
        Op::Xor => VOp::Sub,
        _ => VOp::Copy,
    };
    if n.op == Op::IsNaN {
        // x != x only for NaN.
        return run(lw, &out, ins, true, &|b, d, s, _| {
            vec![
                b.v(VOp::Eq, d, first(s), VSrc::Full(first(s))),
                b.v(VOp::Neg, d, d, VSrc::None),
                b.v(VOp::Add, d, d, VSrc::Imm(1.0)),
            ]
        });
    }
    if n.op == Op::IsInf {
        let on = |name: &str| !matches!(n.attr(name), Some(Attr::Int(0)));
        // |x| = ∞, x = ∞ or x = -∞; with neither sign asked for, x < -∞
        // (never, NaN included).
        let (pre, cmp, inf) = match (on("detect_negative"), on("detect_positive")) {
            (true, true) => (VOp::Abs, VOp::Eq, f32::INFINITY),
            (false, true) => (VOp::Copy, VOp::Eq, f32::INFINITY),
            (true, false) => (VOp::Copy, VOp::Eq, f32::NEG_INFINITY),
            (false, false) => (VOp::Copy, VOp::Lt, f32::NEG_INFINITY),
        };
        return run(lw, &out, ins, true, &move |b, d, s, _| {
            vec![
                b.v(pre, d, first(s), VSrc::None),
                b.v(cmp, d, d, VSrc::Imm(inf)),
            ]
        });
    }
    if n.op == Op::Not {
        return run(lw, &out, ins, true, &|b, d, s, _| {
            vec![
                b.v(VOp::Neg, d, first(s), VSrc::None),
                b.v(VOp::Add, d, d, VSrc::Imm(1.0)),
            ]
        });
    }
    if n.op == Op::Where {
        // sel(c, x) + sel(c == 0, y): selects, so an infinity or NaN in the
        // branch not taken never leaks. The condition goes first, as it is
        // the operand that fills the whole block most often.
        return run(lw, &out, ins, true, &|b, d, s, tmp| {
            vec![
                b.v(VOp::Sel, d, first(s), s[1]),
                b.v(VOp::Eq, tmp, first(s), VSrc::Imm(0.0)),
                b.v(VOp::Sel, tmp, tmp, s[2]),
                b.v(VOp::Add, d, d, VSrc::Full(tmp)),
            ]
        });
    }
    // x > y on a broadcast first operand: materialized by `run`.
    let xor = n.op == Op::Xor;
    run(lw, &out, ins, true, &move |b, d, s, _| {
        let mut v = vec![b.v(vop, d, first(s), s[1])];
        if xor {
            v.push(b.v(VOp::Abs, d, d, VSrc::None));
        }
        v
    })
}

/// The dtype the vector unit computes integer data of dtype `d` in: i32
/// where every value fits and the unit has it, else i64; None when the
/// unit has neither or `d` is not an integer.
fn int_compute(lw: &Lw, d: DType) -> Option<Dt> {
    let has = |x: &str| lw.p.hw.tile.vector.dtypes.iter().any(|d| d == x);
    match d {
        DType::I8 | DType::U8 | DType::I16 | DType::U16 | DType::I32 if has("i32") => Some(Dt::I32),
        DType::I8
        | DType::U8
        | DType::I16
        | DType::U16
        | DType::I32
        | DType::U32
        | DType::I64
        | DType::U64
            if has("i64") =>
        {
            Some(Dt::I64)
        }
        _ => None,
    }
}

/// Elementwise arithmetic, comparisons and Where on integer data, computed
/// exactly in the vector unit's integer dtypes. Ok(false): not integer
/// data, the float lowering applies.
fn integer(lw: &mut Lw, n: &Node) -> Result<bool, Error> {
    // The input whose dtype is the data's (Where: the branches).
    let data = match n.op {
        Op::Where => 1,
        Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Max
        | Op::Min
        | Op::Sum
        | Op::Neg
        | Op::Abs
        | Op::Relu
        | Op::Clip
        | Op::Identity
        | Op::Less
        | Op::LessOrEqual
        | Op::Greater
        | Op::GreaterOrEqual
        | Op::Equal
        | Op::BitShift
        | Op::BitwiseAnd
        | Op::BitwiseOr
        | Op::BitwiseXor
        | Op::BitwiseNot
        | Op::Mod => 0,
        _ => return Ok(false),
    };
    let left = matches!(n.attr("direction"), Some(Attr::String(d)) if d == "LEFT");
    let Some(v) = n.inputs.get(data).copied().flatten() else {
        return Ok(false);
    };
    let (_, d) = lw.static_ty(v)?;
    if !d.is_int() {
        return Ok(false);
    }
    let cd = int_compute(lw, d).ok_or_else(|| {
        unsup(
            n.op,
            format!(
                "dtype {d} (the vector unit computes in {})",
                lw.p.hw.tile.vector.dtypes.join(", ")
            ),
        )
    })?;
    // u64 in i64 lanes: only the modular ops (and equality) are exact.
    let modular = matches!(
        n.op,
        Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Sum
            | Op::Neg
            | Op::Identity
            | Op::Equal
            | Op::Where
            | Op::BitwiseAnd
            | Op::BitwiseOr
            | Op::BitwiseXor
            | Op::BitwiseNot
    ) || (n.op == Op::BitShift && left);
    // Orderings of u64 in i64 lanes: flipping the top bit of both sides
    // maps unsigned order onto signed order.
    let ordered = matches!(
        n.op,
        Op::Less | Op::LessOrEqual | Op::Greater | Op::GreaterOrEqual | Op::Max | Op::Min
    );
    if d == DType::U64 && !modular && !ordered {
        return Err(unsup(n.op, "dtype u64 (beyond the vector unit's i64)"));
    }
    let out = lw.output(n, 0)?;
    let mut ins = Vec::new();
    for i in 0..n.inputs.len() {
        if Lw::has_input(n, i) {
            // No immediates: an f32 immediate cannot hold every integer.
            ins.push((lw.input(n, i)?, None));
        }
    }
    if ins.is_empty() {
        return Err(Error::Graph(format!("{} has no inputs", n.describe())));
    }
    let vop = match n.op {
        Op::Less => VOp::Lt,
        Op::LessOrEqual => VOp::Le,
        Op::Greater => VOp::Gt,
        Op::GreaterOrEqual => VOp::Ge,
        Op::Equal => VOp::Eq,
        Op::Neg => VOp::Neg,
        Op::Abs => VOp::Abs,
        Op::Relu => VOp::Relu,
        Op::Identity => VOp::Copy,
        Op::BitShift if left => VOp::Shl,
        Op::BitShift => VOp::Shr,
        Op::BitwiseAnd => VOp::And,
        Op::BitwiseOr => VOp::Or,
        Op::BitwiseXor => VOp::Xor,
        op => unary::binary(op).unwrap_or(VOp::Copy),
    };
    if d == DType::U64 && ordered {
        // -2^63 is an f32, and the unit truncates immediates exactly.
        let top = VSrc::Imm(i64::MIN as f32);
        let cmp = !matches!(n.op, Op::Max | Op::Min);
        run_in(lw, &out, ins, true, cd, &move |b, d, s, tmp| {
            let mut v = vec![b.v(VOp::Xor, d, first(s), top)];
            for x in &s[1..] {
                v.extend([
                    b.v(VOp::Mul, tmp, first(s), VSrc::Imm(0.0)),
                    b.v(VOp::Xor, tmp, tmp, top),
                    b.v(VOp::Xor, tmp, tmp, *x),
                    b.v(vop, d, d, VSrc::Full(tmp)),
                ]);
            }
            if !cmp {
                v.push(b.v(VOp::Xor, d, d, top));
            }
            v
        })?;
        return Ok(true);
    }
    match n.op {
        // r = x - trunc(x / y)·y takes x's sign (fmod=1); fmod=0 takes the
        // divisor's: add y where r ≠ 0 and the signs of r and y differ.
        Op::Mod => {
            let python = !matches!(n.attr("fmod"), Some(Attr::Int(1)));
            run_in(lw, &out, ins, true, cd, &move |b, d, s, tmp| {
                let mut v = vec![
                    b.v(VOp::Div, d, first(s), s[1]),
                    b.v(VOp::Mul, d, d, s[1]),
                    b.v(VOp::Sub, d, first(s), VSrc::Full(d)),
                ];
                if python {
                    v.extend([
                        b.v(VOp::Xor, tmp, d, s[1]),
                        b.v(VOp::Lt, tmp, tmp, VSrc::Imm(0.0)),
                        b.v(VOp::Sel, tmp, d, VSrc::Full(tmp)),
                        b.v(VOp::Sel, tmp, tmp, s[1]),
                        b.v(VOp::Add, d, d, VSrc::Full(tmp)),
                    ]);
                }
                v
            })?
        }
        // ~x = x ^ -1 (every bit set in two's complement).
        Op::BitwiseNot => run_in(lw, &out, ins, true, cd, &|b, d, s, _| {
            vec![b.v(VOp::Xor, d, first(s), VSrc::Imm(-1.0))]
        })?,
        Op::Where => run_in(lw, &out, ins, true, cd, &|b, d, s, tmp| {
            vec![
                b.v(VOp::Sel, d, first(s), s[1]),
                b.v(VOp::Eq, tmp, first(s), VSrc::Imm(0.0)),
                b.v(VOp::Sel, tmp, tmp, s[2]),
                b.v(VOp::Add, d, d, VSrc::Full(tmp)),
            ]
        })?,
        Op::Clip => {
            let mut which = Vec::new();
            for (i, op) in [(1, VOp::Max), (2, VOp::Min)] {
                if Lw::has_input(n, i) {
                    which.push(op);
                }
            }
            run_in(lw, &out, ins, true, cd, &move |b, d, s, _| {
                let mut v = vec![b.v(VOp::Copy, d, first(s), VSrc::None)];
                for (k, &op) in which.iter().enumerate() {
                    v.push(b.v(op, d, d, s[k + 1]));
                }
                v
            })?
        }
        _ if ins.len() == 1 || !vop.binary() => {
            run_in(lw, &out, ins, true, cd, &move |b, d, s, _| {
                vec![b.v(vop, d, first(s), VSrc::None)]
            })?
        }
        _ => run_in(lw, &out, ins, true, cd, &move |b, d, s, _| {
            let mut v = vec![b.v(vop, d, first(s), s[1])];
            for x in &s[2..] {
                v.push(b.v(vop, d, d, *x));
            }
            v
        })?,
    }
    Ok(true)
}

/// The SRAM address of a full-block operand.
fn full_addr(s: &[VSrc], i: usize) -> u32 {
    match s.get(i) {
        Some(VSrc::Full(a)) => *a,
        _ => 0,
    }
}

/// Pow with an integer base or exponent (the float-only path handles the
/// rest). Ok(false): both are floats.
fn pow_mixed(lw: &mut Lw, n: &Node) -> Result<bool, Error> {
    let float = |d: DType| matches!(d, DType::F32 | DType::F16 | DType::BF16);
    let (Some(bv), Some(ev)) = (
        n.inputs.first().copied().flatten(),
        n.inputs.get(1).copied().flatten(),
    ) else {
        return Ok(false);
    };
    let ((_, bd), (_, ed)) = (lw.static_ty(bv)?, lw.static_ty(ev)?);
    if !bd.is_int() && !ed.is_int() {
        return Ok(false);
    }
    let out = lw.output(n, 0)?;
    let x = lw.input(n, 0)?;
    let mut e = lw.input(n, 1)?;
    if float(bd) && ed.is_int() {
        // The loads convert the exponent to f32 (exact below 2^24).
        let k = known_scalar(lw, n, 1);
        run(lw, &out, vec![(x, None), (e, k)], true, &|b, d, s, _| {
            vec![b.v(VOp::Pow, d, first(s), s[1])]
        })?;
        return Ok(true);
    }
    if bd.is_int() && float(ed) {
        // In f32 (exact while |x^y| < 2^24), then truncated toward zero
        // as the reference's conversion does: the stores round.
        let k = known_scalar(lw, n, 1);
        run(lw, &out, vec![(x, None), (e, k)], true, &|b, d, s, tmp| {
            let x = first(s);
            vec![
                b.v(VOp::Pow, d, x, s[1]),
                b.v(VOp::Lt, x, d, VSrc::Imm(0.0)),
                b.v(VOp::Ceil, tmp, d, VSrc::None),
                b.v(VOp::Sel, tmp, x, VSrc::Full(tmp)),
                b.v(VOp::Eq, x, x, VSrc::Imm(0.0)),
                b.v(VOp::Floor, d, d, VSrc::None),
                b.v(VOp::Sel, d, x, VSrc::Full(d)),
                b.v(VOp::Add, d, d, VSrc::Full(tmp)),
            ]
        })?;
        return Ok(true);
    }
    if !(bd.is_int() && ed.is_int()) {
        return Err(unsup(n.op, format!("{bd} to the power of {ed}")));
    }
    // Integers: exact square-and-multiply over every bit of the exponent,
    // wrapping as the reference's does, in the wider of the two compute
    // dtypes (the store wraps back to the base's).
    let (cb, ce) = (int_compute(lw, bd), int_compute(lw, ed));
    let cd = match (cb, ce) {
        (Some(Dt::I32), Some(Dt::I32)) => Dt::I32,
        (Some(_), Some(_)) => Dt::I64,
        _ => {
            return Err(unsup(
                n.op,
                format!("{bd} to the power of {ed} on the vector unit"),
            ));
        }
    };
    let bits = if cd == Dt::I32 { 32 } else { 64 };
    if e.shape != out.shape {
        // The loop shifts the exponent: it must be a full block.
        let full = lw.temp_like("bcast", &e, &out.shape);
        lw.p.phase();
        movement::expand_into(&mut lw.p, &e, &full)?;
        e = full;
    }
    run_in(
        lw,
        &out,
        vec![(x, None), (e, None)],
        true,
        cd,
        &move |b, d, s, tmp| {
            use VOp::*;
            use VSrc::{Full, Imm};
            let (x, e) = (first(s), full_addr(s, 1));
            // A negative exponent gives 1 for 1, ±1 for -1 and 0 otherwise:
            // zero every other base, and the loop over the exponent's two's
            // complement bits (an even or odd power as e is) does the rest.
            let mut v = vec![
                b.v(Abs, d, x, VSrc::None),
                b.v(Eq, d, d, Imm(1.0)),
                b.v(Lt, tmp, e, Imm(0.0)),
                b.v(Gt, tmp, tmp, Full(d)),
                b.v(Eq, tmp, tmp, Imm(0.0)),
                b.v(Sel, x, tmp, Full(x)),
                // x holds c = base - 1, so that one buffer gives both the
                // factor (1 + bit·c) and the next square ((c + 1)² - 1).
                b.v(Sub, x, x, Imm(1.0)),
                b.v(Mul, d, x, Imm(0.0)),
                b.v(Add, d, d, Imm(1.0)),
            ];
            for i in 0..bits {
                v.extend([
                    b.v(Shr, tmp, e, Imm(i as f32)),
                    b.v(And, tmp, tmp, Imm(1.0)),
                    b.v(Sel, tmp, tmp, Full(x)),
                    b.v(Mul, tmp, tmp, Full(d)),
                    b.v(Add, d, d, Full(tmp)),
                ]);
                if i + 1 < bits {
                    v.extend([b.v(Add, tmp, x, Imm(2.0)), b.v(Mul, x, x, Full(tmp))]);
                }
            }
            v
        },
    )?;
    Ok(true)
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    if n.op == Op::Pow && pow_mixed(lw, n)? {
        return Ok(());
    }
    if integer(lw, n)? {
        return Ok(());
    }
    if matches!(
        n.op,
        Op::Less
            | Op::LessOrEqual
            | Op::Greater
            | Op::GreaterOrEqual
            | Op::Equal
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Not
            | Op::Where
            | Op::IsNaN
            | Op::IsInf
    ) {
        return logic(lw, n);
    }
    if n.op == Op::Mod {
        return float_mod(lw, n);
    }
    if unary::binary(n.op).is_none()
        && !matches!(
            n.op,
            Op::Mean | Op::Clip | Op::PRelu | Op::FusedElementwise | Op::Dropout
        )
        && !unary::supported(n.op, Some(n))
    {
        return Err(unsup(n.op, ""));
    }
    check_float(lw, n)?;
    let out = lw.output(n, 0)?;
    if let Some(vop) = unary::binary(n.op) {
        let mut ins = Vec::new();
        for i in 0..n.inputs.len() {
            if Lw::has_input(n, i) {
                let t = lw.input(n, i)?;
                ins.push((t, known_scalar(lw, n, i)));
            }
        }
        if ins.is_empty() {
            return Err(Error::Graph(format!("{} has no inputs", n.describe())));
        }
        if ins.len() == 1 {
            return run(lw, &out, ins, true, &|b, d, s, _| {
                vec![b.v(VOp::Copy, d, first(s), VSrc::None)]
            });
        }
        let commutative = matches!(vop, VOp::Add | VOp::Mul | VOp::Max | VOp::Min);
        // Put a full operand first where the op allows it.
        let full = |t: &TRef| t.shape == out.shape;
        if ins.len() == 2 && !full(&ins[0].0) && full(&ins[1].0) && commutative {
            ins.swap(0, 1);
        }
        if ins.len() == 2
            && !full(&ins[0].0)
            && full(&ins[1].0)
            && matches!(vop, VOp::Sub | VOp::Div)
        {
            // a - x = (-x) + a; a / x = (1/x) * a.
            let (pre, post) = if vop == VOp::Sub {
                (VOp::Neg, VOp::Add)
            } else {
                (VOp::Recip, VOp::Mul)
            };
            ins.swap(0, 1);
            return run(lw, &out, ins, true, &move |b, d, s, _| {
                vec![b.v(pre, d, first(s), VSrc::None), b.v(post, d, d, s[1])]
            });
        }
        let mean = n.op == Op::Mean;
        let k = ins.len();
        return run(lw, &out, ins, true, &move |b, d, s, _| {
            let mut v = vec![b.v(vop, d, first(s), s[1])];
            for x in &s[2..] {
                v.push(b.v(vop, d, d, *x));
            }
            if mean {
                v.push(b.v(VOp::Mul, d, d, VSrc::Imm(1.0 / k as f32)));
            }
            v
        });
    }
    match n.op {
        Op::Clip => {
            // min and max are scalars: immediates when known, else one
            // value broadcast to every row.
            let x = lw.input(n, 0)?;
            let mut ins = vec![(x, None)];
            let mut which = Vec::new();
            for (i, op) in [(1, VOp::Max), (2, VOp::Min)] {
                if Lw::has_input(n, i) {
                    let t = lw.input(n, i)?;
                    ins.push((t, known_scalar(lw, n, i)));
                    which.push(op);
                }
            }
            run(lw, &out, ins, true, &move |b, d, s, _| {
                let mut v = vec![b.v(VOp::Copy, d, first(s), VSrc::None)];
                for (k, &op) in which.iter().enumerate() {
                    v.push(b.v(op, d, d, s[k + 1]));
                }
                v
            })
        }
        Op::PRelu => {
            let x = lw.input(n, 0)?;
            let slope = lw.input(n, 1)?;
            let k = known_scalar(lw, n, 1);
            run(
                lw,
                &out,
                vec![(x, None), (slope, k)],
                true,
                &|b, d, s, tmp| {
                    vec![
                        b.v(VOp::Min, tmp, first(s), VSrc::Imm(0.0)),
                        b.v(VOp::Mul, tmp, tmp, s[1]),
                        b.v(VOp::Relu, d, first(s), VSrc::None),
                        b.v(VOp::Add, d, d, VSrc::Full(tmp)),
                    ]
                },
            )
        }
        Op::Dropout => {
            // Inference: the identity, and a mask of all true.
            let training = if Lw::has_input(n, 2) {
                lw.known_input(n, 2)
                    .and_then(|t| t.to_f64_vec())
                    .and_then(|v| v.first().copied())
                    .ok_or_else(|| unsup(n.op, "training_mode not known at compile time"))?
            } else {
                0.0
            };
            if training != 0.0 {
                return Err(unsup(n.op, "training mode"));
            }
            let x = lw.input(n, 0)?;
            if n.outputs.get(1).copied().flatten().is_some() {
                let mask = lw.output(n, 1)?;
                movement::fill(lw, &mask, 1.0)?;
            }
            lw.p.phase();
            movement::copy_flat(&mut lw.p, &x, &out)
        }
        Op::FusedElementwise => {
            let ops = chain(n)?;
            for &o in &ops {
                if !unary::supported(o, None) {
                    return Err(unsup(o, ""));
                }
            }
            let x = lw.input(n, 0)?;
            run(lw, &out, vec![(x, None)], true, &move |b, d, s, tmp| {
                let mut v = Vec::new();
                let mut src = first(s);
                for &o in &ops {
                    v.extend(unary::unary(o, None, b, d, src, tmp).unwrap_or_default());
                    src = d;
                }
                v
            })
        }
        op if unary::supported(op, Some(n)) => {
            let x = lw.input(n, 0)?;
            let node = n.clone();
            run(lw, &out, vec![(x, None)], true, &move |b, d, s, tmp| {
                unary::unary(op, Some(&node), b, d, first(s), tmp).unwrap_or_default()
            })
        }
        _ => Err(unsup(n.op, "")),
    }
}

/// Mod on floats: fmod=1 is C's fmod (the vector unit's `mod`, exact);
/// fmod=0 takes the divisor's sign as Python's % does: r + y where r ≠ 0
/// and r and y have different signs (r + y rounded once, as ONNX's
/// reference does).
fn float_mod(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    check_float(lw, n)?;
    let out = lw.output(n, 0)?;
    let mut ins = Vec::new();
    for i in 0..2 {
        let t = lw.input(n, i)?;
        ins.push((t, known_scalar(lw, n, i)));
    }
    let python = !matches!(n.attr("fmod"), Some(Attr::Int(1)));
    run(lw, &out, ins, true, &move |b, d, s, tmp| {
        let x = first(s);
        let mut v = vec![b.v(VOp::Mod, d, x, s[1])];
        if python {
            // x's block (loaded for this step) is free once r is made:
            // sign(r)·y < 0 exactly where r ≠ 0 and the signs differ (a
            // product by ±1 neither rounds nor underflows; r = 0 or NaN
            // gives 0 or NaN, never negative).
            v.extend([
                b.v(VOp::Lt, tmp, d, VSrc::Imm(0.0)),
                b.v(VOp::Gt, x, d, VSrc::Imm(0.0)),
                b.v(VOp::Sub, x, x, VSrc::Full(tmp)),
                b.v(VOp::Mul, x, x, s[1]),
                b.v(VOp::Lt, x, x, VSrc::Imm(0.0)),
                b.v(VOp::Sel, tmp, x, s[1]),
                b.v(VOp::Add, d, d, VSrc::Full(tmp)),
            ]);
        }
        v
    })
}

/// Trilu with k known only at run time: y = x where the diagonal offset
/// j - i of an element is within k (upper: j - i >= k; lower: j - i <= k),
/// else 0. The offsets are a compile-time constant shaped like x, k one
/// value broadcast to every row; a select, so a NaN masked out never leaks.
pub fn trilu_runtime_k(lw: &mut Lw, n: &Node, x: &TRef, upper: bool) -> Result<(), Error> {
    let r = x.shape.len();
    let (rows, cols) = (x.shape[r - 2], x.shape[r - 1]);
    let numel = x.shape.iter().product::<usize>();
    let cd = if x.gdt.is_int() {
        int_compute(lw, x.gdt)
            .ok_or_else(|| unsup(n.op, format!("dtype {} on the vector unit", x.gdt)))?
    } else if matches!(x.gdt, DType::F32 | DType::F16 | DType::BF16) {
        Dt::F32
    } else {
        return Err(unsup(n.op, format!("dtype {}", x.gdt)));
    };
    let offs: Vec<i64> = (0..numel)
        .map(|e| (e % cols) as i64 - ((e / cols) % rows) as i64)
        .collect();
    let t = if cd.is_int() {
        Tensor::from_i64(DType::I64, x.shape.clone(), offs)
    } else {
        Tensor::from_f64(
            DType::F32,
            x.shape.clone(),
            offs.iter().map(|&v| v as f64).collect(),
        )
    };
    let k = lw.input(n, 1)?;
    let y = lw.output(n, 0)?;
    let out_name = n
        .outputs
        .first()
        .copied()
        .flatten()
        .map(|v| lw.g.value(v).name.clone())
        .unwrap_or_default();
    let d = lw.weight(&format!("w.{out_name}.diagonal_offsets"), &t)?;
    let cmp = if upper { VOp::Ge } else { VOp::Le };
    run_in(
        lw,
        &y,
        vec![(d, None), (k, None), (x.clone(), None)],
        true,
        cd,
        &move |b, dst, s, tmp| vec![b.v(cmp, tmp, first(s), s[1]), b.v(VOp::Sel, dst, tmp, s[2])],
    )
}

/// The SRAM address of operand 0 (always a full block).
fn first(s: &[VSrc]) -> u32 {
    match s.first() {
        Some(VSrc::Full(a)) => *a,
        _ => 0,
    }
}
