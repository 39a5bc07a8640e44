//! `smelt disasm`: print a `.smx` artifact as text (the form `smelt_runtime::maia::asm` reads back).

use anyhow::{Context, Result};
use smelt_runtime::maia::{Artifact, asm};
use std::path::PathBuf;
use std::process::ExitCode;

/// Print a compiled Maia-style program (.smx) as text.
#[derive(clap::Args)]
pub struct Args {
    /// The artifact (.smx), or its text form (.s) to check and reprint.
    program: PathBuf,
}

/// Loads a .smx (binary) or its text form, by content.
pub fn load(path: &std::path::Path) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let a = if bytes.starts_with(smelt_runtime::maia::artifact::MAGIC) {
        Artifact::from_bytes(&bytes)
    } else {
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{}: neither .smx nor text", path.display()))?;
        asm::assemble(&text)
    };
    a.with_context(|| format!("loading {}", path.display()))
}

pub fn main(a: Args) -> Result<ExitCode> {
    let art = load(&a.program)?;
    print!("{}", asm::disasm(&art));
    Ok(ExitCode::SUCCESS)
}
