//! Matrix products: MatMul, Gemm and smelt's FusedMatMul. f32/f64 go
//! through the runtime's GEMM (the `gemm` crate); other dtypes through a
//! loop kernel with one serial reduction per output element. Epilogues
//! (bias, activation, residual) are one kernel pass over the output.

use super::elementwise::broadcast_index;
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};
use smelt_runtime::cpu::Gemm;

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "MatMul" => matmul_node(l, false),
        "FusedMatMul" => matmul_node(l, true),
        "Gemm" => gemm_node(l),
        "MatMulInteger" => quant_matmul(l, false),
        "QLinearMatMul" => quant_matmul(l, true),
        _ => return None,
    })
}

pub(super) fn invalid(e: smelt_ir::semantics::OpError) -> LowerError {
    LowerError::Invalid(e.0)
}

/// Whether the runtime GEMM handles this dtype.
pub(super) fn gemm_dtype(t: &T) -> Option<&'static str> {
    match t.ty {
        Ty::F32 => Some("f32"),
        Ty::F64 => Some("f64"),
        _ => None,
    }
}

/// The body of a fusable unary activation (fused.rs's `UNARY` list) applied
/// to `x` of compute type `ty`.
pub(super) fn activation(name: &str, ty: Ty, x: Expr) -> LResult<Expr> {
    let c = |v: f64| lit(v, ty);
    Ok(match name {
        "" => x,
        "Relu" => select(cmp(CmpOp::Lt, x.clone(), c(0.0)), c(0.0), x),
        "Sigmoid" => div(c(1.0), add(c(1.0), un(UnOp::Exp, un(UnOp::Neg, x)))),
        "Tanh" => un(UnOp::Tanh, x),
        "Exp" => un(UnOp::Exp, x),
        "Log" => un(UnOp::Log, x),
        "Sqrt" => un(UnOp::Sqrt, x),
        "Neg" => un(UnOp::Neg, x),
        "Abs" => un(UnOp::Abs, x),
        "Reciprocal" => div(c(1.0), x),
        "Floor" => un(UnOp::Floor, x),
        "Ceil" => un(UnOp::Ceil, x),
        "Sin" => un(UnOp::Sin, x),
        "Cos" => un(UnOp::Cos, x),
        "Erf" => un(UnOp::Erf, x),
        "Sign" => select(
            cmp(CmpOp::Gt, x.clone(), c(0.0)),
            c(1.0),
            select(cmp(CmpOp::Lt, x.clone(), c(0.0)), c(-1.0), x),
        ),
        "Softsign" => div(x.clone(), add(c(1.0), un(UnOp::Abs, x))),
        "Softplus" => un(UnOp::Log, add(un(UnOp::Exp, x), c(1.0))),
        "Gelu" => mul(
            mul(c(0.5), x.clone()),
            add(
                c(1.0),
                un(UnOp::Erf, mul(x, c(std::f64::consts::FRAC_1_SQRT_2))),
            ),
        ),
        other => return unsupported(format!("activation {other}")),
    })
}

/// `y = act(y + bias) + residual`, in place over `y` (one pass; each point
/// reads and writes only its own element). `bias` and `residual`
/// broadcast against `y`. When `bias` is `per_row` it is indexed by
/// `bias_dim` of the domain instead (Conv's per-channel bias).
pub(super) fn epilogue(
    l: &mut Lower,
    y: &T,
    bias: Option<(&T, Option<usize>)>,
    act: &str,
    residual: Option<&T>,
) -> LResult<()> {
    if bias.is_none() && act.is_empty() && residual.is_none() {
        return Ok(());
    }
    let ty = y.ty.compute();
    let mut k = Kernel::new("epilogue", y.dims.clone());
    let idxs: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let mut args: Vec<&T> = Vec::new();
    let yp = param(&mut k, "y", y, Access::Write);
    args.push(y);
    let at = flat(&idxs, &y.dims);
    let mut v = load(yp, at.clone());
    if let Some((b, dim)) = bias {
        let bp = param(&mut k, "bias", b, Access::Read);
        args.push(b);
        let bi = match dim {
            Some(d) => idxs[d].clone(),
            None => {
                if b.rank() > y.rank() {
                    return Err(LowerError::Invalid("bias has a larger rank".into()));
                }
                broadcast_index(&idxs, &y.dims, &b.dims)
            }
        };
        v = add(v, load(bp, bi));
    }
    v = activation(act, ty, v)?;
    if let Some(r) = residual {
        if r.rank() > y.rank() {
            return Err(LowerError::Invalid("residual has a larger rank".into()));
        }
        let rp = param(&mut k, "res", r, Access::Read);
        args.push(r);
        v = add(v, load(rp, broadcast_index(&idxs, &y.dims, &r.dims)));
    }
    k.body.push(Stmt::Store {
        buf: yp,
        index: at,
        value: v,
    });
    l.kernel(k, &args)
}

