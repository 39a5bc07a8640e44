//! Loading MODEL arguments: ONNX files, IR text files (told apart by
//! content rather than by extension, so renamed files still work), or a
//! Hugging Face style checkpoint folder (config.json + *.safetensors).

use anyhow::{Context, Result, bail};
use smelt_frontend::checkpoint::{self, Checkpoint};
use smelt_ir::Graph;
use std::path::Path;

/// The first non-blank text of an IR file.
const TEXT_MAGIC: &str = "graph ";

/// A checkpoint folder: its graphs, or an error naming the folder.
pub fn load_checkpoint(dir: &Path) -> Result<Checkpoint> {
    checkpoint::import_dir(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// The model's graph; for a checkpoint folder, its prefill graph.
pub fn load(path: &Path) -> Result<Graph> {
    if path.is_dir() {
        return Ok(load_checkpoint(path)?.prefill);
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.is_empty() {
        bail!("{}: file is empty", path.display());
    }
    // IR text may open with `#` comment lines (filetest headers, notes).
    let looks_textual = std::str::from_utf8(&bytes).is_ok_and(|s| {
        s.lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .is_some_and(|l| l.starts_with(TEXT_MAGIC))
    });
    if looks_textual {
        let src = String::from_utf8(bytes).expect("checked above");
        let base = path.parent().unwrap_or(Path::new("."));
        return smelt_ir::text::parse_with(&src, Some(base))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    smelt_frontend::import_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The IR text of a model. A checkpoint prints its prefill graph, then
/// (decoders) its decode graph after a blank line and a comment; each graph
/// carries the bounds of its symbolic dims in its header.
pub fn text(path: &Path) -> Result<String> {
    if !path.is_dir() {
        return Ok(smelt_ir::text::print(&load(path)?));
    }
    let c = load_checkpoint(path)?;
    let mut s = format!("# {} ({})\n", c.arch_name, c.arch);
    s.push_str(&smelt_ir::text::print(&c.prefill));
    if let Some(d) = &c.decode {
        s.push_str("\n# decode: one new token per step, KV caches in and out\n");
        s.push_str(&smelt_ir::text::print(d));
    }
    Ok(s)
}
