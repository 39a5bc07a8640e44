//! GPT-2: learned positions, pre-norm blocks, Conv1D weights stored
//! `[in, out]` (so `x @ W` with no transpose), fused q/k/v, tanh GELU and the
//! LM head tied to the token embedding.

use super::builder::{Builder, st, sym};
use super::common::{self, AttnShape};
use super::safetensors::Weights;
use super::{Built, CheckpointError, Config};
use smelt_ir::{Attr, DType, Dim, Op};

type R<T> = Result<T, CheckpointError>;

struct Dims {
    prefix: &'static str,
    hidden: usize,
    heads: usize,
    head_dim: usize,
    inner: usize,
    layers: usize,
    vocab: usize,
    positions: usize,
    eps: f64,
    gelu: &'static str,
    scale_weights: bool,
    scale_by_layer: bool,
}

pub(crate) fn build(cfg: &Config, w: &Weights) -> R<Built> {
    let hidden = cfg.usize("n_embd")?;
    let heads = cfg.usize("n_head")?;
    let act = cfg.str_or("activation_function", "gelu_new")?;
    let gelu = match act {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => "tanh",
        "gelu" => "none",
        other => {
            return Err(CheckpointError::Config(format!(
                "activation_function \"{other}\" is not supported (gelu_new, gelu)"
            )));
        }
    };
    let d = Dims {
        // GPT2LMHeadModel saves "transformer.h.0..."; a bare GPT2Model "h.0...".
        prefix: if w.contains("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        },
        hidden,
        heads,
        head_dim: cfg.divide(("n_embd", hidden), ("n_head", heads))?,
        inner: cfg.usize_or("n_inner", 4 * hidden)?,
        layers: cfg.usize("n_layer")?,
        vocab: cfg.usize("vocab_size")?,
        positions: cfg.usize("n_positions")?,
        eps: cfg.f64_or("layer_norm_epsilon", 1e-5)?,
        gelu,
        scale_weights: cfg.bool_or("scale_attn_weights", true)?,
        scale_by_layer: cfg.bool_or("scale_attn_by_inverse_layer_idx", false)?,
    };
    Ok(Built {
        prefill: graph(&d, w, false)?,
        decode: Some(graph(&d, w, true)?),
        max_len: d.positions as u64,
    })
}

/// `x @ W + b` for a Conv1D weight `[in, out]`.
fn conv1d(
    b: &mut Builder,
    x: smelt_ir::ValueId,
    p: &str,
    inp: usize,
    out: usize,
) -> R<smelt_ir::ValueId> {
    let wt = b.weight(&format!("{p}.weight"), &[inp, out])?;
    let bias = b.weight(&format!("{p}.bias"), &[out])?;
    let y = b.bin(p, Op::MatMul, x, wt)?;
    b.bin(&format!("{p}.out"), Op::Add, y, bias)
}

fn graph(d: &Dims, w: &Weights, decode: bool) -> R<smelt_ir::Graph> {
    let mut b = Builder::new(if decode { "decode" } else { "prefill" }, w);
    let seq = if decode { st(1) } else { sym("seq") };
    let ids = b.input("input_ids", DType::I64, vec![sym("batch"), seq.clone()]);
    let past = if decode {
        common::past_inputs(&mut b, d.layers, d.heads, d.head_dim)
    } else {
        vec![]
    };
    let pos = common::positions(&mut b, ids, past.first().map(|p| p.0))?;
    let mask = common::causal_mask(&mut b, &pos, None)?;
    let pre = d.prefix;
    let wte = b.weight_raw(&format!("{pre}wte.weight"), &[d.vocab, d.hidden])?;
    let wpe = b.weight_raw(&format!("{pre}wpe.weight"), &[d.positions, d.hidden])?;
    let axis0 = || vec![("axis", Attr::Int(0))];
    let te = b.op("wte.gather", Op::Gather, &[Some(wte), Some(ids)], axis0())?;
    let te = b.cast_f32(te, "wte.f32")?;
    let pe = b.op("wpe.gather", Op::Gather, &[Some(wpe), Some(pos.q)], axis0())?;
    let pe = b.cast_f32(pe, "wpe.f32")?;
    let mut h = b.bin("embed", Op::Add, te, pe)?;
    let mut presents = Vec::new();
    for i in 0..d.layers {
        let p = format!("{pre}h.{i}");
        let x = common::layer_norm(&mut b, h, &format!("{p}.ln_1"), d.hidden, d.eps)?;
        let qkv = conv1d(
            &mut b,
            x,
            &format!("{p}.attn.c_attn"),
            d.hidden,
            3 * d.hidden,
        )?;
        let sizes = b.ints(&format!("{p}.attn.split"), &[d.hidden as i64; 3]);
        let parts = b.op_n(
            &format!("{p}.attn.qkv"),
            Op::Split,
            &[Some(qkv), Some(sizes)],
            vec![("axis", Attr::Int(-1))],
            3,
        )?;
        let q = common::split_heads(
            &mut b,
            &format!("{p}.attn.q"),
            parts[0],
            d.heads,
            d.head_dim,
        )?;
        let k = common::split_heads(
            &mut b,
            &format!("{p}.attn.k"),
            parts[1],
            d.heads,
            d.head_dim,
        )?;
        let v = common::split_heads(
            &mut b,
            &format!("{p}.attn.v"),
            parts[2],
            d.heads,
            d.head_dim,
        )?;
        let (pk, pv) = past
            .get(i)
            .map_or((None, None), |&(k, v)| (Some(k), Some(v)));
        let max = d.positions as u64;
        let k = common::kv_append(&mut b, &format!("{p}.attn.cache_k"), pk, k, max)?;
        let v = common::kv_append(&mut b, &format!("{p}.attn.cache_v"), pv, v, max)?;
        presents.push((k, v));
        let mut scale = if d.scale_weights {
            1.0 / (d.head_dim as f32).sqrt()
        } else {
            1.0
        };
        if d.scale_by_layer {
            scale /= (i + 1) as f32;
        }
        let shape = AttnShape {
            heads: d.heads,
            kv_heads: d.heads,
            head_dim: d.head_dim,
            scale,
        };
        let o = common::attention(
            &mut b,
            &format!("{p}.attn.sdpa"),
            q,
            k,
            v,
            Some(mask),
            &shape,
        )?;
        let o = conv1d(&mut b, o, &format!("{p}.attn.c_proj"), d.hidden, d.hidden)?;
        h = b.bin(&format!("{p}.attn_residual"), Op::Add, h, o)?;
        let x = common::layer_norm(&mut b, h, &format!("{p}.ln_2"), d.hidden, d.eps)?;
        let m = conv1d(&mut b, x, &format!("{p}.mlp.c_fc"), d.hidden, d.inner)?;
        let m = b.op(
            &format!("{p}.mlp.act"),
            Op::Gelu,
            &[Some(m)],
            vec![("approximate", Attr::String(d.gelu.into()))],
        )?;
        let m = conv1d(&mut b, m, &format!("{p}.mlp.c_proj"), d.inner, d.hidden)?;
        h = b.bin(&format!("{p}.mlp_residual"), Op::Add, h, m)?;
    }
    let h = common::layer_norm(&mut b, h, &format!("{pre}ln_f"), d.hidden, d.eps)?;
    // The head is the token embedding (tied); a separate lm_head.weight,
    // when saved, holds the same values.
    let logits = b.linear(h, &format!("{pre}wte"), d.vocab, d.hidden, false)?;
    b.output(logits, "logits", vec![sym("batch"), seq, st(d.vocab)])?;
    for (i, (k, v)) in presents.into_iter().enumerate() {
        let len = if decode { Dim::Unknown } else { sym("seq") };
        let dims = vec![sym("batch"), st(d.heads), len, st(d.head_dim)];
        b.output(k, &format!("present.{i}.key"), dims.clone())?;
        b.output(v, &format!("present.{i}.value"), dims)?;
    }
    Ok(b.g)
}
