//! Optimizer steps of ai.onnx.preview.training: Adagrad, Adam, Momentum.
//! Inputs are R (learning rate, scalar), T (step count, scalar), then n
//! tensors of each kind in groups: X..., G..., then the optimizer state
//! (H... for Adagrad; V..., H... for Adam; V... for Momentum). Outputs are
//! the new X... followed by the new state groups.

use super::{Ctx, OpImpl, OpResult, TypeInput, operand};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{Op, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    match op {
        Op::Adagrad | Op::Adam | Op::Momentum => Some(OpImpl {
            infer: infer_opt,
            kernel: k_opt,
        }),
        _ => None,
    }
}

/// Tensors per optimized variable: X, G and the state tensors.
fn group_count(op: Op) -> usize {
    match op {
        Op::Adam => 4,
        _ => 3,
    }
}

/// Number of optimized tensors n, from the input count 2 + k*n.
fn variables(op: Op, n_in: usize) -> OpResult<usize> {
    let k = group_count(op);
    if n_in < 2 + k || !(n_in - 2).is_multiple_of(k) {
        op_bail!("{op} needs 2 + {k}*n inputs, found {n_in}");
    }
    Ok((n_in - 2) / k)
}

/// The input that output `o` updates: X group first, then the state
/// groups (the gradient group is skipped).
fn source_of(o: usize, n: usize) -> usize {
    let (group, i) = (o / n, o % n);
    let g = if group == 0 { 0 } else { group + 1 };
    2 + g * n + i
}

fn infer_opt(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let op = ctx.node.op;
    let n = variables(op, ins.len())?;
    let outs = (group_count(op) - 1) * n;
    (0..outs)
        .map(|o| match ins.get(source_of(o, n)) {
            Some(Some(t)) => Ok(t.ty.clone()),
            _ => op_bail!("{op} input {} is missing", source_of(o, n)),
        })
        .collect()
}

fn scalar(t: &Tensor, what: &str) -> OpResult<f64> {
    match t.to_f64_vec() {
        Some(v) if v.len() == 1 => Ok(v[0]),
        _ => op_bail!("{what} must be a one-element numeric tensor"),
    }
}

fn fvals<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [f64]> {
    match &t.data {
        Storage::F(v) => Ok(v),
        _ => op_bail!("{what} must be a float tensor, found {}", t.dtype),
    }
}