/// A copy of `src` broadcast to `dims`.
pub(super) fn broadcast_copy(l: &mut Lower, src: &T, dims: &[u64]) -> LResult<T> {
    let dst = l.temp(src.dtype, dims)?;
    let mut k = Kernel::new("bcast", dims.to_vec());
    let idxs: Vec<Expr> = (0..dims.len()).map(|d| k.index(d)).collect();
    let s = param(&mut k, "x", src, Access::Read);
    let d = param(&mut k, "y", &dst, Access::Write);
    k.body.push(Stmt::Store {
        buf: d,
        index: flat(&idxs, dims),
        value: load(s, broadcast_index(&idxs, dims, &src.dims)),
    });
    l.kernel(k, &[src, &dst])?;
    Ok(dst)
}

/// A view of `t` with other dims (same bytes, no copy).
pub(super) fn view(t: &T, dims: Vec<u64>) -> T {
    T { dims, ..t.clone() }
}

/// `y[b] (m x n) = a[b] (m x k) . b[b] (k x n)` with dense row-major
/// operands; `a_batch`/`b_batch` say whether the operand has its own
/// matrix per batch (else it is shared). `y` has `batch * m * n` elements.
#[allow(clippy::too_many_arguments)]
pub(super) fn batched_matmul(
    l: &mut Lower,
    a: &T,
    b: &T,
    y: &T,
    batch: u64,
    (m, k, n): (u64, u64, u64),
    a_batch: bool,
    b_batch: bool,
) -> LResult<()> {
    if k == 0 {
        return zero_fill(l, y);
    }
    let low = match y.ty {
        Ty::BF16 if l.low_precision_gemm() => Some("bf16"),
        Ty::F16 if l.low_precision_gemm() => Some("f16"),
        _ => None,
    };
    if let Some(dt) = gemm_dtype(y).or(low)
        && a.ty == y.ty
        && b.ty == y.ty
    {
        // A shared B lets the whole batch be one tall GEMM.
        let (batch, m) = if !b_batch && a_batch {
            (1, batch * m)
        } else {
            (batch, m)
        };
        let bs = |own: bool, sz: u64| if own { sz as i64 } else { 0 };
        l.gemm(Gemm {
            dtype: dt.into(),
            batch,
            m,
            n,
            k,
            a: a.buf,
            b: b.buf,
            c: y.buf,
            a_strides: [bs(a_batch && batch > 1, m * k), k as i64, 1],
            b_strides: [bs(b_batch, k * n), n as i64, 1],
            c_strides: [(m * n) as i64, n as i64, 1],
            alpha: 1.0,
            beta: 0.0,
            c_dtype: None,
        });
        return Ok(());
    }
    loop_matmul(l, a, b, y, batch, (m, k, n), a_batch, b_batch)
}

fn zero_fill(l: &mut Lower, y: &T) -> LResult<()> {
    let mut k = Kernel::new("zero", vec![y.numel()]);
    let p = param(&mut k, "y", y, Access::Write);
    let i = k.index(0);
    k.body.push(Stmt::Store {
        buf: p,
        index: i,
        value: lit(0.0, y.ty),
    });
    l.kernel(k, &[y])
}

