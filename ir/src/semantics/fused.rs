//! smelt's fused ops, produced by the optimizer. Each is defined as the
//! composition of the ONNX ops it replaces, run through those ops' own type
//! rules and kernels, so an optimized graph computes exactly what the
//! unfused one did (same rounding after every step).
//!
//! - `FusedMatMul(A, B, [bias], [residual]) {activation}`:
//!   `act(MatMul(A, B) + bias) + residual`.
//! - `FusedConv(X, W, [B], [residual]) {activation, conv attrs...}`:
//!   `act(Conv(X, W, B)) + residual`.
//! - `FusedElementwise(x) {ops=["Neg", "Relu", ...]}`: attribute-free unary
//!   ops applied in order.
//!
//! `activation` is the name of an attribute-free unary op (`Relu`,
//! `Sigmoid`, `Tanh`, `Gelu`, ...) or "" for none.

use super::compose::{run1, ty1};
use super::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::interp::Tensor;
use crate::{Attr, Attrs, Op, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (super::InferFn, super::KernelFn) = match op {
        Op::FusedMatMul => (infer_matmul, k_matmul),
        Op::FusedConv => (infer_conv, k_conv),
        Op::FusedElementwise => (infer_chain, k_chain),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

/// Unary ops allowed in `activation` and in `FusedElementwise` chains:
/// attribute-free and element-wise, so the fused form needs no attributes
/// of its own.
pub const UNARY: &[Op] = &[
    Op::Relu,
    Op::Sigmoid,
    Op::Tanh,
    Op::Exp,
    Op::Log,
    Op::Sqrt,
    Op::Neg,
    Op::Abs,
    Op::Reciprocal,
    Op::Floor,
    Op::Ceil,
    Op::Sin,
    Op::Cos,
    Op::Erf,
    Op::Sign,
    Op::Softsign,
    Op::Gelu,
    Op::Softplus,
];

fn unary(name: &str) -> OpResult<Op> {
    match name.parse::<Op>() {
        Ok(op) if UNARY.contains(&op) => Ok(op),
        _ => op_bail!("`{name}` is not a fusable unary op"),
    }
}

fn activation(ctx: &Ctx) -> OpResult<Option<Op>> {
    let a = ctx.string("activation", "")?;
    if a.is_empty() {
        Ok(None)
    } else {
        unary(&a).map(Some)
    }
}

/// Types through the epilogue: + bias, activation, + residual.
fn epilogue_ty(
    ctx: &Ctx,
    mut ty: TensorType,
    bias: Option<&TypeInput>,
    residual: Option<&TypeInput>,
) -> OpResult<Vec<TensorType>> {
    if let Some(b) = bias {
        let cur = TypeInput {
            ty: &ty,
            value: None,
        };
        ty = ty1(
            Op::Add,
            Attrs::new(),
            &[
                Some(cur),
                Some(TypeInput {
                    ty: b.ty,
                    value: None,
                }),
            ],
        )?;
    }
    if let Some(act) = activation(ctx)? {
        let cur = TypeInput {
            ty: &ty,
            value: None,
        };
        ty = ty1(act, Attrs::new(), &[Some(cur)])?;
    }
    if let Some(r) = residual {
        let cur = TypeInput {
            ty: &ty,
            value: None,
        };
        ty = ty1(
            Op::Add,
            Attrs::new(),
            &[
                Some(cur),
                Some(TypeInput {
                    ty: r.ty,
                    value: None,
                }),
            ],
        )?;
    }
    Ok(vec![ty])
}

fn epilogue(
    ctx: &Ctx,
    mut y: Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
) -> OpResult<Vec<Tensor>> {
    if let Some(b) = bias {
        y = run1(Op::Add, Attrs::new(), &[Some(&y), Some(b)])?;
    }
    if let Some(act) = activation(ctx)? {
        y = run1(act, Attrs::new(), &[Some(&y)])?;
    }
    if let Some(r) = residual {
        y = run1(Op::Add, Attrs::new(), &[Some(&y), Some(r)])?;
    }
    Ok(vec![y])
}

fn infer_matmul(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let a = input(ins, 0)?;
    let b = input(ins, 1)?;
    let ty = ty1(
        Op::MatMul,
        Attrs::new(),
        &[
            Some(TypeInput {
                ty: a.ty,
                value: None,
            }),
            Some(TypeInput {
                ty: b.ty,
                value: None,
            }),
        ],
    )?;
    epilogue_ty(
        ctx,
        ty,
        ins.get(2).and_then(Option::as_ref),
        ins.get(3).and_then(Option::as_ref),
    )
}

fn k_matmul(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let a = operand(ins, 0)?;
    let b = operand(ins, 1)?;
    let y = run1(Op::MatMul, Attrs::new(), &[Some(a), Some(b)])?;
    epilogue(
        ctx,
        y,
        ins.get(2).copied().flatten(),
        ins.get(3).copied().flatten(),
    )
}

/// The node's attributes minus `activation`: the Conv attributes.
fn conv_attrs(ctx: &Ctx) -> Attrs {
    let mut a = ctx.node.attrs.clone();
    a.remove("activation");
    a
}

fn infer_conv(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?;
    let w = input(ins, 1)?;
    let b = ins.get(2).and_then(Option::as_ref).map(|b| TypeInput {
        ty: b.ty,
        value: None,
    });
    let ty = ty1(
        Op::Conv,
        conv_attrs(ctx),
        &[
            Some(TypeInput {
                ty: x.ty,
                value: None,
            }),
            Some(TypeInput {
                ty: w.ty,
                value: None,
            }),
            b,
        ],
    )?;
    epilogue_ty(ctx, ty, None, ins.get(3).and_then(Option::as_ref))
}

fn k_conv(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let w = operand(ins, 1)?;
    let b = ins.get(2).copied().flatten();
    let y = run1(Op::Conv, conv_attrs(ctx), &[Some(x), Some(w), b])?;
    epilogue(ctx, y, None, ins.get(3).copied().flatten())
}

fn chain(ctx: &Ctx) -> OpResult<Vec<Op>> {
    match ctx.attr("ops") {
        Some(Attr::Strings(v)) if !v.is_empty() => v.iter().map(|s| unary(s)).collect(),
        _ => op_bail!("attribute `ops` should be a non-empty list of op names"),
    }
}

fn infer_chain(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let mut ty = input(ins, 0)?.ty.clone();
    for op in chain(ctx)? {
        ty = ty1(
            op,
            Attrs::new(),
            &[Some(TypeInput {
                ty: &ty,
                value: None,
            })],
        )?;
    }
    Ok(vec![ty])
}

fn k_chain(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let mut y = operand(ins, 0)?.clone();
    for op in chain(ctx)? {
        y = run1(op, Attrs::new(), &[Some(&y)])?;
    }
    Ok(vec![y])
}

#[cfg(test)]
mod tests {
    use super::super::compose::stand_in;
    use super::*;
    use crate::Node;

    fn node(op: Op, attrs: Attrs, nin: usize) -> Node {
        stand_in(op, attrs, nin)
    }

    #[test]
    fn fused_matmul_is_matmul_bias_relu_residual() {
        // [[1,2],[3,4]] @ [[1,0],[0,-1]] = [[1,-2],[3,-4]]; + bias [1,1]
        // = [[2,-1],[4,-3]]; relu = [[2,0],[4,0]]; + residual 10 = [[12,10],[14,10]].
        let a = Tensor::from_f64(crate::DType::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = Tensor::from_f64(crate::DType::F32, vec![2, 2], vec![1.0, 0.0, 0.0, -1.0]);
        let bias = Tensor::from_f64(crate::DType::F32, vec![2], vec![1.0, 1.0]);
        let r = Tensor::from_f64(crate::DType::F32, vec![], vec![10.0]);
        let mut attrs = Attrs::new();
        attrs.insert("activation".into(), Attr::String("Relu".into()));
        let n = node(Op::FusedMatMul, attrs, 4);
        let y = k_matmul(&Ctx::new(&n), &[Some(&a), Some(&b), Some(&bias), Some(&r)]).unwrap();
        assert_eq!(y[0].shape, vec![2, 2]);
        assert_eq!(y[0].to_f64_vec().unwrap(), vec![12.0, 10.0, 14.0, 10.0]);
    }

    #[test]
    fn chain_applies_in_order() {
        // Neg then Relu of [1,-2] = relu([-1,2]) = [0,2].
        let x = Tensor::from_f64(crate::DType::F32, vec![2], vec![1.0, -2.0]);
        let mut attrs = Attrs::new();
        attrs.insert(
            "ops".into(),
            Attr::Strings(vec!["Neg".into(), "Relu".into()]),
        );
        let n = node(Op::FusedElementwise, attrs, 1);
        let y = k_chain(&Ctx::new(&n), &[Some(&x)]).unwrap();
        assert_eq!(y[0].to_f64_vec().unwrap(), vec![0.0, 2.0]);
    }

    #[test]
    fn rejects_unknown_activation() {
        let mut attrs = Attrs::new();
        attrs.insert("activation".into(), Attr::String("Conv".into()));
        let n = node(Op::FusedElementwise, attrs.clone(), 1);
        assert!(activation(&Ctx::new(&n)).is_err());
    }
}
