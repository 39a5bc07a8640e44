//! Softmax, LogSoftmax, Hardmax (opset 13+: along one axis) and Dropout
//! (inference form).

use super::{axis_split, check_float, fdata};
use crate::interp::Tensor;
use crate::semantics::elementwise::infer_same;
use crate::semantics::util::norm_axis;
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DType, Op, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::Softmax | Op::LogSoftmax | Op::Hardmax => (infer_same, k_softmax),
        Op::Dropout => (infer_dropout, k_dropout),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn k_softmax(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    check_float("input", x.dtype)?;
    let v = fdata(x, "input")?;
    if x.rank() == 0 {
        op_bail!("{} needs rank >= 1", ctx.node.op);
    }
    let axis = norm_axis(ctx.int("axis", -1)?, x.rank())?;
    let (outer, len, inner) = axis_split(&x.shape, axis);
    let mut out = vec![0.0; v.len()];
    let op = ctx.node.op;
    for o in 0..outer {
        for j in 0..inner {
            let at = |i: usize| (o * len + i) * inner + j;
            // Subtracting the max keeps exp() finite; ties in Hardmax go to
            // the first maximum, as in numpy.argmax.
            let mut mx = f64::NEG_INFINITY;
            let mut arg = 0;
            for i in 0..len {
                if v[at(i)] > mx {
                    mx = v[at(i)];
                    arg = i;
                }
            }
            match op {
                Op::Hardmax => out[at(arg)] = 1.0,
                _ => {
                    let sum: f64 = (0..len).map(|i| (v[at(i)] - mx).exp()).sum();
                    for i in 0..len {
                        let d = v[at(i)] - mx;
                        out[at(i)] = if op == Op::LogSoftmax {
                            d - sum.ln()
                        } else {
                            d.exp() / sum
                        };
                    }
                }
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), out)])
}

fn infer_dropout(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    Ok(vec![
        x.clone(),
        TensorType::new(DType::Bool, x.shape.clone()),
    ])
}

/// Dropout is the identity unless training with a non-zero ratio, whose
/// random mask no reference can reproduce, so that case is refused.
fn k_dropout(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let ratio = match ins.get(1).copied().flatten() {
        Some(r) => r
            .to_f64_vec()
            .and_then(|v| v.first().copied())
            .unwrap_or(0.5),
        None => 0.5,
    };
    let training = match ins.get(2).copied().flatten() {
        Some(t) => t.to_i64_vec().and_then(|v| v.first().copied()).unwrap_or(0) != 0,
        None => false,
    };
    if training && ratio != 0.0 {
        op_bail!(
            "Dropout in training mode with ratio {ratio} is random; the interpreter cannot reproduce it"
        );
    }
    Ok(vec![
        x.clone(),
        Tensor::from_bool(x.shape.clone(), vec![true; x.numel()]),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    #[test]
    fn softmax_family() {
        let x = f32t(&[2, 3], &[1., 2., 3., 0., 0., 5.]);
        // scipy.special.softmax(x, axis=1)
        let y = run(Op::Softmax, &[], &[Some(&x)]).unwrap();
        assert_close(
            &y[0],
            &[
                0.09003057, 0.24472847, 0.66524096, 0.00664835, 0.00664835, 0.98670329,
            ],
        );
        // scipy.special.log_softmax(x, axis=0)
        let y = run(Op::LogSoftmax, &[("axis", Attr::Int(0))], &[Some(&x)]).unwrap();
        assert_close(
            &y[0],
            &[
                -0.31326169,
                -0.12692801,
                -2.12692801,
                -1.31326169,
                -2.12692801,
                -0.12692801,
            ],
        );
        let x = f32t(&[2, 2], &[3., 3., 1., 2.]);
        let y = run(Op::Hardmax, &[], &[Some(&x)]).unwrap();
        assert_close(&y[0], &[1., 0., 0., 1.]);
    }
}
