//! `smelt conformance`: runs ONNX backend-test style cases and classifies
//! every failure.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use smelt_ir::interp::{Storage, Tensor};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// Run ONNX backend-test cases (<case>/model.onnx, <case>/test_data_set_N/
/// {input,output}_i.pb) and report which pass.
#[derive(clap::Args)]
pub struct Args {
    /// Folder of case folders, e.g. .cache/onnx-node (see scripts/gen_conformance.py).
    dir: PathBuf,
    /// Where to run the cases.
    #[arg(long, default_value = "interp")]
    target: String,
    /// Write per-case results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Only cases whose name contains this text.
    #[arg(long, value_name = "SUBSTR")]
    filter: Option<String>,
    /// Seconds a case may run before it counts as an error.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Also print one line per passing case.
    #[arg(long, short)]
    verbose: bool,
    /// Optimize each graph with these passes (e.g. `default`, `canon,fuse`)
    /// before running it; a failed optimization counts as an error.
    #[arg(long, value_name = "PASSES")]
    passes: Option<String>,
    /// GPU targets: instead of running, compile each case into an artifact
    /// folder under DIR with its inputs and expected outputs, for
    /// `smelt-rt --check DIR` on a machine with the GPU.
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
}

/// Where `--bundle` writes case folders.
static BUNDLE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Compiles a case for a GPU target and runs it on this machine's GPU, or
/// with `--bundle` writes it out for `smelt-rt --check`.
fn execute_gpu(
    g: &smelt_ir::Graph,
    inputs: Vec<Tensor>,
    arch: smelt_backends::gpu::Arch,
    set: &Path,
) -> Result<(Vec<Tensor>, Vec<String>), (Status, String)> {
    let c = smelt_backends::gpu::compile_for(g, &inputs, arch)
        .map_err(|e| (Status::Error, format!("compile: {e}")))?;
    if let Some(root) = BUNDLE.get() {
        let case = set.parent().and_then(|c| c.file_name()).unwrap_or_default();
        let set_name = set.file_name().unwrap_or_default();
        let dir = root.join(case).join(set_name);
        let io = |e: String| (Status::Error, format!("bundle: {e}"));
        c.manifest
            .write(&dir, &c.files, &c.weights)
            .map_err(|e| io(e.to_string()))?;
        for (i, t) in inputs.iter().enumerate() {
            let b = smelt_backends::cpu::tensor_bytes(t).map_err(io)?;
            std::fs::write(dir.join(format!("input_{i}.bin")), b).map_err(|e| io(e.to_string()))?;
        }
        // Expected outputs and tolerances are copied next to it by the
        // caller (they are the case's, not smelt's).
        return Err((Status::Pass, "bundled".into()));
    }
    let folder = c.folder();
    let m = folder.manifest.clone();
    let d =
        smelt_runtime::gpu::driver_for(&m.target).map_err(|e| (Status::Error, e.to_string()))?;
    let mut ex = smelt_runtime::gpu::Executor::new(d, folder)
        .map_err(|e| (Status::Error, format!("load: {e}")))?;
    let raw: Vec<Vec<u8>> = inputs
        .iter()
        .map(smelt_backends::cpu::tensor_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| (Status::Error, e))?;
    let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    let outs = ex.run(&refs).map_err(|e| (Status::Error, e.to_string()))?;
    let mut tensors = Vec::new();
    for (io, bytes) in m.outputs.iter().zip(outs) {
        let b = &m.buffers[io.buffer];
        tensors.push(
            smelt_backends::cpu::bytes_tensor(&b.dtype, &b.shape, bytes)
                .map_err(|e| (Status::Error, e))?,
        );
    }
    Ok((tensors, Vec::new()))
}

/// An accelerator target (`--target maia100`): each case is compiled to a
/// command stream and run on the simulator instead of the interpreter.
static ACCEL: std::sync::OnceLock<(String, smelt_runtime::maia::HwConfig)> =
    std::sync::OnceLock::new();

