//! Hugging Face checkpoints (examples/checkpoints, made by make.py with an
//! onnxruntime reference): prefill outputs within the reference tolerance,
//! greedy decoding through the KV cache equal to the reference ids, and a
//! clear one-line error for each kind of broken checkpoint.

use crate::common::{repo, smelt};
use smelt_frontend::checkpoint::{self, CheckpointError};
use smelt_ir::interp::{self, Storage, Tensor};
use smelt_ir::{DType, Payload};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    repo().join("examples/checkpoints").join(name)
}

struct Reference {
    tokens: Vec<i64>,
    output: String,
    shape: Vec<usize>,
    values: Vec<f64>,
    generated: Option<Vec<i64>>,
    rtol: f64,
    atol: f64,
}

fn reference(dir: &Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let j: serde_json::Value = serde_json::from_str(&text).expect("reference JSON");
    let ints = |v: &serde_json::Value| -> Vec<i64> {
        v.as_array()
            .expect("list")
            .iter()
            .map(|x| x.as_i64().expect("int"))
            .collect()
    };
    Reference {
        tokens: ints(&j["tokens"]),
        output: j["output"].as_str().expect("output name").to_string(),
        shape: ints(&j["shape"]).iter().map(|&d| d as usize).collect(),
        values: j["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|x| x.as_f64().expect("float"))
            .collect(),
        generated: j.get("generated").map(ints),
        rtol: j["rtol"].as_f64().expect("rtol"),
        atol: j["atol"].as_f64().expect("atol"),
    }
}

/// The prefill output named by the reference, via the library API.
fn prefill_output(dir: &Path, r: &Reference) -> Tensor {
    let c = checkpoint::import_dir(dir).expect("imports");
    let g = &c.prefill;
    let ids = Tensor::from_i64(DType::I64, vec![1, r.tokens.len()], r.tokens.clone());
    let outs = interp::run(g, vec![ids]).expect("prefill runs");
    let i = g
        .outputs
        .iter()
        .position(|&o| g.value(o).name == r.output)
        .unwrap_or_else(|| panic!("no output {}", r.output));
    outs[i].clone()
}

fn check_prefill(name: &str) {
    let dir = fixture(name);
    let r = reference(&dir);
    let got = prefill_output(&dir, &r);
    assert_eq!(got.shape, r.shape, "{name}: shape");
    let Storage::F(v) = &got.data else {
        panic!("{name}: float output expected")
    };
    assert_eq!(v.len(), r.values.len());
    for (i, (&g, &w)) in v.iter().zip(&r.values).enumerate() {
        assert!(
            (g - w).abs() <= r.atol + r.rtol * w.abs(),
            "{name}: element {i}: expected {w}, got {g}"
        );
    }
}

fn tokens_arg(r: &Reference) -> String {
    let t: Vec<String> = r.tokens.iter().map(|x| x.to_string()).collect();
    t.join(",")
}

fn check_generate(name: &str) {
    let dir = fixture(name);
    check_generate_dir(&dir, &reference(&dir));
}

fn check_generate_dir(dir: &Path, r: &Reference) {
    let want = r.generated.as_ref().expect("a causal LM reference");
    let out = smelt(&[
        "run",
        dir.to_str().unwrap(),
        "--tokens",
        &tokens_arg(r),
        "--generate",
        &want.len().to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", dir.display());
    let want: Vec<String> = want.iter().map(|x| x.to_string()).collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        want.join(" "),
        "{}",
        dir.display()
    );
}

macro_rules! family {
    ($prefill:ident, $generate:ident, $name:literal) => {
        #[test]
        fn $prefill() {
            check_prefill($name);
        }
        #[test]
        fn $generate() {
            check_generate($name);
        }
    };
}

family!(llama_bf16_gqa_prefill, llama_bf16_gqa_generate, "llama");
family!(
    llama3_rope_prefill,
    llama3_rope_generate,
    "llama_rope_scaled"
);
family!(
    mistral_f16_window_prefill,
    mistral_f16_window_generate,
    "mistral"
);
family!(qwen2_prefill, qwen2_generate, "qwen2");
family!(gpt2_prefill, gpt2_generate, "gpt2");

#[test]
fn bert_last_hidden_state() {
    check_prefill("bert");
}

#[test]
fn bert_mlm_logits() {
    check_prefill("bert_mlm");
}

#[test]
fn bert_refuses_generate() {
    let out = smelt(&[
        "run",
        fixture("bert").to_str().unwrap(),
        "--tokens",
        "1,5,9",
        "--generate",
        "2",
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("BERT is an encoder; --generate needs a decoder"),
        "{e}"
    );
}

#[test]
fn bad_token_ids_are_refused() {
    let dir = fixture("gpt2");
    let d = dir.to_str().unwrap();
    for (ids, want) in [("1,-1", "token id -1 is negative"), ("1,500", "index 500")] {
        let out = smelt(&["run", d, "--tokens", ids, "--generate", "2"]);
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(want) && !e.contains("panicked"), "{e}");
    }
}

#[test]
fn run_tokens_writes_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixture("gpt2");
    let r = reference(&dir);
    let out = smelt(&[
        "run",
        dir.to_str().unwrap(),
        "--tokens",
        &tokens_arg(&r),
        "--output-dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("logits: f32[1,5,96] -> "), "{stdout}");
    let (_, t) =
        smelt_frontend::tensor_io::read_tensor(&tmp.path().join("output_0.pb")).expect("logits");
    assert_eq!(t.shape, r.shape);
    let Storage::F(v) = &t.data else { panic!() };
    for (g, w) in v.iter().zip(&r.values) {
        assert!((g - w).abs() <= r.atol + r.rtol * w.abs());
    }
}

#[test]
fn import_prints_prefill_then_decode_and_round_trips() {
    let dir = fixture("llama");
    let out = smelt(&["import", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let at = text.find("\n# decode").expect("decode comment");
    let (prefill, decode) = text.split_at(at);
    assert!(prefill.contains("graph \"prefill\"(%input_ids: i64[batch,seq])"));
    assert!(decode.contains("%past.0.key: f32[batch,2,past,8]"));
    assert!(decode.contains("KvCacheAppend(%past.0.key,"));
    // Weights are referenced in the safetensors file, not inlined.
    assert!(prefill.contains("file(\"model.safetensors\", offset="));
    let start = prefill.find("graph ").unwrap();
    let g = smelt_ir::text::parse_with(&prefill[start..], Some(&dir)).expect("parses");
    assert_eq!(smelt_ir::text::print(&g), prefill[start..]);
}

#[test]
fn weights_are_mapped_not_copied() {
    let c = checkpoint::import_dir(&fixture("qwen2")).unwrap();
    let weights: Vec<_> = c
        .prefill
        .consts
        .values()
        .filter_map(|d| match &d.payload {
            Payload::Raw(b) if b.origin().is_some() => Some(b.clone()),
            _ => None,
        })
        .collect();
    // 2 layers x (q,k,v weight+bias, o, gate, up, down, 2 norms) + embed + norm.
    assert_eq!(weights.len(), 2 * 12 + 2);
    assert!(weights.iter().all(|b| b.shares_storage_with(&weights[0])));
    assert_eq!(
        c.dim_bounds.get("seq"),
        Some(&c.config["max_position_embeddings"].as_u64().unwrap())
    );
}

// ---- hand-written checkpoints -------------------------------------------

/// Writes a safetensors file: the header lists the tensors in order, data
/// packed back to back.
fn write_safetensors(path: &Path, tensors: &[(String, &str, Vec<usize>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    write_raw(
        path,
        serde_json::Value::Object(header).to_string().as_bytes(),
        &data,
    );
}

fn write_raw(path: &Path, header: &[u8], data: &[u8]) {
    let mut f = (header.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(header);
    f.extend_from_slice(data);
    std::fs::write(path, f).unwrap();
}

const H: usize = 4;
const KV: usize = 2; // one kv head of dim 2
const I: usize = 8;
const VOCAB: usize = 8;

fn tiny_config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": H, "num_attention_heads": 2, "num_key_value_heads": 1,
        "intermediate_size": I, "vocab_size": VOCAB, "num_hidden_layers": 1,
        "max_position_embeddings": 4, "rms_norm_eps": 1e-6
    })
}

fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (((i % 7) as f32 - 3.0) * 0.1).to_le_bytes())
        .collect()
}

fn tiny_tensors() -> Vec<(String, &'static str, Vec<usize>, Vec<u8>)> {
    let l = "model.layers.0";
    let shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![VOCAB, H]),
        (format!("{l}.self_attn.q_proj.weight"), vec![H, H]),
        (format!("{l}.self_attn.k_proj.weight"), vec![KV, H]),
        (format!("{l}.self_attn.v_proj.weight"), vec![KV, H]),
        (format!("{l}.self_attn.o_proj.weight"), vec![H, H]),
        (format!("{l}.mlp.gate_proj.weight"), vec![I, H]),
        (format!("{l}.mlp.up_proj.weight"), vec![I, H]),
        (format!("{l}.mlp.down_proj.weight"), vec![H, I]),
        (format!("{l}.input_layernorm.weight"), vec![H]),
        (format!("{l}.post_attention_layernorm.weight"), vec![H]),
        ("model.norm.weight".into(), vec![H]),
        ("lm_head.weight".into(), vec![VOCAB, H]),
    ];
    shapes
        .into_iter()
        .map(|(n, s)| {
            let b = f32_bytes(s.iter().product());
            (n, "F32", s, b)
        })
        .collect()
}

fn tiny_dir(
    config: serde_json::Value,
    tensors: &[(String, &str, Vec<usize>, Vec<u8>)],
) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.json"), config.to_string()).unwrap();
    write_safetensors(&d.path().join("model.safetensors"), tensors);
    d
}

