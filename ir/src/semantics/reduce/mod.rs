//! Reductions (Reduce*, ArgMax/ArgMin), losses built on them, random
//! generators and signal ops (windows, DFT, STFT, mel matrix).
//!
//! Reduce* follow the newest ONNX form: `axes` is an optional second input;
//! absent or empty axes mean "all axes" unless `noop_with_empty_axes` is set,
//! in which case every element is reduced on its own (Sum is then Identity,
//! SumSquare is Square, ...). A group with no elements reduces to the
//! operation's identity (0 for sums, 1 for Prod, -inf for Max/LogSum/LogSumExp
//! of floats, the dtype's minimum for Max of ints, ...).

mod loss;
mod random;
mod signal;

pub use signal::dft_signal;

use super::util::{const_ints, norm_axis};
use super::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::interp::Tensor;
use crate::interp::tensor::{Storage, strides};
use crate::{DClass, DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    use Op::*;
    let (infer, kernel): (super::InferFn, super::KernelFn) = match op {
        ReduceSum | ReduceMean | ReduceMax | ReduceMin | ReduceProd | ReduceL1 | ReduceL2
        | ReduceLogSum | ReduceLogSumExp | ReduceSumSquare => (infer_reduce, k_reduce),
        ArgMax | ArgMin => (infer_arg, k_arg),
        _ => {
            return loss::lookup(op)
                .or_else(|| random::lookup(op))
                .or_else(|| signal::lookup(op));
        }
    };
    Some(OpImpl { infer, kernel })
}

/// Which dims of a rank-`rank` input are reduced, from the `axes` values
/// (`None`: input absent).
fn reduce_mask(ctx: &Ctx, axes: Option<&[i64]>, rank: usize) -> OpResult<Vec<bool>> {
    match axes {
        None | Some([]) => {
            let noop = ctx.int("noop_with_empty_axes", 0)? != 0;
            Ok(vec![!noop; rank])
        }
        Some(list) => {
            let mut mask = vec![false; rank];
            for &a in list {
                mask[norm_axis(a, rank)?] = true;
            }
            Ok(mask)
        }
    }
}

fn check_reduce_dtype(op: Op, d: DType) -> OpResult<()> {
    let ok = match d.class() {
        DClass::Float => true,
        DClass::Signed | DClass::Unsigned => !matches!(op, Op::ReduceLogSum | Op::ReduceLogSumExp),
        DClass::Bool => matches!(op, Op::ReduceMax | Op::ReduceMin),
        _ => false,
    };
    if !ok {
        op_bail!("{op} is not defined for {d}");
    }
    Ok(())
}

fn infer_reduce(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    check_reduce_dtype(ctx.node.op, x.dtype)?;
    let keep = ctx.int("keepdims", 1)? != 0;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::new(x.dtype, Shape::unknown())]);
    };
    let axes = match ins.get(1) {
        Some(Some(a)) => match a.value {
            Some(v) => Some(const_ints(Some(v)).ok_or("axes must be integers")?),
            // Run-time axes: only keepdims pins the rank.
            None => {
                let shape = Shape(keep.then(|| vec![Dim::Unknown; dims.len()]));
                return Ok(vec![TensorType::new(x.dtype, shape)]);
            }
        },
        _ => None,
    };
    let mask = reduce_mask(ctx, axes.as_deref(), dims.len())?;
    let out = dims
        .iter()
        .zip(&mask)
        .filter_map(|(d, &m)| match (m, keep) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Static(1)),
            (true, false) => None,
        })
        .collect();
    Ok(vec![TensorType::new(x.dtype, Shape(Some(out)))])
}

/// The output shape of a reduction and, for each input element (row-major),
/// the flat index of the output element it contributes to.
fn group_map(shape: &[usize], mask: &[bool], keep: bool) -> (Vec<usize>, Vec<usize>, usize) {
    let kept: Vec<usize> = shape
        .iter()
        .zip(mask)
        .map(|(&d, &m)| if m { 1 } else { d })
        .collect();
    let out_shape: Vec<usize> = if keep {
        kept.clone()
    } else {
        shape
            .iter()
            .zip(mask)
            .filter(|&(_, &m)| !m)
            .map(|(&d, _)| d)
            .collect()
    };
    let ostr = strides(&kept);
    // Reduced dims contribute nothing to the output index.
    let eff: Vec<usize> = ostr
        .iter()
        .zip(mask)
        .map(|(&s, &m)| if m { 0 } else { s })
        .collect();
    let n: usize = shape.iter().product();
    let mut map = Vec::with_capacity(n);
    let mut idx = vec![0usize; shape.len()];
    let mut flat = 0usize;
    for _ in 0..n {
        map.push(flat);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            flat += eff[d];
            if idx[d] < shape[d] {
                break;
            }
            flat -= eff[d] * idx[d];
            idx[d] = 0;
        }
    }
    let groups = kept.iter().product();
    (out_shape, map, groups)
}

