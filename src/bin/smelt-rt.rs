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
    /// Also time N runs of the program alone (inputs already on the
    /// device) and print the median.
    #[arg(long, default_value_t = 1)]
    iters: u32,
    /// Capture the launches once into a CUDA graph and replay it.
    #[arg(long)]
    cuda_graph: bool,
    /// ARTIFACT is a bundle from `smelt conformance --target T --bundle
    /// DIR`: run every case in it and compare with its expected outputs.
    #[arg(long)]
    check: bool,
    /// With --check: write per-case results here as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
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
    if a.check {
        return check(&a);
    }
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
    let outs = ex.run(&refs).map_err(|e| e.to_string())?;
    if a.iters > 1 {
        // Inputs stay on the device: only the program is timed, after
        // the warm-up run above.
        let mut times = Vec::with_capacity(a.iters as usize);
        for _ in 0..a.iters {
            let t0 = std::time::Instant::now();
            ex.launch().map_err(|e| e.to_string())?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "{median:.4} ms per run (median of {}; mean {mean:.4} ms; launches and sync, no copies)",
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

/// Case folders of a bundle: `<case>/<test_data_set_N>/manifest.json`.
fn bundle_cases(dir: &std::path::Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for case in rd.flatten() {
        for set in std::fs::read_dir(case.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if gpu::is_folder(&set.path()) {
                out.push(set.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// One bundled case: Ok(()) when every output matches.
fn check_case(
    ex: &mut gpu::Executor<Box<dyn gpu::Driver>>,
    dir: &std::path::Path,
) -> Result<(), String> {
    let m = ex.folder().manifest.clone();
    let read = |name: String| std::fs::read(dir.join(&name)).map_err(|e| format!("{name}: {e}"));
    let inputs: Vec<Vec<u8>> = (0..m.inputs.len())
        .map(|i| read(format!("input_{i}.bin")))
        .collect::<Result<_, _>>()?;
    let tol: serde_json::Value = serde_json::from_slice(&read("check.json".into())?)
        .map_err(|e| format!("check.json: {e}"))?;
    let rtol = tol["rtol"].as_f64().unwrap_or(1e-3);
    let atol = tol["atol"].as_f64().unwrap_or(1e-7);
    let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
    let outs = ex.run(&refs).map_err(|e| e.to_string())?;
    for (i, (io, got)) in m.outputs.iter().zip(outs).enumerate() {
        let want = read(format!("expected_{i}.bin"))?;
        let dtype = &m.buffers[io.buffer].dtype;
        smelt_runtime::compare::compare(dtype, &want, &got, rtol, atol)
            .map_err(|e| format!("output {i} \"{}\": {e}", io.name))?;
    }
    Ok(())
}

fn check(a: &Args) -> Result<(), String> {
    let cases = bundle_cases(&a.artifact)?;
    if cases.is_empty() {
        return Err(format!(
            "{}: no bundled cases (make them with `smelt conformance DIR --target T --bundle {}`)",
            a.artifact.display(),
            a.artifact.display()
        ));
    }
    let mut results = Vec::new();
    let mut device = String::new();
    for dir in &cases {
        let name = dir
            .strip_prefix(&a.artifact)
            .unwrap_or(dir)
            .display()
            .to_string();
        let r = (|| -> Result<(), String> {
            let folder = gpu::read(dir).map_err(|e| e.to_string())?;
            let d = gpu::driver_for(&folder.manifest.target).map_err(|e| e.to_string())?;
            let mut ex = gpu::Executor::new(d, folder).map_err(|e| e.to_string())?;
            if device.is_empty() {
                device = ex.device();
            }
            check_case(&mut ex, dir)
        })();
        if let Err(e) = &r {
            if e.contains("no NVIDIA driver")
                || e.contains("no AMD GPU")
                || e.contains("no NVIDIA GPU")
            {
                return Err(e.clone());
            }
            println!("fail  {name}: {}", e.chars().take(300).collect::<String>());
        }
        results.push(serde_json::json!({"case": name, "pass": r.is_ok(), "message": r.err().unwrap_or_default()}));
    }
    // A case passes when all of its test data sets pass.
    let mut by_case: std::collections::BTreeMap<String, bool> = Default::default();
    for r in &results {
        let case = r["case"]
            .as_str()
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let ok = r["pass"].as_bool().unwrap_or(false);
        *by_case.entry(case).or_insert(true) &= ok;
    }
    let passed = by_case.values().filter(|&&ok| ok).count();
    println!("device: {device}");
    println!("gpu conformance: {passed}/{} cases pass", by_case.len());
    if let Some(p) = &a.json {
        let j = serde_json::json!({"device": device, "passed": passed, "total": by_case.len(), "sets": results});
        std::fs::write(p, j.to_string()).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}
