//! Broadcasting binary and variadic ops: arithmetic, Pow, Mod, bitwise and
//! shifts, comparisons, logic, Max/Min/Sum/Mean and Where.

use super::bcast;
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::semantics::{Ctx, OpResult, operand};
use crate::{DType, Op, op_bail};

fn check_same(op: Op, a: &Tensor, b: &Tensor) -> OpResult<()> {
    if a.dtype != b.dtype {
        op_bail!(
            "{op} operands have different dtypes {} and {}",
            a.dtype,
            b.dtype
        );
    }
    Ok(())
}

/// numpy's `mod` for floats: the result takes the sign of the divisor.
pub(super) fn py_fmod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if b == 0.0 || m.is_nan() {
        return m;
    }
    if m == 0.0 {
        0.0f64.copysign(b)
    } else if (m < 0.0) != (b < 0.0) {
        m + b
    } else {
        m
    }
}

/// Add/Sub/Mul/Div/Mod/Bitwise*/BitShift on two integers of dtype `d`
/// (held sign-extended in i64; the caller wraps the result to `d`).
fn int_op(op: Op, d: DType, p: i64, q: i64, fmod: bool, left: bool) -> OpResult<i64> {
    Ok(match op {
        Op::Add => p.wrapping_add(q),
        Op::Sub => p.wrapping_sub(q),
        Op::Mul => p.wrapping_mul(q),
        Op::Div | Op::Mod if q == 0 => op_bail!("integer {op} by zero"),
        // Integer Div truncates toward zero, like C.
        Op::Div => p.wrapping_div(q),
        Op::Mod => {
            let r = p.wrapping_rem(q);
            // fmod=0 follows Python: the remainder takes the divisor's sign.
            if !fmod && r != 0 && (r < 0) != (q < 0) {
                r + q
            } else {
                r
            }
        }
        Op::BitwiseAnd => p & q,
        Op::BitwiseOr => p | q,
        Op::BitwiseXor => p ^ q,
        Op::BitShift => {
            let w = i64::from(d.bits());
            if q < 0 || q >= w {
                // Shifting by the width or more empties the value (sign
                // fill for arithmetic right shifts), as the reference does.
                if !left && p < 0 { -1 } else { 0 }
            } else if left {
                p.wrapping_shl(q as u32)
            } else {
                p >> q
            }
        }
        _ => op_bail!("{op} is not defined for {d}"),
    })
}

fn uint_op(op: Op, d: DType, p: u64, q: u64, left: bool) -> OpResult<u64> {
    Ok(match op {
        Op::Add => p.wrapping_add(q),
        Op::Sub => p.wrapping_sub(q),
        Op::Mul => p.wrapping_mul(q),
        Op::Div | Op::Mod if q == 0 => op_bail!("integer {op} by zero"),
        Op::Div => p / q,
        Op::Mod => p % q,
        Op::BitwiseAnd => p & q,
        Op::BitwiseOr => p | q,
        Op::BitwiseXor => p ^ q,
        Op::BitShift => {
            if q >= u64::from(d.bits()) {
                0
            } else if left {
                p << q
            } else {
                p >> q
            }
        }
        _ => op_bail!("{op} is not defined for {d}"),
    })
}