fn k_reduce(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let op = ctx.node.op;
    check_reduce_dtype(op, x.dtype)?;
    let keep = ctx.int("keepdims", 1)? != 0;
    let axes = match ins.get(1) {
        Some(Some(a)) => Some(const_ints(Some(a)).ok_or("axes must be integers")?),
        _ => None,
    };
    let mask = reduce_mask(ctx, axes.as_deref(), x.rank())?;
    let (shape, map, groups) = group_map(&x.shape, &mask, keep);
    let mut count = vec![0usize; groups];
    for &g in &map {
        count[g] += 1;
    }
    Ok(vec![match &x.data {
        Storage::F(v) => Tensor::from_f64(x.dtype, shape, reduce_f64(op, v, &map, &count)?),
        Storage::I(v) => {
            let bits = x.dtype.bits();
            let (lo, hi) = (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1);
            Tensor::from_i64(x.dtype, shape, reduce_int(op, v, &map, &count, lo, hi)?)
        }
        Storage::U(v) => {
            let hi = (1i128 << x.dtype.bits()) - 1;
            let w: Vec<i128> = v.iter().map(|&u| u as i128).collect();
            let r = reduce_int(op, &w, &map, &count, 0, hi)?;
            Tensor::from_u64(x.dtype, shape, r.into_iter().map(|u| u as u64).collect())
        }
        Storage::B(v) => {
            // Max is "any", Min is "all"; an empty group gives the identity.
            let any = op == Op::ReduceMax;
            let mut out = vec![!any; groups];
            for (&b, &g) in v.iter().zip(&map) {
                if b == any {
                    out[g] = any;
                }
            }
            Tensor::from_bool(shape, out)
        }
        Storage::S(_) => op_bail!("{op} is not defined for strings"),
    }])
}

fn reduce_f64(op: Op, v: &[f64], map: &[usize], count: &[usize]) -> OpResult<Vec<f64>> {
    let groups = count.len();
    let fold = |init: f64, f: fn(f64, f64) -> f64| {
        let mut acc = vec![init; groups];
        for (&x, &g) in v.iter().zip(map) {
            acc[g] = f(acc[g], x);
        }
        acc
    };
    Ok(match op {
        Op::ReduceSum => fold(0.0, |a, x| a + x),
        Op::ReduceSumSquare => fold(0.0, |a, x| a + x * x),
        Op::ReduceL1 => fold(0.0, |a, x| a + x.abs()),
        Op::ReduceL2 => fold(0.0, |a, x| a + x * x)
            .into_iter()
            .map(f64::sqrt)
            .collect(),
        Op::ReduceProd => fold(1.0, |a, x| a * x),
        Op::ReduceMean => fold(0.0, |a, x| a + x)
            .into_iter()
            .zip(count)
            .map(|(s, &n)| s / n as f64)
            .collect(),
        // NaN wins, as with numpy's maximum/minimum.
        Op::ReduceMax => fold(
            f64::NEG_INFINITY,
            |a, x| if x > a || x.is_nan() { x } else { a },
        ),
        Op::ReduceMin => fold(
            f64::INFINITY,
            |a, x| if x < a || x.is_nan() { x } else { a },
        ),
        Op::ReduceLogSum => fold(0.0, |a, x| a + x).into_iter().map(f64::ln).collect(),
        Op::ReduceLogSumExp => {
            // Shift by the largest finite-or-(-inf) element for stability; a
            // group with no finite maximum is not shifted.
            let mx = fold(f64::NEG_INFINITY, |a, x| {
                if x != f64::INFINITY && x > a { x } else { a }
            });
            let mut s = vec![0.0; groups];
            for (&x, &g) in v.iter().zip(map) {
                let m = if mx[g].is_finite() { mx[g] } else { 0.0 };
                s[g] += (x - m).exp();
            }
            s.into_iter()
                .zip(mx)
                .map(|(s, m)| s.ln() + if m.is_finite() { m } else { 0.0 })
                .collect()
        }
        _ => op_bail!("{op} is not a reduction"),
    })
}

