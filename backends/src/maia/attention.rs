//! Attention as three phases: scores = scale · Q·Kᵀ (+ softcap, + mask) on
//! the tensor unit with the rest in its epilogue, a row softmax on the
//! vector unit, then probabilities · V. Per (batch, head) products are the
//! matmul's jobs, so every tile gets work; grouped-query heads share K/V.

use super::Error;
use super::lower::{Lw, TRef, unsup};
use super::matmul::{self, Epi, Job, Spec};
use super::movement::{self, View, strides};
use super::rows;
use smelt_ir::{Attr, Node, Op};

fn iattr(n: &Node, k: &str, d: i64) -> i64 {
    match n.attr(k) {
        Some(Attr::Int(x)) => *x,
        _ => d,
    }
}

fn fattr(n: &Node, k: &str) -> Option<f32> {
    match n.attr(k) {
        Some(Attr::Float(x)) => Some(*x),
        _ => None,
    }
}

/// [B, S, H·D] seen as [B, H, S, D] (a strided view), or a 4-D tensor.
fn heads(t: &TRef, h: i64) -> Result<(Vec<usize>, View), Error> {
    match t.shape.len() {
        4 => Ok((t.shape.clone(), movement::plain(t))),
        3 if h > 0 && t.shape[2].is_multiple_of(h as usize) => {
            let (b, s, hd) = (t.shape[0], t.shape[1], t.shape[2]);
            let (h, d) = (h as usize, hd / h as usize);
            let shape = vec![b, h, s, d];
            let st = vec![(s * hd) as i64, d as i64, hd as i64, 1];
            Ok((
                shape,
                View {
                    off: 0,
                    strides: st,
                },
            ))
        }
        _ => Err(unsup(Op::Attention, "inputs of this rank")),
    }
}

