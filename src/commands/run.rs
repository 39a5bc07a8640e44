//! `smelt run`: execute a model on a target and write its outputs.

use anyhow::{Context, Result, bail};
use smelt_ir::Graph;
use smelt_ir::interp::Tensor;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run a model and write each output as output_<i>.pb (ONNX TensorProto).
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model or IR text file.
    model: PathBuf,
    /// Where to run it.
    #[arg(long, default_value = "interp")]
    target: String,
    /// An input tensor (.pb TensorProto or .npy). Either FILE, taken in
    /// graph-input order, or NAME=FILE for the input called NAME.
    #[arg(long = "input", short = 'i', value_name = "FILE|NAME=FILE")]
    inputs: Vec<String>,
    /// Folder for the outputs (created if needed).
    #[arg(long, default_value = "out")]
    output_dir: PathBuf,
}

/// Orders the given inputs as the graph expects them.
pub fn bind_inputs(g: &Graph, specs: &[String]) -> Result<Vec<Tensor>> {
    let names: Vec<&str> = g.inputs.iter().map(|&i| g.value(i).name.as_str()).collect();
    let mut slots: Vec<Option<Tensor>> = vec![None; names.len()];
    let mut next_positional = 0;
    for spec in specs {
        let (slot, file) = match spec.split_once('=') {
            Some((name, file)) if names.contains(&name) => (
                names.iter().position(|n| *n == name).expect("checked"),
                file,
            ),
            _ => {
                while next_positional < slots.len() && slots[next_positional].is_some() {
                    next_positional += 1;
                }
                if next_positional >= slots.len() {
                    bail!(
                        "too many inputs: the model takes {} ({})",
                        names.len(),
                        names.join(", ")
                    );
                }
                (next_positional, spec.as_str())
            }
        };
        if slots[slot].is_some() {
            bail!("input \"{}\" is given twice", names[slot]);
        }
        let (_, t) = smelt_frontend::tensor_io::read_tensor(Path::new(file))
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        slots[slot] = Some(t);
    }
    let missing: Vec<String> = slots
        .iter()
        .zip(&g.inputs)
        .filter(|(s, _)| s.is_none())
        .map(|(_, &id)| format!("{}: {}", g.value(id).name, g.value(id).ty))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing inputs: {} (pass --input NAME=FILE)",
            missing.join(", ")
        );
    }
    Ok(slots.into_iter().map(|s| s.expect("checked")).collect())
}

pub fn main(a: Args) -> Result<ExitCode> {
    super::check_target(&a.target)?;
    let g = crate::model::load(&a.model)?;
    let inputs = bind_inputs(&g, &a.inputs)?;
    let outputs = smelt_ir::interp::run(&g, inputs)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
    std::fs::create_dir_all(&a.output_dir)
        .with_context(|| format!("{}: cannot create folder", a.output_dir.display()))?;
    for (i, (t, &id)) in outputs.iter().zip(&g.outputs).enumerate() {
        let name = &g.value(id).name;
        let bytes = smelt_frontend::tensor_io::tensor_to_proto_bytes(name, t)
            .map_err(|e| anyhow::anyhow!("output \"{name}\": {e}"))?;
        let path = a.output_dir.join(format!("output_{i}.pb"));
        std::fs::write(&path, bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        println!(
            "{name}: {}[{}] -> {}",
            t.dtype,
            dims.join(","),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