/// The target chosen with `--target`, read by every worker thread.
static TARGET: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Runs `g` on the chosen target. `Ok` also returns the ops that ran on the
/// reference implementation instead of as compiled kernels.
fn execute(
    g: &smelt_ir::Graph,
    inputs: Vec<Tensor>,
    set: &Path,
) -> Result<(Vec<Tensor>, Vec<String>), (Status, String)> {
    if let Some(arch) = TARGET
        .get()
        .and_then(|t| smelt_backends::gpu::Arch::parse(t))
    {
        return execute_gpu(g, inputs, arch, set);
    }
    if let Some((name, hw)) = ACCEL.get() {
        let opts = smelt_backends::maia::Options {
            precision: smelt_backends::maia::Precision::F32,
        };
        let art = smelt_backends::maia::compile_for(g, hw, name, &opts, &inputs).map_err(|e| {
            if e.is_unsupported() {
                (Status::Unsupported, e.to_string())
            } else {
                (Status::Error, format!("compile: {e}"))
            }
        })?;
        let outs =
            super::maia::execute(&art, &inputs).map_err(|e| (Status::Error, format!("{e:#}")))?;
        return Ok((outs, Vec::new()));
    }
    match TARGET.get().map(String::as_str).unwrap_or("interp") {
        "cpu" => {
            let (art, report) = smelt_backends::cpu::compile_for(g, &inputs)
                .map_err(|e| (Status::Error, format!("compile: {e}")))?;
            let loaded = smelt_backends::cpu::Loaded::new(art)
                .map_err(|e| (Status::Error, format!("load: {e}")))?;
            let outs = loaded
                .run(&inputs)
                .map_err(|e| (Status::Error, e.to_string()))?;
            Ok((
                outs,
                report.host_ops.into_iter().map(|(op, _)| op).collect(),
            ))
        }
        _ => match smelt_ir::interp::run(g, inputs) {
            Ok(o) => Ok((o, Vec::new())),
            Err(e @ smelt_ir::interp::InterpError::Unsupported { .. }) => {
                Err((Status::Unsupported, e.to_string()))
            }
            Err(e) => Err((Status::Error, e.to_string())),
        },
    }
}

/// The passes chosen with `--passes`, read by every worker thread.
static PASSES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn optimize(g: smelt_ir::Graph) -> Result<smelt_ir::Graph, String> {
    let Some(passes) = PASSES.get() else {
        return Ok(g);
    };
    let target = smelt_ir::target::Target::builtin("cpu").map_err(|e| e.to_string())?;
    let opts = smelt_passes::Options {
        passes: passes.clone(),
        ..Default::default()
    };
    smelt_passes::optimize(&g, &target, &opts)
        .map(|(g, _)| g)
        .map_err(|e| format!("optimize: {e}"))
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// The importer or interpreter does not implement an op or feature.
    Unsupported,
    /// Ran, but an output differs from the expected one.
    Wrong,
    /// Failed some other way (bad data, a kernel error, a panic).
    Error,
}

#[derive(Serialize)]
struct CaseResult {
    name: String,
    status: Status,
    ops: Vec<String>,
    message: String,
    /// Ops that ran on the reference implementation (compiled targets).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    host_ops: Vec<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    target: &'a str,
    passed: usize,
    total: usize,
    cases: &'a [CaseResult],
}

