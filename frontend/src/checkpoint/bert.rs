//! BERT encoder: post-norm blocks, absolute positions, token type 0 and a
//! full (all ones) attention mask; the masked-LM head when it is saved.

use super::builder::{Builder, st, sym};
use super::common::{self, AttnShape};
use super::safetensors::Weights;
use super::{Built, CheckpointError, Config};
use smelt_ir::{Attr, DType, Op};

type R<T> = Result<T, CheckpointError>;

pub(crate) fn build(cfg: &Config, w: &Weights) -> R<Built> {
    let hidden = cfg.usize("hidden_size")?;
    let heads = cfg.usize("num_attention_heads")?;
    let head_dim = cfg.divide(("hidden_size", hidden), ("num_attention_heads", heads))?;
    let inter = cfg.usize("intermediate_size")?;
    let layers = cfg.usize("num_hidden_layers")?;
    let vocab = cfg.usize("vocab_size")?;
    let positions = cfg.usize("max_position_embeddings")?;
    let types = cfg.usize_or("type_vocab_size", 2)?;
    let eps = cfg.f64_or("layer_norm_eps", 1e-12)?;
    let gelu = match cfg.str_or("hidden_act", "gelu")? {
        "gelu" => "none",
        "gelu_new" | "gelu_pytorch_tanh" => "tanh",
        other => {
            return Err(CheckpointError::Config(format!(
                "hidden_act \"{other}\" is not supported (gelu, gelu_new)"
            )));
        }
    };
    let pos_kind = cfg.str_or("position_embedding_type", "absolute")?;
    if pos_kind != "absolute" {
        return Err(CheckpointError::Config(format!(
            "position_embedding_type \"{pos_kind}\" is not supported (absolute)"
        )));
    }
    // BertForMaskedLM saves "bert.embeddings..."; BertModel "embeddings...".
    let pre = if w.contains("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    let mut b = Builder::new("prefill", w);
    let ids = b.input("input_ids", DType::I64, vec![sym("batch"), sym("seq")]);
    let pos = common::positions(&mut b, ids, None)?;
    let e = format!("{pre}embeddings");
    let word = b.weight_raw(&format!("{e}.word_embeddings.weight"), &[vocab, hidden])?;
    let posw = b.weight_raw(
        &format!("{e}.position_embeddings.weight"),
        &[positions, hidden],
    )?;
    let typew = b.weight_raw(
        &format!("{e}.token_type_embeddings.weight"),
        &[types, hidden],
    )?;
    let axis0 = || vec![("axis", Attr::Int(0))];
    let we = b.op("word.gather", Op::Gather, &[Some(word), Some(ids)], axis0())?;
    let we = b.cast_f32(we, "word.f32")?;
    let pe = b.op(
        "pos.gather",
        Op::Gather,
        &[Some(posw), Some(pos.q)],
        axis0(),
    )?;
    let pe = b.cast_f32(pe, "pos.f32")?;
    let zero = b.int_scalar("token_type", 0);
    let te = b.op(
        "type.gather",
        Op::Gather,
        &[Some(typew), Some(zero)],
        axis0(),
    )?;
    let te = b.cast_f32(te, "type.f32")?;
    let x = b.bin("embed.wp", Op::Add, we, pe)?;
    let x = b.bin("embed.sum", Op::Add, x, te)?;
    let mut h = common::layer_norm(&mut b, x, &format!("{e}.LayerNorm"), hidden, eps)?;
    let shape = AttnShape {
        heads,
        kv_heads: heads,
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
    };
    for i in 0..layers {
        let p = format!("{pre}encoder.layer.{i}");
        let s = format!("{p}.attention.self");
        let q = b.linear(h, &format!("{s}.query"), hidden, hidden, true)?;
        let k = b.linear(h, &format!("{s}.key"), hidden, hidden, true)?;
        let v = b.linear(h, &format!("{s}.value"), hidden, hidden, true)?;
        let q = common::split_heads(&mut b, &format!("{s}.q"), q, heads, head_dim)?;
        let k = common::split_heads(&mut b, &format!("{s}.k"), k, heads, head_dim)?;
        let v = common::split_heads(&mut b, &format!("{s}.v"), v, heads, head_dim)?;
        let o = common::attention(&mut b, &format!("{s}.sdpa"), q, k, v, None, &shape)?;
        let ao = format!("{p}.attention.output");
        let o = b.linear(o, &format!("{ao}.dense"), hidden, hidden, true)?;
        let r = b.bin(&format!("{ao}.residual"), Op::Add, o, h)?;
        let a = common::layer_norm(&mut b, r, &format!("{ao}.LayerNorm"), hidden, eps)?;
        let m = b.linear(a, &format!("{p}.intermediate.dense"), inter, hidden, true)?;
        let m = b.op(
            &format!("{p}.intermediate.act"),
            Op::Gelu,
            &[Some(m)],
            vec![("approximate", Attr::String(gelu.into()))],
        )?;
        let m = b.linear(m, &format!("{p}.output.dense"), hidden, inter, true)?;
        let r = b.bin(&format!("{p}.output.residual"), Op::Add, m, a)?;
        h = common::layer_norm(&mut b, r, &format!("{p}.output.LayerNorm"), hidden, eps)?;
    }
    let hs = vec![sym("batch"), sym("seq"), st(hidden)];
    b.output(h, "last_hidden_state", hs)?;
    let t = "cls.predictions.transform";
    if b.has_weight(&format!("{t}.dense.weight")) {
        let x = b.linear(h, &format!("{t}.dense"), hidden, hidden, true)?;
        let x = b.op(
            &format!("{t}.act"),
            Op::Gelu,
            &[Some(x)],
            vec![("approximate", Attr::String(gelu.into()))],
        )?;
        let x = common::layer_norm(&mut b, x, &format!("{t}.LayerNorm"), hidden, eps)?;
        // The decoder is tied to the word embeddings unless saved.
        let dec = if b.has_weight("cls.predictions.decoder.weight") {
            "cls.predictions.decoder".to_string()
        } else {
            format!("{e}.word_embeddings")
        };
        let logits = b.linear(x, &dec, vocab, hidden, false)?;
        let bias_name = if b.has_weight("cls.predictions.bias") {
            "cls.predictions.bias"
        } else {
            "cls.predictions.decoder.bias"
        };
        let bias = b.weight(bias_name, &[vocab])?;
        let logits = b.bin("logits.biased", Op::Add, logits, bias)?;
        b.output(logits, "logits", vec![sym("batch"), sym("seq"), st(vocab)])?;
    }
    Ok(Built {
        prefill: b.g,
        decode: None,
        max_len: positions as u64,
    })
}
