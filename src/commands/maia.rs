//! The Maia-style target from the command line: which targets are
//! accelerators (their file has an `[accelerator]` table), compiling a graph
//! to a `.smx`, and running a `.smx` on the simulator with the same
//! input/output conventions as `smelt run`.

use anyhow::{Context, Result, anyhow, bail};
use smelt_backends::maia::{self as backend, Precision};
use smelt_ir::interp::Tensor;
use smelt_ir::{Bytes, DType, Graph, Payload, TensorData};
use smelt_runtime::maia::sim::{Options, Sim};
use smelt_runtime::maia::{Artifact, HwConfig};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A target's description: its name and TOML text, from `--target-file` or
/// a built-in name.
pub fn target_text(target: &str, file: Option<&Path>) -> Result<(String, String)> {
    if let Some(p) = file {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| target.to_string());
        return Ok((name, text));
    }
    let key = if target == "interp" { "cpu" } else { target };
    match smelt_ir::target::BUILTIN.iter().find(|(n, _)| *n == key) {
        Some((n, t)) => Ok((n.to_string(), t.to_string())),
        None => {
            // Let the target module produce its usual "unknown target" message.
            smelt_ir::target::Target::builtin(target)?;
            bail!("unknown target `{target}`")
        }
    }
}

/// The chip described by a target file, or None if it has no
/// `[accelerator]` table (a cpu or gpu target).
pub fn accelerator(text: &str) -> Result<Option<HwConfig>> {
    match smelt_ir::accel::Accelerator::from_toml(text) {
        Ok(acc) => Ok(Some(serde_json::from_value(serde_json::to_value(&acc)?)?)),
        Err(smelt_ir::accel::AccelError::Missing) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a built-in target name is an accelerator (for `run`/`conformance`).
pub fn is_accelerator(target: &str) -> bool {
    target_text(target, None)
        .ok()
        .and_then(|(_, t)| accelerator(&t).ok().flatten())
        .is_some()
}

/// Compiles an (optimized) graph for the chip.
pub fn compile(
    g: &Graph,
    hw: &HwConfig,
    name: &str,
    precision: Precision,
) -> Result<Artifact, backend::Error> {
    backend::compile(g, hw, name, &backend::Options { precision })
}

/// `smelt compile ... --target <accelerator>`: writes the `.smx`.
pub fn compile_main(
    g: &Graph,
    hw: &HwConfig,
    name: &str,
    precision: Precision,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let Some(out) = output else {
        bail!("target `{name}` produces a binary .smx program: give -o FILE");
    };
    let art = compile(g, hw, name, precision).map_err(|e| {
        let why = e.to_string();
        if why.contains("not known at compile time") || why.contains("dynamic shape") {
            anyhow!(
                "{why}\n  (shapes here depend on input values: `smelt run MODEL --target {name} -i ...` compiles for the values given)"
            )
        } else {
            anyhow!(why)
        }
    })?;
    std::fs::write(out, art.to_bytes())
        .with_context(|| format!("{}: cannot write", out.display()))?;
    println!(
        "{}: {} commands, {} bytes of HBM, {} regions",
        out.display(),
        art.commands.len(),
        art.hbm_used(),
        art.regions.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn tensor_bytes(t: &Tensor) -> Result<Vec<u8>> {
    let d = t.to_data().map_err(|e| anyhow!("{e}"))?;
    Ok(d.raw()
        .ok_or_else(|| anyhow!("{} tensors cannot be fed to the chip", t.dtype))?
        .to_vec())
}

/// Runs a compiled program on the simulator: inputs in the program's input
/// order, outputs in its output order.
pub fn execute(art: &Artifact, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    if inputs.len() != art.io.inputs.len() {
        bail!(
            "the program takes {} inputs, got {}",
            art.io.inputs.len(),
            inputs.len()
        );
    }
    let bytes = inputs
        .iter()
        .map(tensor_bytes)
        .collect::<Result<Vec<_>>>()?;
    art.io.check_guards(&bytes).map_err(|e| anyhow!(e))?;
    let mut sim = Sim::new(art, Options::default());
    for ((b, t), bytes) in art.io.inputs.iter().zip(inputs).zip(bytes) {
        let want: Vec<usize> = b.shape.iter().map(|&d| d as usize).collect();
        if t.shape != want || t.dtype.name() != b.dtype {
            bail!(
                "input \"{}\": expected {}{:?}, got {}{:?}",
                b.name,
                b.dtype,
                want,
                t.dtype,
                t.shape
            );
        }
        sim.write_region_bytes(0, &b.region, &bytes)?;
    }
    sim.run()?;
    let mut outs = Vec::new();
    for b in &art.io.outputs {
        let bytes = sim.read_region_bytes(0, &b.region)?;
        let dtype: DType = b.dtype.parse().map_err(|e| anyhow!("{e}"))?;
        let shape: Vec<usize> = b.shape.iter().map(|&d| d as usize).collect();
        let data = TensorData::new(dtype, shape, Payload::Raw(Bytes::from_vec(bytes)))
            .map_err(|e| anyhow!("output \"{}\": {e}", b.name))?;
        outs.push(Tensor::from_data(&data).map_err(|e| anyhow!("output \"{}\": {e}", b.name))?);
    }
    Ok(outs)
}

/// `smelt run model.smx`: feeds the inputs (FILE or NAME=FILE, as for
/// models) and writes output_<i>.pb.
pub fn run_main(path: &Path, specs: &[String], output_dir: &PathBuf) -> Result<ExitCode> {
    let art = super::disasm::load(path)?;
    let names: Vec<&str> = art.io.inputs.iter().map(|b| b.name.as_str()).collect();
    let mut slots: Vec<Option<Tensor>> = vec![None; names.len()];
    let mut next = 0;
    for spec in specs {
        let (slot, file) = match spec.split_once('=') {
            Some((n, f)) if names.contains(&n) => {
                (names.iter().position(|x| *x == n).unwrap_or(0), f)
            }
            _ => {
                while next < slots.len() && slots[next].is_some() {
                    next += 1;
                }
                if next >= slots.len() {
                    bail!(
                        "too many inputs: the program takes {} ({})",
                        names.len(),
                        names.join(", ")
                    );
                }
                (next, spec.as_str())
            }
        };
        let (_, t) =
            smelt_frontend::tensor_io::read_tensor(Path::new(file)).map_err(|e| anyhow!("{e}"))?;
        slots[slot] = Some(t);
    }
    let missing: Vec<&str> = names
        .iter()
        .zip(&slots)
        .filter(|(_, s)| s.is_none())
        .map(|(n, _)| *n)
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing inputs: {} (pass --input NAME=FILE)",
            missing.join(", ")
        );
    }
    let inputs: Vec<Tensor> = slots.into_iter().flatten().collect();
    let outs = execute(&art, &inputs).with_context(|| format!("running {}", path.display()))?;
    std::fs::create_dir_all(output_dir)
        .with_context(|| format!("{}: cannot create folder", output_dir.display()))?;
    for (i, (t, b)) in outs.iter().zip(&art.io.outputs).enumerate() {
        let bytes = smelt_frontend::tensor_io::tensor_to_proto_bytes(&b.name, t)
            .map_err(|e| anyhow!("output \"{}\": {e}", b.name))?;
        let p = output_dir.join(format!("output_{i}.pb"));
        std::fs::write(&p, bytes).with_context(|| format!("{}: cannot write", p.display()))?;
        let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
        println!(
            "{}: {}[{}] -> {}",
            b.name,
            t.dtype,
            dims.join(","),
            p.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
