//! `smelt run`: execute a model on a target and write its outputs.

use anyhow::{Context, Result, bail};
use smelt_frontend::checkpoint::Arch;
use smelt_ir::interp::{Storage, Tensor};
use smelt_ir::{DType, Graph};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Run a model and write each output as output_<i>.pb (ONNX TensorProto).
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model, IR text file, checkpoint folder (config.json +
    /// *.safetensors), a compiled cpu artifact (.smc), or a compiled .smx
    /// program (runs on the Maia-style simulator).
    model: PathBuf,
    /// Where to run a model: interp (the reference interpreter), cpu
    /// (compile for this host, then run) or an accelerator such as maia100
    /// (compile to a command stream, then run it on the simulator; shapes
    /// that depend on small integer inputs are specialized on their
    /// values). A .smc always runs on cpu, a .smx on the simulator.
    #[arg(long, default_value = "interp")]
    target: String,
    /// An input tensor (.pb TensorProto or .npy). Either FILE, taken in
    /// graph-input order, or NAME=FILE for the input called NAME.
    #[arg(long = "input", short = 'i', value_name = "FILE|NAME=FILE")]
    inputs: Vec<String>,
    /// Folder for the outputs (created if needed).
    #[arg(long, default_value = "out")]
    output_dir: PathBuf,
    /// Token ids for a checkpoint folder's `input_ids` (batch 1), e.g. 1,5,9.
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    tokens: Vec<i64>,
    /// Generate N tokens greedily (prefill, then N-1 decode steps with the
    /// KV cache) and print their ids instead of writing outputs.
    #[arg(long, value_name = "N", requires = "tokens")]
    generate: Option<usize>,
}

/// Orders the given inputs as the graph expects them.
pub fn bind_inputs(g: &Graph, specs: &[String]) -> Result<Vec<Tensor>> {
    let names: Vec<String> = g.inputs.iter().map(|&i| g.value(i).name.clone()).collect();
    let types: Vec<String> = g
        .inputs
        .iter()
        .map(|&i| g.value(i).ty.to_string())
        .collect();
    bind_named(&names, &types, specs)
}

/// Orders the given inputs by input name (`types` only words errors).
pub fn bind_named(names: &[String], types: &[String], specs: &[String]) -> Result<Vec<Tensor>> {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
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
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        slots[slot] = Some(t);
    }
    let missing: Vec<String> = slots
        .iter()
        .zip(names.iter().zip(types))
        .filter(|(s, _)| s.is_none())
        .map(|(_, (n, t))| format!("{n}: {t}"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing inputs: {} (pass --input NAME=FILE)",
            missing.join(", ")
        );
    }
    Ok(slots.into_iter().map(|s| s.expect("checked")).collect())
}

/// `[1, n]` token ids.
fn ids_tensor(ids: &[i64]) -> Tensor {
    Tensor::from_i64(DType::I64, vec![1, ids.len()], ids.to_vec())
}

/// The id with the largest logit in the last position of `logits`
/// `[1, seq, vocab]`; ties go to the lowest id.
fn argmax_last(logits: &Tensor) -> Result<i64> {
    let (Some(&vocab), Storage::F(v)) = (logits.shape.last(), &logits.data) else {
        bail!("logits are not a float tensor");
    };
    if vocab == 0 || v.len() < vocab {
        bail!("logits {:?} are empty", logits.shape);
    }
    let last = &v[v.len() - vocab..];
    let mut best = 0;
    for (i, &x) in last.iter().enumerate() {
        if x > last[best] {
            best = i;
        }
    }
    Ok(best as i64)
}

fn run_named(g: &Graph, inputs: Vec<Tensor>, what: &str) -> Result<HashMap<String, Tensor>> {
    let outs = smelt_ir::interp::run(g, inputs).map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    Ok(g.outputs
        .iter()
        .map(|&id| g.value(id).name.clone())
        .zip(outs)
        .collect())
}