pub(super) fn k_arith(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let op = ctx.node.op;
    check_same(op, a, b)?;
    let fmod = ctx.int("fmod", 0)? != 0;
    let left = if op == Op::BitShift {
        match ctx.string("direction", "")?.as_str() {
            "LEFT" => true,
            "RIGHT" => false,
            d => op_bail!("BitShift direction must be LEFT or RIGHT, found {d:?}"),
        }
    } else {
        false
    };
    let (shape, m) = bcast(&[a, b])?;
    let (ia, ib) = (&m[0], &m[1]);
    let d = a.dtype;
    Ok(vec![match (&a.data, &b.data) {
        (Storage::F(x), Storage::F(y)) => {
            let f: fn(f64, f64) -> f64 = match op {
                Op::Add => |a, b| a + b,
                Op::Sub => |a, b| a - b,
                Op::Mul => |a, b| a * b,
                Op::Div => |a, b| a / b,
                // Rust's `%` on floats is C's fmod.
                Op::Mod if fmod => |a, b| a % b,
                Op::Mod => py_fmod,
                _ => op_bail!("{op} is not defined for {d}"),
            };
            Tensor::from_f64(
                d,
                shape,
                ia.iter().zip(ib).map(|(&i, &j)| f(x[i], y[j])).collect(),
            )
        }
        (Storage::I(x), Storage::I(y)) => {
            let mut out = Vec::with_capacity(ia.len());
            for (&i, &j) in ia.iter().zip(ib) {
                out.push(int_op(op, d, x[i], y[j], fmod, left)?);
            }
            Tensor::from_i64(d, shape, out)
        }
        (Storage::U(x), Storage::U(y)) => {
            let mut out = Vec::with_capacity(ia.len());
            for (&i, &j) in ia.iter().zip(ib) {
                out.push(uint_op(op, d, x[i], y[j], left)?);
            }
            Tensor::from_u64(d, shape, out)
        }
        _ => op_bail!("{op} is not defined for {d}"),
    }])
}

