//! Pieces shared by the model families: positions, causal masks, rotary
//! embeddings and multi-head attention with grouped KV heads.

use super::CheckpointError;
use super::builder::{Builder, V};
use smelt_ir::{Attr, Op};

type R<T> = Result<T, CheckpointError>;

/// Positions of the new tokens (`q`: `[seq]`, starting at the past length)
/// and of every cached key (`k`: `[past + seq]`), both i64.
pub struct Positions {
    pub q: V,
    pub k: V,
}

/// `past` is a past-key input `[batch, kv_heads, past, head_dim]`, if any.
pub fn positions(b: &mut Builder, ids: V, past: Option<V>) -> R<Positions> {
    let seq = b.dim("seq_len", ids, 1)?;
    let start = match past {
        Some(p) => b.dim("past_len", p, 2)?,
        None => b.int_scalar("zero", 0),
    };
    let total = b.bin("total_len", Op::Add, start, seq)?;
    let one = b.int_scalar("one", 1);
    let q = b.op(
        "positions",
        Op::Range,
        &[Some(start), Some(total), Some(one)],
        vec![],
    )?;
    let zero = b.int_scalar("zero", 0);
    let k = b.op(
        "key_positions",
        Op::Range,
        &[Some(zero), Some(total), Some(one)],
        vec![],
    )?;
    Ok(Positions { q, k })
}

/// `[seq, past + seq]` bool: query i may see key j when j <= pos(i) and,
/// with a sliding window w, when pos(i) - j < w.
pub fn causal_mask(b: &mut Builder, p: &Positions, window: Option<usize>) -> R<V> {
    let kp = b.unsqueeze("mask.k", p.k, &[0])?;
    let qp = b.unsqueeze("mask.q", p.q, &[1])?;
    let m = b.bin("causal_mask", Op::LessOrEqual, kp, qp)?;
    let Some(w) = window else { return Ok(m) };
    let wv = b.int_scalar("sliding_window", w as i64);
    let lo = b.bin("window.lo", Op::Sub, qp, wv)?;
    let inside = b.bin("window.inside", Op::Greater, kp, lo)?;
    b.bin("sliding_mask", Op::And, m, inside)
}

/// cos and sin tables `[seq, head_dim]` for the query positions, in the
/// Hugging Face layout: the frequencies twice over (`cat(freqs, freqs)`).
pub fn rope_tables(b: &mut Builder, q_pos: V, inv_freq: &[f32]) -> R<(V, V)> {
    let pf = b.op(
        "rope.pos",
        Op::Cast,
        &[Some(q_pos)],
        vec![("to", Attr::Int(1))],
    )?;
    let pf = b.unsqueeze("rope.pos_col", pf, &[1])?;
    let inv = b.floats("rope.inv_freq", vec![inv_freq.len()], inv_freq);
    let freqs = b.bin("rope.freqs", Op::Mul, pf, inv)?;
    let emb = b.op(
        "rope.emb",
        Op::Concat,
        &[Some(freqs), Some(freqs)],
        vec![("axis", Attr::Int(-1))],
    )?;
    let cos = b.un("rope.cos", Op::Cos, emb)?;
    let sin = b.un("rope.sin", Op::Sin, emb)?;
    Ok((cos, sin))
}

/// `x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat(-x2, x1)`
/// (the halves, not interleaved pairs: Hugging Face's Llama layout).
pub fn apply_rope(b: &mut Builder, hint: &str, x: V, cos: V, sin: V, head_dim: usize) -> R<V> {
    let half = (head_dim / 2) as i64;
    let x1 = b.slice_last(&format!("{hint}.x1"), x, 0, half)?;
    let x2 = b.slice_last(&format!("{hint}.x2"), x, half, head_dim as i64)?;
    let nx2 = b.un(&format!("{hint}.neg_x2"), Op::Neg, x2)?;
    let rot = b.op(
        &format!("{hint}.rotate_half"),
        Op::Concat,
        &[Some(nx2), Some(x1)],
        vec![("axis", Attr::Int(-1))],
    )?;
    let a = b.bin(&format!("{hint}.cos"), Op::Mul, x, cos)?;
    let c = b.bin(&format!("{hint}.sin"), Op::Mul, rot, sin)?;
    b.bin(hint, Op::Add, a, c)
}

/// `[batch, seq, heads * head_dim]` -> `[batch, heads, seq, head_dim]`.
pub fn split_heads(b: &mut Builder, hint: &str, x: V, heads: usize, head_dim: usize) -> R<V> {
    let r = b.reshape(
        &format!("{hint}.heads"),
        x,
        &[0, 0, heads as i64, head_dim as i64],
    )?;
    b.transpose(hint, r, &[0, 2, 1, 3])
}

