//! `smelt bench`: latency of a model compiled for the cpu target beside
//! onnxruntime's on the same machine, inputs and thread count, in one run.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use smelt_ir::interp::Tensor;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Time a model on the cpu target and, in the same run, on onnxruntime
/// (Python), then print the latency ratio.
///
/// MODEL is an ONNX file, or a folder in the benchmark layout
/// (model.onnx + input_<i>.pb; see examples/models/make_all.py).
#[derive(clap::Args)]
pub struct Args {
    model: PathBuf,
    /// Inputs (.pb or .npy) in graph-input order; default: the folder's
    /// input_<i>.pb, else seeded random data.
    #[arg(long = "input", short = 'i', value_name = "FILE|NAME=FILE")]
    inputs: Vec<String>,
    /// Threads for smelt and for onnxruntime (intra-op); default: all cores.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 10, value_name = "N")]
    iters: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 2, value_name = "N")]
    warmup: usize,
    /// Optimizer passes before lowering.
    #[arg(long, default_value = "default")]
    passes: String,
    /// The peer: onnxruntime (needs Python with onnxruntime), or none.
    #[arg(long, default_value = "onnxruntime", value_name = "onnxruntime|none")]
    peer: String,
    /// Python with onnxruntime; default: $SMELT_PYTHON, else .venv/bin/python,
    /// else python3.
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
}

#[derive(Serialize)]
struct Result_ {
    model: String,
    threads: usize,
    iters: usize,
    import_s: f64,
    optimize_s: f64,
    lower_s: f64,
    jit_s: f64,
    kernels: usize,
    host_ops: Vec<String>,
    smelt: Timing,
    onnxruntime: Option<Timing>,
    /// smelt latency / onnxruntime latency (medians): below 1 is faster.
    ratio: Option<f64>,
    max_abs_diff: Option<f64>,
}

