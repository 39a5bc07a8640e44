//! Attention (opset 23+): scaled dot-product attention with 3-D or 4-D
//! inputs, grouped-query heads, boolean/additive masks, causal and
//! sliding-window masking, softcap, KV cache and the four outputs.

use super::{check_float, fdata, ty_dims};
use crate::interp::Tensor;
use crate::interp::tensor::{Storage, round_float};
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::Attention => (infer_attention, k_attention),
        Op::RotaryEmbedding => (crate::semantics::elementwise::infer_same, k_rotary),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn add(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Static(x), Dim::Static(y)) => Dim::Static(x + y),
        _ => Dim::Unknown,
    }
}

fn mul(a: &Dim, k: u64) -> Dim {
    match a {
        Dim::Static(x) => Dim::Static(x * k),
        _ => Dim::Unknown,
    }
}

fn div(a: &Dim, k: u64) -> Dim {
    match a {
        Dim::Static(x) if k > 0 => Dim::Static(x / k),
        _ => Dim::Unknown,
    }
}

fn infer_attention(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (q, k, v) = (input(ins, 0)?, input(ins, 1)?, input(ins, 2)?);
    let dt = q.ty.dtype;
    let unknown = || TensorType::new(dt, Shape::unknown());
    let (Some(qd), Some(kd), Some(vd)) = (ty_dims(q), ty_dims(k), ty_dims(v)) else {
        return Ok(vec![unknown(), unknown(), unknown(), unknown()]);
    };
    let past = ins.get(4).and_then(|p| p.as_ref()).and_then(ty_dims);
    let past_len = past.as_ref().map_or(Dim::Static(0), |p| {
        p.get(2).cloned().unwrap_or(Dim::Unknown)
    });
    let (b, hq, sq, hkv, skv, dk, dv, y);
    match qd.len() {
        4 => {
            if kd.len() != 4 || vd.len() != 4 {
                op_bail!("Attention Q, K, V must all be 3-D or all 4-D");
            }
            (b, hq, sq) = (qd[0].clone(), qd[1].clone(), qd[2].clone());
            (hkv, skv, dk, dv) = (kd[1].clone(), kd[2].clone(), kd[3].clone(), vd[3].clone());
            y = vec![b.clone(), hq.clone(), sq.clone(), dv.clone()];
        }
        3 => {
            if kd.len() != 3 || vd.len() != 3 {
                op_bail!("Attention Q, K, V must all be 3-D or all 4-D");
            }
            let nq = ctx.int("q_num_heads", 0)?;
            let nkv = ctx.int("kv_num_heads", 0)?;
            if nq < 1 || nkv < 1 {
                op_bail!("3-D Attention needs q_num_heads and kv_num_heads");
            }
            (b, sq, skv) = (qd[0].clone(), qd[1].clone(), kd[1].clone());
            (hq, hkv) = (Dim::Static(nq as u64), Dim::Static(nkv as u64));
            dk = div(&kd[2], nkv as u64);
            dv = div(&vd[2], nkv as u64);
            y = vec![b.clone(), sq.clone(), mul(&dv, nq as u64)];
        }
        r => op_bail!("Attention Q must be 3-D or 4-D, found rank {r}"),
    }
    let total = add(&past_len, &skv);
    Ok(vec![
        TensorType::new(dt, Shape(Some(y))),
        TensorType::new(
            dt,
            Shape(Some(vec![b.clone(), hkv.clone(), total.clone(), dk])),
        ),
        TensorType::new(dt, Shape(Some(vec![b.clone(), hkv, total.clone(), dv]))),
        TensorType::new(dt, Shape(Some(vec![b, hq, sq, total]))),
    ])
}

/// An input as [batch, heads, seq, head_size] f64 data.
fn to_bhsd(t: &Tensor, heads: Option<usize>, what: &str) -> OpResult<(Vec<f64>, [usize; 4])> {
    let v = fdata(t, what)?;
    match (t.rank(), heads) {
        (4, _) => Ok((v.to_vec(), [t.shape[0], t.shape[1], t.shape[2], t.shape[3]])),
        (3, Some(h)) if h > 0 && t.shape[2].is_multiple_of(h) => {
            let (b, s, d) = (t.shape[0], t.shape[1], t.shape[2] / h);
            let mut o = vec![0.0; v.len()];
            for bi in 0..b {
                for si in 0..s {
                    for hi in 0..h {
                        for di in 0..d {
                            o[((bi * h + hi) * s + si) * d + di] =
                                v[((bi * s + si) * h + hi) * d + di];
                        }
                    }
                }
            }
            Ok((o, [b, h, s, d]))
        }
        _ => op_bail!(
            "Attention {what} has shape {:?}, which does not split into heads",
            t.shape
        ),
    }
}