pub struct AttnShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f32,
}

/// Scaled dot-product attention. `q`: `[batch, heads, seq, head_dim]`;
/// `k`, `v`: `[batch, kv_heads, total, head_dim]`; `mask`: `[seq, total]`
/// bool or none. Grouped KV heads are shared by `heads / kv_heads` query
/// heads through broadcasting (q viewed as `[batch, kv, group, seq, d]`), so
/// the cache is never repeated. Returns `[batch, seq, heads * head_dim]`.
pub fn attention(
    b: &mut Builder,
    hint: &str,
    q: V,
    k: V,
    v: V,
    mask: Option<V>,
    s: &AttnShape,
) -> R<V> {
    let group = (s.heads / s.kv_heads) as i64;
    let (kvh, d) = (s.kv_heads as i64, s.head_dim as i64);
    let q5 = b.reshape(&format!("{hint}.q_grouped"), q, &[0, kvh, group, -1, d])?;
    let k5 = b.unsqueeze(&format!("{hint}.k_grouped"), k, &[2])?;
    let kt = b.transpose(&format!("{hint}.k_t"), k5, &[0, 1, 2, 4, 3])?;
    let scores = b.bin(&format!("{hint}.scores"), Op::MatMul, q5, kt)?;
    let scale = b.float_scalar(&format!("{hint}.scale"), s.scale);
    let mut scores = b.bin(&format!("{hint}.scaled"), Op::Mul, scores, scale)?;
    if let Some(m) = mask {
        let ninf = b.float_scalar(&format!("{hint}.masked_value"), f32::NEG_INFINITY);
        scores = b.op(
            &format!("{hint}.masked"),
            Op::Where,
            &[Some(m), Some(scores), Some(ninf)],
            vec![],
        )?;
    }
    let p = b.op(
        &format!("{hint}.probs"),
        Op::Softmax,
        &[Some(scores)],
        vec![("axis", Attr::Int(-1))],
    )?;
    let v5 = b.unsqueeze(&format!("{hint}.v_grouped"), v, &[2])?;
    let o = b.bin(&format!("{hint}.context"), Op::MatMul, p, v5)?;
    let o = b.reshape(
        &format!("{hint}.context_heads"),
        o,
        &[0, s.heads as i64, -1, d],
    )?;
    let o = b.transpose(&format!("{hint}.context_t"), o, &[0, 2, 1, 3])?;
    b.reshape(&format!("{hint}.merged"), o, &[0, 0, s.heads as i64 * d])
}

/// Appends new keys or values to the layer's cache (absent in prefill).
pub fn kv_append(b: &mut Builder, hint: &str, past: Option<V>, new: V, max_len: u64) -> R<V> {
    b.op(
        hint,
        Op::KvCacheAppend,
        &[past, Some(new)],
        vec![
            ("axis", Attr::Int(2)),
            ("max_len", Attr::Int(max_len as i64)),
        ],
    )
}

pub fn layer_norm(b: &mut Builder, x: V, prefix: &str, dim: usize, eps: f64) -> R<V> {
    let w = b.weight(&format!("{prefix}.weight"), &[dim])?;
    let bias = b.weight(&format!("{prefix}.bias"), &[dim])?;
    b.op(
        prefix,
        Op::LayerNormalization,
        &[Some(x), Some(w), Some(bias)],
        vec![
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(eps as f32)),
        ],
    )
}

pub fn rms_norm(b: &mut Builder, x: V, prefix: &str, dim: usize, eps: f64) -> R<V> {
    let w = b.weight(&format!("{prefix}.weight"), &[dim])?;
    b.op(
        prefix,
        Op::RMSNormalization,
        &[Some(x), Some(w)],
        vec![
            ("axis", Attr::Int(-1)),
            ("epsilon", Attr::Float(eps as f32)),
        ],
    )
}

/// The KV cache inputs of a decode graph: `past.{i}.key` / `.value`.
pub fn past_inputs(
    b: &mut Builder,
    layers: usize,
    kv_heads: usize,
    head_dim: usize,
) -> Vec<(V, V)> {
    use super::builder::{st, sym};
    use smelt_ir::DType;
    (0..layers)
        .map(|i| {
            let dims = vec![sym("batch"), st(kv_heads), sym("past"), st(head_dim)];
            let k = b.input(&format!("past.{i}.key"), DType::F32, dims.clone());
            let v = b.input(&format!("past.{i}.value"), DType::F32, dims);
            (k, v)
        })
        .collect()
}
