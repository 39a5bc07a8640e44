//! RNN, GRU and LSTM unrolled over their static sequence length: per step
//! and direction, the gate pre-activations are Gemms (input projections of
//! all steps at once, the recurrent one per step) and the cell maths is
//! elementwise. `sequence_lens`, constant or not, becomes a per-row mask:
//! a row past its length keeps its state and writes zeros to Y, which is
//! what running each row only over its own length gives in both
//! directions.

use super::Builder;
use super::steps::{
    Out, add, concat, float_attr, int_attr, mul, pick, reshape, slice, string_attr, sub, transpose,
};
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<super::Expansion> {
    match op {
        Op::RNN | Op::GRU | Op::LSTM => Some(recurrent),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

/// The activation list, `per_dir` per direction, alphas and betas taken in
/// order by the functions that have them (ONNX's RNN convention).
fn activations(n: &Node, defaults: &[&str], dirs: usize) -> Option<Vec<Act>> {
    let per_dir = defaults.len();
    let names: Vec<String> = match n.attr("activations") {
        None => defaults.iter().map(|s| s.to_string()).collect(),
        Some(Attr::Strings(v)) => v.clone(),
        Some(Attr::String(s)) => vec![s.clone()],
        Some(_) => return None,
    };
    let names: Vec<String> = if names.len() == per_dir && dirs == 2 {
        names.iter().chain(names.iter()).cloned().collect()
    } else {
        names.into_iter().take(per_dir * dirs).collect()
    };
    if names.len() != per_dir * dirs {
        return None;
    }
    let floats = |k: &str| match n.attr(k) {
        Some(Attr::Floats(v)) => v.iter().map(|&x| x as f64).collect(),
        _ => Vec::new(),
    };
    let (alphas, betas): (Vec<f64>, Vec<f64>) =
        (floats("activation_alpha"), floats("activation_beta"));
    let (mut ai, mut bi) = (0, 0);
    let take = |v: &[f64], i: &mut usize, d: f64| {
        let r = v.get(*i).copied().unwrap_or(d);
        *i += 1;
        r
    };
    let mut out = Vec::new();
    for name in &names {
        out.push(match name.to_ascii_lowercase().as_str() {
            "relu" => Act::Relu,
            "tanh" => Act::Tanh,
            "sigmoid" => Act::Sigmoid,
            "affine" => Act::Affine(take(&alphas, &mut ai, 1.0), take(&betas, &mut bi, 0.0)),
            "leakyrelu" => Act::LeakyRelu(take(&alphas, &mut ai, 0.01)),
            "thresholdedrelu" => Act::ThresholdedRelu(take(&alphas, &mut ai, 1.0)),
            "scaledtanh" => {
                Act::ScaledTanh(take(&alphas, &mut ai, 1.0), take(&betas, &mut bi, 1.0))
            }
            "hardsigmoid" => {
                Act::HardSigmoid(take(&alphas, &mut ai, 0.2), take(&betas, &mut bi, 0.5))
            }
            "elu" => Act::Elu(take(&alphas, &mut ai, 1.0)),
            "softsign" => Act::Softsign,
            "softplus" => Act::Softplus,
            _ => return None,
        });
    }
    Some(out)
}

fn apply(b: &mut Builder, a: Act, x: ValueId) -> Result<ValueId, String> {
    let d = b.dtype(x);
    let f = |v: f64| Attr::Float(v as f32);
    match a {
        Act::Relu => b.op(Op::Relu, &[x], &[]),
        Act::Tanh => b.op(Op::Tanh, &[x], &[]),
        Act::Sigmoid => b.op(Op::Sigmoid, &[x], &[]),
        Act::Affine(al, be) => {
            let (s, t) = (b.scalar(d, al)?, b.scalar(d, be)?);
            let m = mul(b, x, s)?;
            add(b, m, t)
        }
        Act::LeakyRelu(al) => b.op(Op::LeakyRelu, &[x], &[("alpha", f(al))]),
        Act::ThresholdedRelu(al) => b.op(Op::ThresholdedRelu, &[x], &[("alpha", f(al))]),
        Act::ScaledTanh(al, be) => {
            let (s, t) = (b.scalar(d, al)?, b.scalar(d, be)?);
            let m = mul(b, x, t)?;
            let th = b.op(Op::Tanh, &[m], &[])?;
            mul(b, th, s)
        }
        Act::HardSigmoid(al, be) => {
            b.op(Op::HardSigmoid, &[x], &[("alpha", f(al)), ("beta", f(be))])
        }
        Act::Elu(al) => b.op(Op::Elu, &[x], &[("alpha", f(al))]),
        Act::Softsign => b.op(Op::Softsign, &[x], &[]),
        Act::Softplus => b.op(Op::Softplus, &[x], &[]),
    }
}

struct Cfg {
    op: Op,
    dt: DType,
    seq: usize,
    batch: usize,
    isz: usize,
    h: usize,
    clip: Option<(ValueId, ValueId)>,
    lbr: bool,
    input_forget: bool,
}

impl Cfg {
    fn gates(&self) -> usize {
        match self.op {
            Op::RNN => 1,
            Op::GRU => 3,
            _ => 4,
        }
    }
}

fn pre(b: &mut Builder, c: &Cfg, x: ValueId) -> Result<ValueId, String> {
    match c.clip {
        Some((lo, hi)) => b.op(Op::Clip, &[x, lo, hi], &[]),
        None => Ok(x),
    }
}

/// Per-direction weights: per gate k, W_k [H, in], R_k [H, H], and the
/// biases Wb_k, Rb_k [H].
struct Dir {
    w: Vec<ValueId>,
    r: Vec<ValueId>,
    wb: Vec<ValueId>,
    rb: Vec<ValueId>,
    /// Peepholes i, o, f (LSTM only).
    p: Vec<ValueId>,
    acts: Vec<Act>,
}

fn recurrent(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(w), Some(r)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let (Some(xs), Some(ws), Some(rs)) = (b.shape(x), b.shape(w), b.shape(r)) else {
        return Ok(None);
    };
    let dt = b.dtype(x);
    if xs.len() != 3 || ws.len() != 3 || rs.len() != 3 || !dt.is_float() {
        return Ok(None);
    }
    let layout = int_attr(n, "layout", 0);
    let direction = string_attr(n, "direction", "forward");
    let dirs = match direction.as_str() {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        _ => return Ok(None),
    };
    let (seq, batch) = if layout == 0 {
        (xs[0], xs[1])
    } else {
        (xs[1], xs[0])
    };
    let h = rs[2];
    let defaults: &[&str] = match n.op {
        Op::RNN => &["Tanh"],
        Op::GRU => &["Sigmoid", "Tanh"],
        _ => &["Sigmoid", "Tanh", "Tanh"],
    };
    let Some(acts) = activations(n, defaults, dirs) else {
        return Ok(None);
    };
    let clip = match float_attr(n, "clip") {
        Some(cv) if n.attr("clip").is_some() => Some((b.scalar(dt, -cv)?, b.scalar(dt, cv)?)),
        _ => None,
    };
    let c = Cfg {
        op: n.op,
        dt,
        seq,
        batch,
        isz: xs[2],
        h,
        clip,
        lbr: int_attr(n, "linear_before_reset", 0) != 0,
        input_forget: int_attr(n, "input_forget", 0) != 0,
    };
    let g = c.gates();
    if ws != [dirs, g * h, c.isz] || rs != [dirs, g * h, h] || seq == 0 || batch == 0 || h == 0 {
        return Ok(None);
    }
    // X in [seq, batch, in] order.
    let x = if layout == 0 {
        x
    } else {
        transpose(b, x, &[1, 0, 2])?
    };
    let bias = Builder::input(n, 3);
    if let Some(bv) = bias
        && b.shape(bv) != Some(vec![dirs, 2 * g * h])
    {
        return Ok(None);
    }
    // Each row's step mask, [batch, 1] booleans per step.
    let masks = match Builder::input(n, 4) {
        None => None,
        Some(l) => {
            if b.shape(l) != Some(vec![batch]) {
                return Ok(None);
            }
            let full = b
                .known(l)
                .and_then(|t| t.to_i64_vec())
                .is_some_and(|v| v.iter().all(|&x| x == seq as i64));
            if full {
                None
            } else {
                let ld = b.dtype(l);
                let l2 = reshape(b, l, &[batch, 1])?;
                let mut m = Vec::new();
                for t in 0..seq {
                    let tv = b.scalar(ld, t as f64)?;
                    m.push(b.op(Op::Less, &[tv, l2], &[])?);
                }
                Some(m)
            }
        }
    };
    let state = |b: &mut Builder, i: usize| -> Result<Option<ValueId>, String> {
        let Some(s) = Builder::input(n, i) else {
            return Ok(None);
        };
        let want = if layout == 0 {
            [dirs, batch, h]
        } else {
            [batch, dirs, h]
        };
        if b.shape(s).as_deref() != Some(&want[..]) {
            return Err(format!("input {i} should have shape {want:?}"));
        }
        Ok(Some(if layout == 0 {
            s
        } else {
            transpose(b, s, &[1, 0, 2])?
        }))
    };
    let h0 = state(b, 5)?;
    let c0 = if n.op == Op::LSTM { state(b, 6)? } else { None };
    let peep = if n.op == Op::LSTM {
        Builder::input(n, 7)
    } else {
        None
    };
    if let Some(p) = peep
        && b.shape(p) != Some(vec![dirs, 3 * h])
    {
        return Ok(None);
    }
    let zeros = b.const_f(dt, &[batch, h], vec![0.0; batch * h])?;
    let zero_b = b.const_f(dt, &[h], vec![0.0; h])?;

    let mut ys: Vec<Vec<ValueId>> = Vec::new();
    let (mut yh, mut yc) = (Vec::new(), Vec::new());
    for d in 0..dirs {
        let backward = direction == "reverse" || d == 1;
        let per = defaults.len();
        let mut dw = Dir {
            w: Vec::new(),
            r: Vec::new(),
            wb: Vec::new(),
            rb: Vec::new(),
            p: Vec::new(),
            acts: acts[d * per..(d + 1) * per].to_vec(),
        };
        let di = d as i64;
        for k in 0..g {
            let (lo, hi) = ((k * h) as i64, ((k + 1) * h) as i64);
            let wk = slice(b, w, &[0, 1], &[di, lo], &[di + 1, hi])?;
            dw.w.push(reshape(b, wk, &[h, c.isz])?);
            let rk = slice(b, r, &[0, 1], &[di, lo], &[di + 1, hi])?;
            dw.r.push(reshape(b, rk, &[h, h])?);
            match bias {
                Some(bv) => {
                    let o = (g * h) as i64;
                    let wb = slice(b, bv, &[0, 1], &[di, lo], &[di + 1, hi])?;
                    dw.wb.push(reshape(b, wb, &[h])?);
                    let rb = slice(b, bv, &[0, 1], &[di, o + lo], &[di + 1, o + hi])?;
                    dw.rb.push(reshape(b, rb, &[h])?);
                }
                None => {
                    dw.wb.push(zero_b);
                    dw.rb.push(zero_b);
                }
            }
        }
        if let Some(p) = peep {
            for k in 0..3 {
                let (lo, hi) = ((k * h) as i64, ((k + 1) * h) as i64);
                let pk = slice(b, p, &[0, 1], &[di, lo], &[di + 1, hi])?;
                dw.p.push(reshape(b, pk, &[h])?);
            }
        }
        let (yd, hd, cd) =
            direction_steps(b, &c, x, &dw, backward, d, h0, c0, masks.as_deref(), zeros)?;
        ys.push(yd);
        yh.push(hd);
        if let Some(cd) = cd {
            yc.push(cd);
        }
    }

    let want = |k: usize| n.outputs.get(k).copied().flatten().is_some();
    let mut outs: Vec<Option<ValueId>> = vec![None; n.outputs.len()];
    if want(0) {
        // Y [seq, dirs, batch, H] (layout 0) or [batch, seq, dirs, H].
        let mut steps = Vec::new();
        for t in 0..seq {
            let mut per_dir = Vec::new();
            for yd in &ys {
                per_dir.push(reshape(b, yd[t], &[1, 1, batch, h])?);
            }
            steps.push(concat(b, &per_dir, 1)?);
        }
        let y = concat(b, &steps, 0)?;
        outs[0] = Some(if layout == 0 {
            y
        } else {
            transpose(b, y, &[2, 0, 1, 3])?
        });
    }
    let finals = |b: &mut Builder, v: &[ValueId]| -> Result<ValueId, String> {
        let mut parts = Vec::new();
        for &s in v {
            parts.push(reshape(b, s, &[1, batch, h])?);
        }
        let s = concat(b, &parts, 0)?;
        if layout == 0 {
            Ok(s)
        } else {
            transpose(b, s, &[1, 0, 2])
        }
    };
    if want(1) {
        outs[1] = Some(finals(b, &yh)?);
    }
    if n.op == Op::LSTM && want(2) {
        outs[2] = Some(finals(b, &yc)?);
    }
    Ok(Some(outs))
}

type Steps = (Vec<ValueId>, ValueId, Option<ValueId>);

#[allow(clippy::too_many_arguments)]
fn direction_steps(
    b: &mut Builder,
    c: &Cfg,
    x: ValueId,
    dw: &Dir,
    backward: bool,
    d: usize,
    h0: Option<ValueId>,
    c0: Option<ValueId>,
    masks: Option<&[ValueId]>,
    zeros: ValueId,
) -> Result<Steps, String> {
    let (seq, batch, h) = (c.seq, c.batch, c.h);
    let g = c.gates();
    let gru_h = |k: usize| c.op == Op::GRU && k == 2;
    // Input projections of every step at once: [seq, batch, H] per gate,
    // with both biases where they simply add.
    let x2 = reshape(b, x, &[seq * batch, c.isz])?;
    let mut xw = Vec::new();
    for k in 0..g {
        let bias = if gru_h(k) {
            dw.wb[k]
        } else {
            add(b, dw.wb[k], dw.rb[k])?
        };
        let p = b.op(Op::Gemm, &[x2, dw.w[k], bias], &[("transB", Attr::Int(1))])?;
        xw.push(reshape(b, p, &[seq, batch, h])?);
    }
    let init = |b: &mut Builder, s: Option<ValueId>| -> Result<ValueId, String> {
        match s {
            Some(s) => pick(b, s, 0, d),
            None => Ok(zeros),
        }
    };
    let mut hp = init(b, h0)?;
    let mut cp = if c.op == Op::LSTM {
        Some(init(b, c0)?)
    } else {
        None
    };
    let mut ys = vec![zeros; seq];
    for step in 0..seq {
        let t = if backward { seq - 1 - step } else { step };
        let mut xt = Vec::new();
        for v in &xw {
            xt.push(pick(b, *v, 0, t)?);
        }
        // x·W_k^T + h·R_k^T + biases
        let gate = |b: &mut Builder, k: usize, hp: ValueId| -> Result<ValueId, String> {
            b.op(Op::Gemm, &[hp, dw.r[k], xt[k]], &[("transB", Attr::Int(1))])
        };
        let (hn, cn) = match c.op {
            Op::RNN => {
                let s = gate(b, 0, hp)?;
                let s = pre(b, c, s)?;
                (apply(b, dw.acts[0], s)?, None)
            }
            Op::GRU => {
                let z = gate(b, 0, hp)?;
                let z = pre(b, c, z)?;
                let z = apply(b, dw.acts[0], z)?;
                let rg = gate(b, 1, hp)?;
                let rg = pre(b, c, rg)?;
                let rg = apply(b, dw.acts[0], rg)?;
                let s = if c.lbr {
                    let hr = b.op(
                        Op::Gemm,
                        &[hp, dw.r[2], dw.rb[2]],
                        &[("transB", Attr::Int(1))],
                    )?;
                    let m = mul(b, rg, hr)?;
                    add(b, xt[2], m)?
                } else {
                    let rh = mul(b, rg, hp)?;
                    let hr = b.op(
                        Op::Gemm,
                        &[rh, dw.r[2], dw.rb[2]],
                        &[("transB", Attr::Int(1))],
                    )?;
                    add(b, xt[2], hr)?
                };
                let s = pre(b, c, s)?;
                let ht = apply(b, dw.acts[1], s)?;
                // (1 - z) * ht + z * h_prev
                let one = b.scalar(c.dt, 1.0)?;
                let omz = sub(b, one, z)?;
                let a = mul(b, omz, ht)?;
                let zb = mul(b, z, hp)?;
                (add(b, a, zb)?, None)
            }
            _ => {
                let cprev = cp.ok_or("LSTM without a cell state")?;
                let peep = |b: &mut Builder, s: ValueId, k: usize, cv: ValueId| match dw.p.get(k) {
                    Some(&p) => {
                        let m = mul(b, p, cv)?;
                        add(b, s, m)
                    }
                    None => Ok(s),
                };
                // Gate blocks in W/R: i, o, f, c; peepholes: i, o, f.
                let si = gate(b, 0, hp)?;
                let si = peep(b, si, 0, cprev)?;
                let si = pre(b, c, si)?;
                let gi = apply(b, dw.acts[0], si)?;
                let gf = if c.input_forget {
                    let one = b.scalar(c.dt, 1.0)?;
                    sub(b, one, gi)?
                } else {
                    let sf = gate(b, 2, hp)?;
                    let sf = peep(b, sf, 2, cprev)?;
                    let sf = pre(b, c, sf)?;
                    apply(b, dw.acts[0], sf)?
                };
                let sc = gate(b, 3, hp)?;
                let sc = pre(b, c, sc)?;
                let gc = apply(b, dw.acts[1], sc)?;
                let fc = mul(b, gf, cprev)?;
                let ic = mul(b, gi, gc)?;
                let cn = add(b, fc, ic)?;
                let so = gate(b, 1, hp)?;
                let so = peep(b, so, 1, cn)?;
                let so = pre(b, c, so)?;
                let go = apply(b, dw.acts[0], so)?;
                let hc = apply(b, dw.acts[2], cn)?;
                (mul(b, go, hc)?, Some(cn))
            }
        };
        match masks {
            Some(m) => {
                hp = b.op(Op::Where, &[m[t], hn, hp], &[])?;
                if let (Some(cn), Some(cv)) = (cn, cp) {
                    cp = Some(b.op(Op::Where, &[m[t], cn, cv], &[])?);
                }
                ys[t] = b.op(Op::Where, &[m[t], hn, zeros], &[])?;
            }
            None => {
                hp = hn;
                if cn.is_some() {
                    cp = cn;
                }
                ys[t] = hn;
            }
        }
    }
    Ok((ys, hp, cp))
}