fn list_cases(dir: &Path, filter: Option<&str>) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot read folder", dir.display()))?
    {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.join("model.onnx").is_file() && filter.is_none_or(|f| name.contains(f)) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

/// Op types of a model, for the per-op table; empty if unreadable.
fn op_types(model: &Path) -> Vec<String> {
    use protobuf::Message;
    let Ok(bytes) = std::fs::read(model) else {
        return vec![];
    };
    let Ok(m) = onnx_protobuf::ModelProto::parse_from_bytes(&bytes) else {
        return vec![];
    };
    let mut ops: Vec<String> = m.graph.node.iter().map(|n| n.op_type.clone()).collect();
    ops.sort();
    ops.dedup();
    ops
}

fn tolerances(case: &Path) -> (f64, f64) {
    let parsed = std::fs::read_to_string(case.join("case.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    let get = |k: &str, d: f64| parsed.as_ref().and_then(|v| v[k].as_f64()).unwrap_or(d);
    (get("rtol", 1e-3), get("atol", 1e-7))
}

/// numpy.testing.assert_allclose semantics (NaN equal to NaN, infinities
/// must match), plus equal dtypes and shapes as ONNX's runner requires.
fn compare(want: &Tensor, got: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if want.dtype != got.dtype {
        return Err(format!("dtype {} expected, got {}", want.dtype, got.dtype));
    }
    if want.shape != got.shape {
        return Err(format!(
            "shape {:?} expected, got {:?}",
            want.shape, got.shape
        ));
    }
    let mismatch =
        |i: usize, w: String, g: String| Err(format!("element {i}: expected {w}, got {g}"));
    match (&want.data, &got.data) {
        (Storage::F(w), Storage::F(g)) => {
            for (i, (&w, &g)) in w.iter().zip(g).enumerate() {
                let ok = if w.is_nan() || g.is_nan() {
                    w.is_nan() && g.is_nan()
                } else if w.is_infinite() || g.is_infinite() {
                    w == g
                } else {
                    (w - g).abs() <= atol + rtol * w.abs()
                };
                if !ok {
                    return mismatch(i, w.to_string(), g.to_string());
                }
            }
        }
        (w, g) if w == g => {}
        (w, g) => {
            let wv = format!("{w:?}");
            let gv = format!("{g:?}");
            return Err(format!(
                "values differ: expected {:.80}, got {:.80}",
                wv, gv
            ));
        }
    }
    Ok(())
}

fn read_pb(p: &Path) -> Result<Tensor, String> {
    smelt_frontend::tensor_io::read_tensor(p)
        .map(|(_, t)| t)
        .map_err(|e| e.to_string())
}

fn run_case(case: &Path, host_ops: &mut Vec<String>) -> (Status, String) {
    let (rtol, atol) = tolerances(case);
    let g = match smelt_frontend::import_file(&case.join("model.onnx")) {
        Ok(g) => g,
        Err(e) if e.is_unsupported() => return (Status::Unsupported, e.to_string()),
        Err(e) => return (Status::Error, format!("import: {e}")),
    };
    let g = match optimize(g) {
        Ok(g) => g,
        Err(e) => return (Status::Error, e),
    };
    let mut sets: Vec<PathBuf> = std::fs::read_dir(case)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
        })
        .collect();
    sets.sort();
    if sets.is_empty() {
        return (Status::Error, "no test_data_set_N folders".into());
    }
    for set in sets {
        let mut inputs = Vec::new();
        for i in 0..g.inputs.len() {
            match read_pb(&set.join(format!("input_{i}.pb"))) {
                Ok(t) => inputs.push(t),
                Err(e) => return (Status::Unsupported, format!("input {i}: {e}")),
            }
        }
        let outs = match execute(&g, inputs, &set) {
            Ok((o, host)) => {
                host_ops.extend(host);
                o
            }
            Err((Status::Pass, m)) if m == "bundled" => {
                if let Err(e) = bundle_expected(&g, &set, rtol, atol) {
                    return (Status::Error, format!("bundle: {e}"));
                }
                continue;
            }
            Err(r) => return r,
        };
        for (i, got) in outs.iter().enumerate() {
            let want = match read_pb(&set.join(format!("output_{i}.pb"))) {
                Ok(t) => t,
                Err(e) => return (Status::Unsupported, format!("output {i}: {e}")),
            };
            if let Err(m) = compare(&want, got, rtol, atol) {
                let name = &g.value(g.outputs[i]).name;
                return (Status::Wrong, format!("output {i} \"{name}\": {m}"));
            }
        }
    }
    (Status::Pass, String::new())
}

/// Next to a bundled case: its expected outputs (raw bytes, as the
/// artifact's buffers hold them) and tolerances.
fn bundle_expected(g: &smelt_ir::Graph, set: &Path, rtol: f64, atol: f64) -> Result<(), String> {
    let root = BUNDLE.get().ok_or("no bundle folder")?;
    let case = set.parent().and_then(|c| c.file_name()).unwrap_or_default();
    let dir = root.join(case).join(set.file_name().unwrap_or_default());
    for i in 0..g.outputs.len() {
        let t = read_pb(&set.join(format!("output_{i}.pb")))?;
        let b = smelt_backends::cpu::tensor_bytes(&t)?;
        std::fs::write(dir.join(format!("expected_{i}.bin")), b).map_err(|e| e.to_string())?;
    }
    let check = serde_json::json!({ "rtol": rtol, "atol": atol });
    std::fs::write(dir.join("check.json"), check.to_string()).map_err(|e| e.to_string())
}

fn run_guarded(case: &Path) -> (Status, String, Vec<String>) {
    let mut host = Vec::new();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(case, &mut host))) {
        Ok((s, m)) => {
            host.sort();
            host.dedup();
            (s, m, host)
        }
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (Status::Error, format!("panic: {msg}"), Vec::new())
        }
    }
}

fn case_result(case: &Path, status: Status, message: String, host_ops: Vec<String>) -> CaseResult {
    CaseResult {
        name: case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        status,
        ops: op_types(&case.join("model.onnx")),
        message,
        host_ops,
    }
}

/// Per worker: the case it is on and since when.
type Running = Arc<Mutex<Vec<Option<(usize, Instant)>>>>;

