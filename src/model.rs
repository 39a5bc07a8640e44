//! Loading MODEL arguments: ONNX files or IR text files, told apart by
//! content rather than by extension, so renamed files still work.

use anyhow::{Context, Result, bail};
use smelt_ir::Graph;
use std::path::Path;

/// The first non-blank text of an IR file.
const TEXT_MAGIC: &str = "graph ";

pub fn load(path: &Path) -> Result<Graph> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if bytes.is_empty() {
        bail!("{}: file is empty", path.display());
    }
    let looks_textual = std::str::from_utf8(&bytes)
        .map(|s| s.trim_start().starts_with(TEXT_MAGIC))
        .unwrap_or(false);
    if looks_textual {
        let src = String::from_utf8(bytes).expect("checked above");
        let base = path.parent().unwrap_or(Path::new("."));
        return smelt_ir::text::parse_with(&src, Some(base))
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    smelt_frontend::import_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}
