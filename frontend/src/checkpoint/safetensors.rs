//! Reading `*.safetensors` files without copying their tensors: the file is
//! memory-mapped and every tensor becomes a `Bytes` window into the map.
//!
//! Layout: an 8-byte little-endian header length N, N bytes of JSON mapping
//! each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets
//! relative to the end of the header), then the data. Everything the header
//! claims is checked against the file before any tensor is handed out.

use super::CheckpointError;
use smelt_ir::data::{FileOrigin, map_file};
use smelt_ir::{Bytes, DType};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// A header larger than this is refused: real headers are a few hundred KB
/// even for 100B-parameter shards, and parsing an attacker-sized JSON blob
/// is how a loader runs out of memory.
pub const MAX_HEADER_BYTES: u64 = 100 * 1024 * 1024;

/// One tensor of a checkpoint.
#[derive(Clone, Debug)]
pub struct Entry {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub bytes: Bytes,
}

/// Every tensor of a checkpoint (all shards), by name.
#[derive(Default)]
pub struct Weights {
    pub tensors: HashMap<String, Entry>,
}

impl Weights {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.tensors.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

fn dtype_of(s: &str) -> Option<DType> {
    Some(match s {
        "F64" => DType::F64,
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "I64" => DType::I64,
        "I32" => DType::I32,
        "I16" => DType::I16,
        "I8" => DType::I8,
        "U64" => DType::U64,
        "U32" => DType::U32,
        "U16" => DType::U16,
        "U8" => DType::U8,
        "BOOL" => DType::Bool,
        "F8_E4M3" => DType::F8E4M3FN,
        "F8_E5M2" => DType::F8E5M2,
        _ => return None,
    })
}

/// Loads the tensors of one safetensors file into `out`. `file_name` is the
/// name recorded as the weights' origin (relative to the checkpoint folder).
pub fn load_file(path: &Path, file_name: &str, out: &mut Weights) -> Result<(), CheckpointError> {
    let bad = |msg: String| CheckpointError::Safetensors {
        file: path.display().to_string(),
        msg,
    };
    let map = map_file(path).map_err(|e| CheckpointError::Io {
        file: path.display().to_string(),
        msg: e.to_string(),
    })?;
    let all: &[u8] = (*map).as_ref();
    let Some(len_bytes) = all.get(..8) else {
        return Err(bad(format!(
            "truncated: {} bytes, too short for the 8-byte header length",
            all.len()
        )));
    };
    let n = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "header of {n} bytes is over the {} MB limit",
            MAX_HEADER_BYTES / (1024 * 1024)
        )));
    }
    let data_start = 8 + n as usize;
    let Some(header) = all.get(8..data_start) else {
        return Err(bad(format!(
            "truncated: the header needs {n} bytes but the file has {} after the length",
            all.len() - 8
        )));
    };
    let json: serde_json::Value = serde_json::from_slice(header)
        .map_err(|e| bad(format!("header is not valid JSON ({e})")))?;
    let Some(obj) = json.as_object() else {
        return Err(bad("header is not a JSON object".into()));
    };
    let data_len = all.len() - data_start;
    let owner: Arc<dyn AsRef<[u8]> + Send + Sync> = map.clone();
    // Sorted by start offset for the overlap check.
    let mut spans: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let t = |msg: String| bad(format!("tensor \"{name}\": {msg}"));
        let dtype_s = info["dtype"]
            .as_str()
            .ok_or_else(|| t("no \"dtype\" string".into()))?;
        let dtype = dtype_of(dtype_s).ok_or_else(|| t(format!("unsupported dtype {dtype_s}")))?;
        let shape: Vec<usize> = info["shape"]
            .as_array()
            .ok_or_else(|| t("no \"shape\" list".into()))?
            .iter()
            .map(|d| d.as_u64().map(|d| d as usize))
            .collect::<Option<_>>()
            .ok_or_else(|| t("shape must list non-negative integers".into()))?;
        let offs: Vec<u64> = info["data_offsets"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_u64()).collect::<Option<Vec<_>>>())
            .filter(|a| a.len() == 2)
            .ok_or_else(|| t("\"data_offsets\" must be [begin, end]".into()))?;
        let (b, e) = (offs[0] as usize, offs[1] as usize);
        if b > e {
            return Err(t(format!("data_offsets [{b}, {e}] run backwards")));
        }
        if e > data_len {
            return Err(bad(format!(
                "truncated: tensor \"{name}\" ends at byte {e} of the data but the file holds {data_len}"
            )));
        }
        let numel = smelt_ir::shape::checked_numel(&shape)
            .ok_or_else(|| t(format!("shape {shape:?} is too large")))?;
        let need = dtype
            .storage_bytes(numel)
            .ok_or_else(|| t(format!("shape {shape:?} is too large")))?;
        if need != e - b {
            return Err(t(format!(
                "{dtype_s}{shape:?} needs {need} bytes but data_offsets span {}",
                e - b
            )));
        }
        spans.insert((b, e), name.clone());
        let origin = FileOrigin {
            path: file_name.into(),
            offset: (data_start + b) as u64,
        };
        let bytes = Bytes::slice_of(owner.clone(), data_start + b..data_start + e, Some(origin))
            .ok_or_else(|| t("data lies outside the file".into()))?;
        if out.tensors.contains_key(name) {
            return Err(t("appears in more than one file".into()));
        }
        out.tensors.insert(
            name.clone(),
            Entry {
                dtype,
                shape,
                bytes,
            },
        );
    }
    let mut prev: Option<(usize, &String)> = None;
    for ((b, e), name) in &spans {
        if b == e {
            continue;
        }
        if let Some((pe, pn)) = prev
            && *b < pe
        {
            return Err(bad(format!(
                "tensors \"{pn}\" and \"{name}\" have overlapping data offsets"
            )));
        }
        prev = Some((*e, name));
    }
    Ok(())
}

