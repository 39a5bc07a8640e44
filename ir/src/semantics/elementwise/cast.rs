//! Cast, CastLike and BitCast: conversions among every dtype the
//! interpreter represents, with ONNX's rules for saturating FP8 casts,
//! E8M0 rounding modes and numpy's string formatting.

use crate::interp::minifloat;
use crate::interp::tensor::Storage;
use crate::interp::{Tensor, tensor::round_float};
use crate::semantics::{Ctx, OpResult, TypeInput, input, operand};
use crate::{DClass, DType, TensorType, op_bail};

pub(super) fn infer_cast(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let Some(to) = ctx.dtype("to")? else {
        op_bail!("Cast needs a `to` attribute")
    };
    Ok(vec![TensorType::new(to, x.shape.clone())])
}

pub(super) fn infer_castlike(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (x, like) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    Ok(vec![TensorType::new(like.dtype, x.shape.clone())])
}

pub(super) fn infer_bitcast(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let Some(to) = ctx.dtype("to")? else {
        op_bail!("BitCast needs a `to` attribute")
    };
    if to.bits() != x.dtype.bits() || to == DType::String || x.dtype == DType::String {
        op_bail!("BitCast from {} to {to}: bit widths differ", x.dtype);
    }
    Ok(vec![TensorType::new(to, x.shape.clone())])
}

fn cast_params(ctx: &Ctx) -> OpResult<(bool, String)> {
    Ok((
        ctx.int("saturate", 1)? != 0,
        ctx.string("round_mode", "up")?,
    ))
}

pub(super) fn k_cast(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let Some(to) = ctx.dtype("to")? else {
        op_bail!("Cast needs a `to` attribute")
    };
    let (sat, mode) = cast_params(ctx)?;
    Ok(vec![cast_tensor(x, to, sat, &mode)?])
}

pub(super) fn k_castlike(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (x, like) = (operand(ins, 0)?, operand(ins, 1)?);
    let (sat, mode) = cast_params(ctx)?;
    Ok(vec![cast_tensor(x, like.dtype, sat, &mode)?])
}

pub(super) fn k_bitcast(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let Some(to) = ctx.dtype("to")? else {
        op_bail!("BitCast needs a `to` attribute")
    };
    if to.bits() != x.dtype.bits() || to == DType::String || x.dtype == DType::String {
        op_bail!("BitCast from {} to {to}: bit widths differ", x.dtype);
    }
    let mut data = x.to_data().map_err(|e| e.to_string())?;
    data.dtype = to;
    Ok(vec![Tensor::from_data(&data).map_err(|e| e.to_string())?])
}

/// E8M0 (power-of-two scale) from the f32 bits of `x`, as ONNX defines it:
/// only the exponent is kept, rounded by `mode`; NaN and inf become NaN.
fn to_e8m0(x: f64, saturate: bool, mode: &str) -> OpResult<f64> {
    let bits = (x as f32).to_bits();
    let exp = (bits >> 23) & 0xFF;
    if exp == 0xFF {
        return Ok(f64::NAN);
    }
    let round_up = match mode {
        "up" => bits & 0x7F_FFFF != 0,
        "down" => false,
        "nearest" => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1F_FFFF != 0;
            g && (r || s || exp > 0)
        }
        m => op_bail!("unknown round_mode {m:?}"),
    };
    let e = if round_up && !(saturate && exp == 0xFE) {
        exp + 1
    } else {
        exp
    };
    Ok(minifloat::decode(DType::F8E8M0, e as u8))
}

/// Rounds an f64 to float dtype `to` with Cast's overflow rules.
fn to_float(x: f64, to: DType, sat: bool, mode: &str) -> OpResult<f64> {
    Ok(match to {
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ => {
            minifloat::decode(to, minifloat::encode(to, x, sat))
        }
        DType::F8E8M0 => to_e8m0(x, sat, mode)?,
        // FP4 has neither inf nor NaN: out-of-range values always saturate.
        DType::F4E2M1 if x.is_nan() => 0.0,
        DType::F4E2M1 => minifloat::decode(to, minifloat::encode(to, x, true)),
        _ => round_float(to, x),
    })
}

/// Float to a signed integer dtype: truncation toward zero and wrap-around
/// to the width, as numpy's C casts do for values that fit in the
/// intermediate integer; NaN/inf and values beyond it give the x86
/// "integer indefinite" value. Sub-byte types (ml_dtypes) wrap and map
/// NaN/inf to 0.
fn float_to_int(x: f64, to: DType) -> i64 {
    match to.bits() {
        b @ 1..=4 if x.is_finite() => (x.trunc() as i64) & ((1 << b) - 1),
        1..=4 => 0,
        64 => {
            if x.is_finite() && x.abs() < 9.223_372_036_854_775e18 {
                x as i64
            } else {
                i64::MIN
            }
        }
        _ => {
            if x.is_finite() && (-2_147_483_648.0..2_147_483_648.0).contains(&x.trunc()) {
                x as i64
            } else {
                i64::from(i32::MIN)
            }
        }
    }
}

fn float_to_uint(x: f64, to: DType) -> u64 {
    if to == DType::U64 && (9.223_372_036_854_775e18..1.844_674_407_370_955_2e19).contains(&x) {
        return x as u64;
    }
    float_to_int(x, to) as u64
}