/// `smelt import` fails with one line (no panic) that contains `want`.
fn import_error(dir: &Path, want: &[&str]) {
    let out = smelt(&["import", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!e.contains("panicked"), "{e}");
    for w in want {
        assert!(e.contains(w), "expected {w:?} in: {e}");
    }
}

#[test]
fn tiny_checkpoint_imports_and_bounds_the_cache() {
    let d = tiny_dir(tiny_config(), &tiny_tensors());
    let out = smelt(&["import", d.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 prompt tokens + 1 decode step = 4 positions: fits the bound of 4.
    let p = d.path().to_str().unwrap();
    let ok = smelt(&["run", p, "--tokens", "1,2,3", "--generate", "2"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // A second decode step would need a fifth position: the decode graph's
    // `past` bound (max positions - 1 = 3) refuses the grown cache.
    let e = smelt(&["run", p, "--tokens", "1,2,3", "--generate", "3"]);
    assert!(!e.status.success());
    let e = String::from_utf8_lossy(&e.stderr);
    assert!(e.contains("dimension past is 4, above its bound 3"), "{e}");
}

#[test]
fn unknown_architecture_names_the_supported_ones() {
    let mut cfg = tiny_config();
    cfg["architectures"] = serde_json::json!(["FalconForCausalLM"]);
    let d = tiny_dir(cfg, &tiny_tensors());
    import_error(
        d.path(),
        &[
            "FalconForCausalLM",
            "LlamaForCausalLM",
            "GPT2LMHeadModel",
            "BertModel",
        ],
    );
}

#[test]
fn missing_tensor_is_named() {
    let t: Vec<_> = tiny_tensors()
        .into_iter()
        .filter(|t| !t.0.ends_with("v_proj.weight"))
        .collect();
    let d = tiny_dir(tiny_config(), &t);
    import_error(
        d.path(),
        &["model.layers.0.self_attn.v_proj.weight", "missing"],
    );
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let mut t = tiny_tensors();
    for x in &mut t {
        if x.0.ends_with("k_proj.weight") {
            x.2 = vec![H, KV];
        }
    }
    let d = tiny_dir(tiny_config(), &t);
    import_error(
        d.path(),
        &["model.layers.0.self_attn.k_proj.weight", "[4, 2]", "[2, 4]"],
    );
}

#[test]
fn missing_config_field_is_named() {
    let mut cfg = tiny_config();
    cfg.as_object_mut().unwrap().remove("intermediate_size");
    let d = tiny_dir(cfg, &tiny_tensors());
    import_error(d.path(), &["missing field \"intermediate_size\""]);
}

#[test]
fn truncated_file_is_refused() {
    let d = tiny_dir(tiny_config(), &tiny_tensors());
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    import_error(d.path(), &["model.safetensors", "truncated"]);
    std::fs::write(&p, &bytes[..5]).unwrap();
    import_error(d.path(), &["truncated"]);
    std::fs::write(&p, &bytes[..20]).unwrap();
    import_error(d.path(), &["truncated"]);
}

#[test]
fn overlapping_offsets_are_refused() {
    let d = tiny_dir(tiny_config(), &tiny_tensors());
    let header = serde_json::json!({
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    });
    write_raw(
        &d.path().join("model.safetensors"),
        header.to_string().as_bytes(),
        &[0; 12],
    );
    import_error(d.path(), &["overlapping", "\"a\"", "\"b\""]);
}

#[test]
fn huge_header_is_refused() {
    let d = tiny_dir(tiny_config(), &tiny_tensors());
    let mut f = (200u64 << 20).to_le_bytes().to_vec();
    f.extend_from_slice(b"{}");
    std::fs::write(d.path().join("model.safetensors"), f).unwrap();
    import_error(d.path(), &["header", "100 MB"]);
}

#[test]
fn header_must_be_json() {
    let d = tiny_dir(tiny_config(), &tiny_tensors());
    write_raw(&d.path().join("model.safetensors"), b"not json", &[]);
    import_error(d.path(), &["header is not valid JSON"]);
}

#[test]
fn errors_come_back_typed_from_the_api() {
    let t: Vec<_> = tiny_tensors()
        .into_iter()
        .filter(|t| t.0 != "model.norm.weight")
        .collect();
    let d = tiny_dir(tiny_config(), &t);
    match checkpoint::import_dir(d.path()) {
        Err(CheckpointError::MissingTensor(n)) => assert_eq!(n, "model.norm.weight"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("imported without model.norm.weight"),
    }
}

/// The llama fixture split into two shards with an index: same answers.
#[test]
fn sharded_checkpoint_matches_reference() {
    let src = fixture("llama");
    let w = checkpoint::safetensors::load_dir(&src).unwrap();
    let mut names: Vec<&String> = w.tensors.keys().collect();
    names.sort();
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), d.path().join("config.json")).unwrap();
    let mut map = serde_json::Map::new();
    let half = names.len() / 2;
    for (k, part) in [&names[..half], &names[half..]].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", k + 1);
        let tensors: Vec<_> = part
            .iter()
            .map(|n| {
                let e = &w.tensors[*n];
                assert_eq!(e.dtype, DType::BF16);
                map.insert((*n).clone(), serde_json::json!(file));
                (
                    (*n).clone(),
                    "BF16",
                    e.shape.clone(),
                    e.bytes.as_ref().to_vec(),
                )
            })
            .collect();
        write_safetensors(&d.path().join(&file), &tensors);
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(
        d.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();
    check_generate_dir(d.path(), &reference(&src));
}

/// Batch is symbolic: two copies of the prompt give the reference twice.
#[test]
fn batch_of_two_gives_the_reference_per_row() {
    let dir = fixture("llama");
    let r = reference(&dir);
    let c = checkpoint::import_dir(&dir).unwrap();
    let n = r.tokens.len();
    let ids = Tensor::from_i64(
        DType::I64,
        vec![2, n],
        [&r.tokens[..], &r.tokens[..]].concat(),
    );
    let outs = interp::run(&c.prefill, vec![ids]).expect("runs");
    assert_eq!(outs[0].shape, vec![2, n, r.shape[2]]);
    let Storage::F(v) = &outs[0].data else {
        panic!()
    };
    for row in v.chunks(r.values.len()) {
        for (g, w) in row.iter().zip(&r.values) {
            assert!((g - w).abs() <= r.atol + r.rtol * w.abs());
        }
    }
    // Present caches are [batch, kv_heads, seq, head_dim].
    assert_eq!(outs[1].shape, vec![2, 2, n, 8]);
}
