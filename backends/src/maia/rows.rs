//! Row ops on the vector unit: softmax, log-softmax, layer and RMS norm,
//! and reductions. The reduced axes are moved last (a strided-DMA phase
//! when they are not already), so each op works on whole rows of a
//! rows × cols block held in one tile's SRAM.

use super::Error;
use super::lower::{Lw, TRef, unsup};
use super::movement::{self, View, strides};
use super::pipeline::{self, Step, Xfer};
use super::program::Mem;
use super::unary::Block;
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::{Dt, Op as Cmd, ROp, VOp, VSrc};

/// SRAM addresses of one step, handed to a row op's builder.
pub struct RowBufs {
    pub x: u32,
    pub y: u32,
    pub tmp: u32,
    /// Two per-row vectors.
    pub r1: u32,
    pub r2: u32,
    /// Per-column operands (gamma, beta), in order.
    pub cols: Vec<u32>,
}

/// Runs a row op over x viewed as rows × cols. `full_out`: y is rows × cols
/// (else one value per row, left in `r1`). `col_ops` are per-column f32
/// operands of `cols` elements. `extra_rows`: further per-row outputs
/// stored from r1/r2 (mean and inverse std of a layer norm).
#[allow(clippy::too_many_arguments)]
pub fn run(
    lw: &mut Lw,
    x: &TRef,
    y: &TRef,
    rows: u64,
    cols: u64,
    full_out: bool,
    col_ops: &[TRef],
    extra_rows: &[(TRef, bool)],
    build: &dyn Fn(Block, &RowBufs) -> Vec<Cmd>,
) -> Result<(), Error> {
    let hw = lw.p.hw.clone();
    let tiles = lw.p.tiles() as u64;
    if rows * cols == 0 {
        return Ok(());
    }
    let slot = hw.tile.sram_bytes / 2;
    let ncol = col_ops.len() as u64;
    let per_row = 4 * (3 * cols + 2);
    let fixed = 4 * ncol * cols;
    if per_row + fixed > slot {
        return Err(Error::TooLarge(format!(
            "a row of {cols} elements does not fit half of tile SRAM ({slot} bytes)"
        )));
    }
    let cap = (slot - fixed) / per_row;
    let nr = rows.div_ceil(tiles).min(cap).max(1);
    lw.p.phase();
    let mut per_tile: Vec<Vec<Step>> = (0..tiles).map(|_| Vec::new()).collect();
    let mut r0 = 0;
    let mut ci = 0u64;
    while r0 < rows {
        let mr = nr.min(rows - r0);
        let tile = (ci % tiles) as u16;
        ci += 1;
        let s = (per_tile[tile as usize].len() % 2) as u64;
        let mut at = s * slot;
        let mut alloc = |b: u64| {
            let a = at;
            at += b;
            a as u32
        };
        let xa = alloc(4 * mr * cols);
        let ya = alloc(4 * mr * cols);
        let tmp = alloc(4 * mr * cols);
        let r1 = alloc(4 * mr);
        let r2 = alloc(4 * mr);
        let mut loads = vec![Xfer::flat(
            x.at(r0 * cols),
            Mem::Sram(tile, xa as u64),
            x.dt,
            Dt::F32,
            mr * cols,
        )];
        let mut ca = Vec::new();
        for c in col_ops {
            let a = alloc(4 * cols);
            loads.push(Xfer::flat(
                c.at(0),
                Mem::Sram(tile, a as u64),
                c.dt,
                Dt::F32,
                cols,
            ));
            ca.push(a);
        }
        let bufs = RowBufs {
            x: xa,
            y: ya,
            tmp,
            r1,
            r2,
            cols: ca,
        };
        let mut stores = vec![if full_out {
            Xfer::flat(
                Mem::Sram(tile, ya as u64),
                y.at(r0 * cols),
                Dt::F32,
                y.dt,
                mr * cols,
            )
        } else {
            // An i64 output takes the low word of each element (zeroed).
            Xfer {
                src: Mem::Sram(tile, r1 as u64),
                dst: y.at(r0),
                sdt: Dt::F32,
                ddt: y.dt,
                rows: mr,
                cols: 1,
                sstride: 1,
                dstride: y.mult,
            }
        }];
        for (t, second) in extra_rows {
            let a = if *second { r2 } else { r1 };
            stores.push(Xfer::flat(
                Mem::Sram(tile, a as u64),
                t.at(r0),
                Dt::F32,
                t.dt,
                mr,
            ));
        }
        let blk = Block {
            rows: mr as u32,
            cols: cols as u32,
        };
        per_tile[tile as usize].push(Step {
            loads,
            ops: build(blk, &bufs),
            stores,
        });
        r0 += mr;
    }
    for (t, steps) in per_tile.iter().enumerate() {
        pipeline::vector(&mut lw.p, t as u16, steps)?;
    }
    Ok(())
}