fn k_opt(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let op = ctx.node.op;
    let n = variables(op, ins.len())?;
    let r = scalar(operand(ins, 0)?, "R")?;
    let t = scalar(operand(ins, 1)?, "T")?;
    let k = group_count(op);
    let norm = ctx.float("norm_coefficient", 0.0)? as f64;
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); k - 1];
    for i in 0..n {
        let x = operand(ins, 2 + i)?;
        let parts: Vec<&Tensor> = (1..k)
            .map(|g| operand(ins, 2 + g * n + i))
            .collect::<OpResult<_>>()?;
        for p in &parts {
            if p.shape != x.shape {
                op_bail!("{op}: shapes {:?} and {:?} differ", x.shape, p.shape);
            }
        }
        let xv = fvals(x, "X")?;
        let gv = fvals(parts[0], "G")?;
        // Gradient with the L2 term folded in.
        let greg: Vec<f64> = xv.iter().zip(gv).map(|(x, g)| norm * x + g).collect();
        let new: Vec<Vec<f64>> = match op {
            Op::Adagrad => {
                let decay = ctx.float("decay_factor", 0.0)? as f64;
                let eps = ctx.float("epsilon", 1e-6)? as f64;
                let h = fvals(parts[1], "H")?;
                let lr = r / (1.0 + t * decay);
                let h2: Vec<f64> = h.iter().zip(&greg).map(|(h, g)| h + g * g).collect();
                let x2 = (0..xv.len())
                    .map(|j| xv[j] - lr * greg[j] / (h2[j].sqrt() + eps))
                    .collect();
                vec![x2, h2]
            }
            Op::Adam => {
                let alpha = ctx.float("alpha", 0.9)? as f64;
                let beta = ctx.float("beta", 0.999)? as f64;
                let eps = ctx.float("epsilon", 1e-6)? as f64;
                let post = ctx.float("norm_coefficient_post", 0.0)? as f64;
                let v = fvals(parts[1], "V")?;
                let h = fvals(parts[2], "H")?;
                let v2: Vec<f64> = (0..xv.len())
                    .map(|j| alpha * v[j] + (1.0 - alpha) * greg[j])
                    .collect();
                let h2: Vec<f64> = (0..xv.len())
                    .map(|j| beta * h[j] + (1.0 - beta) * greg[j] * greg[j])
                    .collect();
                // Bias correction only once steps have been taken.
                let lr = if t > 0.0 {
                    r * (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t))
                } else {
                    r
                };
                let x2 = (0..xv.len())
                    .map(|j| (1.0 - post) * (xv[j] - lr * v2[j] / (h2[j].sqrt() + eps)))
                    .collect();
                vec![x2, v2, h2]
            }
            _ => {
                let alpha = ctx.float("alpha", 0.0)? as f64;
                let beta = ctx.float("beta", 0.0)? as f64;
                let nesterov = match ctx.string("mode", "standard")?.as_str() {
                    "standard" => false,
                    "nesterov" => true,
                    m => op_bail!("unknown Momentum mode `{m}`"),
                };
                let v = fvals(parts[1], "V")?;
                // The first step (T = 0) takes the plain gradient.
                let b = if t > 0.0 { beta } else { 1.0 };
                let v2: Vec<f64> = (0..xv.len()).map(|j| alpha * v[j] + b * greg[j]).collect();
                let x2 = (0..xv.len())
                    .map(|j| {
                        let step = if nesterov {
                            greg[j] + alpha * v2[j]
                        } else {
                            v2[j]
                        };
                        xv[j] - r * step
                    })
                    .collect();
                vec![x2, v2]
            }
        };
        let dtypes: Vec<_> = std::iter::once(x.dtype)
            .chain(parts[1..].iter().map(|p| p.dtype))
            .collect();
        for (g, (vals, dt)) in new.into_iter().zip(dtypes).enumerate() {
            outs[g].push(Tensor::from_f64(dt, x.shape.clone(), vals));
        }
    }
    Ok(outs.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use crate::interp::Tensor;
    use crate::semantics::nn::testutil::{assert_close, f32t, run};
    use crate::{Attr, DType, Op};

    #[test]
    fn adagrad_and_momentum_by_hand() {
        let r = f32t(&[], &[0.1]);
        let t = Tensor::from_i64(DType::I64, vec![], vec![0]);
        let x = f32t(&[1], &[1.0]);
        let g = f32t(&[1], &[2.0]);
        let h = f32t(&[1], &[0.0]);
        // Adagrad: h' = 4, x' = 1 - 0.1 * 2 / (2 + 1e-6)
        let y = run(
            Op::Adagrad,
            &[],
            &[Some(&r), Some(&t), Some(&x), Some(&g), Some(&h)],
        )
        .unwrap();
        assert_close(&y[0], &[1.0 - 0.2 / (2.0 + 1e-6)]);
        assert_close(&y[1], &[4.0]);
        // Momentum at T=0: v' = alpha*v + g = 0.5*1 + 2, x' = 1 - 0.1 * 2.5
        let v = f32t(&[1], &[1.0]);
        let y = run(
            Op::Momentum,
            &[
                ("alpha", Attr::Float(0.5)),
                ("beta", Attr::Float(0.3)),
                ("mode", Attr::String("standard".into())),
            ],
            &[Some(&r), Some(&t), Some(&x), Some(&g), Some(&v)],
        )
        .unwrap();
        assert_close(&y[0], &[0.75]);
        assert_close(&y[1], &[2.5]);
        assert!(run(Op::Adam, &[], &[Some(&r), Some(&t), Some(&x)]).is_err());
    }
}
