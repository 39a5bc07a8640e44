//! The recurrent layers RNN, GRU and LSTM. One engine walks the sequence per
//! direction and batch row; the cell kinds differ only in their gate maths.
//! Gates are computed in f64 and outputs rounded once to X's dtype.
//!
//! Layouts (layout=0): X [seq, batch, in], W [dirs, G*H, in],
//! R [dirs, G*H, H], B [dirs, 2*G*H], initial_h/c [dirs, batch, H],
//! Y [seq, dirs, batch, H], Y_h/Y_c [dirs, batch, H]. layout=1 puts batch
//! first in X, Y (`[batch, seq, dirs, H]`), initial_h/c and Y_h/Y_c.

use super::{check_float, num_data};
use crate::interp::Tensor;
use crate::semantics::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::{Attr, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    match op {
        Op::RNN | Op::GRU | Op::LSTM => Some(OpImpl {
            infer: infer_rnn,
            kernel: k_rnn,
        }),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    fn of(op: Op) -> OpResult<Cell> {
        Ok(match op {
            Op::RNN => Cell::Rnn,
            Op::GRU => Cell::Gru,
            Op::LSTM => Cell::Lstm,
            _ => op_bail!("{op} is not a recurrent op"),
        })
    }

    /// Gates per cell (the row blocks of W and R).
    fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }

    fn outputs(self) -> usize {
        if self == Cell::Lstm { 3 } else { 2 }
    }

    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

fn directions(ctx: &Ctx) -> OpResult<usize> {
    match ctx.string("direction", "forward")?.as_str() {
        "forward" | "reverse" => Ok(1),
        "bidirectional" => Ok(2),
        d => op_bail!("unknown direction `{d}`"),
    }
}

fn infer_rnn(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let cell = Cell::of(ctx.node.op)?;
    let x = input(ins, 0)?.ty;
    check_float("X", x.dtype)?;
    let dirs = Dim::Static(directions(ctx)? as u64);
    let layout = ctx.int("layout", 0)?;
    let hidden = match ctx.int("hidden_size", -1)? {
        h if h > 0 => Dim::Static(h as u64),
        _ => match input(ins, 2)?.ty.shape.dims() {
            Some(d) if d.len() == 3 => d[2].clone(),
            _ => Dim::Unknown,
        },
    };
    let (seq, batch) = match x.shape.dims() {
        Some(d) if d.len() == 3 => {
            if layout == 0 {
                (d[0].clone(), d[1].clone())
            } else {
                (d[1].clone(), d[0].clone())
            }
        }
        Some(d) => op_bail!("X must have rank 3, found rank {}", d.len()),
        None => (Dim::Unknown, Dim::Unknown),
    };
    let (y, yh) = if layout == 0 {
        (
            vec![seq, dirs.clone(), batch.clone(), hidden.clone()],
            vec![dirs, batch, hidden],
        )
    } else {
        (
            vec![batch.clone(), seq, dirs.clone(), hidden.clone()],
            vec![batch, dirs, hidden],
        )
    };
    let mut out = vec![
        TensorType::new(x.dtype, Shape(Some(y))),
        TensorType::new(x.dtype, Shape(Some(yh.clone()))),
    ];
    if cell == Cell::Lstm {
        out.push(TensorType::new(x.dtype, Shape(Some(yh))));
    }
    Ok(out)
}

/// One activation function with its alpha/beta (defaults as in the ONNX
/// operator of the same name).
#[derive(Clone, Copy, Debug, PartialEq)]
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

impl Act {
    fn apply(self, x: f64) -> f64 {
        match self {
            Act::Relu => x.max(0.0),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Act::Affine(a, b) => a * x + b,
            Act::LeakyRelu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Act::ScaledTanh(a, b) => a * (b * x).tanh(),
            Act::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Act::Elu(a) => {
                if x >= 0.0 {
                    x
                } else {
                    a * (x.exp() - 1.0)
                }
            }
            Act::Softsign => x / (1.0 + x.abs()),
            Act::Softplus => {
                // ln(1 + e^x) without overflow for large x.
                if x > 30.0 { x } else { x.exp().ln_1p() }
            }
        }
    }
}

/// Builds the activation list, `per_dir` functions per direction. Alphas
/// and betas are consumed in order by the functions that take them.
fn activations(ctx: &Ctx, cell: Cell, dirs: usize) -> OpResult<Vec<Act>> {
    let per_dir = cell.default_acts().len();
    let names: Vec<String> = match ctx.attr("activations") {
        None => cell.default_acts().iter().map(|s| s.to_string()).collect(),
        Some(Attr::Strings(v)) => v.clone(),
        Some(Attr::String(s)) => vec![s.clone()],
        Some(a) => op_bail!(
            "attribute `activations` should be strings, found {}",
            a.kind()
        ),
    };
    // One set may serve both directions; extra entries are ignored (the
    // RNN schema's own default lists two functions even for one direction).
    let names: Vec<String> = if names.len() == per_dir && dirs == 2 {
        names.iter().chain(names.iter()).cloned().collect()
    } else {
        names.into_iter().take(per_dir * dirs).collect()
    };
    if names.len() != per_dir * dirs {
        op_bail!(
            "expected {} activations for {} direction(s), found {}",
            per_dir * dirs,
            dirs,
            names.len()
        );
    }
    let alphas = ctx.floats("activation_alpha")?.unwrap_or_default();
    let betas = ctx.floats("activation_beta")?.unwrap_or_default();
    let (mut ai, mut bi) = (0, 0);
    let take = |v: &[f32], i: &mut usize, d: f64| {
        let r = v.get(*i).map_or(d, |&x| x as f64);
        *i += 1;
        r
    };
    let mut out = Vec::new();
    for n in &names {
        out.push(match n.to_ascii_lowercase().as_str() {
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
            _ => op_bail!("unknown activation `{n}`"),
        });
    }
    Ok(out)
}

/// Checks a tensor's shape, naming it in the error.
fn expect_shape(t: &Tensor, want: &[usize], what: &str) -> OpResult<()> {
    if t.shape != want {
        op_bail!("{what} should have shape {want:?}, found {:?}", t.shape);
    }
    Ok(())
}

fn opt<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

/// Reads an optional [dirs, batch, H] (layout 0) or [batch, dirs, H]
/// (layout 1) state into [dirs][batch][H] order.
fn state(
    t: Option<&Tensor>,
    layout: i64,
    dirs: usize,
    batch: usize,
    h: usize,
    what: &str,
) -> OpResult<Vec<f64>> {
    let Some(t) = t else {
        return Ok(vec![0.0; dirs * batch * h]);
    };
    let v = num_data(t, what)?;
    if layout == 0 {
        expect_shape(t, &[dirs, batch, h], what)?;
        return Ok(v);
    }
    expect_shape(t, &[batch, dirs, h], what)?;
    let mut out = vec![0.0; v.len()];
    for b in 0..batch {
        for d in 0..dirs {
            for j in 0..h {
                out[(d * batch + b) * h + j] = v[(b * dirs + d) * h + j];
            }
        }
    }
    Ok(out)
}

fn k_rnn(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let cell = Cell::of(ctx.node.op)?;
    let x = operand(ins, 0)?;
    let w = operand(ins, 1)?;
    let r = operand(ins, 2)?;
    check_float("X", x.dtype)?;
    let layout = ctx.int("layout", 0)?;
    let dirs = directions(ctx)?;
    let reverse = ctx.string("direction", "forward")? == "reverse";
    if x.rank() != 3 || w.rank() != 3 || r.rank() != 3 {
        op_bail!("X, W and R must have rank 3");
    }
    let (seq, batch, isz) = if layout == 0 {
        (x.shape[0], x.shape[1], x.shape[2])
    } else {
        (x.shape[1], x.shape[0], x.shape[2])
    };
    let h = r.shape[2];
    let hs = ctx.int("hidden_size", h as i64)?;
    if hs != h as i64 {
        op_bail!("hidden_size {hs} does not match R's last dim {h}");
    }
    let g = cell.gates();
    expect_shape(w, &[dirs, g * h, isz], "W")?;
    expect_shape(r, &[dirs, g * h, h], "R")?;
    let xv = num_data(x, "X")?;
    let wv = num_data(w, "W")?;
    let rv = num_data(r, "R")?;
    let bv = match opt(ins, 3) {
        Some(b) => {
            expect_shape(b, &[dirs, 2 * g * h], "B")?;
            num_data(b, "B")?
        }
        None => vec![0.0; dirs * 2 * g * h],
    };
    let lens: Vec<usize> = match opt(ins, 4) {
        Some(t) => {
            expect_shape(t, &[batch], "sequence_lens")?;
            let v = t.to_i64_vec().unwrap_or_default();
            let mut out = Vec::new();
            for l in v {
                if l < 0 || l as usize > seq {
                    op_bail!("sequence length {l} is outside [0, {seq}]");
                }
                out.push(l as usize);
            }
            out
        }
        None => vec![seq; batch],
    };
    let h0 = state(opt(ins, 5), layout, dirs, batch, h, "initial_h")?;
    let c0 = if cell == Cell::Lstm {
        state(opt(ins, 6), layout, dirs, batch, h, "initial_c")?
    } else {
        Vec::new()
    };
    let peep = match (cell, opt(ins, 7)) {
        (Cell::Lstm, Some(p)) => {
            expect_shape(p, &[dirs, 3 * h], "P")?;
            num_data(p, "P")?
        }
        _ => vec![0.0; dirs * 3 * h],
    };
    let acts = activations(ctx, cell, dirs)?;
    let clip = match ctx.attr("clip") {
        Some(_) => Some(ctx.float("clip", 0.0)? as f64),
        None => None,
    };
    let lbr = ctx.int("linear_before_reset", 0)? != 0;
    let input_forget = ctx.int("input_forget", 0)? != 0;
    let cl = |v: f64| match clip {
        Some(c) => v.clamp(-c, c),
        None => v,
    };

    // Results in layout-0 order; transposed for layout 1 at the end.
    let mut y = vec![0.0; seq * dirs * batch * h];
    let mut yh = vec![0.0; dirs * batch * h];
    let mut yc = vec![0.0; dirs * batch * h];
    let xat = |t: usize, b: usize, i: usize| {
        if layout == 0 {
            xv[(t * batch + b) * isz + i]
        } else {
            xv[(b * seq + t) * isz + i]
        }
    };
    for d in 0..dirs {
        let backward = reverse || d == 1;
        let wd = &wv[d * g * h * isz..(d + 1) * g * h * isz];
        let rd = &rv[d * g * h * h..(d + 1) * g * h * h];
        let wb = &bv[d * 2 * g * h..d * 2 * g * h + g * h];
        let rb = &bv[d * 2 * g * h + g * h..(d + 1) * 2 * g * h];
        let pd = &peep[d * 3 * h..(d + 1) * 3 * h];
        let a = &acts[d * cell.default_acts().len()..];
        for b in 0..batch {
            let mut hp: Vec<f64> = h0[(d * batch + b) * h..(d * batch + b + 1) * h].to_vec();
            let mut cp: Vec<f64> = if cell == Cell::Lstm {
                c0[(d * batch + b) * h..(d * batch + b + 1) * h].to_vec()
            } else {
                Vec::new()
            };
            let len = lens[b];
            for step in 0..len {
                let t = if backward { len - 1 - step } else { step };
                // xw[k] = x·W_k^T + Wb_k ; hr[k] = h·R_k^T + Rb_k
                let mut xw = vec![0.0; g * h];
                let mut hr = vec![0.0; g * h];
                for k in 0..g * h {
                    let mut s = wb[k];
                    for i in 0..isz {
                        s += xat(t, b, i) * wd[k * isz + i];
                    }
                    xw[k] = s;
                    let mut s = rb[k];
                    for i in 0..h {
                        s += hp[i] * rd[k * h + i];
                    }
                    hr[k] = s;
                }
                let hn: Vec<f64> = match cell {
                    Cell::Rnn => (0..h).map(|j| a[0].apply(cl(xw[j] + hr[j]))).collect(),
                    Cell::Gru => {
                        let mut out = vec![0.0; h];
                        let z: Vec<f64> = (0..h).map(|j| a[0].apply(cl(xw[j] + hr[j]))).collect();
                        let rg: Vec<f64> = (0..h)
                            .map(|j| a[0].apply(cl(xw[h + j] + hr[h + j])))
                            .collect();
                        for j in 0..h {
                            let pre = if lbr {
                                xw[2 * h + j] + rg[j] * hr[2 * h + j]
                            } else {
                                // (r ⊙ h_prev)·R_h^T + Rb_h, recomputed since
                                // hr used the plain previous state.
                                let mut s = rb[2 * h + j];
                                for i in 0..h {
                                    s += rg[i] * hp[i] * rd[(2 * h + j) * h + i];
                                }
                                xw[2 * h + j] + s
                            };
                            let ht = a[1].apply(cl(pre));
                            out[j] = (1.0 - z[j]) * ht + z[j] * hp[j];
                        }
                        out
                    }
                    Cell::Lstm => {
                        // Gate blocks in W/R: i, o, f, c; peepholes: i, o, f.
                        let mut out = vec![0.0; h];
                        for j in 0..h {
                            let gi = a[0].apply(cl(xw[j] + hr[j] + pd[j] * cp[j]));
                            let gf = if input_forget {
                                1.0 - gi
                            } else {
                                a[0].apply(cl(xw[2 * h + j]
                                    + hr[2 * h + j]
                                    + pd[2 * h + j] * cp[j]))
                            };
                            let gc = a[1].apply(cl(xw[3 * h + j] + hr[3 * h + j]));
                            let c = gf * cp[j] + gi * gc;
                            let go = a[0].apply(cl(xw[h + j] + hr[h + j] + pd[h + j] * c));
                            out[j] = go * a[2].apply(c);
                            cp[j] = c;
                        }
                        out
                    }
                };
                hp = hn;
                let at = ((t * dirs + d) * batch + b) * h;
                y[at..at + h].copy_from_slice(&hp);
            }
            yh[(d * batch + b) * h..(d * batch + b + 1) * h].copy_from_slice(&hp);
            if cell == Cell::Lstm {
                yc[(d * batch + b) * h..(d * batch + b + 1) * h].copy_from_slice(&cp);
            }
        }
    }
    let dt = x.dtype;
    let (y, ys, yh, yc, hs) = if layout == 0 {
        (y, vec![seq, dirs, batch, h], yh, yc, vec![dirs, batch, h])
    } else {
        let mut y1 = vec![0.0; y.len()];
        for t in 0..seq {
            for d in 0..dirs {
                for b in 0..batch {
                    let from = ((t * dirs + d) * batch + b) * h;
                    let to = ((b * seq + t) * dirs + d) * h;
                    y1[to..to + h].copy_from_slice(&y[from..from + h]);
                }
            }
        }
        let swap = |v: &[f64]| {
            let mut o = vec![0.0; v.len()];
            for d in 0..dirs {
                for b in 0..batch {
                    let from = (d * batch + b) * h;
                    let to = (b * dirs + d) * h;
                    o[to..to + h].copy_from_slice(&v[from..from + h]);
                }
            }
            o
        };
        (
            y1,
            vec![batch, seq, dirs, h],
            swap(&yh),
            swap(&yc),
            vec![batch, dirs, h],
        )
    };
    let mut out = vec![
        Tensor::from_f64(dt, ys, y),
        Tensor::from_f64(dt, hs.clone(), yh),
    ];
    if cell == Cell::Lstm {
        out.push(Tensor::from_f64(dt, hs, yc));
    }
    debug_assert_eq!(out.len(), cell.outputs());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    #[test]
    fn rnn_single_step_by_hand() {
        // X=[[[1, 2]]], W=[[[0.1, 0.2]]], R=[[[0.5]]], B=[[0.1, 0.2]], h0=0.5:
        // h = tanh(0.1 + 0.4 + 0.25 + 0.3) = tanh(1.05)
        let x = f32t(&[1, 1, 2], &[1., 2.]);
        let w = f32t(&[1, 1, 2], &[0.1, 0.2]);
        let r = f32t(&[1, 1, 1], &[0.5]);
        let b = f32t(&[1, 2], &[0.1, 0.2]);
        let h0 = f32t(&[1, 1, 1], &[0.5]);
        let y = run(
            Op::RNN,
            &[("hidden_size", Attr::Int(1))],
            &[Some(&x), Some(&w), Some(&r), Some(&b), None, Some(&h0)],
        )
        .unwrap();
        assert_close(&y[0], &[1.05f64.tanh()]);
        assert_close(&y[1], &[1.05f64.tanh()]);
    }

    #[test]
    fn gru_and_lstm_shapes_and_zero_weights() {
        // Zero weights: GRU z = r = 0.5, candidate tanh(0) = 0, so with h0=0
        // every state stays 0. LSTM: i=f=o=0.5, c~=0 → c=0.5*c0, h=0.5*tanh(c).
        let x = iota(&[2, 1, 3]);
        let wg = f32t(&[2, 9, 3], &[0.0; 54]);
        let rg = f32t(&[2, 9, 3], &[0.0; 54]);
        let y = run(
            Op::GRU,
            &[("direction", Attr::String("bidirectional".into()))],
            &[Some(&x), Some(&wg), Some(&rg)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![2, 2, 1, 3]);
        assert_close(&y[1], &[0.0; 6]);
        let wl = f32t(&[1, 4, 3], &[0.0; 12]);
        let rl = f32t(&[1, 4, 1], &[0.0; 4]);
        let c0 = f32t(&[1, 1, 1], &[2.0]);
        let y = run(
            Op::LSTM,
            &[],
            &[Some(&x), Some(&wl), Some(&rl), None, None, None, Some(&c0)],
        )
        .unwrap();
        // Two steps: c = 1.0 then 0.5.
        assert_close(&y[2], &[0.5]);
        assert_close(&y[1], &[0.5 * 0.5f64.tanh()]);
        assert_close(&y[0], &[0.5 * 1.0f64.tanh(), 0.5 * 0.5f64.tanh()]);
    }
}