fn red(op: ROp, b: Block, dst: u32, src: u32) -> Cmd {
    Cmd::Reduce {
        op,
        dt: Dt::F32,
        rows: b.rows,
        cols: b.cols,
        dst,
        src,
    }
}

/// A per-row vector op (rows × 1).
fn rv(b: Block, op: VOp, dst: u32, a: u32, x: VSrc) -> Cmd {
    Block {
        rows: b.rows,
        cols: 1,
    }
    .v(op, dst, a, x)
}

fn norm_axis(a: i64, r: usize) -> Result<usize, Error> {
    let x = if a < 0 { a + r as i64 } else { a };
    if x < 0 || (x as usize) >= r.max(1) {
        return Err(Error::Graph(format!("axis {a} out of range for rank {r}")));
    }
    Ok(x as usize)
}

fn int_attr(n: &Node, k: &str, d: i64) -> i64 {
    match n.attr(k) {
        Some(Attr::Int(v)) => *v,
        _ => d,
    }
}

fn float_attr(n: &Node, k: &str, d: f32) -> f32 {
    match n.attr(k) {
        Some(Attr::Float(v)) => *v,
        _ => d,
    }
}

/// Moves the axes `moved` (in order) to the end: returns x itself when they
/// already are, else a transposed copy.
pub fn axes_last(lw: &mut Lw, x: &TRef, moved: &[usize]) -> Result<TRef, Error> {
    let r = x.shape.len();
    let mut perm: Vec<usize> = (0..r).filter(|a| !moved.contains(a)).collect();
    perm.extend_from_slice(moved);
    if perm.iter().enumerate().all(|(i, &a)| i == a) {
        return Ok(x.clone());
    }
    let shape: Vec<usize> = perm.iter().map(|&a| x.shape[a]).collect();
    let t = lw.temp_like("perm", x, &shape);
    let st = strides(&x.shape);
    lw.p.phase();
    movement::copy_nd(
        &mut lw.p,
        x,
        &View {
            off: 0,
            strides: perm.iter().map(|&a| st[a]).collect(),
        },
        &t,
        &movement::plain(&t),
        &shape,
    )?;
    Ok(t)
}

/// The first `inputs` inputs and `outputs` outputs must be floats (axes
/// and other integer operands come after them).
fn check_float(lw: &mut Lw, n: &Node, inputs: usize, outputs: usize) -> Result<(), Error> {
    let mut vs: Vec<_> = n.inputs.iter().take(inputs).flatten().copied().collect();
    vs.extend(n.outputs.iter().take(outputs).flatten().copied());
    for v in vs {
        let (_, d) = lw.static_ty(v)?;
        if !matches!(d, DType::F32 | DType::F16 | DType::BF16) {
            return Err(unsup(n.op, format!("dtype {d}")));
        }
    }
    Ok(())
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    match n.op {
        Op::Softmax | Op::LogSoftmax | Op::Hardmax | Op::LpNormalization => along_axis(lw, n),
        Op::ArgMax | Op::ArgMin => arg(lw, n),
        Op::InstanceNormalization | Op::GroupNormalization | Op::MeanVarianceNormalization => {
            group_norm(lw, n)
        }
        Op::LayerNormalization | Op::RMSNormalization => norm(lw, n),
        _ => reduce(lw, n),
    }
}