/// The loop-nest matmul: domain (batch, m, n), a serial reduction over k.
#[allow(clippy::too_many_arguments)]
pub(super) fn loop_matmul(
    l: &mut Lower,
    a: &T,
    b: &T,
    y: &T,
    batch: u64,
    (m, kk, n): (u64, u64, u64),
    a_batch: bool,
    b_batch: bool,
) -> LResult<()> {
    let ty = y.ty.compute();
    let mut k = Kernel::new("matmul", vec![batch, m, n]);
    let (bi, i, j) = (k.index(0), k.index(1), k.index(2));
    let ap = param(&mut k, "a", a, Access::Read);
    let bp = param(&mut k, "b", b, Access::Read);
    let yp = param(&mut k, "y", y, Access::Write);
    let acc = k.var("acc", ty, true);
    let r = k.var("r", Ty::I64, false);
    let abase = if a_batch {
        add(
            mul(bi.clone(), idx((m * kk) as i64)),
            mul(i.clone(), idx(kk as i64)),
        )
    } else {
        mul(i.clone(), idx(kk as i64))
    };
    let bbase = if b_batch {
        add(mul(bi.clone(), idx((kk * n) as i64)), j.clone())
    } else {
        j.clone()
    };
    let prod = mul(
        cast(ty, load(ap, add(abase, var(r)))),
        cast(ty, load(bp, add(bbase, mul(var(r), idx(n as i64))))),
    );
    k.body.push(Stmt::Decl(acc, lit(0.0, ty)));
    k.body.push(Stmt::Loop {
        var: r,
        extent: idx(kk as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(acc, add(var(acc), prod))],
    });
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&[bi, i, j], &[batch, m, n]),
        value: var(acc),
    });
    l.kernel(k, &[a, b, y])
}