/// Appends `new` after `past` along the sequence axis.
fn concat_seq(
    past: Option<(Vec<f64>, [usize; 4])>,
    new: (Vec<f64>, [usize; 4]),
) -> OpResult<(Vec<f64>, [usize; 4])> {
    let Some((pv, ps)) = past else { return Ok(new) };
    let (nv, ns) = new;
    if ps[0] != ns[0] || ps[1] != ns[1] || ps[3] != ns[3] {
        op_bail!("Attention past cache {ps:?} does not match new keys/values {ns:?}");
    }
    let s = ps[2] + ns[2];
    let d = ns[3];
    let mut o = Vec::with_capacity(pv.len() + nv.len());
    for bh in 0..ns[0] * ns[1] {
        o.extend_from_slice(&pv[bh * ps[2] * d..(bh + 1) * ps[2] * d]);
        o.extend_from_slice(&nv[bh * ns[2] * d..(bh + 1) * ns[2] * d]);
    }
    Ok((o, [ns[0], ns[1], s, d]))
}

fn k_attention(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (q, k, v) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    check_float("Q", q.dtype)?;
    let opt = |i: usize| ins.get(i).copied().flatten();
    let three_d = q.rank() == 3;
    let (nq, nkv) = if three_d {
        (
            Some(ctx.int("q_num_heads", 0)?.max(0) as usize),
            Some(ctx.int("kv_num_heads", 0)?.max(0) as usize),
        )
    } else {
        (None, None)
    };
    let (qv, [b, hq, sq, d]) = to_bhsd(q, nq, "Q")?;
    let kn = to_bhsd(k, nkv, "K")?;
    let vn = to_bhsd(v, nkv, "V")?;
    let past_k = opt(4).map(|t| to_bhsd(t, None, "past_key")).transpose()?;
    let past_v = opt(5).map(|t| to_bhsd(t, None, "past_value")).transpose()?;
    let past_len = past_k.as_ref().map_or(0, |p| p.1[2]);
    let (kv, ks) = concat_seq(past_k, kn)?;
    let (vv, vs) = concat_seq(past_v, vn)?;
    let (hkv, skv, dv) = (ks[1], ks[2], vs[3]);
    if ks[0] != b
        || vs[0] != b
        || ks[3] != d
        || vs[1] != hkv
        || vs[2] != skv
        || hkv == 0
        || hq % hkv != 0
    {
        op_bail!(
            "Attention shapes do not fit: Q {:?}, K {:?}, V {:?}",
            q.shape,
            k.shape,
            v.shape
        );
    }
    let scale = match ctx.attr("scale") {
        Some(_) => f64::from(ctx.float("scale", 0.0)?),
        None => 1.0 / (d as f64).sqrt(),
    };
    let softcap = f64::from(ctx.float("softcap", 0.0)?);
    let causal = ctx.int("is_causal", 0)? != 0;
    let mode = ctx.int("qk_matmul_output_mode", 0)?;
    let (left, right) = (
        ctx.int("left_window_size", -1)?,
        ctx.int("right_window_size", -1)?,
    );
    let nonpad = opt(6).map(|t| t.to_i64_vec().unwrap_or_default());
    // The mask, aligned to [b, hq, sq, skv] by numpy broadcasting, with a
    // possibly shorter last dim (missing keys are masked out).
    let mask = opt(3);
    let (mvals, mshape) = match mask {
        Some(m) => {
            if m.rank() > 4 || m.rank() == 0 {
                op_bail!("attn_mask must have rank 1..4, found {:?}", m.shape);
            }
            let mut s = vec![1; 4 - m.rank()];
            s.extend(&m.shape);
            let vals: Vec<f64> = match &m.data {
                Storage::B(bv) => bv
                    .iter()
                    .map(|&x| if x { 0.0 } else { f64::NEG_INFINITY })
                    .collect(),
                Storage::F(fv) => fv.clone(),
                _ => op_bail!("attn_mask must be bool or float, found {}", m.dtype),
            };
            (vals, s)
        }
        None => (vec![], vec![]),
    };
    let mst = crate::interp::tensor::strides(&mshape);
    let mask_at = |bi: usize, h: usize, i: usize, j: usize| -> OpResult<f64> {
        if mshape.is_empty() {
            return Ok(0.0);
        }
        if j >= mshape[3] {
            return Ok(f64::NEG_INFINITY);
        }
        let mut at = 0;
        for (ax, idx) in [bi, h, i, j].into_iter().enumerate() {
            let n = mshape[ax];
            if n != 1 && idx >= n {
                op_bail!("attn_mask of shape {mshape:?} does not broadcast to attention scores");
            }
            at += if n == 1 { 0 } else { idx * mst[ax] };
        }
        Ok(mvals[at])
    };
    let rep = hq / hkv;
    let mut y = vec![0.0; b * hq * sq * dv];
    let mut qk_out = vec![0.0; b * hq * sq * skv];
    let mut scores = vec![0.0; skv];
    let mut bias = vec![0.0; skv];
    for bi in 0..b {
        let offset = match (&nonpad, past_len) {
            (Some(np), 0) => np.get(bi).copied().unwrap_or(skv as i64) - sq as i64,
            _ => past_len as i64,
        };
        for h in 0..hq {
            let kh = h / rep;
            let kmat = &kv[(bi * hkv + kh) * skv * d..][..skv * d];
            let vmat = &vv[(bi * hkv + kh) * skv * dv..][..skv * dv];
            for i in 0..sq {
                let qrow = &qv[((bi * hq + h) * sq + i) * d..][..d];
                for j in 0..skv {
                    let dot: f64 = qrow
                        .iter()
                        .zip(&kmat[j * d..(j + 1) * d])
                        .map(|(a, b)| a * b)
                        .sum();
                    let mut s = dot * scale;
                    if softcap > 0.0 {
                        s = softcap * (s / softcap).tanh();
                    }
                    scores[j] = s;
                    let mut bval = mask_at(bi, h, i, j)?;
                    let p = i as i64 + offset;
                    if causal && j as i64 > p {
                        bval = f64::NEG_INFINITY;
                    }
                    let diff = p - j as i64;
                    if (left >= 0 && diff > left) || (right >= 0 && -diff > right) {
                        bval = f64::NEG_INFINITY;
                    }
                    if let Some(np) = &nonpad
                        && j as i64 >= np.get(bi).copied().unwrap_or(skv as i64)
                    {
                        bval = f64::NEG_INFINITY;
                    }
                    bias[j] = bval;
                }
                let row_out = &mut qk_out[((bi * hq + h) * sq + i) * skv..][..skv];
                let biased: Vec<f64> = scores.iter().zip(&bias).map(|(s, b)| s + b).collect();
                let all_masked = bias.iter().all(|&x| x == f64::NEG_INFINITY);
                let mx = biased.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut probs = vec![0.0; skv];
                if !all_masked && mx > f64::NEG_INFINITY {
                    let sum: f64 = biased.iter().map(|&x| (x - mx).exp()).sum();
                    for (p, &x) in probs.iter_mut().zip(&biased) {
                        // The reference rounds probabilities to Q's dtype
                        // before multiplying by V.
                        *p = round_float(q.dtype, (x - mx).exp() / sum);
                    }
                }
                row_out.copy_from_slice(match mode {
                    0 | 1 => &scores,
                    2 => &biased,
                    3 => &probs,
                    m => op_bail!("unsupported qk_matmul_output_mode {m}"),
                });
                let yrow = &mut y[((bi * hq + h) * sq + i) * dv..][..dv];
                for (j, &p) in probs.iter().enumerate() {
                    for (o, &val) in yrow.iter_mut().zip(&vmat[j * dv..(j + 1) * dv]) {
                        *o += p * val;
                    }
                }
            }
        }
    }
    let y = if three_d {
        let mut o = vec![0.0; y.len()];
        for bi in 0..b {
            for h in 0..hq {
                for i in 0..sq {
                    for di in 0..dv {
                        o[((bi * sq + i) * hq + h) * dv + di] =
                            y[((bi * hq + h) * sq + i) * dv + di];
                    }
                }
            }
        }
        Tensor::from_f64(q.dtype, vec![b, sq, hq * dv], o)
    } else {
        Tensor::from_f64(q.dtype, vec![b, hq, sq, dv], y)
    };
    Ok(vec![
        y,
        Tensor::from_f64(q.dtype, ks.to_vec(), kv),
        Tensor::from_f64(q.dtype, vs.to_vec(), vv),
        Tensor::from_f64(q.dtype, vec![b, hq, sq, skv], qk_out),
    ])
}

