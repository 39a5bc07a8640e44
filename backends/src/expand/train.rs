//! Training-time ops as the arithmetic they define: BatchNormalization in
//! training mode or with run-time statistics, and the optimizer steps of
//! ai.onnx.preview.training (Adagrad, Adam, Momentum). The step count T
//! picks the first-step and bias-correction factors: folded when T is a
//! constant, computed on the chip when it is a run-time input.

use super::steps::{float_attr, int_attr};
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
    let eps = b.scalar(d, float_attr(n, "epsilon").unwrap_or(1e-5))?;
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
        let mom = float_attr(n, "momentum").unwrap_or(0.9);
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

/// The optimizer's step count: a constant, or a run-time scalar whose
/// dependent factors are computed on the chip.
#[derive(Clone, Copy)]
enum Step {
    Known(f64),
    Run(ValueId),
}

/// The run-time step count as a float of `d`. Through i32: a step count
/// past 2^31 is not a training run, and integer-to-float conversion of
/// i64 lanes is not something the targets all have.
fn step_as(b: &mut Builder, t: ValueId, d: DType) -> Result<ValueId, String> {
    let t = b.cast(t, DType::I32)?;
    b.cast(t, d)
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
    let t = match b.known(ins[1]).and_then(|t| t.to_f64_vec()).as_deref() {
        Some(&[t]) => Step::Known(t),
        Some(_) => return Ok(None),
        None => Step::Run(ins[1]),
    };
    let norm = float_attr(n, "norm_coefficient").unwrap_or(0.0);
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
                let decay = float_attr(n, "decay_factor").unwrap_or(0.0);
                let eps = k(b, float_attr(n, "epsilon").unwrap_or(1e-6))?;
                let lr = match t {
                    Step::Known(t) => {
                        let f = k(b, 1.0 / (1.0 + t * decay))?;
                        b.op(Op::Mul, &[r, f], &[])?
                    }
                    Step::Run(t) => {
                        let tf = step_as(b, t, d)?;
                        let (kd, one) = (k(b, decay)?, k(b, 1.0)?);
                        let td = b.op(Op::Mul, &[tf, kd], &[])?;
                        let den = b.op(Op::Add, &[td, one], &[])?;
                        b.op(Op::Div, &[r, den], &[])?
                    }
                };
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
                let alpha = float_attr(n, "alpha").unwrap_or(0.9);
                let beta = float_attr(n, "beta").unwrap_or(0.999);
                let post = float_attr(n, "norm_coefficient_post").unwrap_or(0.0);
                let eps = k(b, float_attr(n, "epsilon").unwrap_or(1e-6))?;
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
                let f = match t {
                    Step::Known(t) if t > 0.0 => {
                        k(b, (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t)))?
                    }
                    Step::Known(_) => k(b, 1.0)?,
                    Step::Run(t) => {
                        let tf = step_as(b, t, d)?;
                        let (ka, kb, one) = (k(b, alpha)?, k(b, beta)?, k(b, 1.0)?);
                        let bt = b.op(Op::Pow, &[kb, tf], &[])?;
                        let at = b.op(Op::Pow, &[ka, tf], &[])?;
                        let nb = b.op(Op::Sub, &[one, bt], &[])?;
                        let na = b.op(Op::Sub, &[one, at], &[])?;
                        let sq = b.op(Op::Sqrt, &[nb], &[])?;
                        let f = b.op(Op::Div, &[sq, na], &[])?;
                        let zero = k(b, 0.0)?;
                        let taken = b.op(Op::Greater, &[tf, zero], &[])?;
                        b.op(Op::Where, &[taken, f, one], &[])?
                    }
                };
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
                let alpha = float_attr(n, "alpha").unwrap_or(0.0);
                let nesterov = match n.attr("mode") {
                    Some(Attr::String(m)) if m == "nesterov" => true,
                    Some(Attr::String(m)) if m == "standard" => false,
                    None => false,
                    _ => return Ok(None),
                };
                // The first step (T = 0) takes the plain gradient.
                let beta = float_attr(n, "beta").unwrap_or(0.0);
                let kb = match t {
                    Step::Known(t) => k(b, if t > 0.0 { beta } else { 1.0 })?,
                    Step::Run(t) => {
                        let tf = step_as(b, t, d)?;
                        let (zero, one, kb) = (k(b, 0.0)?, k(b, 1.0)?, k(b, beta)?);
                        let taken = b.op(Op::Greater, &[tf, zero], &[])?;
                        b.op(Op::Where, &[taken, kb, one], &[])?
                    }
                };
                let ka = k(b, alpha)?;
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

#[cfg(test)]
mod tests {
    use super::super::testing::{One, f32t, i64t};
    use smelt_ir::{Attr, Op};

    // Expected values: onnx.reference.ReferenceEvaluator (onnx 1.23.2,
    // ai.onnx.preview.training 1) on the same nodes and inputs. T is a
    // run-time input, so the step-dependent factors run on the chip.

    fn step(op: Op, t: i64, state: &[&[f64]], attrs: &[(&str, Attr)], want: &[f64]) {
        let mut o = One::new();
        let mut ins = vec![
            Some(o.input("r", f32t(&[], &[0.1]))),
            Some(o.input("t", i64t(&[], &[t]))),
            Some(o.input("x", f32t(&[2], &[1.0, -2.0]))),
            Some(o.input("g", f32t(&[2], &[0.5, 0.25]))),
        ];
        for (i, s) in state.iter().enumerate() {
            ins.push(Some(o.input(&format!("s{i}"), f32t(&[2], s))));
        }
        o.node(op, &ins, attrs);
        o.check(want, 2e-6);
    }

    #[test]
    fn adam_with_a_run_time_step_count() {
        let a = [
            ("alpha", Attr::Float(0.9)),
            ("beta", Attr::Float(0.999)),
            ("epsilon", Attr::Float(1e-6)),
        ];
        let st: [&[f64]; 2] = [&[0.1, 0.2], &[0.01, 0.04]];
        step(
            Op::Adam,
            0,
            &st,
            &a,
            &[0.8616516590118408, -2.102470636367798],
        );
        step(
            Op::Adam,
            3,
            &st,
            &a,
            &[0.9720523590861309, -2.0207000244598565],
        );
    }

    #[test]
    fn nesterov_momentum_and_adagrad_with_a_run_time_step_count() {
        let m = [
            ("alpha", Attr::Float(0.9)),
            ("beta", Attr::Float(0.5)),
            ("mode", Attr::String("nesterov".into())),
            ("norm_coefficient", Attr::Float(0.01)),
        ];
        let v: [&[f64]; 1] = [&[0.1, 0.2]];
        step(
            Op::Momentum,
            0,
            &v,
            &m,
            &[0.8949999809265137, -2.0599000453948975],
        );
        step(
            Op::Momentum,
            3,
            &v,
            &m,
            &[0.9179499745368958, -2.0495500564575195],
        );
        let a = [
            ("decay_factor", Attr::Float(0.1)),
            ("epsilon", Attr::Float(1e-6)),
        ];
        let h: [&[f64]; 1] = [&[0.01, 0.04]];
        step(
            Op::Adagrad,
            0,
            &h,
            &a,
            &[0.9019421339035034, -2.0780866146087646],
        );
        step(
            Op::Adagrad,
            3,
            &h,
            &a,
            &[0.9245708584785461, -2.0600666999816895],
        );
    }
}