/// Greedy decoding: prefill on the prompt, then one decode step per further
/// token, each fed the caches the previous step returned.
fn generate(dir: &Path, tokens: &[i64], n: usize) -> Result<Vec<i64>> {
    let c = crate::model::load_checkpoint(dir)?;
    let Some(decode) = &c.decode else {
        bail!(
            "{}: {} is an encoder; --generate needs a decoder",
            dir.display(),
            if c.arch == Arch::Bert {
                "BERT"
            } else {
                "the model"
            }
        );
    };
    if n == 0 {
        return Ok(vec![]);
    }
    let what = format!("{} (prefill)", dir.display());
    let mut outs = run_named(&c.prefill, vec![ids_tensor(tokens)], &what)?;
    let mut generated = Vec::with_capacity(n);
    for step in 0..n {
        let logits = outs
            .get("logits")
            .context("the graph has no logits output")?;
        let next = argmax_last(logits)?;
        generated.push(next);
        if step + 1 == n {
            break;
        }
        let mut inputs = Vec::with_capacity(decode.inputs.len());
        for &id in &decode.inputs {
            let name = &decode.value(id).name;
            if name == "input_ids" {
                inputs.push(ids_tensor(&[next]));
            } else if let Some(rest) = name.strip_prefix("past.") {
                let key = format!("present.{rest}");
                inputs.push(
                    outs.remove(&key)
                        .with_context(|| format!("no {key} output"))?,
                );
            } else {
                bail!("decode graph input \"{name}\" is not one smelt knows how to feed");
            }
        }
        let what = format!("{} (decode step {})", dir.display(), step + 1);
        outs = run_named(decode, inputs, &what)?;
    }
    Ok(generated)
}

pub fn main(a: Args) -> Result<ExitCode> {
    if a.model.extension().is_some_and(|e| e == "smx") {
        return super::maia::run_main(&a.model, &a.inputs, &a.output_dir);
    }
    let accel = super::maia::is_accelerator(&a.target);
    if !accel {
        super::check_target(&a.target)?;
    }
    if !a.tokens.is_empty() && !a.model.is_dir() {
        bail!(
            "{}: --tokens needs a checkpoint folder (config.json + *.safetensors)",
            a.model.display()
        );
    }
    // Gather would wrap a negative id around the vocabulary; a tokenizer
    // never produces one.
    if let Some(t) = a.tokens.iter().find(|&&t| t < 0) {
        bail!("--tokens: token id {t} is negative");
    }
    if !a.tokens.is_empty() && !a.inputs.is_empty() {
        bail!("give either --tokens or --input, not both");
    }
    if let Some(n) = a.generate {
        let ids = generate(&a.model, &a.tokens, n)?;
        let line: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        println!("{}", line.join(" "));
        return Ok(ExitCode::SUCCESS);
    }
    if smelt_runtime::gpu::is_folder(&a.model) {
        let (names, types) = super::gpu::io_names(&a.model)?;
        let inputs = bind_named(&names, &types, &a.inputs)?;
        let (names, outputs) = super::gpu::run(&a.model, &inputs)?;
        return write_outputs(&names, &outputs, &a.output_dir);
    }
    if a.model.extension().is_some_and(|e| e == "smc") {
        let l = super::cpu::load(&a.model)?;
        let (names, types) = super::cpu::io_names(&l);
        let inputs = bind_named(&names, &types, &a.inputs)?;
        let outputs = super::cpu::run(&l, &inputs)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
        return write_outputs(&super::cpu::output_names(&l), &outputs, &a.output_dir);
    }
    let g = crate::model::load(&a.model)?;
    let inputs = if a.tokens.is_empty() {
        bind_inputs(&g, &a.inputs)?
    } else {
        vec![ids_tensor(&a.tokens)]
    };
    let outputs = if accel {
        let (name, text) = super::maia::target_text(&a.target, None)?;
        let hw = super::maia::accelerator(&text)?
            .ok_or_else(|| anyhow::anyhow!("target `{name}` is not an accelerator"))?;
        let opts = smelt_backends::maia::Options::default();
        let art = smelt_backends::maia::compile_for(&g, &inputs, &hw, &name, &opts)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
        super::maia::execute(&art, &inputs)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", a.model.display()))?
    } else if a.target == "cpu" {
        // Compiled for these inputs: shapes that depend on small integer
        // inputs' values are specialized on them.
        let (art, _) = smelt_backends::cpu::compile_for(&g, &inputs)
            .map_err(|e| anyhow::anyhow!("{}: cpu: {e}", a.model.display()))?;
        let l = smelt_backends::cpu::Loaded::new(art)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
        super::cpu::run(&l, &inputs).map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?
    } else {
        smelt_ir::interp::run(&g, inputs)
            .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?
    };
    let names: Vec<String> = g
        .outputs
        .iter()
        .map(|&id| g.value(id).name.clone())
        .collect();
    write_outputs(&names, &outputs, &a.output_dir)
}

/// Writes each output as `output_<i>.pb` and prints a line per output.
fn write_outputs(names: &[String], outputs: &[Tensor], dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    for (i, (t, name)) in outputs.iter().zip(names).enumerate() {
        let bytes = smelt_frontend::tensor_io::tensor_to_proto_bytes(name, t)
            .map_err(|e| anyhow::anyhow!("output \"{name}\": {e}"))?;
        let path = dir.join(format!("output_{i}.pb"));
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
