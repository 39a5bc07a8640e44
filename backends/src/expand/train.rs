//! Training-time ops as the arithmetic they define: BatchNormalization in
//! training mode or with run-time statistics, and the optimizer steps of
//! ai.onnx.preview.training (Adagrad, Adam, Momentum). The step count T
//! must be known (it is a specialized input in practice): it picks the
//! first-step and bias-correction constants.

use super::{Builder, Expansion};
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::BatchNormalization => Some(batch_norm),
        Op::Adagrad | Op::Adam | Op::Momentum => Some(optimizer),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

fn float_attr(n: &Node, name: &str, default: f64) -> f64 {
    match n.attr(name) {
        Some(Attr::Float(v)) => f64::from(*v),
        _ => default,
    }
}

fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    match n.attr(name) {
        Some(Attr::Int(v)) => *v,
        _ => default,
    }
}

fn batch_norm(b: &mut Builder, n: &Node) -> Out {
    let ins: Vec<ValueId> = match (0..5).map(|i| Builder::input(n, i)).collect() {
        Some(v) => v,
        None => return Ok(None),
    };
    let training = int_attr(n, "training_mode", 0) != 0;
    // Constant statistics outside training lower natively (folded into a
    // per-channel scale and shift).
    if !training && ins[1..].iter().all(|&v| b.known(v).is_some()) {
        return Ok(None);
    }
    let x = ins[0];
    let Some(shape) = b.shape(x) else {
        return Ok(None);
    };
    if shape.len() < 2 || ins[1..].iter().any(|&v| b.shape(v) != Some(vec![shape[1]])) {
        return Ok(None);
    }
    let d = b.dtype(x);
    // [C] -> [C, 1, ...] so that it broadcasts against [N, C, ...].
    let mut cshape = vec![shape[1] as i64];
    cshape.extend(std::iter::repeat_n(1, shape.len() - 2));
    let cs = b.const_i64(&[cshape.len()], cshape)?;
    let per_channel = |b: &mut Builder, v: ValueId| -> Result<ValueId, String> {
        let v = b.cast(v, d)?;
        b.op(Op::Reshape, &[v, cs], &[])
    };
    let eps = b.scalar(d, float_attr(n, "epsilon", 1e-5))?;
    let (mean, var, running) = if training {
        let mut axes = vec![0i64];
        axes.extend(2..shape.len() as i64);
        let axes = b.const_i64(&[axes.len()], axes)?;
        let keep = [("keepdims", Attr::Int(1))];
        let m = b.op(Op::ReduceMean, &[x, axes], &keep)?;
        let c = b.op(Op::Sub, &[x, m], &[])?;
        let sq = b.op(Op::Mul, &[c, c], &[])?;
        let v = b.op(Op::ReduceMean, &[sq, axes], &keep)?;
        // Running statistics: input * momentum + batch * (1 - momentum).
        let mom = float_attr(n, "momentum", 0.9);
        let flat = b.const_i64(&[1], vec![shape[1] as i64])?;
        let mut run = Vec::new();
        for (batch, input) in [(m, ins[3]), (v, ins[4])] {
            let id = b.dtype(input);
            let batch = b.op(Op::Reshape, &[batch, flat], &[])?;
            let batch = b.cast(batch, id)?;
            let (km, kb) = (b.scalar(id, mom)?, b.scalar(id, 1.0 - mom)?);
            let a = b.op(Op::Mul, &[input, km], &[])?;
            let c = b.op(Op::Mul, &[batch, kb], &[])?;
            run.push(Some(b.op(Op::Add, &[a, c], &[])?));
        }
        (m, v, run)
    } else {
        let m = per_channel(b, ins[3])?;
        let v = per_channel(b, ins[4])?;
        (m, v, vec![Some(ins[3]), Some(ins[4])])
    };
    let scale = per_channel(b, ins[1])?;
    let bias = per_channel(b, ins[2])?;
    let c = b.op(Op::Sub, &[x, mean], &[])?;
    let ve = b.op(Op::Add, &[var, eps], &[])?;
    let sd = b.op(Op::Sqrt, &[ve], &[])?;
    let s = b.op(Op::Mul, &[c, scale], &[])?;
    let q = b.op(Op::Div, &[s, sd], &[])?;
    let y = b.op(Op::Add, &[q, bias], &[])?;
    let mut outs = vec![Some(y)];
    outs.extend(running);
    Ok(Some(outs))
}