/// softmax over the last axis of x viewed as rows × cols.
pub fn softmax_rows(lw: &mut Lw, x: &TRef, y: &TRef, rows: u64, cols: u64) -> Result<(), Error> {
    run(lw, x, y, rows, cols, true, &[], &[], &|b, f| {
        vec![
            red(ROp::Max, b, f.r1, f.x),
            b.v(VOp::Sub, f.y, f.x, VSrc::Row(f.r1)),
            b.v(VOp::Exp, f.y, f.y, VSrc::None),
            red(ROp::Sum, b, f.r2, f.y),
            b.v(VOp::Div, f.y, f.y, VSrc::Row(f.r2)),
        ]
    })
}

/// log_softmax of each row of x viewed as rows × cols.
pub fn log_softmax_rows(
    lw: &mut Lw,
    x: &TRef,
    y: &TRef,
    rows: u64,
    cols: u64,
) -> Result<(), Error> {
    run(lw, x, y, rows, cols, true, &[], &[], &|b, f| {
        vec![
            red(ROp::Max, b, f.r1, f.x),
            b.v(VOp::Sub, f.y, f.x, VSrc::Row(f.r1)),
            b.v(VOp::Exp, f.tmp, f.y, VSrc::None),
            red(ROp::Sum, b, f.r2, f.tmp),
            rv(b, VOp::Log, f.r2, f.r2, VSrc::None),
            b.v(VOp::Sub, f.y, f.y, VSrc::Row(f.r2)),
        ]
    })
}

/// One value per row: the max, or the mean, of x viewed as rows × cols.
pub fn row_reduce(
    lw: &mut Lw,
    x: &TRef,
    y: &TRef,
    rows: u64,
    cols: u64,
    max: bool,
) -> Result<(), Error> {
    let inv = 1.0 / cols.max(1) as f32;
    run(lw, x, y, rows, cols, false, &[], &[], &move |b, f| {
        if max {
            vec![red(ROp::Max, b, f.r1, f.x)]
        } else {
            vec![
                red(ROp::Sum, b, f.r1, f.x),
                rv(b, VOp::Mul, f.r1, f.r1, VSrc::Imm(inv)),
            ]
        }
    })
}

/// One value per row: the p-norm (sum |x|^p)^(1/p) of x viewed as rows × cols.
pub fn row_pnorm(
    lw: &mut Lw,
    x: &TRef,
    y: &TRef,
    rows: u64,
    cols: u64,
    p: f32,
) -> Result<(), Error> {
    run(lw, x, y, rows, cols, false, &[], &[], &move |b, f| {
        vec![
            b.v(VOp::Abs, f.tmp, f.x, VSrc::None),
            b.v(VOp::Pow, f.tmp, f.tmp, VSrc::Imm(p)),
            red(ROp::Sum, b, f.r1, f.tmp),
            rv(b, VOp::Pow, f.r1, f.r1, VSrc::Imm(1.0 / p)),
        ]
    })
}

/// One value per row: the sum of x viewed as rows × cols.
pub fn row_sum(lw: &mut Lw, x: &TRef, y: &TRef, rows: u64, cols: u64) -> Result<(), Error> {
    run(lw, x, y, rows, cols, false, &[], &[], &|b, f| {
        vec![red(ROp::Sum, b, f.r1, f.x)]
    })
}

