//! `smelt explain`: what the optimizer did to a model and why.

use anyhow::Result;
use smelt_ir::target::Target;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Show the rules fired, e-graph growth, stop reasons, timings, cost
/// before/after and fusion groups of optimizing a model.
#[derive(clap::Args)]
pub struct Args {
    /// ONNX model, IR text file or checkpoint folder (config.json + *.safetensors).
    model: PathBuf,
    /// Target whose cost model guides the optimizer.
    #[arg(long, default_value = "cpu")]
    target: String,
    /// Comma-separated passes (see `smelt compile`).
    #[arg(long, default_value = "default")]
    passes: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    opt: super::compile::OptArgs,
}

pub fn main(a: Args) -> Result<ExitCode> {
    let g = crate::model::load(&a.model)?;
    let target = Target::builtin(&a.target)?;
    let opts = a.opt.options(&a.passes)?;
    let (_, r) = smelt_passes::optimize(&g, &target, &opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    writeln!(s, "target: {}", r.target)?;
    writeln!(
        s,
        "cost: {:.3e} s -> {:.3e} s (estimated)",
        r.cost_before, r.cost_after
    )?;
    for p in &r.passes {
        writeln!(
            s,
            "pass {}: {:.3} ms, nodes {} -> {}",
            p.pass,
            p.seconds * 1e3,
            p.nodes_before,
            p.nodes_after
        )?;
        for st in &p.stages {
            writeln!(
                s,
                "  stage {}: {:.3} ms, stop: {}",
                st.name,
                st.seconds * 1e3,
                st.stop_reason
            )?;
            for (i, it) in st.iterations.iter().enumerate() {
                writeln!(
                    s,
                    "    iteration {i}: {} e-nodes, {} e-classes",
                    it.egraph_nodes, it.egraph_classes
                )?;
            }
        }
        let x = &p.extraction;
        let used = match x.used {
            smelt_passes::extract::Mode::Greedy => "greedy",
            smelt_passes::extract::Mode::Ilp => "ilp",
        };
        write!(
            s,
            "  extraction: {used}, greedy cost {:.3e} s",
            x.greedy_cost
        )?;
        if let Some(c) = x.ilp_cost {
            write!(
                s,
                ", ilp cost {c:.3e} s ({:.3} ms)",
                x.ilp_seconds.unwrap_or(0.0) * 1e3
            )?;
        }
        if let Some(n) = &x.note {
            write!(s, " ({n})")?;
        }
        writeln!(s)?;
    }
    writeln!(s, "rules fired:")?;
    for (rule, n) in &r.rules_fired {
        writeln!(s, "  {rule}: {n}")?;
    }
    writeln!(s, "fusion groups:")?;
    for f in &r.fusion_groups {
        writeln!(s, "  {} = {} -> %{}", f.op, f.ops.join(" + "), f.output)?;
    }
    print!("{s}");
    Ok(ExitCode::SUCCESS)
}
