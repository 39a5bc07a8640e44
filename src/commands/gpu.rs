//! The GPU targets in the CLI: `compile --target sm_90a|sm_80|gfx942|gfx90a
//! -o DIR` writes an artifact folder; `run DIR` runs one on this machine's
//! GPU (or says clearly why it cannot).

use anyhow::{Result, anyhow};
use smelt_backends::gpu::{self, Arch};
use smelt_ir::Graph;
use smelt_ir::interp::Tensor;
use std::path::Path;
use std::time::Instant;

/// Compiles an optimized graph for `arch` and writes the folder `dir`.
pub fn compile_main(g: &Graph, arch: Arch, dir: &Path) -> Result<()> {
    let t = Instant::now();
    let c = gpu::compile(g, arch).map_err(|e| anyhow!("{e}"))?;
    let r = &c.report;
    eprintln!(
        "  lower       {}: {} nodes -> {} kernels ({} launches), {} GEMMs ({} tensor-core, {} kernel-IR, {} with fused epilogues, {} implicit) · arena {} · weights {}   {:.2} s",
        arch.name(),
        r.nodes,
        c.manifest
            .modules
            .iter()
            .map(|m| m.kernels.len())
            .sum::<usize>(),
        c.manifest.steps.len(),
        c.tensor_core_gemms + c.fallback_gemms,
        c.tensor_core_gemms,
        c.fallback_gemms,
        c.fused_epilogues,
        c.implicit_gemms,
        super::cpu::human_bytes(c.manifest.arena_bytes),
        super::cpu::human_bytes(c.manifest.weights_bytes),
        t.elapsed().as_secs_f64()
    );
    c.manifest
        .write(dir, &c.files, &c.weights)
        .map_err(|e| anyhow!("{e}"))?;
    let files: Vec<&str> = c.files.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!(
        "  wrote       {}/ (manifest.json, {}, weights.bin)",
        dir.display(),
        files.join(", ")
    );
    Ok(())
}

/// Runs an artifact folder on interpreter tensors.
pub fn run(dir: &Path, inputs: &[Tensor]) -> Result<(Vec<String>, Vec<Tensor>)> {
    let folder = smelt_runtime::gpu::read(dir).map_err(|e| anyhow!("{e}"))?;
    let m = folder.manifest.clone();
    let mut raw = Vec::with_capacity(inputs.len());
    for (io, t) in m.inputs.iter().zip(inputs) {
        let b = &m.buffers[io.buffer];
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        if t.dtype.name() != b.dtype || shape != b.shape {
            anyhow::bail!(
                "input \"{}\": expected {}{:?}, got {}{:?}",
                io.name,
                b.dtype,
                b.shape,
                t.dtype.name(),
                t.shape
            );
        }
        raw.push(smelt_backends::cpu::tensor_bytes(t).map_err(|e| anyhow!(e))?);
    }
    let d = smelt_runtime::gpu::driver_for(&m.target).map_err(|e| {
        anyhow!(
            "{}: cannot run a {} artifact here: {e}",
            dir.display(),
            m.target
        )
    })?;
    let mut ex = smelt_runtime::gpu::Executor::new(d, folder).map_err(|e| anyhow!("{e}"))?;
    let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
    let outs = ex.run(&refs).map_err(|e| anyhow!("{e}"))?;
    let mut tensors = Vec::with_capacity(outs.len());
    for (io, bytes) in m.outputs.iter().zip(outs) {
        let b = &m.buffers[io.buffer];
        tensors.push(
            smelt_backends::cpu::bytes_tensor(&b.dtype, &b.shape, bytes).map_err(|e| anyhow!(e))?,
        );
    }
    Ok((m.outputs.iter().map(|o| o.name.clone()).collect(), tensors))
}

/// (names, types) of an artifact folder's inputs, for binding `--input`.
pub fn io_names(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let folder = smelt_runtime::gpu::read(dir).map_err(|e| anyhow!("{e}"))?;
    let m = &folder.manifest;
    Ok(m.inputs
        .iter()
        .map(|io| {
            let b = &m.buffers[io.buffer];
            (io.name.clone(), format!("{}{:?}", b.dtype, b.shape))
        })
        .unzip())
}