/// K or V with the cache in front: (tensor, 4-D shape, view). Writes the
/// present output `out` when the node asks for it.
#[allow(clippy::too_many_arguments)]
fn cache(
    lw: &mut Lw,
    n: &Node,
    past_in: usize,
    out: usize,
    x: &TRef,
    xs: Vec<usize>,
    xv: View,
) -> Result<(TRef, Vec<usize>, View), Error> {
    let wanted = n.outputs.get(out).copied().flatten().is_some();
    if !Lw::has_input(n, past_in) && !wanted {
        return Ok((x.clone(), xs, xv));
    }
    let p = if Lw::has_input(n, past_in) {
        Some(lw.input(n, past_in)?)
    } else {
        None
    };
    let pl = p.as_ref().map_or(0, |p| p.shape[2]);
    let shape = vec![xs[0], xs[1], pl + xs[2], xs[3]];
    let present = if wanted {
        lw.output(n, out)?
    } else {
        lw.temp_like("present", x, &shape)
    };
    if present.shape != shape {
        return Err(Error::Graph(format!("{}: present shape", n.describe())));
    }
    let st = strides(&shape);
    lw.p.phase();
    if let Some(p) = &p {
        movement::copy_nd(
            &mut lw.p,
            p,
            &movement::plain(p),
            &present,
            &View {
                off: 0,
                strides: st.clone(),
            },
            &p.shape.clone(),
        )?;
    }
    movement::copy_nd(
        &mut lw.p,
        x,
        &xv,
        &present,
        &View {
            off: pl as i64 * st[2],
            strides: st,
        },
        &xs,
    )?;
    let v = movement::plain(&present);
    Ok((present, shape, v))
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    if Lw::has_input(n, 6) {
        return Err(unsup(n.op, "nonpad_kv_seqlen"));
    }
    if Lw::has_input(n, 4) != Lw::has_input(n, 5) {
        return Err(Error::Graph(format!(
            "{}: past_key without past_value",
            n.describe()
        )));
    }
    let mode = iattr(n, "qk_matmul_output_mode", 0);
    let want_qk = n.outputs.get(3).copied().flatten().is_some();
    if iattr(n, "left_window_size", -1) != -1 || iattr(n, "right_window_size", -1) != -1 {
        return Err(unsup(n.op, "sliding windows"));
    }
    let (dt, split) = matmul::unit_dtype(lw)?;
    let q = lw.input(n, 0)?;
    let k = lw.input(n, 1)?;
    let v = lw.input(n, 2)?;
    for t in [&q, &k, &v] {
        if !matches!(
            t.gdt,
            smelt_ir::DType::F32 | smelt_ir::DType::F16 | smelt_ir::DType::BF16
        ) {
            return Err(unsup(n.op, format!("dtype {}", t.gdt)));
        }
    }
    let (qs, qv) = heads(&q, iattr(n, "q_num_heads", 0))?;
    let (ks, kv) = heads(&k, iattr(n, "kv_num_heads", 0))?;
    let (vs, vv) = heads(&v, iattr(n, "kv_num_heads", 0))?;
    // The cache: present = concat(past, new) along the sequence, written to
    // the present outputs (or scratch) and used as K and V.
    let past = if Lw::has_input(n, 4) {
        lw.input(n, 4)?.shape[2]
    } else {
        0
    };
    let (k, ks, kv) = cache(lw, n, 4, 1, &k, ks, kv)?;
    let (v, vs, vv) = cache(lw, n, 5, 2, &v, vs, vv)?;
    let (b, hq, s, d) = (qs[0], qs[1], qs[2], qs[3]);
    let (hk, l) = (ks[1], ks[2]);
    let dv = vs[3];
    if ks[0] != b
        || vs[0] != b
        || ks[3] != d
        || vs[1] != hk
        || vs[2] != l
        || hk == 0
        || hq % hk != 0
    {
        return Err(Error::Graph(format!(
            "{}: inconsistent shapes",
            n.describe()
        )));
    }
    let group = hq / hk;
    let scale = fattr(n, "scale").unwrap_or(1.0 / (d as f32).sqrt());
    let mut epi = vec![Epi::Scale(scale)];
    if let Some(c) = fattr(n, "softcap")
        && c > 0.0
    {
        epi.extend([Epi::Scale(1.0 / c), Epi::Act(Op::Tanh, None), Epi::Scale(c)]);
    }
    // The additive bias: the mask broadcast to [B, Hq, S, L], plus the causal
    // triangle.
    let causal = iattr(n, "is_causal", 0) != 0;
    let full = [b, hq, s, l];
    let mut bias: Option<TRef> = None;
    // Every layer of a model gets the same mask: broadcast it once.
    let mask_key = if Lw::has_input(n, 3) {
        let m = lw.input(n, 3)?;
        Some(format!(
            "mask {:?} {} {:?} {causal} {past}",
            m.buf, m.off, full
        ))
    } else {
        None
    };
    let memo = mask_key.as_ref().and_then(|k| lw.memo.get(k)).cloned();
    // A mask with one value per key, the same for every batch, head and
    // query, is a column bias of every product: the epilogue reads its row
    // instead of a broadcast copy of the scores' size. (Not when the scores
    // are an output without the bias: that path adds the full bias later.)
    let col_mask = if Lw::has_input(n, 3) && !causal && !(want_qk && mode != 2 && mode != 3) {
        let m = lw.input(n, 3)?;
        let float = m.gdt != smelt_ir::DType::Bool;
        (float && m.numel() == l as u64 && m.shape.last() == Some(&l)).then_some(m)
    } else {
        None
    };
    if let Some(t) = memo.as_ref().filter(|_| col_mask.is_none()) {
        bias = Some(t.clone());
    } else if Lw::has_input(n, 3) && col_mask.is_none() {
        let m = lw.input(n, 3)?;
        if m.gdt == smelt_ir::DType::Bool {
            return Err(unsup(n.op, "boolean masks"));
        }
        let lm = m.shape.last().copied().unwrap_or(1);
        let t = lw.temp_f32("attn.mask", &full);
        if lm < l {
            // A short mask leaves the keys after it masked out.
            movement::fill(lw, &t, f64::NEG_INFINITY)?;
            let part = lw.temp_f32("attn.mask.part", &[b, hq, s, lm]);
            lw.p.phase();
            movement::expand_into(&mut lw.p, &m, &part)?;
            lw.p.phase();
            movement::copy_nd(
                &mut lw.p,
                &part,
                &movement::plain(&part),
                &t,
                &View {
                    off: 0,
                    strides: strides(&full),
                },
                &[b, hq, s, lm],
            )?;
        } else {
            lw.p.phase();
            movement::expand_into(&mut lw.p, &m, &t)?;
        }
        bias = Some(t);
    }
    // A memoized bias already holds the causal triangle.
    if causal && memo.is_none() {
        let tri: Vec<f64> = (0..s * l)
            .map(|i| {
                if i % l > i / l + past {
                    f64::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let c = lw.weight(
            &format!("causal.{}", lw.p.bufs.len()),
            &smelt_ir::interp::Tensor::from_f64(smelt_ir::DType::F32, vec![s, l], tri),
        )?;
        let t = lw.temp_f32("attn.bias", &full);
        match bias.take() {
            None => {
                lw.p.phase();
                movement::expand_into(&mut lw.p, &c, &t)?;
            }
            Some(m) => {
                super::elementwise::run(
                    lw,
                    &t,
                    vec![(m, None), (c, None)],
                    true,
                    &|bl, dd, src, _| {
                        let a = match src[0] {
                            smelt_runtime::maia::VSrc::Full(a) => a,
                            _ => 0,
                        };
                        vec![bl.v(smelt_runtime::maia::VOp::Add, dd, a, src[1])]
                    },
                )?;
            }
        }
        bias = Some(t);
    }
    if let (Some(k), Some(t), None) = (&mask_key, &bias, &memo) {
        lw.memo.insert(k.clone(), t.clone());
    }
    // The qk output: the scores as the first phase leaves them (after
    // softcap and bias), or the probabilities.
    // Mode 2 is the scores with the bias; modes 0 and 1 without it (both
    // after softcap).
    let qk_is_scores = bias.is_none() || mode == 2;
    // Modes 0 and 1 want the scores before the bias:
    // the matmul writes them to the qk output and a vector phase adds the bias.
    let split_bias = want_qk && mode != 3 && !qk_is_scores;
    let late_bias = if split_bias { bias.take() } else { None };
    if let Some(t) = bias {
        epi.push(Epi::Residual(t));
    } else if let Some(m) = col_mask {
        epi.push(Epi::ColBias(m));
    }
    let qp = matmul::dyn_parts(lw, &q, &qv, &qs, dt, split)?;
    let kp = matmul::dyn_parts(lw, &k, &kv, &ks, dt, split)?;
    let scores = lw.temp_f32("attn.scores", &full);
    let raw = if split_bias {
        lw.output(n, 3)?
    } else {
        scores.clone()
    };
    let jobs: Vec<Job> = (0..b * hq)
        .map(|j| {
            let (bi, h) = (j / hq, j % hq);
            Job {
                a: (j * s * d) as u64,
                b: ((bi * hk + h / group) * l * d) as u64,
                out: (j * s * l) as u64,
                res: (j * s * l) as u64,
                row: 0,
            }
        })
        .collect();
    matmul::emit(
        lw,
        &Spec {
            m: s as u64,
            n: l as u64,
            k: d as u64,
            a: qp,
            b: kp,
            out: raw.clone(),
            jobs,
            epi,
            siblings: Vec::new(),
        },
        dt,
    )?;
    if let Some(bias) = late_bias {
        super::elementwise::run(
            lw,
            &scores,
            vec![(raw.clone(), None), (bias, None)],
            true,
            &|bl, dd, src, _| {
                let a = match src[0] {
                    smelt_runtime::maia::VSrc::Full(a) => a,
                    _ => 0,
                };
                vec![bl.v(smelt_runtime::maia::VOp::Add, dd, a, src[1])]
            },
        )?;
    }
    let probs = lw.temp_f32("attn.probs", &full);
    rows::softmax_rows(lw, &scores, &probs, (b * hq * s) as u64, l as u64)?;
    if want_qk && !split_bias {
        let qk = lw.output(n, 3)?;
        lw.p.phase();
        movement::copy_flat(&mut lw.p, if mode == 3 { &probs } else { &scores }, &qk)?;
    }
    // probs · V with V stored as Vᵀ [B, Hk, Dv, L].
    let mut vst = vv.strides.clone();
    vst.swap(2, 3);
    let vt_shape = vec![b, hk, dv, l];
    let vp = matmul::dyn_parts(
        lw,
        &v,
        &View {
            off: vv.off,
            strides: vst,
        },
        &vt_shape,
        dt,
        split,
    )?;
    let pp = matmul::dyn_parts(lw, &probs, &movement::plain(&probs), &full, dt, split)?;
    let y = lw.output(n, 0)?;
    let four = y.shape.len() == 4;
    let out = if four {
        y.clone()
    } else {
        lw.temp_like("attn.y", &y, &[b, hq, s, dv])
    };
    let jobs: Vec<Job> = (0..b * hq)
        .map(|j| {
            let (bi, h) = (j / hq, j % hq);
            Job {
                a: (j * s * l) as u64,
                b: ((bi * hk + h / group) * dv * l) as u64,
                out: (j * s * dv) as u64,
                res: 0,
                row: 0,
            }
        })
        .collect();
    matmul::emit(
        lw,
        &Spec {
            m: s as u64,
            n: dv as u64,
            k: l as u64,
            a: pp,
            b: vp,
            out: out.clone(),
            jobs,
            epi: vec![],
            siblings: Vec::new(),
        },
        dt,
    )?;
    if !four {
        // [B, Hq, S, Dv] -> [B, S, Hq·Dv]
        let st = strides(&[b, s, hq, dv]);
        lw.p.phase();
        movement::copy_nd(
            &mut lw.p,
            &out,
            &movement::plain(&out),
            &y,
            &View {
                off: 0,
                strides: vec![st[0], st[2], st[1], st[3]],
            },
            &[b, hq, s, dv],
        )?;
    }
    Ok(())
}