fn matmul_node(l: &mut Lower, fused: bool) -> LResult<()> {
    let a = l.input(0)?;
    let b = l.input(1)?;
    let y = l.out(0)?;
    if a.rank() == 0 || b.rank() == 0 {
        return Err(LowerError::Invalid(
            "MatMul operands must have rank >= 1".into(),
        ));
    }
    if a.ty != b.ty || y.ty != a.ty {
        return unsupported("MatMul with mixed dtypes");
    }
    if !(a.ty.is_float() || a.ty.is_int()) {
        return unsupported(format!("MatMul of {}", a.dtype));
    }
    let a2 = if a.rank() == 1 {
        vec![1, a.dims[0]]
    } else {
        a.dims.clone()
    };
    let b2 = if b.rank() == 1 {
        vec![b.dims[0], 1]
    } else {
        b.dims.clone()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(LowerError::Invalid(format!(
            "MatMul inner dimensions differ: {:?} vs {:?}",
            a.dims, b.dims
        )));
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = ab.len().max(bb.len());
    let pad = |d: &[u64]| -> Vec<u64> {
        let mut v = vec![1; rank - d.len()];
        v.extend_from_slice(d);
        v
    };
    let (pa, pb) = (pad(ab), pad(bb));
    let mut batch_dims = Vec::with_capacity(rank);
    for (&x, &z) in pa.iter().zip(&pb) {
        if x != z && x != 1 && z != 1 {
            return Err(LowerError::Invalid(format!(
                "MatMul batch dims do not broadcast: {:?} vs {:?}",
                a.dims, b.dims
            )));
        }
        batch_dims.push(x.max(z));
    }
    let batch: u64 = batch_dims.iter().product();
    if y.numel() != batch * m * n {
        return Err(LowerError::Invalid("MatMul output size mismatch".into()));
    }
    // Each operand must be either one matrix for every batch or its own per
    // batch; anything else is broadcast into a temporary first.
    let prep = |l: &mut Lower, t: &T, padded: &[u64], r: u64, c: u64| -> LResult<(T, bool)> {
        let own: u64 = padded.iter().product();
        if own == 1 {
            Ok((view(t, vec![r, c]), false))
        } else if padded == batch_dims.as_slice() {
            Ok((t.clone(), true))
        } else {
            let mut src = padded.to_vec();
            src.extend([r, c]);
            let mut full = batch_dims.clone();
            full.extend([r, c]);
            Ok((broadcast_copy(l, &view(t, src), &full)?, true))
        }
    };
    let (at, a_own) = prep(l, &a, &pa, m, k)?;
    let (bt, b_own) = prep(l, &b, &pb, k, n)?;
    batched_matmul(l, &at, &bt, &y, batch, (m, k, n), a_own, b_own)?;
    if fused {
        let act = l.ctx().string("activation", "").map_err(invalid)?;
        let bias = l.opt_input(2);
        let res = l.opt_input(3);
        epilogue(l, &y, bias.as_ref().map(|b| (b, None)), &act, res.as_ref())?;
    }
    Ok(())
}

fn gemm_node(l: &mut Lower) -> LResult<()> {
    let a = l.input(0)?;
    let b = l.input(1)?;
    let y = l.out(0)?;
    let ctx = l.ctx();
    let ta = ctx.int("transA", 0).map_err(invalid)? != 0;
    let tb = ctx.int("transB", 0).map_err(invalid)? != 0;
    let alpha = f64::from(ctx.float("alpha", 1.0).map_err(invalid)?);
    let beta = f64::from(ctx.float("beta", 1.0).map_err(invalid)?);
    if a.rank() != 2 || b.rank() != 2 || y.rank() != 2 {
        return Err(LowerError::Invalid("Gemm operands must be 2-D".into()));
    }
    if a.ty != b.ty || y.ty != a.ty {
        return unsupported("Gemm with mixed dtypes");
    }
    let (m, k) = if ta {
        (a.dims[1], a.dims[0])
    } else {
        (a.dims[0], a.dims[1])
    };
    let (k2, n) = if tb {
        (b.dims[1], b.dims[0])
    } else {
        (b.dims[0], b.dims[1])
    };
    if k != k2 || y.dims != [m, n] {
        return Err(LowerError::Invalid("Gemm shapes do not fit".into()));
    }
    let c = l.opt_input(2).filter(|_| beta != 0.0);
    if let Some(c) = &c
        && c.rank() > 2
    {
        return Err(LowerError::Invalid(
            "Gemm C must broadcast to (M, N)".into(),
        ));
    }
    if let Some(dt) = gemm_dtype(&y) {
        // beta * C goes into Y first, the GEMM then accumulates onto it.
        if let Some(c) = &c {
            scaled_copy(l, c, &y, beta)?;
        }
        l.gemm(Gemm {
            dtype: dt.into(),
            batch: 1,
            m,
            n,
            k,
            a: a.buf,
            b: b.buf,
            c: y.buf,
            a_strides: if ta {
                [0, 1, m as i64]
            } else {
                [0, k as i64, 1]
            },
            b_strides: if tb {
                [0, 1, k as i64]
            } else {
                [0, n as i64, 1]
            },
            c_strides: [0, n as i64, 1],
            alpha,
            beta: if c.is_some() { 1.0 } else { 0.0 },
            c_dtype: None,
        });
        if k == 0 && c.is_none() {
            zero_fill(l, &y)?;
        }
        return Ok(());
    }
    if !(a.ty.is_float() || a.ty.is_int()) {
        return unsupported(format!("Gemm of {}", a.dtype));
    }
    let ty = y.ty.compute();
    let mut kn = Kernel::new("gemm", vec![m, n]);
    let (i, j) = (kn.index(0), kn.index(1));
    let ap = param(&mut kn, "a", &a, Access::Read);
    let bp = param(&mut kn, "b", &b, Access::Read);
    let cp = c.as_ref().map(|c| param(&mut kn, "c", c, Access::Read));
    let yp = param(&mut kn, "y", &y, Access::Write);
    let acc = kn.var("acc", ty, true);
    let r = kn.var("r", Ty::I64, false);
    let ai = if ta {
        add(mul(var(r), idx(m as i64)), i.clone())
    } else {
        add(mul(i.clone(), idx(k as i64)), var(r))
    };
    let bi = if tb {
        add(mul(j.clone(), idx(k as i64)), var(r))
    } else {
        add(mul(var(r), idx(n as i64)), j.clone())
    };
    kn.body.push(Stmt::Decl(acc, lit(0.0, ty)));
    kn.body.push(Stmt::Loop {
        var: r,
        extent: idx(k as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(
            acc,
            add(var(acc), mul(load(ap, ai), load(bp, bi))),
        )],
    });
    let mut v = var(acc);
    if alpha != 1.0 {
        v = mul(lit(alpha, ty), v);
    }
    if let (Some(cp), Some(c)) = (cp, &c) {
        let ci = broadcast_index(&[i.clone(), j.clone()], &[m, n], &c.dims);
        let cv = load(cp, ci);
        v = add(
            v,
            if beta != 1.0 {
                mul(lit(beta, ty), cv)
            } else {
                cv
            },
        );
    }
    kn.body.push(Stmt::Store {
        buf: yp,
        index: flat(&[i, j], &[m, n]),
        value: v,
    });
    let mut args = vec![&a, &b];
    if let Some(c) = &c {
        args.push(c);
    }
    args.push(&y);
    l.kernel(kn, &args)
}

/// `y = scale * broadcast(c)`.
fn scaled_copy(l: &mut Lower, c: &T, y: &T, scale: f64) -> LResult<()> {
    let ty = y.ty.compute();
    let mut k = Kernel::new("scale_c", y.dims.clone());
    let idxs: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let cp = param(&mut k, "c", c, Access::Read);
    let yp = param(&mut k, "y", y, Access::Write);
    let v = load(cp, broadcast_index(&idxs, &y.dims, &c.dims));
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&idxs, &y.dims),
        value: if scale == 1.0 {
            v
        } else {
            mul(lit(scale, ty), v)
        },
    });
    l.kernel(k, &[c, y])
}

