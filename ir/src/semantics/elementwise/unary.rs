//! Unary math and activations, IsNaN/IsInf, Not/BitwiseNot and Clip.

use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::semantics::{Ctx, OpResult, operand};
use crate::{Op, op_bail};

/// Clamps keeping NaN (f64::clamp would too, but panics when lo > hi).
fn clampf(x: f64, lo: f64, hi: f64) -> f64 {
    let x = if x < lo { lo } else { x };
    if x > hi { hi } else { x }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// ln(1 + e^x) without overflowing for large x.
fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// The float function of a unary op, with its attributes bound.
fn float_fn(ctx: &Ctx) -> OpResult<Box<dyn Fn(f64) -> f64>> {
    let op = ctx.node.op;
    let attr = |name: &str, default: f32| ctx.float(name, default).map(f64::from);
    Ok(match op {
        Op::Relu => Box::new(|x| if x < 0.0 { 0.0 } else { x }),
        Op::Sigmoid => Box::new(sigmoid),
        Op::Tanh => Box::new(f64::tanh),
        Op::Exp => Box::new(f64::exp),
        Op::Log => Box::new(f64::ln),
        Op::Sqrt => Box::new(f64::sqrt),
        Op::Neg => Box::new(|x| -x),
        Op::Abs => Box::new(f64::abs),
        Op::Reciprocal => Box::new(|x| 1.0 / x),
        Op::Floor => Box::new(f64::floor),
        Op::Ceil => Box::new(f64::ceil),
        Op::Round => Box::new(f64::round_ties_even),
        Op::Sign => Box::new(|x| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x * 0.0
            }
        }),
        Op::Sin => Box::new(f64::sin),
        Op::Cos => Box::new(f64::cos),
        Op::Tan => Box::new(f64::tan),
        Op::Asin => Box::new(f64::asin),
        Op::Acos => Box::new(f64::acos),
        Op::Atan => Box::new(f64::atan),
        Op::Sinh => Box::new(f64::sinh),
        Op::Cosh => Box::new(f64::cosh),
        Op::Asinh => Box::new(f64::asinh),
        Op::Acosh => Box::new(f64::acosh),
        Op::Atanh => Box::new(f64::atanh),
        Op::Erf => Box::new(erf),
        Op::Softplus => Box::new(softplus),
        Op::Softsign => Box::new(|x| x / (1.0 + x.abs())),
        Op::Mish => Box::new(|x| x * softplus(x).tanh()),
        Op::HardSwish => Box::new(|x| x * clampf(x / 6.0 + 0.5, 0.0, 1.0)),
        Op::LeakyRelu => {
            let a = attr("alpha", 0.01)?;
            Box::new(move |x| if x < 0.0 { a * x } else { x })
        }
        Op::Elu => {
            let a = attr("alpha", 1.0)?;
            Box::new(move |x| if x < 0.0 { a * x.exp_m1() } else { x })
        }
        Op::Selu => {
            let a = attr("alpha", 1.673_263_2)?;
            let g = attr("gamma", 1.050_701)?;
            Box::new(move |x| {
                if x > 0.0 {
                    g * x
                } else {
                    g * (a * x.exp() - a)
                }
            })
        }
        Op::Celu => {
            let a = attr("alpha", 1.0)?;
            Box::new(move |x| x.max(0.0) + (a * (x / a).exp_m1()).min(0.0))
        }
        Op::ThresholdedRelu => {
            let a = attr("alpha", 1.0)?;
            Box::new(move |x| if x > a { x } else { 0.0 })
        }
        Op::HardSigmoid => {
            let a = attr("alpha", 0.2)?;
            let b = attr("beta", 0.5)?;
            Box::new(move |x| clampf(a * x + b, 0.0, 1.0))
        }
        Op::Swish => {
            let a = attr("alpha", 1.0)?;
            Box::new(move |x| x * sigmoid(a * x))
        }
        Op::Shrink => {
            let l = attr("lambd", 0.5)?;
            let b = attr("bias", 0.0)?;
            Box::new(move |x| {
                if x < -l {
                    x + b
                } else if x > l {
                    x - b
                } else {
                    0.0
                }
            })
        }
        Op::Gelu => match ctx.string("approximate", "none")?.as_str() {
            "none" => Box::new(|x| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))),
            "tanh" => Box::new(|x| {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
            }),
            a => op_bail!("Gelu: unknown approximate mode {a:?}"),
        },
        _ => op_bail!("{op} has no float form"),
    })
}

