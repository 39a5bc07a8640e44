//! The cpu target in the CLI: writing `.smc` artifacts (`compile`), running
//! them or a model through them (`run`), timing them (`bench`).

use anyhow::{Context, Result, bail};
use smelt_backends::cpu::{self, Loaded, Report};
use smelt_ir::Graph;
use smelt_ir::interp::Tensor;
use smelt_runtime::cpu::Artifact;
use std::path::Path;
use std::time::Instant;

/// Compiles an optimized graph and prints what the lowering did.
pub fn compile(g: &Graph, quiet: bool) -> Result<(Artifact, Report)> {
    let t = Instant::now();
    let (art, report) = cpu::compile(g).map_err(|e| anyhow::anyhow!("cpu: {e}"))?;
    if !quiet {
        eprintln!(
            "  lower       cpu: {} nodes -> {} kernels ({} launches), {} GEMMs, {} host ops · arena {} · weights {}   {:.2} s",
            report.nodes,
            report.kernels,
            report.kernel_launches,
            report.gemms,
            report.host_ops.len(),
            human_bytes(report.arena_bytes),
            human_bytes(report.weight_bytes),
            t.elapsed().as_secs_f64()
        );
        let mut ops: Vec<&str> = report.host_ops.iter().map(|(o, _)| o.as_str()).collect();
        ops.sort();
        ops.dedup();
        if !ops.is_empty() {
            eprintln!(
                "              on the reference implementation (no kernel lowering yet): {}",
                ops.join(", ")
            );
        }
    }
    Ok((art, report))
}

pub fn human_bytes(b: u64) -> String {
    const U: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u < U.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", U[u])
    }
}

/// Writes the artifact; refuses to clobber anything but a file.
pub fn write(art: &Artifact, path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!(
            "{}: is a folder; give a file name ending in .smc",
            path.display()
        );
    }
    let bytes = art.to_bytes();
    std::fs::write(path, &bytes).with_context(|| format!("{}: cannot write", path.display()))?;
    eprintln!(
        "  wrote       {} ({}, {} kernels)",
        path.display(),
        human_bytes(bytes.len() as u64),
        art.manifest.kernels.len()
    );
    Ok(())
}

/// Loads a `.smc` and JIT-compiles its kernels for this host.
pub fn load(path: &Path) -> Result<Loaded> {
    let art = Artifact::read(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = Instant::now();
    let l = Loaded::new(art).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    note(&format!(
        "jit         {} kernels for this host   {:.2} s",
        l.artifact().manifest.kernels.len(),
        t.elapsed().as_secs_f64()
    ));
    Ok(l)
}

fn note(s: &str) {
    if std::env::var_os("SMELT_QUIET").is_none() {
        eprintln!("  {s}");
    }
}

/// Input names and types of a loaded artifact, for binding `--input`s.
pub fn io_names(l: &Loaded) -> (Vec<String>, Vec<String>) {
    let m = &l.artifact().manifest;
    m.inputs
        .iter()
        .map(|io| {
            let b = &m.buffers[io.buffer];
            let dims: Vec<String> = b.shape.iter().map(u64::to_string).collect();
            (io.name.clone(), format!("{}[{}]", b.dtype, dims.join(",")))
        })
        .unzip()
}

pub fn output_names(l: &Loaded) -> Vec<String> {
    l.artifact()
        .manifest
        .outputs
        .iter()
        .map(|io| io.name.clone())
        .collect()
}

pub fn run(l: &Loaded, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
    l.run(inputs).map_err(|e| anyhow::anyhow!("{e}"))
}