/// Runs every case on a pool of worker threads. A case that runs past
/// `timeout` is recorded as an error and its worker abandoned (a detached
/// thread ends with the process), so one runaway kernel cannot stall the suite.
fn run_all(cases: &[PathBuf], timeout: Duration) -> Vec<CaseResult> {
    let cases: Arc<Vec<PathBuf>> = Arc::new(cases.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<(usize, usize, Status, String, Vec<String>)>();
    let running: Running = Arc::new(Mutex::new(Vec::new()));
    let spawn = |slot: usize| {
        let (cases, next, tx, running) = (cases.clone(), next.clone(), tx.clone(), running.clone());
        std::thread::spawn(move || {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                running.lock().expect("lock")[slot] = Some((i, Instant::now()));
                let (status, msg, host) = run_guarded(case);
                running.lock().expect("lock")[slot] = None;
                if tx.send((slot, i, status, msg, host)).is_err() {
                    break;
                }
            }
        });
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results: Vec<Option<CaseResult>> = (0..cases.len()).map(|_| None).collect();
    let mut slots = 0;
    for _ in 0..threads {
        running.lock().expect("lock").push(None);
        spawn(slots);
        slots += 1;
    }
    let mut done = 0;
    let mut abandoned = vec![false; slots];
    while done < cases.len() {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok((slot, i, status, msg, host)) => {
                if !abandoned[slot] && results[i].is_none() {
                    results[i] = Some(case_result(&cases[i], status, msg, host));
                    done += 1;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let stuck: Vec<(usize, usize)> = running
            .lock()
            .expect("lock")
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| match r {
                Some((i, t)) if t.elapsed() > timeout => Some((slot, *i)),
                _ => None,
            })
            .filter(|(slot, _)| !abandoned[*slot])
            .collect();
        for (slot, i) in stuck {
            abandoned[slot] = true;
            if results[i].is_none() {
                let msg = format!("timed out after {} s", timeout.as_secs());
                results[i] = Some(case_result(&cases[i], Status::Error, msg, Vec::new()));
                done += 1;
            }
            running.lock().expect("lock").push(None);
            abandoned.push(false);
            spawn(slots);
            slots += 1;
        }
    }
    results
        .into_iter()
        .zip(cases.iter())
        .map(|(r, c)| {
            r.unwrap_or_else(|| case_result(c, Status::Error, "did not run".into(), Vec::new()))
        })
        .collect()
}

pub fn main(a: Args) -> Result<ExitCode> {
    if super::maia::is_accelerator(&a.target) {
        let (name, text) = super::maia::target_text(&a.target, None)?;
        if let Some(hw) = super::maia::accelerator(&text)? {
            let _ = ACCEL.set((name, hw));
        }
    } else if let Some(arch) = smelt_backends::gpu::Arch::parse(&a.target) {
        match &a.bundle {
            Some(dir) => {
                let _ = BUNDLE.set(dir.clone());
            }
            None => {
                if let Err(e) = smelt_runtime::gpu::driver_for(arch.name()) {
                    bail!(
                        "--target {}: cannot run on this machine: {e}\n  (use --bundle DIR to compile the cases here and `smelt-rt --check DIR` on a machine with the GPU)",
                        arch.name()
                    );
                }
            }
        }
    } else {
        super::check_target(&a.target)?;
    }
    if a.bundle.is_some() && smelt_backends::gpu::Arch::parse(&a.target).is_none() {
        bail!("--bundle is for the GPU targets (sm_80, sm_90a, gfx90a, gfx942)");
    }
    let _ = TARGET.set(a.target.clone());
    if let Some(p) = &a.passes {
        let passes = smelt_passes::parse_passes(p)?;
        let _ = PASSES.set(passes);
    }
    let cases = list_cases(&a.dir, a.filter.as_deref())?;
    if cases.is_empty() {
        bail!(
            "{}: no cases (folders with model.onnx){}; generate them with `python scripts/gen_conformance.py`",
            a.dir.display(),
            a.filter
                .as_ref()
                .map(|f| format!(" matching `{f}`"))
                .unwrap_or_default()
        );
    }
    // A panicking kernel is a bug, reported per case; keep its message off
    // the terminal while the suite runs.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results = run_all(&cases, Duration::from_secs(a.timeout));
    std::panic::set_hook(hook);
    let passed = results.iter().filter(|r| r.status == Status::Pass).count();
    for r in &results {
        if r.status != Status::Pass || a.verbose {
            let class = match r.status {
                Status::Pass => "pass",
                Status::Unsupported => "unsupported",
                Status::Wrong => "wrong result",
                Status::Error => "error",
            };
            let msg: String = r.message.chars().take(300).collect();
            println!("{:<13} {}: {}", class, r.name, msg);
        }
    }
    let total = results.len();
    if let Some(dir) = &a.bundle {
        println!(
            "bundle: {passed}/{total} cases compiled for {} into {} (run them with `smelt-rt --check {}`)",
            a.target,
            dir.display(),
            dir.display()
        );
    } else {
        println!(
            "conformance: {passed}/{total} cases pass ({:.1}%)",
            100.0 * passed as f64 / total as f64
        );
    }
    if a.target != "interp" && a.bundle.is_none() {
        let compiled = results
            .iter()
            .filter(|r| r.status == Status::Pass && r.host_ops.is_empty())
            .count();
        println!(
            "  of which {compiled} ran every op as a compiled kernel; {} used the reference implementation for some op",
            passed - compiled
        );
    }
    if let Some(p) = &a.json {
        let report = Report {
            target: &a.target,
            passed,
            total,
            cases: &results,
        };
        let s = serde_json::to_string_pretty(&report)?;
        std::fs::write(p, s + "\n").with_context(|| format!("{}: cannot write", p.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