pub(super) fn k_unary(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let op = ctx.node.op;
    let (d, shape) = (x.dtype, x.shape.clone());
    Ok(vec![match (&x.data, op) {
        (Storage::B(v), Op::Not) => Tensor::from_bool(shape, v.iter().map(|b| !b).collect()),
        (Storage::I(v), Op::BitwiseNot) => {
            Tensor::from_i64(d, shape, v.iter().map(|b| !b).collect())
        }
        (Storage::U(v), Op::BitwiseNot) => {
            Tensor::from_u64(d, shape, v.iter().map(|b| !b).collect())
        }
        (_, Op::Not | Op::BitwiseNot) => op_bail!("{op} is not defined for {d}"),
        (Storage::F(v), _) => {
            let f = float_fn(ctx)?;
            Tensor::from_f64(d, shape, v.iter().map(|&x| f(x)).collect())
        }
        (Storage::I(v), _) => {
            let f: fn(i64) -> i64 = match op {
                Op::Relu => |x| x.max(0),
                Op::Neg => i64::wrapping_neg,
                Op::Abs => i64::wrapping_abs,
                Op::Sign => i64::signum,
                Op::Floor | Op::Ceil | Op::Round => |x| x,
                Op::Shrink => {
                    let f = float_fn(ctx)?;
                    return Ok(vec![Tensor::from_i64(
                        d,
                        shape,
                        v.iter().map(|&x| f(x as f64) as i64).collect(),
                    )]);
                }
                _ => op_bail!("{op} is not defined for {d}"),
            };
            Tensor::from_i64(d, shape, v.iter().map(|&x| f(x)).collect())
        }
        (Storage::U(v), _) => {
            let f: fn(u64) -> u64 = match op {
                Op::Relu | Op::Abs | Op::Floor | Op::Ceil | Op::Round => |x| x,
                Op::Sign => |x| u64::from(x > 0),
                Op::Neg => u64::wrapping_neg,
                Op::Shrink => {
                    let f = float_fn(ctx)?;
                    return Ok(vec![Tensor::from_u64(
                        d,
                        shape,
                        v.iter().map(|&x| f(x as f64) as i64 as u64).collect(),
                    )]);
                }
                _ => op_bail!("{op} is not defined for {d}"),
            };
            Tensor::from_u64(d, shape, v.iter().map(|&x| f(x)).collect())
        }
        _ => op_bail!("{op} is not defined for {d}"),
    }])
}

pub(super) fn k_isnan_isinf(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let shape = x.shape.clone();
    let Storage::F(v) = &x.data else {
        // Integers are never NaN or infinite.
        if matches!(x.data, Storage::I(_) | Storage::U(_)) {
            return Ok(vec![Tensor::from_bool(shape, vec![false; x.numel()])]);
        }
        op_bail!("{} is not defined for {}", ctx.node.op, x.dtype)
    };
    let out = if ctx.node.op == Op::IsNaN {
        v.iter().map(|x| x.is_nan()).collect()
    } else {
        let neg = ctx.int("detect_negative", 1)? != 0;
        let pos = ctx.int("detect_positive", 1)? != 0;
        v.iter()
            .map(|&x| x.is_infinite() && if x > 0.0 { pos } else { neg })
            .collect()
    };
    Ok(vec![Tensor::from_bool(shape, out)])
}

/// The single value of an optional Clip bound.
fn bound<'a>(ins: &[Option<&'a Tensor>], i: usize, x: &Tensor) -> OpResult<Option<&'a Tensor>> {
    match ins.get(i).copied().flatten() {
        None => Ok(None),
        Some(t) if t.numel() != 1 => {
            op_bail!(
                "Clip bound {i} must hold one value, has shape {:?}",
                t.shape
            )
        }
        Some(t) if t.dtype != x.dtype => {
            op_bail!(
                "Clip bound {i} has dtype {}, input has {}",
                t.dtype,
                x.dtype
            )
        }
        Some(t) => Ok(Some(t)),
    }
}

/// Clip: `min(max(x, lo), hi)`, so lo > hi gives hi everywhere (numpy.clip).
pub(super) fn k_clip(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let (lo, hi) = (bound(ins, 1, x)?, bound(ins, 2, x)?);
    let (d, shape) = (x.dtype, x.shape.clone());
    Ok(vec![match &x.data {
        Storage::F(v) => {
            let get = |t: Option<&Tensor>, dflt: f64| match t.map(|t| &t.data) {
                Some(Storage::F(b)) => b.first().copied().unwrap_or(dflt),
                _ => dflt,
            };
            let (l, h) = (get(lo, f64::NEG_INFINITY), get(hi, f64::INFINITY));
            Tensor::from_f64(d, shape, v.iter().map(|&x| clampf(x, l, h)).collect())
        }
        Storage::I(v) => {
            let get = |t: Option<&Tensor>, dflt: i64| match t.map(|t| &t.data) {
                Some(Storage::I(b)) => b.first().copied().unwrap_or(dflt),
                _ => dflt,
            };
            let (l, h) = (get(lo, i64::MIN), get(hi, i64::MAX));
            Tensor::from_i64(d, shape, v.iter().map(|&x| x.max(l).min(h)).collect())
        }
        Storage::U(v) => {
            let get = |t: Option<&Tensor>, dflt: u64| match t.map(|t| &t.data) {
                Some(Storage::U(b)) => b.first().copied().unwrap_or(dflt),
                _ => dflt,
            };
            let (l, h) = (get(lo, 0), get(hi, u64::MAX));
            Tensor::from_u64(d, shape, v.iter().map(|&x| x.max(l).min(h)).collect())
        }
        _ => op_bail!("Clip is not defined for {d}"),
    }])
}

/// The error function to full f64 accuracy: Maclaurin series near zero,
/// the erfc continued fraction further out (~1e-15, well past f32).
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1)).
        // At |x| < 2.5 the terms fall below 1e-17 of the sum within ~60
        // steps; the bound also ends the loop at x = 0, where every term is 0.
        let mut sum = 0.0;
        let mut term = ax;
        for n in 0..200 {
            let add = term / (2.0 * n as f64 + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
            term *= -ax * ax / (n as f64 + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc, evaluated backwards.
        let mut f = 0.0;
        for k in (1..=60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
    };
    if x < 0.0 { -r } else { r }
}
