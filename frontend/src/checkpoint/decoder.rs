//! Llama-style decoders: Llama (grouped-query attention, rope scaling),
//! Mistral (sliding window) and Qwen2 (q/k/v biases).

use super::builder::{Builder, V, st, sym};
use super::common::{self, AttnShape, Positions};
use super::safetensors::Weights;
use super::{Arch, Built, CheckpointError, Config};
use smelt_ir::{DType, Dim, Op};

type R<T> = Result<T, CheckpointError>;

struct Dims {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    inter: usize,
    vocab: usize,
    layers: usize,
    eps: f64,
    max_len: u64,
    /// Bias on q/k/v (Qwen2, Llama with attention_bias) and on o (Llama).
    qkv_bias: bool,
    o_bias: bool,
    mlp_bias: bool,
    tied: bool,
    /// Sliding window per layer.
    windows: Vec<Option<usize>>,
    inv_freq: Vec<f32>,
}

/// The rotary inverse frequencies, as Hugging Face computes them in f32:
/// `1 / base^(2i / dim)`, then adjusted by `rope_scaling`.
fn inv_freq(cfg: &Config, head_dim: usize, max_pos: usize) -> R<Vec<f32>> {
    let base = cfg.f64_or("rope_theta", 10000.0)?;
    let mut inv: Vec<f32> = (0..head_dim / 2)
        .map(|i| {
            let e = (2 * i) as f32 / head_dim as f32;
            1.0f32 / (base.powf(e as f64) as f32)
        })
        .collect();
    let rs = if cfg.json["rope_scaling"].is_object() {
        &cfg.json["rope_scaling"]
    } else {
        &cfg.json["rope_parameters"]
    };
    if !rs.is_object() {
        return Ok(inv);
    }
    let kind = rs["rope_type"]
        .as_str()
        .or_else(|| rs["type"].as_str())
        .unwrap_or("default");
    let num = |k: &str| -> R<f64> {
        rs[k].as_f64().ok_or_else(|| {
            CheckpointError::Config(format!(
                "missing field \"rope_scaling.{k}\" (needed for rope type {kind})"
            ))
        })
    };
    match kind {
        "default" => {}
        "linear" => {
            let f = num("factor")? as f32;
            for x in &mut inv {
                *x /= f;
            }
        }
        // Dynamic NTK scaling changes the frequencies only past the
        // trained length; the KV caches are bounded by that length
        // (max_position_embeddings), so the plain frequencies are exact.
        "dynamic" => {
            num("factor")?;
        }
        "llama3" => {
            let factor = num("factor")?;
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            let old = rs["original_max_position_embeddings"]
                .as_f64()
                .unwrap_or(max_pos as f64);
            let low_wl = old / low;
            let high_wl = old / high;
            for x in &mut inv {
                let f = *x as f64;
                let wl = 2.0 * std::f64::consts::PI / f;
                let scaled = if wl > low_wl {
                    f / factor
                } else if wl < high_wl {
                    f
                } else {
                    let smooth = (old / wl - low) / (high - low);
                    (1.0 - smooth) * f / factor + smooth * f
                };
                *x = scaled as f32;
            }
        }
        other => {
            return Err(CheckpointError::Config(format!(
                "rope_scaling type \"{other}\" is not supported (supported: linear, dynamic, llama3)"
            )));
        }
    }
    Ok(inv)
}

fn dims(arch: Arch, cfg: &Config) -> R<Dims> {
    let hidden = cfg.usize("hidden_size")?;
    let heads = cfg.usize("num_attention_heads")?;
    let kv_heads = cfg.usize_or("num_key_value_heads", heads)?;
    cfg.divide(
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv_heads),
    )?;
    let head_dim = match cfg.json["head_dim"].is_null() {
        true => cfg.divide(("hidden_size", hidden), ("num_attention_heads", heads))?,
        false => cfg.usize("head_dim")?,
    };
    if !head_dim.is_multiple_of(2) {
        return Err(CheckpointError::Config(format!(
            "head dim {head_dim} is odd; rotary embeddings need an even one"
        )));
    }
    let layers = cfg.usize("num_hidden_layers")?;
    let max_pos = cfg.usize_or("max_position_embeddings", 2048)?;
    let act = cfg.str_or("hidden_act", "silu")?;
    if act != "silu" && act != "swish" {
        return Err(CheckpointError::Config(format!(
            "hidden_act \"{act}\" is not supported for this family (only silu)"
        )));
    }
    let attention_bias = cfg.bool_or("attention_bias", false)?;
    let window = match arch {
        Arch::Mistral if !cfg.json["sliding_window"].is_null() => {
            Some(cfg.usize("sliding_window")?)
        }
        Arch::Qwen2 if cfg.bool_or("use_sliding_window", false)? => {
            Some(cfg.usize("sliding_window")?)
        }
        _ => None,
    };
    let max_window_layers = cfg.usize_or("max_window_layers", 0)?;
    let windows = (0..layers)
        .map(|i| match arch {
            // Qwen2 slides only from layer max_window_layers on.
            Arch::Qwen2 if i < max_window_layers => None,
            _ => window,
        })
        .collect();
    Ok(Dims {
        hidden,
        heads,
        kv_heads,
        head_dim,
        inter: cfg.usize("intermediate_size")?,
        vocab: cfg.usize("vocab_size")?,
        layers,
        eps: cfg.f64_or("rms_norm_eps", 1e-6)?,
        max_len: max_pos as u64,
        qkv_bias: arch == Arch::Qwen2 || attention_bias,
        o_bias: attention_bias,
        mlp_bias: cfg.bool_or("mlp_bias", false)?,
        tied: cfg.bool_or("tie_word_embeddings", false)?,
        windows,
        inv_freq: inv_freq(cfg, head_dim, max_pos)?,
    })
}