/// Python's `float()` parse (accepts "inf", "-INF", "nan", exponents).
fn parse_float(s: &str) -> OpResult<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) => Ok(v),
        Err(_) => op_bail!("cannot cast string {s:?} to a number"),
    }
}

fn parse_int(s: &str) -> OpResult<i64> {
    let t = s.trim();
    match t.parse::<i64>() {
        Ok(v) => Ok(v),
        Err(_) => Ok(parse_float(t)?.trunc() as i64),
    }
}

/// Converts `x` to dtype `to` with ONNX Cast semantics.
pub fn cast_tensor(x: &Tensor, to: DType, sat: bool, mode: &str) -> OpResult<Tensor> {
    let shape = x.shape.clone();
    let from = x.dtype;
    Ok(match to.class() {
        DClass::String => {
            let s: Vec<String> = match &x.data {
                Storage::F(v) => v.iter().map(|&f| format_float_py(f, from)).collect(),
                Storage::I(v) => v.iter().map(i64::to_string).collect(),
                Storage::U(v) => v.iter().map(u64::to_string).collect(),
                Storage::B(v) => v
                    .iter()
                    .map(|&b| if b { "True" } else { "False" }.to_string())
                    .collect(),
                Storage::S(v) => v.clone(),
            };
            Tensor {
                dtype: to,
                shape,
                data: Storage::S(s),
            }
        }
        DClass::Bool => {
            let b: Vec<bool> = match &x.data {
                Storage::F(v) => v.iter().map(|&f| f != 0.0).collect(),
                Storage::I(v) => v.iter().map(|&i| i != 0).collect(),
                Storage::U(v) => v.iter().map(|&u| u != 0).collect(),
                Storage::B(v) => v.clone(),
                Storage::S(v) => v
                    .iter()
                    .map(|s| parse_float(s).map(|f| f != 0.0))
                    .collect::<OpResult<_>>()?,
            };
            Tensor::from_bool(shape, b)
        }
        DClass::Float => {
            let vals: Vec<f64> = match &x.data {
                Storage::S(v) => v.iter().map(|s| parse_float(s)).collect::<OpResult<_>>()?,
                // Only strings lack an f64 view, and they are handled above.
                _ => x.to_f64_vec().unwrap_or_default(),
            };
            let out = vals
                .into_iter()
                .map(|f| to_float(f, to, sat, mode))
                .collect::<OpResult<_>>()?;
            // Already exact in `to`; building directly keeps the saturation
            // decisions made above.
            Tensor {
                dtype: to,
                shape,
                data: Storage::F(out),
            }
        }
        DClass::Signed => {
            let v: Vec<i64> = match &x.data {
                Storage::F(v) => v.iter().map(|&f| float_to_int(f, to)).collect(),
                Storage::I(v) => v.clone(),
                Storage::U(v) => v.iter().map(|&u| u as i64).collect(),
                Storage::B(v) => v.iter().map(|&b| i64::from(b)).collect(),
                Storage::S(v) => v.iter().map(|s| parse_int(s)).collect::<OpResult<_>>()?,
            };
            Tensor::from_i64(to, shape, v)
        }
        DClass::Unsigned => {
            let v: Vec<u64> = match &x.data {
                Storage::F(v) => v.iter().map(|&f| float_to_uint(f, to)).collect(),
                Storage::I(v) => v.iter().map(|&i| i as u64).collect(),
                Storage::U(v) => v.clone(),
                Storage::B(v) => v.iter().map(|&b| u64::from(b)).collect(),
                Storage::S(v) => v
                    .iter()
                    .map(|s| parse_int(s).map(|i| i as u64))
                    .collect::<OpResult<_>>()?,
            };
            Tensor::from_u64(to, shape, v)
        }
        DClass::Block => op_bail!("Cast to {to} is not supported"),
    })
}

/// Formats a float the way numpy's `astype(str)` does: the shortest
/// digits that round-trip through dtype `d`, positional when
/// 1e-4 <= |x| < 10^p (p = 16 for f64, 6 for f32, 3 for narrower floats;
/// observed from numpy 2.4), else scientific with a signed two-digit exponent.
pub fn format_float_py(x: f64, d: DType) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.into();
    }
    let mut sci = format!("{x:e}");
    if d != DType::F64 {
        for p in 0..17 {
            let s = format!("{x:.p$e}");
            if s.parse::<f64>().is_ok_and(|v| round_float(d, v) == x) {
                sci = s;
                break;
            }
        }
    }
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let sign = if neg { "-" } else { "" };
    let limit = match d {
        DType::F64 => 1e16,
        DType::F32 => 1e6,
        _ => 1e3,
    };
    let a = x.abs();
    if a == 0.0 || (1e-4..limit).contains(&a) {
        let body = if exp >= 0 {
            let e = exp as usize;
            let int: String = if digits.len() > e {
                digits[..=e].to_string()
            } else {
                format!("{digits}{}", "0".repeat(e + 1 - digits.len()))
            };
            let frac = if digits.len() > e + 1 {
                &digits[e + 1..]
            } else {
                "0"
            };
            format!("{int}.{frac}")
        } else {
            format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
        };
        format!("{sign}{body}")
    } else {
        let rest = &digits[1..];
        let m = if rest.is_empty() {
            digits.clone()
        } else {
            format!("{}.{rest}", &digits[..1])
        };
        let es = if exp < 0 { '-' } else { '+' };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}
