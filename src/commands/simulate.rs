//! `smelt simulate`: run a `.smx` program on the cycle-approximate
//! Maia-style simulator and report where the time goes.

use anyhow::{Context, Result, bail};
use smelt_runtime::maia::sim::{Options, Report, Sim, bench_program};
use smelt_runtime::maia::{Artifact, HwConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Simulate a compiled Maia-style program (.smx, or its text form).
#[derive(clap::Args)]
pub struct Args {
    /// The program; not needed with --bench.
    #[arg(required_unless_present = "bench")]
    program: Option<PathBuf>,
    /// Print the full report (engines, bytes per level, roofline).
    #[arg(long)]
    report: bool,
    /// Write a Chrome trace (open in Perfetto) of engine activity.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Timing only: skip the data (fast).
    #[arg(long)]
    timing_only: bool,
    /// Measure the simulator's own speed on a generated stream of N commands
    /// (timing-only, one core), for the chip of --target-file.
    #[arg(long, value_name = "N")]
    bench: Option<usize>,
    /// Target file whose [accelerator] table describes the chip (--bench).
    #[arg(long, value_name = "PATH", default_value = "targets/tiny-npu.toml")]
    target_file: PathBuf,
}

/// The runtime's copy of the hardware description, from a target file: the
/// two structs share field names, so JSON carries one into the other.
pub fn hw_from_target(path: &std::path::Path) -> Result<HwConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let acc = smelt_ir::accel::Accelerator::from_toml(&text)
        .with_context(|| path.display().to_string())?;
    Ok(serde_json::from_value(serde_json::to_value(&acc)?)?)
}

pub fn main(a: Args) -> Result<ExitCode> {
    if let Some(n) = a.bench {
        let hw = hw_from_target(&a.target_file)?;
        let art = bench_program(&hw, n);
        let mut sim = Sim::new(
            &art,
            Options {
                timing_only: true,
                trace: false,
            },
        );
        let t = Instant::now();
        let r = sim.run()?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "{} commands in {:.3} s: {:.3e} commands/s (simulated {:.0} cycles)",
            r.commands,
            s,
            r.commands as f64 / s,
            r.cycles
        );
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path) = &a.program else {
        bail!("no program given")
    };
    let art: Artifact = super::disasm::load(path)?;
    let opts = Options {
        timing_only: a.timing_only,
        trace: a.trace.is_some(),
    };
    let mut sim = Sim::new(&art, opts);
    let r = sim
        .run()
        .with_context(|| format!("simulating {}", path.display()))?;
    if let Some(t) = &a.trace {
        std::fs::write(t, sim.chrome_trace())
            .with_context(|| format!("writing {}", t.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_report(&r, a.report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report, full: bool) {
    println!(
        "{} commands, {:.0} cycles, {:.3} us",
        r.commands,
        r.cycles,
        r.seconds * 1e6
    );
    if !full {
        return;
    }
    println!("engine   queues  busy cycles  utilization");
    for e in &r.engines {
        println!(
            "{:<8} {:>6} {:>12.0} {:>11.1}%",
            e.engine,
            e.queues,
            e.busy_cycles,
            100.0 * e.utilization
        );
    }
    let b = &r.bytes;
    println!("bytes    read        written");
    println!("hbm      {:<11} {}", b.hbm_read, b.hbm_write);
    println!("l2       {:<11} {}", b.l2_read, b.l2_write);
    println!("sram     {:<11} {}", b.sram_read, b.sram_write);
    println!("link     {}", b.link);
    println!(
        "tensor FLOP {:.3e}: {:.3e} FLOP/s achieved, peak {:.3e}; roofline bound {:.3} us = {:.1}% of simulated time",
        r.flops,
        r.achieved_flops_per_s,
        r.peak_flops_per_s,
        r.roofline_seconds * 1e6,
        100.0 * r.roofline_fraction
    );
}
