//! Linear quantization: QuantizeLinear, DequantizeLinear (per-tensor,
//! per-axis and blocked parameters) and DynamicQuantizeLinear.

use crate::interp::Tensor;
use crate::interp::minifloat;
use crate::interp::tensor::{Storage, round_float};
use crate::semantics::util::norm_axis;
use crate::semantics::{Ctx, OpResult, TypeInput, input, operand};
use crate::{DClass, DType, Shape, TensorType, op_bail};

fn opt_input<'x, 'a>(ins: &'x [Option<TypeInput<'a>>], i: usize) -> Option<&'x TypeInput<'a>> {
    ins.get(i).and_then(Option::as_ref)
}

/// QuantizeLinear's output dtype: the zero point's, else `output_dtype`,
/// else uint8.
fn quant_dtype(ctx: &Ctx, zp: Option<DType>) -> OpResult<DType> {
    let attr = match ctx.int("output_dtype", 0)? {
        0 => None,
        _ => ctx.dtype("output_dtype")?,
    };
    match (zp, attr) {
        (Some(z), Some(a)) if z != a => {
            op_bail!("QuantizeLinear: output_dtype {a} differs from zero point dtype {z}")
        }
        (Some(z), _) => Ok(z),
        (None, Some(a)) => Ok(a),
        (None, None) => Ok(DType::U8),
    }
}

pub(super) fn infer_quantize(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    input(ins, 1)?;
    let d = quant_dtype(ctx, opt_input(ins, 2).map(|z| z.ty.dtype))?;
    Ok(vec![TensorType::new(d, x.shape.clone())])
}

fn dequant_dtype(ctx: &Ctx, scale: DType) -> OpResult<DType> {
    Ok(match ctx.int("output_dtype", 0)? {
        0 => scale,
        _ => ctx.dtype("output_dtype")?.unwrap_or(scale),
    })
}

pub(super) fn infer_dequantize(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (x, s) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    Ok(vec![TensorType::new(
        dequant_dtype(ctx, s.dtype)?,
        x.shape.clone(),
    )])
}

pub(super) fn infer_dynamic(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    Ok(vec![
        TensorType::new(DType::U8, x.shape.clone()),
        TensorType::new(DType::F32, Shape(Some(vec![]))),
        TensorType::new(DType::U8, Shape(Some(vec![]))),
    ])
}

/// For every element of `x` (row-major), the flat index of its scale / zero
/// point: one value for all, one per slice along `axis`, or one per block of
/// `block` consecutive elements along `axis`.
fn param_index(ctx: &Ctx, x: &[usize], p: &Tensor) -> OpResult<Vec<usize>> {
    let n: usize = x.iter().product();
    if p.numel() == 1 {
        return Ok(vec![0; n]);
    }
    let axis = norm_axis(ctx.int("axis", 1)?, x.len())?;
    let block = ctx.int("block_size", 0)?;
    let dim = x[axis];
    let inner: usize = x[axis + 1..].iter().product();
    if block <= 0 {
        if p.rank() != 1 || p.numel() != dim {
            op_bail!(
                "per-axis parameter of shape {:?} does not match axis {axis} of {:?}",
                p.shape,
                x
            );
        }
        return Ok((0..n).map(|i| (i / inner) % dim).collect());
    }
    let block = block as usize;
    let pdim = dim.div_ceil(block);
    let ok = p.rank() == x.len()
        && p.shape
            .iter()
            .zip(x)
            .enumerate()
            .all(|(k, (&a, &b))| if k == axis { a == pdim } else { a == b });
    if !ok {
        op_bail!(
            "blocked parameter of shape {:?} does not match {:?} with block_size {block} on axis {axis}",
            p.shape,
            x
        );
    }
    Ok((0..n)
        .map(|i| {
            let outer = i / (dim * inner);
            let c = (i / inner) % dim;
            (outer * pdim + c / block) * inner + i % inner
        })
        .collect())
}

fn zero_points(z: &Tensor) -> OpResult<Vec<f64>> {
    match z.to_f64_vec() {
        Some(v) => Ok(v),
        None => op_bail!("zero point must be numeric, found {}", z.dtype),
    }
}

/// The clamp range of an integer quantization target: the full range of
/// any integer dtype of at most 16 bits (uint8, int4, ...).
fn int_range(d: DType) -> Option<(f64, f64)> {
    let b = d.bits() as i32;
    if b > 16 {
        return None;
    }
    match d.class() {
        DClass::Signed => Some((-(2f64.powi(b - 1)), 2f64.powi(b - 1) - 1.0)),
        DClass::Unsigned => Some((0.0, 2f64.powi(b) - 1.0)),
        _ => None,
    }
}

/// The dtype numpy evaluates `x / scale` in.
fn div_dtype(x: DType, s: DType) -> DType {
    if x == DType::F64 || s == DType::F64 || !x.is_float() {
        DType::F64
    } else if x == DType::F32 || s == DType::F32 {
        DType::F32
    } else {
        s
    }
}