/// Loads `t` per row (`i`) / per column (`j`) or as a scalar.
fn per_axis(k: &mut Kernel, name: &str, t: &T, at: &Expr, want: u64) -> LResult<Expr> {
    let p = param(k, name, t, Access::Read);
    if t.numel() == 1 {
        Ok(load(p, idx(0)))
    } else if t.numel() == want {
        Ok(load(p, at.clone()))
    } else {
        Err(LowerError::Invalid(format!(
            "{name} has {} values, expected 1 or {want}",
            t.numel()
        )))
    }
}

/// MatMulInteger and QLinearMatMul: exact integer dot products of the
/// zero-point-shifted operands, then (QLinear) rescaled, rounded half to
/// even and saturated into the output's dtype.
fn quant_matmul(l: &mut Lower, qlinear: bool) -> LResult<()> {
    let (ai, bi, azi, bzi) = if qlinear { (0, 3, 2, 5) } else { (0, 1, 2, 3) };
    let a = l.input(ai)?;
    let b = l.input(bi)?;
    let y = l.out(0)?;
    if a.rank() < 2 || b.rank() < 2 || !a.ty.is_int() || !b.ty.is_int() {
        return unsupported("quantized matmul of vectors or non-integers");
    }
    let (m, kk) = (a.dims[a.rank() - 2], a.dims[a.rank() - 1]);
    let (k2, n) = (b.dims[b.rank() - 2], b.dims[b.rank() - 1]);
    let (ab, bb) = (&a.dims[..a.rank() - 2], &b.dims[..b.rank() - 2]);
    let batch: u64 = y.numel() / (m * n).max(1);
    let own = |d: &[u64]| d.iter().product::<u64>() == batch && batch > 1;
    let one = |d: &[u64]| d.iter().product::<u64>() == 1;
    if k2 != kk || !(own(ab) || one(ab)) || !(own(bb) || one(bb)) {
        return unsupported("quantized matmul with broadcast batches");
    }
    let (a_own, b_own) = (own(ab), own(bb));
    let mut k = Kernel::new("qmatmul", vec![batch, m, n]);
    let (bv, i, j) = (k.index(0), k.index(1), k.index(2));
    let ap = param(&mut k, "a", &a, Access::Read);
    let bp = param(&mut k, "b", &b, Access::Read);
    let mut args: Vec<T> = vec![a.clone(), b.clone()];
    let zp = |k: &mut Kernel, slot: usize, at: &Expr, want: u64, args: &mut Vec<T>| match l
        .opt_input(slot)
    {
        Some(t) => {
            let e = per_axis(k, "zp", &t, at, want)?;
            args.push(t);
            Ok(cast(Ty::I64, e))
        }
        None => Ok(idx(0)),
    };
    let az = zp(&mut k, azi, &i, m, &mut args)?;
    let bz = zp(&mut k, bzi, &j, n, &mut args)?;
    let acc = k.var("acc", Ty::I64, true);
    let r = k.var("r", Ty::I64, false);
    let abase = if a_own {
        mul(bv.clone(), idx((m * kk) as i64))
    } else {
        idx(0)
    };
    let bbase = if b_own {
        mul(bv.clone(), idx((kk * n) as i64))
    } else {
        idx(0)
    };
    let av = load(ap, add(abase, add(mul(i.clone(), idx(kk as i64)), var(r))));
    let bvv = load(bp, add(bbase, add(mul(var(r), idx(n as i64)), j.clone())));
    k.body.push(Stmt::Decl(acc, idx(0)));
    k.body.push(Stmt::Loop {
        var: r,
        extent: idx(kk as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(
            acc,
            add(
                var(acc),
                mul(sub(cast(Ty::I64, av), az), sub(cast(Ty::I64, bvv), bz)),
            ),
        )],
    });
    let value = if qlinear {
        let (lo, hi) = match y.ty {
            Ty::U8 => (0.0, 255.0),
            Ty::I8 => (-128.0, 127.0),
            Ty::U16 => (0.0, 65535.0),
            Ty::I16 => (-32768.0, 32767.0),
            Ty::I32 => (i32::MIN as f64, i32::MAX as f64),
            _ => return unsupported(format!("QLinearMatMul to {}", y.dtype)),
        };
        let asc = l.input(1)?;
        let bsc = l.input(4)?;
        let ysc = l.input(6)?;
        let yzp = l.input(7)?;
        if ysc.numel() != 1 || yzp.numel() != 1 {
            return Err(LowerError::Invalid(
                "QLinearMatMul needs scalar y_scale and y_zero_point".into(),
            ));
        }
        let sa = cast(Ty::F64, per_axis(&mut k, "a_scale", &asc, &i, m)?);
        let sb = cast(Ty::F64, per_axis(&mut k, "b_scale", &bsc, &j, n)?);
        let sy = cast(Ty::F64, per_axis(&mut k, "y_scale", &ysc, &i, 1)?);
        let zy = cast(Ty::F64, per_axis(&mut k, "y_zp", &yzp, &i, 1)?);
        args.extend([asc, bsc, ysc, yzp]);
        let x = add(mul(cast(Ty::F64, var(acc)), div(mul(sa, sb), sy)), zy);
        let x = bin(
            smelt_kernel::BinOp::Min,
            bin(
                smelt_kernel::BinOp::Max,
                un(UnOp::Round, x),
                lit(lo, Ty::F64),
            ),
            lit(hi, Ty::F64),
        );
        cast(y.ty, x)
    } else {
        if y.ty != Ty::I32 {
            return unsupported("MatMulInteger to a dtype other than int32");
        }
        cast(Ty::I32, var(acc))
    };
    let yp = param(&mut k, "y", &y, Access::Write);
    args.push(y.clone());
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&[bv, i, j], &[batch, m, n]),
        value,
    });
    let refs: Vec<&T> = args.iter().collect();
    l.kernel(k, &refs)
}
