//! `smelt compile`: optimize a model for a target and write the optimized
//! IR text or, for the cpu target and an `.smc` output, a runnable artifact.

use anyhow::{Context, Result};
use smelt_ir::target::Target;
use std::path::PathBuf;
use std::process::ExitCode;

/// Optimize a model for a target and write the optimized IR text.
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model, IR text file or checkpoint folder (config.json + *.safetensors).
    model: PathBuf,
    /// Target: cpu, sm_90a, sm_80 (NVIDIA, PTX), gfx942, gfx90a (AMD, HIP),
    /// maia100, tiny-npu (command stream). Its cost model guides the optimizer.
    #[arg(long, default_value = "cpu")]
    target: String,
    /// Where to write: FILE.smc writes a cpu artifact (kernels + weights;
    /// run it with `smelt run FILE.smc`); for a GPU target, DIR gets an
    /// artifact folder (manifest, .ptx/.hip modules, weights; run it with
    /// `smelt run DIR` or `smelt-rt DIR`); FILE.smelt gets the optimized
    /// IR text. Standard output (IR text) if absent.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the scheduled kernel IR of every kernel (cpu target).
    #[arg(long)]
    print_kernels: bool,
    /// Comma-separated passes: canon (algebra, constant folding), fuse
    /// (norm/attention recognition, BN folding, epilogue fusion), tensat
    /// (parallel-branch merges), layout (NHWC / transposed weights where the
    /// target prefers them), default (= canon,fuse,tensat), none.
    #[arg(long, default_value = "default")]
    passes: String,
    /// Print the IR text after this pass to standard error.
    #[arg(long, value_name = "PASS")]
    print_after: Option<String>,
    /// Target description file (any TOML in the targets/ format); one with
    /// an [accelerator] table compiles to a .smx command stream.
    #[arg(long, value_name = "PATH")]
    target_file: Option<PathBuf>,
    /// Accelerators without an f32 tensor rate: bf16 (one pass) or f32
    /// (three bf16 passes, f32-accurate).
    #[arg(long, default_value = "bf16", value_name = "bf16|f32")]
    matmul_precision: smelt_backends::maia::Precision,
    #[command(flatten)]
    pub opt: OptArgs,
}

/// Saturation budgets and extraction, shared by `compile` and `explain`.
#[derive(clap::Args, Clone, Debug)]
pub struct OptArgs {
    /// Extraction: greedy, or ilp (CBC; also runs greedy and keeps the
    /// cheaper graph).
    #[arg(long, default_value = "greedy", value_name = "greedy|ilp")]
    pub extract: smelt_passes::extract::Mode,
    /// Iteration limit of each pass's exploratory stage.
    #[arg(long, value_name = "N")]
    pub iter_limit: Option<usize>,
    /// E-node limit of each pass's exploratory stage.
    #[arg(long, value_name = "N")]
    pub node_limit: Option<usize>,
    /// Wall-time limit in seconds of each pass's exploratory stage.
    #[arg(long, value_name = "SECONDS")]
    pub time_limit: Option<f64>,
}

impl OptArgs {
    /// Options for `passes` with these budgets; the canonical stage gets a
    /// slice of the main budget.
    pub fn options(&self, passes: &str) -> Result<smelt_passes::Options> {
        let mut o = smelt_passes::Options {
            passes: smelt_passes::parse_passes(passes)?,
            extract: self.extract,
            ..Default::default()
        };
        if let Some(n) = self.iter_limit {
            o.budget.iterations = n;
        }
        if let Some(n) = self.node_limit {
            o.budget.nodes = n;
        }
        if let Some(s) = self.time_limit {
            if !(s.is_finite() && s >= 0.0) {
                anyhow::bail!("--time-limit must be a non-negative number of seconds");
            }
            o.budget.seconds = s;
        }
        o.canon_budget = smelt_passes::manager::canon_budget(&o.budget);
        if o.extract == smelt_passes::extract::Mode::Ilp && !smelt_passes::extract::ILP_AVAILABLE {
            anyhow::bail!(
                "--extract ilp: this smelt was built without the `ilp` feature of smelt-passes (needs CBC: apt-get install coinor-libcbc-dev)"
            );
        }
        Ok(o)
    }
}

pub fn main(a: Args) -> Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let g = crate::model::load(&a.model)?;
    let import_s = t0.elapsed().as_secs_f64();
    let (name, text) = super::maia::target_text(&a.target, a.target_file.as_deref())?;
    let target = Target::from_toml(&text)?;
    let mut opts = a.opt.options(&a.passes)?;
    opts.print_after = a.print_after.clone();
    let t0 = std::time::Instant::now();
    let (out, report) = smelt_passes::optimize(&g, &target, &opts)?;
    let optimize_s = t0.elapsed().as_secs_f64();
    if let Some(text) = &report.printed {
        eprint!("# after {}\n{text}", a.print_after.as_deref().unwrap_or(""));
    }
    if let Some(arch) = smelt_backends::gpu::Arch::parse(&a.target)
        && let Some(dir) = &a.output
        && !dir
            .extension()
            .is_some_and(|e| ["smelt", "txt", "smc", "smx"].iter().any(|x| e == *x))
    {
        eprintln!(
            "  import      {} · {} nodes · {} params   {import_s:.2} s",
            a.model.display(),
            g.nodes.len(),
            thousands(g.const_elements())
        );
        eprintln!(
            "  optimize    {}: {} -> {} nodes   {optimize_s:.2} s",
            a.passes,
            g.nodes.len(),
            out.nodes.len()
        );
        super::gpu::compile_main(&out, arch, dir)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(hw) = super::maia::accelerator(&text)? {
        let p = a.matmul_precision;
        return super::maia::compile_main(&out, &hw, &name, p, a.output.as_deref());
    }
    let is_smc = a
        .output
        .as_ref()
        .is_some_and(|p| p.extension().is_some_and(|e| e == "smc"));
    if is_smc || a.print_kernels {
        if a.target != "cpu" {
            anyhow::bail!(
                "--target {}: .smc artifacts and --print-kernels are for the cpu target",
                a.target
            );
        }
        if a.print_kernels {
            let p = smelt_backends::cpu::Program::build(&out)
                .map_err(|e| anyhow::anyhow!("cpu: {e}"))?;
            for k in &p.kernels {
                println!("{}", smelt_kernel::print::scheduled(k));
            }
        }
        if is_smc {
            eprintln!(
                "  import      {} · {} nodes · {} params   {import_s:.2} s",
                a.model.display(),
                g.nodes.len(),
                thousands(g.const_elements())
            );
            eprintln!(
                "  optimize    {}: {} -> {} nodes   {optimize_s:.2} s",
                a.passes,
                g.nodes.len(),
                out.nodes.len()
            );
            let (art, _) = super::cpu::compile(&out, false)?;
            super::cpu::write(&art, a.output.as_ref().expect("checked"))?;
        }
        return Ok(ExitCode::SUCCESS);
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

/// 85054788 -> "85,054,788".
fn thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
