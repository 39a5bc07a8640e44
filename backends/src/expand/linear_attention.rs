//! LinearAttention unrolled over its static time axis. The state S
//! [B, H_kv, d_k, d_v] of every batch row and KV head is updated at once
//! per step: a decay (S ⊙ exp(g)), the delta rule's correction
//! v ← β(v − Sᵀk) as a product summed over d_k, the rank-1 update k vᵀ as a
//! broadcast product, and the read-out q S as products summed over d_k. Narrow floats compute in f32 and
//! round once at the end, as the reference does.

use super::Builder;
use super::steps::{
    Out, add, cast, concat, float_attr, int_attr, mul, pick, reshape, string_attr, sub, transpose,
};
use smelt_ir::{DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<super::Expansion> {
    match op {
        Op::LinearAttention => Some(linear_attention),
        _ => None,
    }
}

/// `v` [B, T, ..] viewed as [B, T, rest..] and made [T, B, rest..], in f32.
fn time_major(
    b: &mut Builder,
    v: ValueId,
    bt: [usize; 2],
    rest: &[usize],
) -> Result<ValueId, String> {
    let v = cast(b, v, DType::F32)?;
    let mut shape = bt.to_vec();
    shape.extend_from_slice(rest);
    let r = reshape(b, v, &shape)?;
    let mut perm: Vec<i64> = vec![1, 0];
    perm.extend((2..shape.len() as i64).collect::<Vec<_>>());
    transpose(b, r, &perm)
}

/// Sum over `axis`, kept as size 1. Products and sums on the vector unit
/// are f32-exact per step, where a tensor-unit MatMul of f32 splits its
/// operands into bf16 parts (too coarse once the delta rule cancels).
fn sum(b: &mut Builder, v: ValueId, axis: i64) -> Result<ValueId, String> {
    let ax = b.const_i64(&[1], vec![axis])?;
    b.op(Op::ReduceSum, &[v, ax], &[])
}

fn linear_attention(b: &mut Builder, n: &Node) -> Out {
    let (Some(q), Some(k), Some(v)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let (Some(qs), Some(ks), Some(vs)) = (b.shape(q), b.shape(k), b.shape(v)) else {
        return Ok(None);
    };
    let (hq, hkv) = (
        int_attr(n, "q_num_heads", 0),
        int_attr(n, "kv_num_heads", 0),
    );
    if hq <= 0 || hkv <= 0 || hq % hkv != 0 || qs.len() != 3 || ks.len() != 3 || vs.len() != 3 {
        return Ok(None);
    }
    let (hq, hkv) = (hq as usize, hkv as usize);
    let (bs, t) = (qs[0], qs[1]);
    if ks[..2] != [bs, t] || vs[..2] != [bs, t] || t == 0 {
        return Ok(None);
    }
    if qs[2] % hq != 0 || ks[2] % hkv != 0 || vs[2] % hkv != 0 {
        return Ok(None);
    }
    let (dk, dv, grp) = (qs[2] / hq, vs[2] / hkv, hq / hkv);
    if ks[2] / hkv != dk {
        return Ok(None);
    }
    let (gating, delta) = match string_attr(n, "update_rule", "gated_delta").as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        _ => return Ok(None),
    };
    let (decay, beta) = (Builder::input(n, 4), Builder::input(n, 5));
    if gating != decay.is_some() || delta != beta.is_some() {
        return Ok(None);
    }
    let out_dt = b.dtype(q);
    let past = Builder::input(n, 3);
    let state_dt = past.map_or(out_dt, |p| b.dtype(p));
    if !out_dt.is_float() || !state_dt.is_float() {
        return Ok(None);
    }
    let scale = match float_attr(n, "scale") {
        Some(s) if s != 0.0 => s,
        _ => 1.0 / (dk as f64).sqrt(),
    };
    let bt = [bs, t];
    let qt = time_major(b, q, bt, &[hkv, grp, dk])?;
    let kt = time_major(b, k, bt, &[hkv, dk])?;
    let vt = time_major(b, v, bt, &[hkv, dv])?;
    // exp(decay) broadcasting over S: [T, B, H_kv, d_k|1, 1].
    let gates = match decay {
        Some(d) => {
            let ds = b.shape(d).ok_or("decay needs a static shape")?;
            let rows = match ds[..] {
                [x, y, z] if [x, y] == bt && z == hkv * dk => dk,
                [x, y, z] if [x, y] == bt && z == hkv => 1,
                _ => return Ok(None),
            };
            let g = time_major(b, d, bt, &[hkv, rows, 1])?;
            Some(b.op(Op::Exp, &[g], &[])?)
        }
        None => None,
    };
    // beta as [T, B, H_kv|1, 1, 1].
    let betas = match beta {
        Some(x) => {
            let w = match b.shape(x).as_deref() {
                Some([p, r, w]) if [*p, *r] == bt && (*w == hkv || *w == 1) => *w,
                _ => return Ok(None),
            };
            Some(time_major(b, x, bt, &[w, 1, 1])?)
        }
        None => None,
    };
    let mut s = match past {
        Some(p) => {
            if b.shape(p) != Some(vec![bs, hkv, dk, dv]) {
                return Ok(None);
            }
            cast(b, p, DType::F32)?
        }
        None => b.const_f(
            DType::F32,
            &[bs, hkv, dk, dv],
            vec![0.0; bs * hkv * dk * dv],
        )?,
    };
    let sc = b.scalar(DType::F32, scale)?;
    let mut outs = Vec::new();
    for ti in 0..t {
        if let Some(g) = gates {
            let e = pick(b, g, 0, ti)?;
            s = mul(b, s, e)?;
        }
        let k1 = pick(b, kt, 0, ti)?;
        let v1 = pick(b, vt, 0, ti)?;
        let mut v1 = reshape(b, v1, &[bs, hkv, 1, dv])?;
        if let Some(bb) = betas {
            // v ← β (v − kᵀS)
            let kc = reshape(b, k1, &[bs, hkv, dk, 1])?;
            let ks = mul(b, kc, s)?;
            let got = sum(b, ks, 2)?;
            let diff = sub(b, v1, got)?;
            let be = pick(b, bb, 0, ti)?;
            v1 = mul(b, be, diff)?;
        }
        let kcol = reshape(b, k1, &[bs, hkv, dk, 1])?;
        let kv = mul(b, kcol, v1)?;
        s = add(b, s, kv)?;
        let q1 = pick(b, qt, 0, ti)?;
        let q5 = reshape(b, q1, &[bs, hkv, grp, dk, 1])?;
        let s5 = reshape(b, s, &[bs, hkv, 1, dk, dv])?;
        let qs = mul(b, q5, s5)?;
        let r = sum(b, qs, 3)?;
        let r = mul(b, r, sc)?;
        outs.push(reshape(b, r, &[bs, 1, hq * dv])?);
    }
    let y = concat(b, &outs, 1)?;
    Ok(Some(vec![
        Some(cast(b, y, out_dt)?),
        Some(cast(b, s, state_dt)?),
    ]))
}