/// An op mapping each row along `axis` to a row of the same length
/// (softmax, log-softmax, hardmax, Lp normalization).
fn along_axis(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    check_float(lw, n, 1, 1)?;
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    let ax = norm_axis(int_attr(n, "axis", -1), r)?;
    let xt = axes_last(lw, &x, &[ax])?;
    let cols = x.shape.get(ax).copied().unwrap_or(1) as u64;
    let rows = x.numel() / cols.max(1);
    let y = lw.output(n, 0)?;
    let moved = ax + 1 != r && r > 0;
    let yt = if moved {
        lw.temp_like("rowmap", &y, &xt.shape)
    } else {
        y.clone()
    };
    let op = n.op;
    let p = int_attr(n, "p", 2);
    if op == Op::LpNormalization && p != 1 && p != 2 {
        return Err(unsup(op, format!("p = {p}")));
    }
    let col_ops = if op == Op::Hardmax {
        vec![iota(lw, cols, false)?]
    } else {
        vec![]
    };
    run(
        lw,
        &xt,
        &yt,
        rows,
        cols,
        true,
        &col_ops,
        &[],
        &move |b, f| {
            match op {
                Op::Hardmax => {
                    let mut v = first_max_index(b, f, f.x, f.cols[0], cols as f32);
                    // One-hot: a row of column indices compared with the index.
                    v.extend([
                        b.v(VOp::Mul, f.tmp, f.x, VSrc::Imm(0.0)),
                        b.v(VOp::Sub, f.tmp, f.tmp, VSrc::Col(f.cols[0])),
                        b.v(VOp::Neg, f.tmp, f.tmp, VSrc::None),
                        b.v(VOp::Add, f.tmp, f.tmp, VSrc::Imm(-(cols as f32))),
                        b.v(VOp::Neg, f.tmp, f.tmp, VSrc::None),
                        b.v(VOp::Eq, f.y, f.tmp, VSrc::Row(f.r1)),
                    ]);
                    v
                }
                Op::LpNormalization => {
                    let mut v = if p == 1 {
                        vec![b.v(VOp::Abs, f.tmp, f.x, VSrc::None)]
                    } else {
                        vec![b.v(VOp::Mul, f.tmp, f.x, VSrc::Full(f.x))]
                    };
                    v.push(red(ROp::Sum, b, f.r2, f.tmp));
                    if p == 2 {
                        v.push(rv(b, VOp::Sqrt, f.r2, f.r2, VSrc::None));
                    }
                    // A zero row stays zero (0 / tiny) instead of 0/0.
                    v.push(rv(b, VOp::Max, f.r2, f.r2, VSrc::Imm(f32::MIN_POSITIVE)));
                    v.push(b.v(VOp::Div, f.y, f.x, VSrc::Row(f.r2)));
                    v
                }
                _ => {
                    let mut v = vec![
                        red(ROp::Max, b, f.r1, f.x),
                        b.v(VOp::Sub, f.y, f.x, VSrc::Row(f.r1)),
                    ];
                    if op == Op::LogSoftmax {
                        v.extend([
                            b.v(VOp::Exp, f.tmp, f.y, VSrc::None),
                            red(ROp::Sum, b, f.r2, f.tmp),
                            rv(b, VOp::Log, f.r2, f.r2, VSrc::None),
                            b.v(VOp::Sub, f.y, f.y, VSrc::Row(f.r2)),
                        ]);
                    } else {
                        v.extend([
                            b.v(VOp::Exp, f.y, f.y, VSrc::None),
                            red(ROp::Sum, b, f.r2, f.y),
                            b.v(VOp::Div, f.y, f.y, VSrc::Row(f.r2)),
                        ]);
                    }
                    v
                }
            }
        },
    )?;
    if moved {
        // Move the axis back: yt is x's shape with `ax` last.
        let mut perm: Vec<usize> = (0..r).filter(|&a| a != ax).collect();
        perm.push(ax);
        let st = strides(&yt.shape);
        let mut inv = vec![0i64; r];
        for (i, &a) in perm.iter().enumerate() {
            inv[a] = st[i];
        }
        lw.p.phase();
        movement::copy_nd(
            &mut lw.p,
            &yt,
            &View {
                off: 0,
                strides: inv,
            },
            &y,
            &movement::plain(&y),
            &y.shape.clone(),
        )?;
    }
    Ok(())
}

/// Column indices as f32: `cols - j` (first-index search) or `j + 1`
/// (last-index search), so that the wanted index is the row maximum.
fn iota(lw: &mut Lw, cols: u64, last: bool) -> Result<TRef, Error> {
    let v: Vec<f64> = (0..cols)
        .map(|j| {
            if last {
                (j + 1) as f64
            } else {
                (cols - j) as f64
            }
        })
        .collect();
    lw.weight(
        &format!("iota.{}", lw.p.bufs.len()),
        &smelt_ir::interp::Tensor::from_f64(DType::F32, vec![cols as usize], v),
    )
}