/// Loads `model.safetensors`, or every shard named by
/// `model.safetensors.index.json`.
pub fn load_dir(dir: &Path) -> Result<Weights, CheckpointError> {
    let mut w = Weights::default();
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| CheckpointError::Io {
            file: index.display().to_string(),
            msg: e.to_string(),
        })?;
        let bad = |msg: String| CheckpointError::Safetensors {
            file: index.display().to_string(),
            msg,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
        let Some(map) = json["weight_map"].as_object() else {
            return Err(bad("no \"weight_map\" object".into()));
        };
        let mut files: Vec<&str> = Vec::new();
        for (name, f) in map {
            let Some(f) = f.as_str() else {
                return Err(bad(format!("weight_map[\"{name}\"] is not a file name")));
            };
            // Shards must sit next to the index: no paths out of the folder.
            if f.contains('/') || f.contains('\\') || f == ".." || f.is_empty() {
                return Err(bad(format!("shard name \"{f}\" is not a plain file name")));
            }
            if !files.contains(&f) {
                files.push(f);
            }
        }
        files.sort();
        for f in files {
            load_file(&dir.join(f), f, &mut w)?;
        }
        for (name, f) in map {
            if !w.contains(name) {
                return Err(bad(format!(
                    "tensor \"{name}\" is listed in {} but missing from it",
                    f.as_str().unwrap_or("?")
                )));
            }
        }
        return Ok(w);
    }
    let single = dir.join("model.safetensors");
    if single.is_file() {
        load_file(&single, "model.safetensors", &mut w)?;
        return Ok(w);
    }
    // Any single *.safetensors file (some exporters name it differently).
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| CheckpointError::Io {
            file: dir.display().to_string(),
            msg: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(CheckpointError::Io {
            file: dir.display().to_string(),
            msg: "no model.safetensors, model.safetensors.index.json or *.safetensors file".into(),
        });
    }
    for p in found {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        load_file(&p, &name, &mut w)?;
    }
    Ok(w)
}
