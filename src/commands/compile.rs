//! `smelt compile`: optimize a model for a target and write the optimized
//! IR text (code generation comes later).

use anyhow::{Context, Result};
use smelt_ir::target::Target;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Optimize a model for a target and write the optimized IR text.
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model or IR text file.
    model: PathBuf,
    /// Target whose cost model guides the optimizer: cpu, sm_90a, gfx942, maia100.
    #[arg(long, default_value = "cpu")]
    target: String,
    /// Where to write the optimized IR text (standard output if absent).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Comma-separated passes: canon, fuse, default (= canon,fuse), none.
    #[arg(long, default_value = "default")]
    passes: String,
    /// Print the IR text after this pass to standard error.
    #[arg(long, value_name = "PASS")]
    print_after: Option<String>,
}

/// Like `model::load`, but also accepts IR text that starts with `#`
/// comment lines (the filetest header form).
pub fn load(path: &Path) -> Result<smelt_ir::Graph> {
    if let Ok(src) = std::fs::read_to_string(path) {
        let body = src
            .lines()
            .map(str::trim_start)
            .find(|l| !l.is_empty() && !l.starts_with('#'));
        if src.trim_start().starts_with('#') && body.is_some_and(|l| l.starts_with("graph ")) {
            let base = path.parent().unwrap_or(Path::new("."));
            return smelt_ir::text::parse_with(&src, Some(base))
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
    }
    crate::model::load(path)
}

pub fn main(a: Args) -> Result<ExitCode> {
    let g = load(&a.model)?;
    let target = Target::builtin(&a.target)?;
    let opts = smelt_passes::Options {
        passes: smelt_passes::parse_passes(&a.passes)?,
        print_after: a.print_after.clone(),
        ..Default::default()
    };
    let (out, report) = smelt_passes::optimize(&g, &target, &opts)?;
    if let Some(text) = &report.printed {
        eprint!("# after {}\n{text}", a.print_after.as_deref().unwrap_or(""));
    }
    let text = smelt_ir::text::print(&out);
    match a.output {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