/// r1 = the first column holding the row maximum of `src` (`key` holds
/// cols - j): y = (src == max)·key, r1 = cols - max(y). Uses y.
fn first_max_index(b: Block, f: &RowBufs, src: u32, key: u32, cols: f32) -> Vec<Cmd> {
    vec![
        red(ROp::Max, b, f.r1, src),
        b.v(VOp::Eq, f.y, src, VSrc::Row(f.r1)),
        b.v(VOp::Mul, f.y, f.y, VSrc::Col(key)),
        red(ROp::Max, b, f.r1, f.y),
        rv(b, VOp::Neg, f.r1, f.r1, VSrc::None),
        rv(b, VOp::Add, f.r1, f.r1, VSrc::Imm(cols)),
    ]
}

/// ArgMax/ArgMin: the index as f32 on the vector unit, stored into the low
/// words of the (zeroed) i64 output.
fn arg(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    check_float(lw, n, 1, 0)?;
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    let ax = norm_axis(int_attr(n, "axis", 0), r)?;
    let last = int_attr(n, "select_last_index", 0) != 0;
    let xt = axes_last(lw, &x, &[ax])?;
    let cols = x.shape.get(ax).copied().unwrap_or(1) as u64;
    let rows = x.numel() / cols.max(1);
    let y = lw.output(n, 0)?;
    if y.gdt != DType::I64 {
        return Err(unsup(n.op, format!("output dtype {}", y.gdt)));
    }
    movement::fill(lw, &y, 0.0)?;
    let key = iota(lw, cols, last)?;
    let min = n.op == Op::ArgMin;
    let c = cols as f32;
    run(lw, &xt, &y, rows, cols, false, &[key], &[], &move |b, f| {
        let mut v = Vec::new();
        let src = if min {
            v.push(b.v(VOp::Neg, f.tmp, f.x, VSrc::None));
            f.tmp
        } else {
            f.x
        };
        if last {
            v.extend([
                red(ROp::Max, b, f.r1, src),
                b.v(VOp::Eq, f.y, src, VSrc::Row(f.r1)),
                b.v(VOp::Mul, f.y, f.y, VSrc::Col(f.cols[0])),
                red(ROp::Max, b, f.r1, f.y),
                rv(b, VOp::Add, f.r1, f.r1, VSrc::Imm(-1.0)),
            ]);
        } else {
            v.extend(first_max_index(b, f, src, f.cols[0], c));
        }
        v
    })
}

/// (x - mean) / sqrt(var + eps) over each row (no affine).
fn standardize(b: Block, f: &RowBufs, inv_n: f32, eps: f32) -> Vec<Cmd> {
    vec![
        red(ROp::Sum, b, f.r1, f.x),
        rv(b, VOp::Mul, f.r1, f.r1, VSrc::Imm(inv_n)),
        b.v(VOp::Sub, f.y, f.x, VSrc::Row(f.r1)),
        b.v(VOp::Mul, f.tmp, f.y, VSrc::Full(f.y)),
        red(ROp::Sum, b, f.r2, f.tmp),
        rv(b, VOp::Mul, f.r2, f.r2, VSrc::Imm(inv_n)),
        rv(b, VOp::Add, f.r2, f.r2, VSrc::Imm(eps)),
        rv(b, VOp::Rsqrt, f.r2, f.r2, VSrc::None),
        b.v(VOp::Mul, f.y, f.y, VSrc::Row(f.r2)),
    ]
}

