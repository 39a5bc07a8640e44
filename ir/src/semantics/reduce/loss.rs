//! NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.
//!
//! Both gather `-input[n, target[n, d...], d...]` per sample position, scale
//! it by `weight[target]` (1 without weights, 0 where target == ignore_index)
//! and reduce: `none` keeps the per-position loss, `sum` adds it up, `mean`
//! divides the sum by the sum of the applied weights (which is the element
//! count when there are neither weights nor ignored positions).

use crate::interp::Tensor;
use crate::semantics::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DClass, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (crate::semantics::InferFn, crate::semantics::KernelFn) = match op {
        Op::NegativeLogLikelihoodLoss | Op::SoftmaxCrossEntropyLoss => (infer_loss, k_loss),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Sum,
    Mean,
}

fn reduction(ctx: &Ctx) -> OpResult<Reduction> {
    Ok(match ctx.string("reduction", "mean")?.as_str() {
        "none" => Reduction::None,
        "sum" => Reduction::Sum,
        "mean" => Reduction::Mean,
        r => op_bail!("unknown reduction `{r}` (expected none, sum or mean)"),
    })
}

fn infer_loss(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let t = input(ins, 1)?.ty;
    if x.dtype.class() != DClass::Float {
        op_bail!("{} needs a float input, found {}", ctx.node.op, x.dtype);
    }
    if !matches!(t.dtype.class(), DClass::Signed | DClass::Unsigned) {
        op_bail!("{} needs integer targets, found {}", ctx.node.op, t.dtype);
    }
    if let Some(r) = x.shape.rank()
        && r < 2
    {
        op_bail!(
            "{} needs an input of rank >= 2 (N, C, ...), found rank {r}",
            ctx.node.op
        );
    }
    let loss_shape = match reduction(ctx)? {
        Reduction::None => match (t.shape.dims(), x.shape.dims()) {
            (Some(td), _) => Shape(Some(td.to_vec())),
            (None, Some(xd)) => {
                let mut d: Vec<Dim> = vec![xd[0].clone()];
                d.extend(xd[2..].iter().cloned());
                Shape(Some(d))
            }
            (None, None) => Shape::unknown(),
        },
        _ => Shape(Some(vec![])),
    };
    let mut out = vec![TensorType::new(x.dtype, loss_shape)];
    if ctx.node.op == Op::SoftmaxCrossEntropyLoss && ctx.node.outputs.len() > 1 {
        out.push(x.clone());
    }
    Ok(out)
}

/// log(softmax(x)) along axis 1 of an (N, C, D) layout.
fn log_softmax_axis1(x: &[f64], n: usize, c: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..n {
        for k in 0..d {
            let at = |j: usize| i * c * d + j * d + k;
            let m = (0..c).map(|j| x[at(j)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..c).map(|j| (x[at(j)] - m).exp()).sum();
            let ls = s.ln();
            for j in 0..c {
                out[at(j)] = x[at(j)] - m - ls;
            }
        }
    }
    out
}

fn k_loss(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let op = ctx.node.op;
    let x = operand(ins, 0)?;
    let target = operand(ins, 1)?;
    let weight = match ins.get(2) {
        Some(Some(w)) => Some(w.to_f64_vec().ok_or("weights must be numeric")?),
        _ => None,
    };
    let red = reduction(ctx)?;
    let ignore = match ctx.attr("ignore_index") {
        Some(_) => Some(ctx.int("ignore_index", 0)?),
        None => None,
    };
    if x.rank() < 2 {
        op_bail!(
            "{op} needs an input of rank >= 2 (N, C, ...), found {:?}",
            x.shape
        );
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let d: usize = x.shape[2..].iter().product();
    let mut want_t = vec![n];
    want_t.extend(&x.shape[2..]);
    if target.shape != want_t {
        op_bail!(
            "{op}: target shape {:?} does not match input shape {:?}",
            target.shape,
            x.shape
        );
    }
    if let Some(w) = &weight
        && w.len() != c
    {
        op_bail!(
            "{op}: weight has {} elements but there are {c} classes",
            w.len()
        );
    }
    let xv = x.to_f64_vec().ok_or("input must be numeric")?;
    let tv = target.to_i64_vec().ok_or("targets must be integers")?;
    let logp = if op == Op::SoftmaxCrossEntropyLoss {
        log_softmax_axis1(&xv, n, c, d)
    } else {
        xv
    };
    let mut loss = vec![0.0; n * d];
    let mut wsum = 0.0;
    for i in 0..n {
        for k in 0..d {
            let t = tv[i * d + k];
            if Some(t) == ignore {
                continue;
            }
            if t < 0 || t as usize >= c {
                op_bail!("{op}: target {t} is out of range for {c} classes");
            }
            let w = weight.as_ref().map_or(1.0, |w| w[t as usize]);
            loss[i * d + k] = -logp[i * c * d + t as usize * d + k] * w;
            wsum += w;
        }
    }
    let l = match red {
        Reduction::None => Tensor::from_f64(x.dtype, target.shape.clone(), loss),
        Reduction::Sum => Tensor::from_f64(x.dtype, vec![], vec![loss.iter().sum()]),
        Reduction::Mean => Tensor::from_f64(x.dtype, vec![], vec![loss.iter().sum::<f64>() / wsum]),
    };
    let mut out = vec![l];
    if op == Op::SoftmaxCrossEntropyLoss && ctx.node.outputs.len() > 1 {
        out.push(Tensor::from_f64(x.dtype, x.shape.clone(), logp));
    }
    Ok(out)
}
