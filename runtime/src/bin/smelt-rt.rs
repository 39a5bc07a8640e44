//! `smelt-rt`: runs a compiled GPU artifact folder. It links no compiler
//! (no LLVM, no IR), so it is what travels to a GPU machine and what a
//! deployment ships.

use clap::Parser;
use smelt_runtime::gpu;
use smelt_runtime::npy;
use std::path::PathBuf;
use std::process::ExitCode;

/// Run a smelt GPU artifact (a folder written by `smelt compile --target
/// sm_90a|sm_80|gfx942|gfx90a -o DIR`) on this machine's GPU.
#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  smelt-rt model.gpu --input x.npy --output-dir out/\n  smelt-rt model.gpu --input input_ids=ids.npy --iters 100 --cuda-graph"
)]
struct Args {
    /// The artifact folder (manifest.json, modules, weights.bin).
    artifact: PathBuf,
    /// An input as .npy: FILE in graph-input order, or NAME=FILE.
    #[arg(long = "input", short = 'i', value_name = "FILE|NAME=FILE")]
    inputs: Vec<String>,
    /// Folder for the outputs (output_<i>.npy; .bin for dtypes NumPy lacks).
    #[arg(long, default_value = "out")]
    output_dir: PathBuf,
    /// Run N times and print the mean time per run.
    #[arg(long, default_value_t = 1)]
    iters: u32,
    /// Capture the launches once into a CUDA graph and replay it.
    #[arg(long)]
    cuda_graph: bool,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(a: Args) -> Result<(), String> {
    let folder = gpu::read(&a.artifact).map_err(|e| e.to_string())?;
    let m = folder.manifest.clone();
    // Inputs are bound and checked before any device is touched, so a
    // wrong input is reported the same with or without a GPU.
    let mut slots: Vec<Option<Vec<u8>>> = vec![None; m.inputs.len()];
    let mut next = 0;
    for spec in &a.inputs {
        let (i, file) = match spec.split_once('=') {
            Some((name, file)) => match m.inputs.iter().position(|x| x.name == name) {
                Some(i) => (i, file),
                None => return Err(format!("the model has no input named {name:?}")),
            },
            None => {
                while next < slots.len() && slots[next].is_some() {
                    next += 1;
                }
                (next, spec.as_str())
            }
        };
        let io = m
            .inputs
            .get(i)
            .ok_or_else(|| format!("{file}: the model takes only {} inputs", m.inputs.len()))?;
        let bytes = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let t = npy::read(&bytes).map_err(|e| format!("{file}: {e}"))?;
        let b = &m.buffers[io.buffer];
        if t.dtype != b.dtype || t.shape != b.shape {
            return Err(format!(
                "{file}: input \"{}\" is {}{:?}, the file holds {}{:?}",
                io.name, b.dtype, b.shape, t.dtype, t.shape
            ));
        }
        slots[i] = Some(t.data);
    }
    let inputs: Vec<Vec<u8>> = slots
        .into_iter()
        .zip(&m.inputs)
        .map(|(s, io)| s.ok_or_else(|| format!("input \"{}\" was not given (--input)", io.name)))
        .collect::<Result<_, _>>()?;
    let d = gpu::driver_for(&m.target).map_err(|e| e.to_string())?;
    let mut ex = gpu::Executor::new(d, folder).map_err(|e| e.to_string())?;
    eprintln!("  device      {}", ex.device());
    if a.cuda_graph && !ex.capture().map_err(|e| e.to_string())? {
        eprintln!("  note        this driver has no graphs; launching step by step");
    }
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let mut outs = ex.run(&refs).map_err(|e| e.to_string())?;
    if a.iters > 1 {
        let t0 = std::time::Instant::now();
        for _ in 0..a.iters {
            outs = ex.run(&refs).map_err(|e| e.to_string())?;
        }
        let ms = t0.elapsed().as_secs_f64() * 1e3 / a.iters as f64;
        println!(
            "{ms:.3} ms per run (mean of {}, inputs and outputs copied)",
            a.iters
        );
    }
    std::fs::create_dir_all(&a.output_dir)
        .map_err(|e| format!("{}: {e}", a.output_dir.display()))?;
    for (i, (io, bytes)) in m.outputs.iter().zip(outs).enumerate() {
        let b = &m.buffers[io.buffer];
        let (name, data) = match npy::write(&b.dtype, &b.shape, &bytes) {
            Some(f) => (format!("output_{i}.npy"), f),
            None => (format!("output_{i}.bin"), bytes),
        };
        let p = a.output_dir.join(name);
        std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
        eprintln!("  wrote       {} ({})", p.display(), io.name);
    }
    Ok(())
}