/// Instance, group and mean-variance normalization: standardize rows of a
/// view where each row is one group (moving MVN's axes last), then the
/// per-channel scale and bias as an elementwise phase.
fn group_norm(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    check_float(lw, n, 3, 1)?;
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    if r < 2 {
        return Err(unsup(n.op, "rank below 2"));
    }
    let y = lw.output(n, 0)?;
    if n.op == Op::MeanVarianceNormalization {
        let axes: Vec<usize> = match n.attr("axes") {
            Some(Attr::Ints(v)) => v
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Result<_, _>>()?,
            _ => [0usize, 2, 3].into_iter().filter(|&a| a < r).collect(),
        };
        let mut axes = axes;
        axes.sort();
        axes.dedup();
        let xt = axes_last(lw, &x, &axes)?;
        let cols: u64 = axes.iter().map(|&a| x.shape[a] as u64).product();
        let rows = x.numel() / cols.max(1);
        let yt = lw.temp_like("mvn", &y, &xt.shape);
        let inv = 1.0 / cols.max(1) as f32;
        run(lw, &xt, &yt, rows, cols, true, &[], &[], &move |b, f| {
            standardize(b, f, inv, 1e-9)
        })?;
        // Back to x's axis order.
        let mut perm: Vec<usize> = (0..r).filter(|a| !axes.contains(a)).collect();
        perm.extend_from_slice(&axes);
        let st = strides(&yt.shape);
        let mut inv_st = vec![0i64; r];
        for (i, &a) in perm.iter().enumerate() {
            inv_st[a] = st[i];
        }
        lw.p.phase();
        return movement::copy_nd(
            &mut lw.p,
            &yt,
            &View {
                off: 0,
                strides: inv_st,
            },
            &y,
            &movement::plain(&y),
            &y.shape.clone(),
        );
    }
    let (nb, c) = (x.shape[0], x.shape[1]);
    let groups = if n.op == Op::GroupNormalization {
        int_attr(n, "num_groups", 1).max(1) as usize
    } else {
        c
    };
    if c % groups != 0 {
        return Err(Error::Graph(format!(
            "{}: channels not divisible by groups",
            n.describe()
        )));
    }
    let eps = float_attr(n, "epsilon", 1e-5);
    let rows = (nb * groups) as u64;
    let cols = x.numel() / rows.max(1);
    let t = lw.temp_f32("norm", &x.shape);
    let inv = 1.0 / cols.max(1) as f32;
    run(lw, &x, &t, rows, cols, true, &[], &[], &move |b, f| {
        standardize(b, f, inv, eps)
    })?;
    // Per-channel scale and bias, broadcast as [C, 1, ...].
    let mut chan = vec![c];
    chan.extend(std::iter::repeat_n(1, r - 2));
    let mut ins = vec![(t, None)];
    for i in 1..3 {
        let mut p = lw.input(n, i)?;
        if p.numel() != c as u64 {
            return Err(unsup(n.op, "scale/bias shapes"));
        }
        p.shape = chan.clone();
        ins.push((p, None));
    }
    super::elementwise::run(lw, &y, ins, true, &|b, d, s, _| {
        let a = match s[0] {
            VSrc::Full(a) => a,
            _ => 0,
        };
        vec![b.v(VOp::Mul, d, a, s[1]), b.v(VOp::Add, d, d, s[2])]
    })
}

fn norm(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    check_float(lw, n, 3, 3)?;
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    let ax = norm_axis(int_attr(n, "axis", -1), r)?;
    let eps = float_attr(n, "epsilon", 1e-5);
    let rows: u64 = x.shape[..ax].iter().product::<usize>() as u64;
    let cols: u64 = x.shape[ax..].iter().product::<usize>() as u64;
    let rms = n.op == Op::RMSNormalization;
    // gamma (and beta) broadcast to the normalized shape.
    let mut col_ops = Vec::new();
    for i in 1..3 {
        if !Lw::has_input(n, i) {
            continue;
        }
        let t = lw.input(n, i)?;
        if t.numel() == cols {
            col_ops.push(t);
        } else {
            let full = lw.temp_f32("gamma", &x.shape[ax..]);
            lw.p.phase();
            movement::expand_into(&mut lw.p, &t, &full)?;
            col_ops.push(full);
        }
    }
    let has_beta = col_ops.len() == 2;
    let y = lw.output(n, 0)?;
    let mut extra = Vec::new();
    if !rms {
        for (i, second) in [(1, false), (2, true)] {
            if n.outputs.get(i).copied().flatten().is_some() {
                extra.push((lw.output(n, i)?, second));
            }
        }
    }
    let inv_n = 1.0 / cols as f32;
    run(
        lw,
        &x,
        &y,
        rows,
        cols,
        true,
        &col_ops,
        &extra,
        &move |b, f| {
            let mut v = Vec::new();
            let src = if rms {
                f.x
            } else {
                v.extend([
                    red(ROp::Sum, b, f.r1, f.x),
                    rv(b, VOp::Mul, f.r1, f.r1, VSrc::Imm(inv_n)),
                    b.v(VOp::Sub, f.y, f.x, VSrc::Row(f.r1)),
                ]);
                f.y
            };
            v.extend([
                b.v(VOp::Mul, f.tmp, src, VSrc::Full(src)),
                red(ROp::Sum, b, f.r2, f.tmp),
                rv(b, VOp::Mul, f.r2, f.r2, VSrc::Imm(inv_n)),
                rv(b, VOp::Add, f.r2, f.r2, VSrc::Imm(eps)),
                rv(b, VOp::Rsqrt, f.r2, f.r2, VSrc::None),
                b.v(VOp::Mul, f.y, src, VSrc::Row(f.r2)),
            ]);
            if let Some(&g) = f.cols.first() {
                v.push(b.v(VOp::Mul, f.y, f.y, VSrc::Col(g)));
            }
            if has_beta {
                v.push(b.v(VOp::Add, f.y, f.y, VSrc::Col(f.cols[1])));
            }
            v
        },
    )
}