pub(super) fn k_quantize(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (x, s) = (operand(ins, 0)?, operand(ins, 1)?);
    let zp = ins.get(2).copied().flatten();
    let d = quant_dtype(ctx, zp.map(|z| z.dtype))?;
    let (Some(xv), Storage::F(sv)) = (x.to_f64_vec(), &s.data) else {
        op_bail!("QuantizeLinear needs numeric x and a float scale")
    };
    let si = param_index(ctx, &x.shape, s)?;
    let (zv, zi) = match zp {
        Some(z) => (zero_points(z)?, param_index(ctx, &x.shape, z)?),
        None => (vec![0.0], vec![0; xv.len()]),
    };
    let pd = match ctx.int("precision", 0)? {
        0 => div_dtype(x.dtype, s.dtype),
        _ => ctx.dtype("precision")?.unwrap_or(DType::F32),
    };
    let sat = ctx.int("saturate", 1)? != 0;
    let scaled = xv
        .iter()
        .zip(&si)
        .map(|(&v, &k)| round_float(pd, round_float(pd, v) / round_float(pd, sv[k])));
    let shape = x.shape.clone();
    if let Some((lo, hi)) = int_range(d) {
        let q: Vec<f64> = scaled
            .zip(&zi)
            .map(|(v, &k)| {
                // rint, then NaN behaves like the int32 "indefinite" value.
                let r = if v.is_nan() { lo } else { v.round_ties_even() };
                (r + zv[k]).clamp(lo, hi)
            })
            .collect();
        return Ok(vec![if lo < 0.0 {
            Tensor::from_i64(d, shape, q.iter().map(|&v| v as i64).collect())
        } else {
            Tensor::from_u64(d, shape, q.iter().map(|&v| v as u64).collect())
        }]);
    }
    let q: Vec<f64> = match d {
        // The zero point of FP8 targets is ignored (it must be zero).
        DType::F8E4M3FN | DType::F8E4M3FNUZ | DType::F8E5M2 | DType::F8E5M2FNUZ => scaled
            .map(|v| minifloat::decode(d, minifloat::encode(d, v, sat)))
            .collect(),
        DType::F4E2M1 => scaled
            .zip(&zi)
            .map(|(v, &k)| minifloat::decode(d, minifloat::encode(d, v + zv[k], true)))
            .collect(),
        _ => op_bail!("QuantizeLinear cannot produce {d}"),
    };
    Ok(vec![Tensor {
        dtype: d,
        shape,
        data: Storage::F(q),
    }])
}

pub(super) fn k_dequantize(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (x, s) = (operand(ins, 0)?, operand(ins, 1)?);
    let Some(xv) = x.to_f64_vec() else {
        op_bail!("DequantizeLinear cannot read {}", x.dtype)
    };
    let Storage::F(sv) = &s.data else {
        op_bail!("DequantizeLinear scale must be float, found {}", s.dtype)
    };
    let si = param_index(ctx, &x.shape, s)?;
    // Float inputs (FP8, FP4) carry no zero point worth subtracting.
    let zp = ins
        .get(2)
        .copied()
        .flatten()
        .filter(|_| !x.dtype.is_float());
    let (zv, zi) = match zp {
        Some(z) => {
            if z.dtype != x.dtype {
                op_bail!(
                    "DequantizeLinear zero point is {}, input is {}",
                    z.dtype,
                    x.dtype
                );
            }
            (zero_points(z)?, param_index(ctx, &x.shape, z)?)
        }
        None => (vec![0.0], vec![0; xv.len()]),
    };
    let out = xv
        .iter()
        .zip(si.iter().zip(&zi))
        .map(|(&v, (&a, &b))| (v - zv[b]) * sv[a])
        .collect();
    Ok(vec![Tensor::from_f64(
        dequant_dtype(ctx, s.dtype)?,
        x.shape.clone(),
        out,
    )])
}

/// uint8 quantization with scale and zero point from the data's range,
/// computed in f32 step by step as the specification's formula is.
pub(super) fn k_dynamic(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let Storage::F(v) = &x.data else {
        op_bail!(
            "DynamicQuantizeLinear needs a float input, found {}",
            x.dtype
        )
    };
    let xs: Vec<f32> = v.iter().map(|&f| f as f32).collect();
    let maxx = xs.iter().copied().fold(0f32, f32::max);
    let minx = xs.iter().copied().fold(0f32, f32::min);
    let range = if maxx == minx { 1.0 } else { maxx - minx };
    let scale = range / 255f32;
    let zp = (0f32 - minx / scale).clamp(0.0, 255.0).round_ties_even();
    let y = xs
        .iter()
        .map(|&f| ((f / scale).round_ties_even() + zp).clamp(0.0, 255.0) as u64)
        .collect();
    Ok(vec![
        Tensor::from_u64(DType::U8, x.shape.clone(), y),
        Tensor::from_f64(DType::F32, vec![], vec![f64::from(scale)]),
        Tensor::from_u64(DType::U8, vec![], vec![zp as u64]),
    ])
}