/// RotaryEmbedding (opset 23): rotates the first `rotary_embedding_dim`
/// features of every head by the cached angles of its position.
fn k_rotary(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (x, cos, sin) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    check_float("input", x.dtype)?;
    let xv = fdata(x, "input")?;
    let (cv, sv) = (fdata(cos, "cos_cache")?, fdata(sin, "sin_cache")?);
    let pos = ins
        .get(3)
        .copied()
        .flatten()
        .map(|t| t.to_i64_vec().unwrap_or_default());
    // Logical [b, s, h, d] sizes and the strides of each in the real layout.
    let (b, sq, h, d, st) = match x.rank() {
        4 => {
            let (b, h, s, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
            (b, s, h, d, [h * s * d, d, s * d])
        }
        3 => {
            let nh = ctx.int("num_heads", 0)?;
            if nh < 1 || !x.shape[2].is_multiple_of(nh as usize) {
                op_bail!("3-D RotaryEmbedding needs num_heads dividing the hidden size");
            }
            let (b, s, h) = (x.shape[0], x.shape[1], nh as usize);
            let d = x.shape[2] / h;
            (b, s, h, d, [s * h * d, h * d, d])
        }
        r => op_bail!("RotaryEmbedding input must be 3-D or 4-D, found rank {r}"),
    };
    let rd = match ctx.int("rotary_embedding_dim", 0)? {
        0 => d,
        r if r > 0 && (r as usize) <= d && r % 2 == 0 => r as usize,
        r => op_bail!("rotary_embedding_dim {r} does not fit head size {d}"),
    };
    let half = rd / 2;
    if cos.shape.last() != Some(&half) || sin.shape != cos.shape {
        op_bail!(
            "cos/sin caches {:?}/{:?} must end in rotary_dim/2 = {half}",
            cos.shape,
            sin.shape
        );
    }
    let interleaved = ctx.int("interleaved", 0)? != 0;
    let mut y = xv.to_vec();
    for bi in 0..b {
        for si in 0..sq {
            let row = match &pos {
                Some(p) => match p.get(bi * sq + si) {
                    Some(&r) if r >= 0 && (r as usize + 1) * half <= cv.len() => r as usize,
                    _ => op_bail!("position_ids do not index the cos/sin caches"),
                },
                None => bi * sq + si,
            };
            if (row + 1) * half > cv.len() {
                op_bail!("cos/sin caches are too small for the input");
            }
            let (c, s) = (&cv[row * half..][..half], &sv[row * half..][..half]);
            for hi in 0..h {
                let base = bi * st[0] + si * st[1] + hi * st[2];
                for i in 0..half {
                    let (i1, i2) = if interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (xv[base + i1], xv[base + i2]);
                    y[base + i1] = c[i] * x1 - s[i] * x2;
                    y[base + i2] = s[i] * x1 + c[i] * x2;
                }
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), y)])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::Op;

    #[test]
    fn attention_single_head() {
        // q=[[1,0]], k=[[1,0],[0,1]], v=[[1,2],[3,4]] as [1,1,S,D]:
        // s = q@k.T/np.sqrt(2) = [0.70710678, 0]; p = softmax(s)
        // = [0.66976155, 0.33023845]; y = p@v = [1.6604769, 2.6604769]
        let q = f32t(&[1, 1, 1, 2], &[1., 0.]);
        let k = f32t(&[1, 1, 2, 2], &[1., 0., 0., 1.]);
        let v = f32t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let y = run(Op::Attention, &[], &[Some(&q), Some(&k), Some(&v)]).unwrap();
        assert_close(&y[0], &[1.6604769, 2.6604769]);
        assert_close(&y[3], &[std::f64::consts::FRAC_1_SQRT_2, 0.]);
    }

    #[test]
    fn rotary_quarter_turn() {
        // cos=0, sin=1 rotates (x1, x2) to (-x2, x1): x=[1,2,3,4] as
        // [1,1,1,4] non-interleaved -> [-3,-4,1,2]
        let x = f32t(&[1, 1, 1, 4], &[1., 2., 3., 4.]);
        let c = f32t(&[1, 1, 2], &[0., 0.]);
        let s = f32t(&[1, 1, 2], &[1., 1.]);
        let y = run(Op::RotaryEmbedding, &[], &[Some(&x), Some(&c), Some(&s)]).unwrap();
        assert_close(&y[0], &[-3., -4., 1., 2.]);
    }
}