/// The product over `axes`: the reduced axes moved first, so that each
/// reduced position is one contiguous slab of the other axes, then a chain
/// of elementwise multiplies of the slabs (the unit has no product
/// reduction). The product of nothing is 1.
fn reduce_prod(lw: &mut Lw, x: &TRef, y: &TRef, axes: &[usize]) -> Result<(), Error> {
    let others: Vec<usize> = (0..x.shape.len()).filter(|a| !axes.contains(a)).collect();
    let k: usize = axes.iter().map(|&a| x.shape[a]).product();
    let rest: usize = others.iter().map(|&a| x.shape[a]).product();
    if rest == 0 {
        return Ok(());
    }
    if k == 0 {
        return movement::fill(lw, y, 1.0);
    }
    // Every slab is an operand of one block: SRAM bounds how many.
    if k > 64 {
        return Err(unsup(
            Op::ReduceProd,
            format!("a product of {k} values per output"),
        ));
    }
    let xt = axes_last(lw, x, &others)?;
    let slabs: Vec<(TRef, Option<f32>)> = (0..k as u64)
        .map(|i| {
            let t = TRef {
                off: xt.off + xt.dt.bytes(i * rest as u64 * xt.mult),
                shape: vec![rest],
                ..xt.clone()
            };
            (t, None)
        })
        .collect();
    let yf = TRef {
        shape: vec![rest],
        ..y.clone()
    };
    super::elementwise::run(lw, &yf, slabs, true, &|b, d, s, _| {
        let a = match s.first() {
            Some(VSrc::Full(a)) => *a,
            _ => 0,
        };
        let mut v = vec![b.v(VOp::Copy, d, a, VSrc::None)];
        for x in &s[1..] {
            v.push(b.v(VOp::Mul, d, d, *x));
        }
        v
    })
}

/// Axes given at run time: with keepdims the static output shape says
/// which axes shrink (an axis of extent 1 reduces to itself either way).
fn axes_from_shapes(lw: &mut Lw, n: &Node, x: &[usize]) -> Result<Vec<i64>, Error> {
    let no = || unsup(n.op, "axes not known at compile time");
    let y = n.outputs.first().copied().flatten().ok_or_else(no)?;
    let (ys, _) = lw.static_ty(y)?;
    if int_attr(n, "keepdims", 1) == 0 || ys.len() != x.len() {
        return Err(no());
    }
    let axes: Vec<i64> = (0..x.len())
        .filter(|&i| ys[i] != x[i] || x[i] == 1)
        .map(|i| i as i64)
        .collect();
    if axes.iter().any(|&i| ys[i as usize] != 1) {
        return Err(no());
    }
    Ok(axes)
}

/// ReduceMax/ReduceMin of booleans (any / all): stored as bytes, loaded
/// as 0.0/1.0, exact.
fn bool_extreme(lw: &mut Lw, n: &Node) -> Result<bool, Error> {
    if !matches!(n.op, Op::ReduceMax | Op::ReduceMin) {
        return Ok(false);
    }
    let vs = [n.inputs.first(), n.outputs.first()];
    for v in vs.into_iter().flatten().flatten() {
        if lw.static_ty(*v)?.1 != DType::Bool {
            return Ok(false);
        }
    }
    Ok(true)
}

