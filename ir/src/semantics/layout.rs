//! Layout variants of ONNX ops, produced by the optimizer's layout rules
//! for targets that prefer them. Each is defined through the ONNX op it
//! stands for (same type rule and kernel, with the data transposed around
//! it), so an optimized graph computes exactly what the original did.
//!
//! - `ConvNhwc(X, W, [B]) {Conv's attributes}`: X and Y are channels-last
//!   (`[N, spatial..., C]`); W keeps ONNX's `[M, C/group, k...]`.
//!   `Y = to_last(Conv(to_first(X), W, B))`.
//! - `MatMulNT(A, Bt)`: `A · Btᵀ` with Bt's last two axes swapped, i.e.
//!   `MatMul(A, Transpose(Bt))`: the weight stored `[N, K]`.

use super::compose::{run1, ty1};
use super::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::interp::Tensor;
use crate::{Attr, Attrs, Op, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (super::InferFn, super::KernelFn) = match op {
        Op::ConvNhwc => (infer_conv, k_conv),
        Op::MatMulNT => (infer_matmul, k_matmul),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

/// Channels-last to channels-first for rank `r`: [0, r-1, 1, ..., r-2].
pub fn to_first(r: usize) -> Vec<i64> {
    let mut p = vec![0, r as i64 - 1];
    p.extend(1..r as i64 - 1);
    p
}

/// Channels-first to channels-last for rank `r`: [0, 2, ..., r-1, 1].
pub fn to_last(r: usize) -> Vec<i64> {
    let mut p = vec![0];
    p.extend(2..r as i64);
    p.push(1);
    p
}

/// Swaps the last two axes.
fn swap_last(r: usize) -> Vec<i64> {
    let mut p: Vec<i64> = (0..r as i64).collect();
    p.swap(r - 2, r - 1);
    p
}

fn perm_attrs(p: Vec<i64>) -> Attrs {
    let mut a = Attrs::new();
    a.insert("perm".into(), Attr::Ints(p));
    a
}

fn rank_of(ty: &TensorType, what: &str, min: usize) -> OpResult<usize> {
    match ty.shape.rank() {
        Some(r) if r >= min => Ok(r),
        Some(r) => op_bail!("{what} has rank {r}, needs at least {min}"),
        None => op_bail!("{what} needs a known rank"),
    }
}

fn ty_only(ty: &TensorType) -> TypeInput<'_> {
    TypeInput { ty, value: None }
}

fn transposed_ty(ty: &TensorType, p: Vec<i64>) -> OpResult<TensorType> {
    ty1(Op::Transpose, perm_attrs(p), &[Some(ty_only(ty))])
}

fn infer_conv(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?;
    let r = rank_of(x.ty, "ConvNhwc input", 3)?;
    let xf = transposed_ty(x.ty, to_first(r))?;
    let mut conv_ins = vec![Some(ty_only(&xf))];
    conv_ins.extend(
        ins.iter()
            .skip(1)
            .map(|i| i.as_ref().map(|t| ty_only(t.ty))),
    );
    let y = ty1(Op::Conv, ctx.node.attrs.clone(), &conv_ins)?;
    Ok(vec![transposed_ty(&y, to_last(r))?])
}

fn k_conv(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let r = x.shape.len();
    if r < 3 {
        op_bail!("ConvNhwc input has rank {r}, needs at least 3");
    }
    let xf = run1(Op::Transpose, perm_attrs(to_first(r)), &[Some(x)])?;
    let mut conv_ins = vec![Some(&xf)];
    conv_ins.extend(ins.iter().skip(1).copied());
    let y = run1(Op::Conv, ctx.node.attrs.clone(), &conv_ins)?;
    Ok(vec![run1(
        Op::Transpose,
        perm_attrs(to_last(r)),
        &[Some(&y)],
    )?])
}

fn infer_matmul(_ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let a = input(ins, 0)?;
    let bt = input(ins, 1)?;
    let r = rank_of(bt.ty, "MatMulNT weight", 2)?;
    let b = transposed_ty(bt.ty, swap_last(r))?;
    Ok(vec![ty1(
        Op::MatMul,
        Attrs::new(),
        &[Some(ty_only(a.ty)), Some(ty_only(&b))],
    )?])
}

fn k_matmul(_ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let a = operand(ins, 0)?;
    let bt = operand(ins, 1)?;
    let r = bt.shape.len();
    if r < 2 {
        op_bail!("MatMulNT weight has rank {r}, needs at least 2");
    }
    let b = run1(Op::Transpose, perm_attrs(swap_last(r)), &[Some(bt)])?;
    Ok(vec![run1(Op::MatMul, Attrs::new(), &[Some(a), Some(&b)])?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn run(op: Op, attrs: Attrs, ins: &[&Tensor]) -> Tensor {
        let ins: Vec<Option<&Tensor>> = ins.iter().map(|t| Some(*t)).collect();
        run1(op, attrs, &ins).unwrap()
    }

    #[test]
    fn matmul_nt_multiplies_by_the_transpose() {
        // [1, 2] · [[1, 0], [0, 1], [1, 1]]ᵀ = [1, 2, 1 + 2] by hand.
        let a = Tensor::from_f64(DType::F32, vec![1, 2], vec![1.0, 2.0]);
        let bt = Tensor::from_f64(DType::F32, vec![3, 2], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let y = run(Op::MatMulNT, Attrs::new(), &[&a, &bt]);
        assert_eq!(y.shape, vec![1, 3]);
        assert_eq!(y.to_f64_vec().unwrap(), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn conv_nhwc_is_channels_last() {
        // X is [N=1, H=1, W=2, C=2] = pixels (1, 2) and (3, 4); a 1x1 conv
        // whose weight swaps the two channels gives (2, 1) and (4, 3).
        let x = Tensor::from_f64(DType::F32, vec![1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let w = Tensor::from_f64(DType::F32, vec![2, 2, 1, 1], vec![0.0, 1.0, 1.0, 0.0]);
        let y = run(Op::ConvNhwc, Attrs::new(), &[&x, &w]);
        assert_eq!(y.shape, vec![1, 1, 2, 2]);
        assert_eq!(y.to_f64_vec().unwrap(), vec![2.0, 1.0, 4.0, 3.0]);
    }

    #[test]
    fn perms_are_inverse() {
        assert_eq!(to_last(4), vec![0, 2, 3, 1]);
        assert_eq!(to_first(4), vec![0, 3, 1, 2]);
    }
}
