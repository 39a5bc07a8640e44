//! `smelt import`: the IR text form of a model.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;

/// Import a model and print (or write) its IR text form.
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model, IR text file, or checkpoint folder (config.json + *.safetensors).
    model: PathBuf,
    /// Write the text form here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let text = crate::model::text(&a.model)?;
    match a.output {
        Some(p) => {
            std::fs::write(&p, text).with_context(|| format!("{}: cannot write", p.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