/// Integer reductions in i128 (wide enough for any product step of i64/u64
/// operands before the final wrap to the dtype).
fn reduce_int<T: Copy + Into<i128>>(
    op: Op,
    v: &[T],
    map: &[usize],
    count: &[usize],
    lo: i128,
    hi: i128,
) -> OpResult<Vec<i64>> {
    let groups = count.len();
    let wrap = |x: i128| x as i64;
    let fold = |init: i128, f: fn(i128, i128) -> i128| {
        let mut acc = vec![init; groups];
        for (&x, &g) in v.iter().zip(map) {
            acc[g] = f(acc[g], x.into());
        }
        acc
    };
    // Sums wrap in 64 bits; the caller wraps to the dtype's width, which
    // commutes with wrapping addition and multiplication.
    fn w(a: i128) -> i128 {
        (a as i64) as i128
    }
    Ok(match op {
        Op::ReduceSum => fold(0, |a, x| w(a + x)),
        Op::ReduceSumSquare => fold(0, |a, x| w(a + w(x * x))),
        Op::ReduceL1 => fold(0, |a, x| w(a + x.abs())),
        Op::ReduceProd => fold(1, |a, x| w(a * x)),
        Op::ReduceMax => fold(lo, |a, x| a.max(x)),
        Op::ReduceMin => fold(hi, |a, x| a.min(x)),
        Op::ReduceL2 => {
            // numpy: sqrt of the sum of squares, cast back (truncating).
            let mut acc = vec![0f64; groups];
            for (&x, &g) in v.iter().zip(map) {
                let x = x.into() as f64;
                acc[g] += x * x;
            }
            return Ok(acc.into_iter().map(|s| s.sqrt() as i64).collect());
        }
        Op::ReduceMean => {
            // numpy's integer mean divides and truncates toward zero.
            let s = fold(0, |a, x| a + x);
            return Ok(s
                .into_iter()
                .zip(count)
                .map(|(s, &n)| if n == 0 { 0 } else { wrap(s / n as i128) })
                .collect());
        }
        _ => op_bail!("{op} is not defined for integers"),
    }
    .into_iter()
    .map(wrap)
    .collect())
}

fn infer_arg(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let keep = ctx.int("keepdims", 1)? != 0;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![TensorType::new(DType::I64, Shape::unknown())]);
    };
    let axis = norm_axis(ctx.int("axis", 0)?, dims.len())?;
    let mut out = dims.to_vec();
    if keep {
        out[axis] = Dim::Static(1);
    } else {
        out.remove(axis);
    }
    Ok(vec![TensorType::new(DType::I64, Shape(Some(out)))])
}

fn k_arg(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let op = ctx.node.op;
    let keep = ctx.int("keepdims", 1)? != 0;
    let last = ctx.int("select_last_index", 0)? != 0;
    let axis = norm_axis(ctx.int("axis", 0)?, x.rank())?;
    let n = x.shape[axis];
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    if n == 0 && outer * inner > 0 {
        op_bail!("{op} over an empty axis {axis}");
    }
    let want_max = op == Op::ArgMax;
    // Orders two elements; `better(a, b)` means a beats the current best b.
    // NaN beats everything, like numpy's argmax/argmin.
    let best = |get: &dyn Fn(usize) -> (bool, f64, i128)| -> Vec<i64> {
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| o * n * inner + k * inner + i;
                let mut bi = 0usize;
                let mut b = get(at(0));
                for k in 1..n {
                    let c = get(at(k));
                    let beats = if b.0 {
                        last && c.0
                    } else if c.0 {
                        true
                    } else {
                        let ord =
                            c.1.partial_cmp(&b.1)
                                .unwrap_or(std::cmp::Ordering::Equal)
                                .then(c.2.cmp(&b.2));
                        let ord = if want_max { ord } else { ord.reverse() };
                        ord.is_gt() || (last && ord.is_eq())
                    };
                    if beats {
                        bi = k;
                        b = c;
                    }
                }
                out.push(bi as i64);
            }
        }
        out
    };
    let res = match &x.data {
        Storage::F(v) => best(&|j| (v[j].is_nan(), v[j], 0)),
        Storage::I(v) => best(&|j| (false, 0.0, v[j] as i128)),
        Storage::U(v) => best(&|j| (false, 0.0, v[j] as i128)),
        Storage::B(v) => best(&|j| (false, 0.0, i128::from(v[j]))),
        Storage::S(_) => op_bail!("{op} is not defined for strings"),
    };
    let mut shape = x.shape.clone();
    if keep {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    Ok(vec![Tensor::from_i64(DType::I64, shape, res)])
}

#[cfg(test)]
pub(crate) mod tests;
