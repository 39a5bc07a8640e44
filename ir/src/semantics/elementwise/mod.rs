//! Element-wise ops: unary math and activations, broadcasting binary and
//! variadic arithmetic, comparisons and logic, conversions (Cast, BitCast)
//! and linear quantization.
//!
//! Every float result is computed in f64 from the (already rounded) inputs
//! and rounded once to the output dtype by `Tensor::from_f64`.

mod binary;
mod cast;
mod quant;
mod unary;

#[cfg(test)]
mod tests;

pub use cast::{cast_tensor, format_float_py};
pub use unary::erf;

use super::util::{broadcast_concrete, broadcast_map, broadcast_shapes};
use super::{Ctx, OpImpl, OpResult, TypeInput, input};
use crate::interp::Tensor;
use crate::{DType, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    use Op::*;
    let (infer, kernel): (super::InferFn, super::KernelFn) = match op {
        Add | Sub | Mul | Div | Mod | BitwiseAnd | BitwiseOr | BitwiseXor | BitShift => {
            (infer_binary, binary::k_arith)
        }
        Pow => (infer_pow, binary::k_pow),
        PRelu => (infer_pow, binary::k_prelu),
        Equal | Less | LessOrEqual | Greater | GreaterOrEqual => (infer_compare, binary::k_compare),
        And | Or | Xor => (infer_logic, binary::k_logic),
        Max | Min | Sum | Mean => (infer_variadic, binary::k_variadic),
        Where => (infer_where, binary::k_where),
        Relu | Sigmoid | Tanh | Exp | Log | Sqrt | Neg | Abs | Reciprocal | Floor | Ceil | Sin
        | Cos | Tan | Asin | Acos | Atan | Sinh | Cosh | Asinh | Acosh | Atanh | Erf | Sign
        | Round | LeakyRelu | Elu | Selu | Celu | ThresholdedRelu | HardSigmoid | HardSwish
        | Softplus | Softsign | Gelu | Mish | Swish | Shrink | BitwiseNot => {
            (infer_same, unary::k_unary)
        }
        Not => (infer_not, unary::k_unary),
        IsNaN | IsInf => (infer_bool_same, unary::k_isnan_isinf),
        Clip => (infer_clip, unary::k_clip),
        Identity => (infer_same, k_identity),
        Cast => (cast::infer_cast, cast::k_cast),
        CastLike => (cast::infer_castlike, cast::k_castlike),
        BitCast => (cast::infer_bitcast, cast::k_bitcast),
        QuantizeLinear => (quant::infer_quantize, quant::k_quantize),
        DequantizeLinear => (quant::infer_dequantize, quant::k_dequantize),
        DynamicQuantizeLinear => (quant::infer_dynamic, quant::k_dynamic),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

/// Output has the type of input 0.
pub fn infer_same(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    Ok(vec![input(ins, 0)?.ty.clone()])
}

fn infer_not(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    if x.dtype != DType::Bool {
        op_bail!("Not needs a bool operand, found {}", x.dtype);
    }
    Ok(vec![x.clone()])
}

/// Clip: the type of x; the optional bounds must share its dtype.
fn infer_clip(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    for b in ins.iter().skip(1).flatten() {
        same_dtype(ctx, x.dtype, b.ty.dtype)?;
    }
    Ok(vec![x.clone()])
}

fn infer_bool_same(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    Ok(vec![TensorType::new(DType::Bool, x.shape.clone())])
}

fn same_dtype(ctx: &Ctx, a: DType, b: DType) -> OpResult<()> {
    if a != b {
        op_bail!(
            "{} operands have different dtypes {} and {}",
            ctx.node.op,
            a,
            b
        );
    }
    Ok(())
}

/// Broadcast of inputs 0 and 1, dtype of input 0 (which must match input 1).
pub fn infer_binary(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    same_dtype(ctx, a.dtype, b.dtype)?;
    Ok(vec![TensorType::new(
        a.dtype,
        broadcast_shapes(&a.shape, &b.shape)?,
    )])
}

/// Broadcast of inputs 0 and 1, dtype of input 0 whatever input 1's is
/// (Pow's exponent and PRelu's slope may differ... PRelu's may not, but the
/// kernel checks that).
fn infer_pow(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    Ok(vec![TensorType::new(
        a.dtype,
        broadcast_shapes(&a.shape, &b.shape)?,
    )])
}

fn infer_compare(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    same_dtype(ctx, a.dtype, b.dtype)?;
    Ok(vec![TensorType::new(
        DType::Bool,
        broadcast_shapes(&a.shape, &b.shape)?,
    )])
}

fn infer_logic(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let a = input(ins, 0)?.ty;
    if a.dtype != DType::Bool {
        op_bail!("{} needs bool operands, found {}", ctx.node.op, a.dtype);
    }
    infer_compare(ctx, ins)
}

fn infer_variadic(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let first = input(ins, 0)?.ty;
    let mut shape = first.shape.clone();
    for t in ins.iter().skip(1) {
        let Some(t) = t else {
            op_bail!("{} inputs may not be omitted", ctx.node.op)
        };
        same_dtype(ctx, first.dtype, t.ty.dtype)?;
        shape = broadcast_shapes(&shape, &t.ty.shape)?;
    }
    Ok(vec![TensorType::new(first.dtype, shape)])
}

fn infer_where(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (c, x, y) = (input(ins, 0)?.ty, input(ins, 1)?.ty, input(ins, 2)?.ty);
    if c.dtype != DType::Bool {
        op_bail!("Where condition must be bool, found {}", c.dtype);
    }
    same_dtype(ctx, x.dtype, y.dtype)?;
    let s: Shape = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
    Ok(vec![TensorType::new(x.dtype, s)])
}

fn k_identity(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    Ok(vec![super::operand(ins, 0)?.clone()])
}

/// Broadcast shape of several tensors and, per tensor, the flat index that
/// feeds each output element.
pub(crate) fn bcast(ts: &[&Tensor]) -> OpResult<(Vec<usize>, Vec<Vec<usize>>)> {
    let mut shape: Vec<usize> = ts.first().map(|t| t.shape.clone()).unwrap_or_default();
    for t in ts.iter().skip(1) {
        shape = broadcast_concrete(&shape, &t.shape)?;
    }
    let maps = ts.iter().map(|t| broadcast_map(&shape, &t.shape)).collect();
    Ok((shape, maps))
}