fn optimizer(b: &mut Builder, n: &Node) -> Out {
    let groups = if n.op == Op::Adam { 4 } else { 3 };
    let count = n.inputs.len();
    if count < 2 + groups || !(count - 2).is_multiple_of(groups) {
        return Ok(None);
    }
    let vars = (count - 2) / groups;
    let ins: Vec<ValueId> = match n.inputs.iter().copied().collect() {
        Some(v) => v,
        None => return Ok(None),
    };
    let Some(t) = b.known(ins[1]).and_then(|t| t.to_f64_vec()) else {
        return Ok(None);
    };
    let [t] = t[..] else {
        return Ok(None);
    };
    let norm = float_attr(n, "norm_coefficient", 0.0);
    let mut out: Vec<Vec<Option<ValueId>>> = vec![Vec::new(); groups - 1];
    for i in 0..vars {
        let x = ins[2 + i];
        let g = ins[2 + vars + i];
        let d = b.dtype(x);
        if !matches!(d, DType::F32 | DType::F16 | DType::BF16) {
            return Ok(None);
        }
        let r = b.cast(ins[0], d)?;
        let k = |b: &mut Builder, v: f64| b.scalar(d, v);
        // The gradient with the L2 term folded in.
        let greg = if norm != 0.0 {
            let c = k(b, norm)?;
            let nx = b.op(Op::Mul, &[x, c], &[])?;
            b.op(Op::Add, &[nx, g], &[])?
        } else {
            g
        };
        let new = match n.op {
            Op::Adagrad => {
                let h = ins[2 + 2 * vars + i];
                let decay = float_attr(n, "decay_factor", 0.0);
                let eps = k(b, float_attr(n, "epsilon", 1e-6))?;
                let f = k(b, 1.0 / (1.0 + t * decay))?;
                let lr = b.op(Op::Mul, &[r, f], &[])?;
                let g2 = b.op(Op::Mul, &[greg, greg], &[])?;
                let h2 = b.op(Op::Add, &[h, g2], &[])?;
                let sq = b.op(Op::Sqrt, &[h2], &[])?;
                let den = b.op(Op::Add, &[sq, eps], &[])?;
                let num = b.op(Op::Mul, &[lr, greg], &[])?;
                let st = b.op(Op::Div, &[num, den], &[])?;
                let x2 = b.op(Op::Sub, &[x, st], &[])?;
                vec![x2, h2]
            }
            Op::Adam => {
                let (v, h) = (ins[2 + 2 * vars + i], ins[2 + 3 * vars + i]);
                let alpha = float_attr(n, "alpha", 0.9);
                let beta = float_attr(n, "beta", 0.999);
                let post = float_attr(n, "norm_coefficient_post", 0.0);
                let eps = k(b, float_attr(n, "epsilon", 1e-6))?;
                let (ka, kna) = (k(b, alpha)?, k(b, 1.0 - alpha)?);
                let va = b.op(Op::Mul, &[v, ka], &[])?;
                let ga = b.op(Op::Mul, &[greg, kna], &[])?;
                let v2 = b.op(Op::Add, &[va, ga], &[])?;
                let (kb, knb) = (k(b, beta)?, k(b, 1.0 - beta)?);
                let hb = b.op(Op::Mul, &[h, kb], &[])?;
                let g2 = b.op(Op::Mul, &[greg, greg], &[])?;
                let gb = b.op(Op::Mul, &[g2, knb], &[])?;
                let h2 = b.op(Op::Add, &[hb, gb], &[])?;
                // Bias correction once steps have been taken.
                let f = if t > 0.0 {
                    (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t))
                } else {
                    1.0
                };
                let f = k(b, f)?;
                let lr = b.op(Op::Mul, &[r, f], &[])?;
                let sq = b.op(Op::Sqrt, &[h2], &[])?;
                let den = b.op(Op::Add, &[sq, eps], &[])?;
                let num = b.op(Op::Mul, &[lr, v2], &[])?;
                let st = b.op(Op::Div, &[num, den], &[])?;
                let mut x2 = b.op(Op::Sub, &[x, st], &[])?;
                if post != 0.0 {
                    let kp = k(b, 1.0 - post)?;
                    x2 = b.op(Op::Mul, &[x2, kp], &[])?;
                }
                vec![x2, v2, h2]
            }
            _ => {
                let v = ins[2 + 2 * vars + i];
                let alpha = float_attr(n, "alpha", 0.0);
                let nesterov = match n.attr("mode") {
                    Some(Attr::String(m)) if m == "nesterov" => true,
                    Some(Attr::String(m)) if m == "standard" => false,
                    None => false,
                    _ => return Ok(None),
                };
                // The first step (T = 0) takes the plain gradient.
                let beta = if t > 0.0 {
                    float_attr(n, "beta", 0.0)
                } else {
                    1.0
                };
                let (ka, kb) = (k(b, alpha)?, k(b, beta)?);
                let va = b.op(Op::Mul, &[v, ka], &[])?;
                let gb = b.op(Op::Mul, &[greg, kb], &[])?;
                let v2 = b.op(Op::Add, &[va, gb], &[])?;
                let step = if nesterov {
                    let av = b.op(Op::Mul, &[v2, ka], &[])?;
                    b.op(Op::Add, &[greg, av], &[])?
                } else {
                    v2
                };
                let rs = b.op(Op::Mul, &[r, step], &[])?;
                let x2 = b.op(Op::Sub, &[x, rs], &[])?;
                vec![x2, v2]
            }
        };
        for (grp, v) in new.into_iter().enumerate() {
            out[grp].push(Some(v));
        }
    }
    Ok(Some(out.into_iter().flatten().collect()))
}
