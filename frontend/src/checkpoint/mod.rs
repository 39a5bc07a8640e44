//! Hugging Face style checkpoints: a folder with `config.json` and
//! `*.safetensors` weights (one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`), imported as IR graphs.
//!
//! Decoder families (Llama, Mistral, Qwen2, GPT-2) give two graphs:
//! - `prefill`: `input_ids: i64[batch, seq]` -> `logits: f32[batch, seq, vocab]`
//!   and `present.{i}.key` / `present.{i}.value: f32[batch, kv_heads, seq, head_dim]`;
//! - `decode`: `input_ids: i64[batch, 1]` plus `past.{i}.key` / `past.{i}.value:
//!   f32[batch, kv_heads, past, head_dim]` -> `logits: f32[batch, 1, vocab]` and the
//!   grown caches. The new token's position is the past length.
//!
//! BERT (an encoder) gives only `prefill`: `last_hidden_state` and, when the
//! checkpoint has the masked-LM head, `logits`.
//!
//! Weights keep their stored dtype and stay memory-mapped (each constant is
//! a window into the map, printed as `file(...)` by the text form); f16 and
//! bf16 weights are followed by a Cast to f32, so the graphs compute in f32.
//! The symbolic dims' bounds (`batch`, `seq`, `past`) live in
//! `Checkpoint::dim_bounds`; the KV caches enforce the sequence bound at run
//! time through `KvCacheAppend {max_len}`.

mod bert;
mod builder;
mod common;
mod config;
mod decoder;
mod gpt2;
pub mod safetensors;

use smelt_ir::Graph;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

pub use config::Config;

/// The largest batch the graphs are declared for. Nothing in a checkpoint
/// bounds the batch; this is a serving default a compiler can size buffers by.
pub const MAX_BATCH: u64 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("{file}: {msg}")]
    Io { file: String, msg: String },
    #[error("{file}: {msg}")]
    Safetensors { file: String, msg: String },
    #[error("config.json: {0}")]
    Config(String),
    #[error(
        "config.json: unsupported architecture \"{0}\"; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel, BertModel, BertForMaskedLM"
    )]
    UnknownArch(String),
    #[error("tensor \"{0}\" is missing from the checkpoint")]
    MissingTensor(String),
    #[error("tensor \"{name}\" has shape {actual:?} but the config implies {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("tensor \"{name}\": {msg}")]
    Tensor { name: String, msg: String },
    #[error("building the graph: {0}")]
    Graph(String),
    #[error("the built graph does not verify: {0}")]
    Verify(#[from] smelt_ir::VerifyError),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Mistral,
    Qwen2,
    Gpt2,
    Bert,
}

impl Arch {
    pub fn is_decoder(self) -> bool {
        self != Arch::Bert
    }

    /// From `architectures[0]`, else `model_type`.
    fn detect(cfg: &serde_json::Value) -> Result<(Arch, String), CheckpointError> {
        let by_arch = |s: &str| match s {
            "LlamaForCausalLM" => Some(Arch::Llama),
            "MistralForCausalLM" => Some(Arch::Mistral),
            "Qwen2ForCausalLM" => Some(Arch::Qwen2),
            "GPT2LMHeadModel" => Some(Arch::Gpt2),
            "BertModel" | "BertForMaskedLM" => Some(Arch::Bert),
            _ => None,
        };
        if let Some(a) = cfg["architectures"].get(0).and_then(|a| a.as_str()) {
            return by_arch(a)
                .map(|x| (x, a.to_string()))
                .ok_or_else(|| CheckpointError::UnknownArch(a.into()));
        }
        let Some(mt) = cfg["model_type"].as_str() else {
            return Err(CheckpointError::Config(
                "missing field \"architectures\" (or \"model_type\")".into(),
            ));
        };
        let (a, name) = match mt {
            "llama" => (Arch::Llama, "LlamaForCausalLM"),
            "mistral" => (Arch::Mistral, "MistralForCausalLM"),
            "qwen2" => (Arch::Qwen2, "Qwen2ForCausalLM"),
            "gpt2" => (Arch::Gpt2, "GPT2LMHeadModel"),
            "bert" => (Arch::Bert, "BertModel"),
            other => return Err(CheckpointError::UnknownArch(format!("model_type {other}"))),
        };
        Ok((a, name.into()))
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arch::Llama => "llama",
            Arch::Mistral => "mistral",
            Arch::Qwen2 => "qwen2",
            Arch::Gpt2 => "gpt2",
            Arch::Bert => "bert",
        })
    }
}

/// An imported checkpoint.
pub struct Checkpoint {
    pub arch: Arch,
    /// `architectures[0]` as written (or implied by `model_type`).
    pub arch_name: String,
    pub config: serde_json::Value,
    pub prefill: Graph,
    /// `None` for encoders.
    pub decode: Option<Graph>,
    /// Upper bounds of the symbolic dims used by the graphs.
    pub dim_bounds: BTreeMap<String, u64>,
}

/// Imports the checkpoint in folder `dir`.
pub fn import_dir(dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| CheckpointError::Io {
        file: cfg_path.display().to_string(),
        msg: e.to_string(),
    })?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CheckpointError::Config(format!("not valid JSON ({e})")))?;
    if !config.is_object() {
        return Err(CheckpointError::Config("not a JSON object".into()));
    }
    let (arch, arch_name) = Arch::detect(&config)?;
    let weights = safetensors::load_dir(dir)?;
    let cfg = Config::new(&config, &arch_name);
    let mut built = match arch {
        Arch::Llama | Arch::Mistral | Arch::Qwen2 => decoder::build(arch, &cfg, &weights)?,
        Arch::Gpt2 => gpt2::build(&cfg, &weights)?,
        Arch::Bert => bert::build(&cfg, &weights)?,
    };
    smelt_ir::verify(&built.prefill)?;
    if let Some(d) = &built.decode {
        smelt_ir::verify(d)?;
    }
    let mut dim_bounds = BTreeMap::new();
    dim_bounds.insert("batch".to_string(), MAX_BATCH);
    dim_bounds.insert("seq".to_string(), built.max_len);
    if built.decode.is_some() {
        dim_bounds.insert("past".to_string(), built.max_len.saturating_sub(1));
    }
    // Each graph carries the bounds of the symbols it uses.
    for g in std::iter::once(&mut built.prefill).chain(built.decode.as_mut()) {
        let used: std::collections::BTreeSet<String> = g
            .values
            .iter()
            .filter_map(|v| v.ty.shape.dims())
            .flatten()
            .filter_map(|d| match d {
                smelt_ir::Dim::Sym(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        g.dim_bounds = dim_bounds
            .iter()
            .filter(|(k, _)| used.contains(*k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
    }
    Ok(Checkpoint {
        arch,
        arch_name,
        config,
        prefill: built.prefill,
        decode: built.decode,
        dim_bounds,
    })
}

/// What a family builder returns.
pub(crate) struct Built {
    pub prefill: Graph,
    pub decode: Option<Graph>,
    /// The longest sequence (prompt plus generated tokens) the model takes.
    pub max_len: u64,
}