fn reduce(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    if !bool_extreme(lw, n)? {
        check_float(lw, n, 1, 1)?;
    }
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    let axes: Option<Vec<i64>> = if Lw::has_input(n, 1) {
        match lw.known_input(n, 1).and_then(|t| t.to_i64_vec()) {
            Some(a) => Some(a),
            None => Some(axes_from_shapes(lw, n, &x.shape)?),
        }
    } else {
        match n.attr("axes") {
            Some(Attr::Ints(v)) => Some(v.clone()),
            _ => None,
        }
    };
    let noop = int_attr(n, "noop_with_empty_axes", 0) != 0;
    let mut axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?,
        _ if noop => vec![],
        _ => (0..r).collect(),
    };
    axes.sort();
    axes.dedup();
    let y = lw.output(n, 0)?;
    if n.op == Op::ReduceProd {
        return reduce_prod(lw, &x, &y, &axes);
    }
    let xt = axes_last(lw, &x, &axes)?;
    let cols: u64 = axes.iter().map(|&a| x.shape[a] as u64).product();
    let rows = x.numel() / cols.max(1);
    let inv = 1.0 / cols as f32;
    let op = n.op;
    let first_op: Option<VOp> = match op {
        Op::ReduceSum | Op::ReduceMean | Op::ReduceMax | Op::ReduceLogSum => None,
        Op::ReduceMin => Some(VOp::Neg),
        Op::ReduceL1 => Some(VOp::Abs),
        Op::ReduceL2 | Op::ReduceSumSquare => Some(VOp::Mul),
        Op::ReduceLogSumExp => None,
        _ => return Err(unsup(op, "")),
    };
    if y.numel() == 0 {
        return Ok(());
    }
    if cols == 0 {
        // Reducing nothing gives the reduction's identity (ONNX's
        // empty-set rule): 0 for sums, log 0 = -inf for the log sums, and
        // ∓inf (false / true on booleans) for max and min.
        let boolean = y.gdt == DType::Bool;
        let v = match op {
            Op::ReduceMax if boolean => 0.0,
            Op::ReduceMin if boolean => 1.0,
            Op::ReduceMax | Op::ReduceLogSum | Op::ReduceLogSumExp => f64::NEG_INFINITY,
            Op::ReduceMin => f64::INFINITY,
            Op::ReduceMean => f64::NAN,
            _ => 0.0,
        };
        return movement::fill(lw, &y, v);
    }
    run(lw, &xt, &y, rows, cols, false, &[], &[], &move |b, f| {
        let mut v = Vec::new();
        let mut src = f.x;
        match first_op {
            Some(VOp::Mul) => {
                v.push(b.v(VOp::Mul, f.tmp, f.x, VSrc::Full(f.x)));
                src = f.tmp;
            }
            Some(o) => {
                v.push(b.v(o, f.tmp, f.x, VSrc::None));
                src = f.tmp;
            }
            None => {}
        }
        match op {
            Op::ReduceMax => v.push(red(ROp::Max, b, f.r1, src)),
            Op::ReduceMin => {
                v.push(red(ROp::Max, b, f.r1, src));
                v.push(rv(b, VOp::Neg, f.r1, f.r1, VSrc::None));
            }
            Op::ReduceLogSumExp => {
                v.extend([
                    red(ROp::Max, b, f.r2, f.x),
                    b.v(VOp::Sub, f.tmp, f.x, VSrc::Row(f.r2)),
                    b.v(VOp::Exp, f.tmp, f.tmp, VSrc::None),
                    red(ROp::Sum, b, f.r1, f.tmp),
                    rv(b, VOp::Log, f.r1, f.r1, VSrc::None),
                    rv(b, VOp::Add, f.r1, f.r1, VSrc::Full(f.r2)),
                ]);
            }
            _ => {
                v.push(red(ROp::Sum, b, f.r1, src));
                match op {
                    Op::ReduceMean => v.push(rv(b, VOp::Mul, f.r1, f.r1, VSrc::Imm(inv))),
                    Op::ReduceL2 => v.push(rv(b, VOp::Sqrt, f.r1, f.r1, VSrc::None)),
                    Op::ReduceLogSum => v.push(rv(b, VOp::Log, f.r1, f.r1, VSrc::None)),
                    _ => {}
                }
            }
        }
        v
    })
}