/// Integer power with wrap-around, as numpy computes it in the base dtype.
/// Negative exponents give the truncated reciprocal (0 unless |base| is 1).
fn ipow(base: i64, e: i64) -> i64 {
    if e < 0 {
        return match base {
            1 => 1,
            -1 if e % 2 == 0 => 1,
            -1 => -1,
            _ => 0,
        };
    }
    let (mut acc, mut b, mut e) = (1i64, base, e as u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    acc
}

/// Float to integer the way a C cast does for in-range values (truncation);
/// out-of-range and NaN give 0 instead of undefined behaviour.
fn trunc_i64(x: f64) -> i64 {
    if x.is_finite() && x.abs() < 9.2e18 {
        x as i64
    } else {
        0
    }
}

/// Pow: the output has the base's dtype whatever the exponent's is.
pub(super) fn k_pow(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let (shape, m) = bcast(&[a, b])?;
    let (ia, ib) = (&m[0], &m[1]);
    let d = a.dtype;
    let int_exp: Option<Vec<i64>> = match &b.data {
        Storage::I(v) => Some(v.clone()),
        Storage::U(v) => Some(
            v.iter()
                .map(|&u| i64::try_from(u).unwrap_or(i64::MAX))
                .collect(),
        ),
        _ => None,
    };
    let Some(fy) = b.to_f64_vec() else {
        op_bail!("Pow exponent cannot be {}", b.dtype)
    };
    Ok(vec![match &a.data {
        Storage::F(x) => Tensor::from_f64(
            d,
            shape,
            ia.iter().zip(ib).map(|(&i, &j)| x[i].powf(fy[j])).collect(),
        ),
        Storage::I(x) => {
            let out = ia
                .iter()
                .zip(ib)
                .map(|(&i, &j)| match &int_exp {
                    Some(e) => ipow(x[i], e[j]),
                    None => trunc_i64((x[i] as f64).powf(fy[j])),
                })
                .collect();
            Tensor::from_i64(d, shape, out)
        }
        Storage::U(x) => {
            let out = ia
                .iter()
                .zip(ib)
                .map(|(&i, &j)| match &int_exp {
                    Some(e) => ipow(x[i] as i64, e[j]) as u64,
                    None => trunc_i64((x[i] as f64).powf(fy[j])) as u64,
                })
                .collect();
            Tensor::from_u64(d, shape, out)
        }
        _ => op_bail!("Pow is not defined for {d}"),
    }])
}

/// PRelu: x where x >= 0, slope * x elsewhere (slope broadcasts).
pub(super) fn k_prelu(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    check_same(ctx.node.op, a, b)?;
    let (shape, m) = bcast(&[a, b])?;
    let (ia, ib) = (&m[0], &m[1]);
    let d = a.dtype;
    Ok(vec![match (&a.data, &b.data) {
        (Storage::F(x), Storage::F(s)) => Tensor::from_f64(
            d,
            shape,
            ia.iter()
                .zip(ib)
                .map(|(&i, &j)| if x[i] < 0.0 { x[i] * s[j] } else { x[i] })
                .collect(),
        ),
        (Storage::I(x), Storage::I(s)) => Tensor::from_i64(
            d,
            shape,
            ia.iter()
                .zip(ib)
                .map(|(&i, &j)| {
                    if x[i] < 0 {
                        x[i].wrapping_mul(s[j])
                    } else {
                        x[i]
                    }
                })
                .collect(),
        ),
        // Unsigned values are never negative.
        (Storage::U(x), Storage::U(_)) => {
            Tensor::from_u64(d, shape, ia.iter().map(|&i| x[i]).collect())
        }
        _ => op_bail!("PRelu is not defined for {d}"),
    }])
}

fn compare<T: PartialOrd>(
    op: Op,
    x: &[T],
    y: &[T],
    ia: &[usize],
    ib: &[usize],
) -> OpResult<Vec<bool>> {
    let f: fn(&T, &T) -> bool = match op {
        Op::Equal => |a, b| a == b,
        Op::Less => |a, b| a < b,
        Op::LessOrEqual => |a, b| a <= b,
        Op::Greater => |a, b| a > b,
        Op::GreaterOrEqual => |a, b| a >= b,
        _ => op_bail!("{op} is not a comparison"),
    };
    Ok(ia.iter().zip(ib).map(|(&i, &j)| f(&x[i], &y[j])).collect())
}

pub(super) fn k_compare(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let op = ctx.node.op;
    check_same(op, a, b)?;
    let (shape, m) = bcast(&[a, b])?;
    let (ia, ib) = (&m[0], &m[1]);
    let out = match (&a.data, &b.data) {
        (Storage::F(x), Storage::F(y)) => compare(op, x, y, ia, ib)?,
        (Storage::I(x), Storage::I(y)) => compare(op, x, y, ia, ib)?,
        (Storage::U(x), Storage::U(y)) => compare(op, x, y, ia, ib)?,
        (Storage::B(x), Storage::B(y)) => compare(op, x, y, ia, ib)?,
        (Storage::S(x), Storage::S(y)) if op == Op::Equal => compare(op, x, y, ia, ib)?,
        _ => op_bail!("{op} is not defined for {}", a.dtype),
    };
    Ok(vec![Tensor::from_bool(shape, out)])
}

pub(super) fn k_logic(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let op = ctx.node.op;
    let (Storage::B(x), Storage::B(y)) = (&a.data, &b.data) else {
        op_bail!(
            "{op} needs bool operands, found {} and {}",
            a.dtype,
            b.dtype
        )
    };
    let f: fn(bool, bool) -> bool = match op {
        Op::And => |a, b| a & b,
        Op::Or => |a, b| a | b,
        Op::Xor => |a, b| a ^ b,
        _ => op_bail!("{op} is not a logical op"),
    };
    let (shape, m) = bcast(&[a, b])?;
    let out = m[0]
        .iter()
        .zip(&m[1])
        .map(|(&i, &j)| f(x[i], y[j]))
        .collect();
    Ok(vec![Tensor::from_bool(shape, out)])
}

/// NaN-propagating max/min, like numpy's `maximum`/`minimum`.
fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

/// Max/Min/Sum/Mean over any number of broadcasting inputs.
pub(super) fn k_variadic(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let op = ctx.node.op;
    let mut ts: Vec<&Tensor> = Vec::with_capacity(ins.len());
    for i in 0..ins.len() {
        let t = operand(ins, i)?;
        if let Some(f) = ts.first() {
            check_same(op, f, t)?;
        }
        ts.push(t);
    }
    let Some(first) = ts.first() else {
        op_bail!("{op} needs at least one input")
    };
    let d = first.dtype;
    let n = ts.len();
    let (shape, m) = bcast(&ts)?;
    let len: usize = shape.iter().product();
    Ok(vec![match &first.data {
        Storage::F(_) => {
            let mut acc: Vec<f64> = Vec::new();
            for (k, t) in ts.iter().enumerate() {
                let Storage::F(v) = &t.data else {
                    op_bail!("{op} inputs must share a dtype")
                };
                if k == 0 {
                    acc = m[0].iter().map(|&i| v[i]).collect();
                    continue;
                }
                for (o, &i) in acc.iter_mut().zip(&m[k]) {
                    *o = match op {
                        Op::Max => fmax(*o, v[i]),
                        Op::Min => fmin(*o, v[i]),
                        Op::Sum | Op::Mean => *o + v[i],
                        _ => op_bail!("{op} is not variadic"),
                    };
                }
            }
            if op == Op::Mean {
                acc.iter_mut().for_each(|x| *x /= n as f64);
            }
            Tensor::from_f64(d, shape, acc)
        }
        Storage::I(_) => {
            let mut acc = vec![0i64; len];
            for (k, t) in ts.iter().enumerate() {
                let Storage::I(v) = &t.data else {
                    op_bail!("{op} inputs must share a dtype")
                };
                for (o, &i) in acc.iter_mut().zip(&m[k]) {
                    *o = match op {
                        _ if k == 0 => v[i],
                        Op::Max => (*o).max(v[i]),
                        Op::Min => (*o).min(v[i]),
                        Op::Sum | Op::Mean => o.wrapping_add(v[i]),
                        _ => op_bail!("{op} is not variadic"),
                    };
                }
            }
            if op == Op::Mean {
                acc.iter_mut().for_each(|x| *x /= n as i64);
            }
            Tensor::from_i64(d, shape, acc)
        }
        Storage::U(_) => {
            let mut acc = vec![0u64; len];
            for (k, t) in ts.iter().enumerate() {
                let Storage::U(v) = &t.data else {
                    op_bail!("{op} inputs must share a dtype")
                };
                for (o, &i) in acc.iter_mut().zip(&m[k]) {
                    *o = match op {
                        _ if k == 0 => v[i],
                        Op::Max => (*o).max(v[i]),
                        Op::Min => (*o).min(v[i]),
                        Op::Sum | Op::Mean => o.wrapping_add(v[i]),
                        _ => op_bail!("{op} is not variadic"),
                    };
                }
            }
            if op == Op::Mean {
                acc.iter_mut().for_each(|x| *x /= n as u64);
            }
            Tensor::from_u64(d, shape, acc)
        }
        _ => op_bail!("{op} is not defined for {d}"),
    }])
}

fn select<T: Clone>(c: &[bool], x: &[T], y: &[T], m: &[Vec<usize>]) -> Vec<T> {
    m[0].iter()
        .zip(&m[1])
        .zip(&m[2])
        .map(|((&k, &i), &j)| if c[k] { x[i].clone() } else { y[j].clone() })
        .collect()
}

pub(super) fn k_where(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (c, x, y) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    check_same(ctx.node.op, x, y)?;
    let Storage::B(cv) = &c.data else {
        op_bail!("Where condition must be bool, found {}", c.dtype)
    };
    let (shape, m) = bcast(&[c, x, y])?;
    let data = match (&x.data, &y.data) {
        (Storage::F(a), Storage::F(b)) => Storage::F(select(cv, a, b, &m)),
        (Storage::I(a), Storage::I(b)) => Storage::I(select(cv, a, b, &m)),
        (Storage::U(a), Storage::U(b)) => Storage::U(select(cv, a, b, &m)),
        (Storage::B(a), Storage::B(b)) => Storage::B(select(cv, a, b, &m)),
        (Storage::S(a), Storage::S(b)) => Storage::S(select(cv, a, b, &m)),
        _ => op_bail!("Where operands have different dtypes"),
    };
    Ok(vec![x.with_data(shape, data)])
}