fn python(a: &Args) -> PathBuf {
    if let Some(p) = &a.python {
        return p.clone();
    }
    if let Some(p) = std::env::var_os("SMELT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(".venv/bin/python");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Seeded uniform data in [-1, 1) (small non-negative ints for index-like
/// inputs), so that runs repeat.
fn random_input(name: &str, ty: &smelt_ir::TensorType, seed: u64) -> Result<Tensor> {
    let dims: Vec<usize> = ty.shape.as_static().with_context(|| {
        format!("input \"{name}\" has type {ty}: give --input files for symbolic shapes")
    })?;
    let n: usize = dims.iter().product();
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    Ok(if ty.dtype.is_float() {
        let v = (0..n)
            .map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
            .collect();
        Tensor::from_f64(ty.dtype, dims, v)
    } else if ty.dtype.is_int() {
        Tensor::from_i64(
            ty.dtype,
            dims,
            (0..n).map(|_| (next() % 4) as i64).collect(),
        )
    } else {
        bail!("input \"{name}\": cannot make random {} data", ty.dtype)
    })
}

pub fn main(a: Args) -> Result<ExitCode> {
    let (model_path, mut specs) = if a.model.is_dir() && a.model.join("model.onnx").exists() {
        let mut specs = Vec::new();
        for i in 0.. {
            let p = a.model.join(format!("input_{i}.pb"));
            if !p.exists() {
                break;
            }
            specs.push(p.display().to_string());
        }
        (a.model.join("model.onnx"), specs)
    } else {
        (a.model.clone(), Vec::new())
    };
    if !a.inputs.is_empty() {
        specs = a.inputs.clone();
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        bail!("--threads must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("cannot start the thread pool")?;
    let say = |s: String| {
        if !a.json {
            eprintln!("  {s}");
        }
    };

    let t = Instant::now();
    let g = crate::model::load(&model_path)?;
    let import_s = t.elapsed().as_secs_f64();
    say(format!(
        "import      {}   {import_s:.2} s",
        model_path.display()
    ));
    let inputs = if specs.is_empty() {
        g.inputs
            .iter()
            .enumerate()
            .map(|(i, &id)| random_input(&g.value(id).name, &g.value(id).ty, i as u64 + 1))
            .collect::<Result<Vec<_>>>()?
    } else {
        super::run::bind_inputs(&g, &specs)?
    };

    let t = Instant::now();
    let target = smelt_ir::target::Target::builtin("cpu")?;
    let opts = smelt_passes::Options {
        passes: smelt_passes::parse_passes(&a.passes)?,
        ..Default::default()
    };
    let (opt, _) = smelt_passes::optimize(&g, &target, &opts)?;
    let optimize_s = t.elapsed().as_secs_f64();
    say(format!(
        "optimize    {}: {} -> {} nodes   {optimize_s:.2} s",
        a.passes,
        g.nodes.len(),
        opt.nodes.len()
    ));

    let t = Instant::now();
    let (art, report) = super::cpu::compile(&opt, a.json)?;
    let lower_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let loaded = smelt_backends::cpu::Loaded::new(art).map_err(|e| anyhow::anyhow!("{e}"))?;
    let jit_s = t.elapsed().as_secs_f64();
    say(format!(
        "jit         {} kernels for this host   {jit_s:.2} s",
        report.kernels
    ));

    // Timed on raw bytes, as onnxruntime is timed on numpy arrays: the
    // interpreter-tensor conversions are not part of the model's latency.
    let outs = super::cpu::run(&loaded, &inputs)?;
    let raw: Vec<Vec<u8>> = inputs
        .iter()
        .map(smelt_backends::cpu::tensor_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    for _ in 0..a.warmup {
        loaded
            .run_bytes(&refs)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let mut times = Vec::with_capacity(a.iters.max(1));
    for _ in 0..a.iters.max(1) {
        let t = Instant::now();
        let o = loaded
            .run_bytes(&refs)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        drop(o);
    }
    let smelt = Timing {
        min_ms: times.iter().copied().fold(f64::INFINITY, f64::min),
        median_ms: median(&mut times),
    };

    let (peer, max_abs_diff) = if a.peer == "none" {
        (None, None)
    } else if a.peer == "onnxruntime" {
        if model_path.extension().is_none_or(|e| e != "onnx") {
            bail!("--peer onnxruntime needs an ONNX model (or use --peer none)");
        }
        let (t, diff) = run_peer(&a, &python(&a), &model_path, &g, &inputs, &outs, threads)?;
        (Some(t), diff)
    } else {
        bail!("--peer {}: expected onnxruntime or none", a.peer);
    };
    let ratio = peer.as_ref().map(|p| smelt.median_ms / p.median_ms);
    let r = Result_ {
        model: model_path.display().to_string(),
        threads,
        iters: a.iters.max(1),
        import_s,
        optimize_s,
        lower_s,
        jit_s,
        kernels: report.kernels,
        host_ops: report.host_ops.iter().map(|(o, _)| o.clone()).collect(),
        smelt,
        onnxruntime: peer,
        ratio,
        max_abs_diff,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{:<40} threads {:>2}   smelt {:>9.2} ms (min {:.2})",
            r.model, r.threads, r.smelt.median_ms, r.smelt.min_ms
        );
        if let (Some(p), Some(ratio)) = (&r.onnxruntime, r.ratio) {
            println!(
                "{:<40}              onnxruntime {:>9.2} ms (min {:.2})   smelt/onnxruntime = {ratio:.2}x   max |diff| {:.2e}",
                "",
                p.median_ms,
                p.min_ms,
                r.max_abs_diff.unwrap_or(f64::NAN)
            );
        }
        println!(
            "{:<40}              compile: optimize {:.2} s + lower {:.2} s + jit {:.2} s",
            "", r.optimize_s, r.lower_s, r.jit_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn run_peer(
    a: &Args,
    py: &Path,
    model: &Path,
    g: &smelt_ir::Graph,
    inputs: &[Tensor],
    outs: &[Tensor],
    threads: usize,
) -> Result<(Timing, Option<f64>)> {
    let dir = tempdir()?;
    let mut paths = Vec::new();
    for (i, (t, &id)) in inputs.iter().zip(&g.inputs).enumerate() {
        let p = dir.join(format!("input_{i}.pb"));
        let bytes = smelt_frontend::tensor_io::tensor_to_proto_bytes(&g.value(id).name, t)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::fs::write(&p, bytes)?;
        paths.push(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench_ort.py");
    let out_dir = dir.join("ort");
    let res = std::process::Command::new(py)
        .arg(&script)
        .arg(model)
        .args(&paths)
        .args(["--threads", &threads.to_string()])
        .args(["--iters", &a.iters.max(1).to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .arg("--out")
        .arg(&out_dir)
        .output()
        .with_context(|| format!("cannot run {} (pass --python or --peer none)", py.display()))?;
    if !res.status.success() {
        bail!(
            "onnxruntime peer failed: {}",
            String::from_utf8_lossy(&res.stderr).trim()
        );
    }
    #[derive(serde::Deserialize)]
    struct Peer {
        median_ms: f64,
        min_ms: f64,
    }
    let p: Peer = serde_json::from_slice(&res.stdout).context("onnxruntime peer output")?;
    let mut diff: Option<f64> = None;
    for (i, o) in outs.iter().enumerate() {
        let (_, want) =
            smelt_frontend::tensor_io::read_tensor(&out_dir.join(format!("output_{i}.pb")))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let (Some(x), Some(y)) = (o.to_f64_vec(), want.to_f64_vec()) {
            let d = x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f64, f64::max);
            diff = Some(diff.map_or(d, |m: f64| m.max(d)));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok((
        Timing {
            median_ms: p.median_ms,
            min_ms: p.min_ms,
        },
        diff,
    ))
}

fn tempdir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("smelt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).with_context(|| format!("{}: cannot create", base.display()))?;
    Ok(base)
}