pub(crate) fn build(arch: Arch, cfg: &Config, w: &Weights) -> R<Built> {
    let d = dims(arch, cfg)?;
    let prefill = graph(&d, w, false)?;
    let decode = graph(&d, w, true)?;
    Ok(Built {
        prefill,
        decode: Some(decode),
        max_len: d.max_len,
    })
}

fn graph(d: &Dims, w: &Weights, decode: bool) -> R<smelt_ir::Graph> {
    let mut b = Builder::new(if decode { "decode" } else { "prefill" }, w);
    let seq = if decode { st(1) } else { sym("seq") };
    let ids = b.input("input_ids", DType::I64, vec![sym("batch"), seq.clone()]);
    let past = if decode {
        common::past_inputs(&mut b, d.layers, d.kv_heads, d.head_dim)
    } else {
        vec![]
    };
    let pos: Positions = common::positions(&mut b, ids, past.first().map(|p| p.0))?;
    let (cos, sin) = common::rope_tables(&mut b, pos.q, &d.inv_freq)?;
    let full_mask = common::causal_mask(&mut b, &pos, None)?;
    let window_masks: Vec<(usize, V)> = {
        let mut ws: Vec<usize> = d.windows.iter().flatten().copied().collect();
        ws.sort();
        ws.dedup();
        let mut v = Vec::new();
        for win in ws {
            v.push((win, common::causal_mask(&mut b, &pos, Some(win))?));
        }
        v
    };
    let emb_w = b.weight_raw("model.embed_tokens.weight", &[d.vocab, d.hidden])?;
    let h = b.op(
        "embed",
        Op::Gather,
        &[Some(emb_w), Some(ids)],
        vec![("axis", smelt_ir::Attr::Int(0))],
    )?;
    let mut h = b.cast_f32(h, "embed.f32")?;
    let shape = AttnShape {
        heads: d.heads,
        kv_heads: d.kv_heads,
        head_dim: d.head_dim,
        scale: 1.0 / (d.head_dim as f32).sqrt(),
    };
    let mut presents = Vec::new();
    for i in 0..d.layers {
        let p = format!("model.layers.{i}");
        let x = common::rms_norm(&mut b, h, &format!("{p}.input_layernorm"), d.hidden, d.eps)?;
        let a = format!("{p}.self_attn");
        let (qd, kvd) = (d.heads * d.head_dim, d.kv_heads * d.head_dim);
        let q = b.linear(x, &format!("{a}.q_proj"), qd, d.hidden, d.qkv_bias)?;
        let k = b.linear(x, &format!("{a}.k_proj"), kvd, d.hidden, d.qkv_bias)?;
        let v = b.linear(x, &format!("{a}.v_proj"), kvd, d.hidden, d.qkv_bias)?;
        let q = common::split_heads(&mut b, &format!("{a}.q"), q, d.heads, d.head_dim)?;
        let k = common::split_heads(&mut b, &format!("{a}.k"), k, d.kv_heads, d.head_dim)?;
        let v = common::split_heads(&mut b, &format!("{a}.v"), v, d.kv_heads, d.head_dim)?;
        let q = common::apply_rope(&mut b, &format!("{a}.q_rot"), q, cos, sin, d.head_dim)?;
        let k = common::apply_rope(&mut b, &format!("{a}.k_rot"), k, cos, sin, d.head_dim)?;
        let (pk, pv) = past
            .get(i)
            .map_or((None, None), |&(k, v)| (Some(k), Some(v)));
        let k = common::kv_append(&mut b, &format!("{a}.cache_k"), pk, k, d.max_len)?;
        let v = common::kv_append(&mut b, &format!("{a}.cache_v"), pv, v, d.max_len)?;
        presents.push((k, v));
        let mask = match d.windows[i] {
            Some(win) => window_masks
                .iter()
                .find(|(x, _)| *x == win)
                .map_or(full_mask, |m| m.1),
            None => full_mask,
        };
        let o = common::attention(&mut b, &format!("{a}.attn"), q, k, v, Some(mask), &shape)?;
        let o = b.linear(o, &format!("{a}.o_proj"), d.hidden, qd, d.o_bias)?;
        h = b.bin(&format!("{p}.attn_residual"), Op::Add, h, o)?;
        let x = common::rms_norm(
            &mut b,
            h,
            &format!("{p}.post_attention_layernorm"),
            d.hidden,
            d.eps,
        )?;
        let m = format!("{p}.mlp");
        let g = b.linear(x, &format!("{m}.gate_proj"), d.inter, d.hidden, d.mlp_bias)?;
        let u = b.linear(x, &format!("{m}.up_proj"), d.inter, d.hidden, d.mlp_bias)?;
        let sg = b.un(&format!("{m}.sigmoid"), Op::Sigmoid, g)?;
        let silu = b.bin(&format!("{m}.silu"), Op::Mul, g, sg)?;
        let gu = b.bin(&format!("{m}.gated"), Op::Mul, silu, u)?;
        let dn = b.linear(gu, &format!("{m}.down_proj"), d.hidden, d.inter, d.mlp_bias)?;
        h = b.bin(&format!("{p}.mlp_residual"), Op::Add, h, dn)?;
    }
    let h = common::rms_norm(&mut b, h, "model.norm", d.hidden, d.eps)?;
    let head = if d.tied {
        "model.embed_tokens"
    } else {
        "lm_head"
    };
    let logits = b.linear(h, head, d.vocab, d.hidden, false)?;
    b.output(
        logits,
        "logits",
        vec![sym("batch"), seq.clone(), st(d.vocab)],
    )?;
    for (i, (k, v)) in presents.into_iter().enumerate() {
        let len = if decode { Dim::Unknown } else { sym("seq") };
        let dims = vec![sym("batch"), st(d.kv_heads), len, st(d.head_dim)];
        b.output(k, &format!("present.{i}.key"), dims.clone())?;
        b.output(v, &format!("present.{i}.value"), dims)?;
    }
    Ok(b.g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn freqs(extra: serde_json::Value) -> Vec<f32> {
        let mut j = serde_json::json!({"rope_theta": 10000.0});
        if !extra.is_null() {
            j["rope_scaling"] = extra;
        }
        inv_freq(&Config::new(&j, "LlamaForCausalLM"), 8, 128).unwrap()
    }

    #[test]
    fn default_frequencies_are_powers_of_the_base() {
        // 1 / 10000^(2i/8) for i = 0..4: 1, 0.1, 0.01, 0.001.
        let f = freqs(serde_json::Value::Null);
        let want = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in f.iter().zip(want) {
            assert!((*a as f64 - b).abs() <= 1e-7 * b, "{a} vs {b}");
        }
    }

    #[test]
    fn linear_divides_and_dynamic_keeps_within_the_trained_length() {
        let base = freqs(serde_json::Value::Null);
        let lin = freqs(serde_json::json!({"rope_type": "linear", "factor": 4.0}));
        for (a, b) in lin.iter().zip(&base) {
            assert_eq!(*a, *b / 4.0);
        }
        let dynamic = freqs(serde_json::json!({"type": "dynamic", "factor": 2.0}));
        assert_eq!(dynamic, base);
    }

    #[test]
    fn llama3_scales_only_long_wavelengths() {
        // old context 128, low factor 1, high factor 4: wavelengths above 128
        // are divided by the factor, below 32 kept, in between blended.
        // Wavelengths 2*pi/f: 6.28, 62.8, 628, 6283.
        let f = freqs(serde_json::json!({
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 128
        }));
        let base = freqs(serde_json::Value::Null);
        assert_eq!(f[0], base[0]);
        assert_eq!(f[2], base[2] / 8.0);
        assert_eq!(f[3], base[3] / 8.0);
        // smooth = (128 / 62.83 - 1) / 3 = 0.3457; (1 - s) / 8 + s = 0.4275.
        let ratio = f[1] as f64 / base[1] as f64;
        assert!((ratio - 0.4275).abs() < 1e-3, "{ratio}");
    }

    #[test]
    fn unknown_rope_type_is_refused() {
        let j = serde_json::json!({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}});
        let e = inv_freq(&Config::new(&j, "LlamaForCausalLM"), 8, 128).unwrap_err();
        assert!(e.to_string().contains("\"yarn\" is not supported"), "{e}");
    }
}
