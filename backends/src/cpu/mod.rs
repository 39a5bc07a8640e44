//! The cpu target: lowers a graph to kernels (shared lowering, CPU
//! schedule), plans the activation arena by liveness, and writes a `.smc`
//! artifact whose kernels are LLVM bitcode compiled for the host on load.

mod host;
mod plan;
mod program;
mod specialize;

pub use host::{IrHost, bytes_tensor, tensor_bytes};
pub use program::{Program, Report};
pub use specialize::{compile_for, specialize};

use smelt_codegen::Jit;
use smelt_ir::Graph;
use smelt_ir::interp::Tensor;
use smelt_runtime::cpu::{Artifact, Executor};

#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    #[error("{0}")]
    Compile(String),
    #[error(transparent)]
    Codegen(#[from] smelt_codegen::Error),
    #[error(transparent)]
    Exec(#[from] smelt_runtime::cpu::ExecError),
    #[error("{0}")]
    Io(String),
}

/// Compiles `g` (static shapes) to a cpu artifact.
pub fn compile(g: &Graph) -> Result<(Artifact, Report), CpuError> {
    let p = Program::build(g)?;
    let bitcode = smelt_codegen::jit::bitcode(&p.kernels)?;
    let report = p.report.clone();
    Ok((p.artifact(bitcode), report))
}

/// An artifact with its kernels compiled for this host, ready to run.
pub struct Loaded {
    art: std::sync::Arc<Artifact>,
    exec: Executor,
    host: IrHost,
    // The executor holds pointers into the JIT's code: dropped after it.
    _jit: Jit,
}

impl Loaded {
    pub fn new(art: Artifact) -> Result<Self, CpuError> {
        let jit = Jit::from_bitcode(&art.bitcode, &art.manifest.kernels)?;
        let fns = art
            .manifest
            .kernels
            .iter()
            .map(|n| {
                jit.get(n)
                    .ok_or_else(|| CpuError::Compile(format!("kernel {n} was not compiled")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let art = std::sync::Arc::new(art);
        let exec = Executor::new(art.clone(), fns)?;
        Ok(Loaded {
            art,
            exec,
            host: IrHost::default(),
            _jit: jit,
        })
    }

    pub fn artifact(&self) -> &Artifact {
        &self.art
    }

    /// Runs on raw input bytes (graph-input order).
    pub fn run_bytes(&self, inputs: &[&[u8]]) -> Result<Vec<Vec<u8>>, CpuError> {
        Ok(self.exec.run(inputs, &self.host)?)
    }

    /// Runs on interpreter tensors: checks each input's dtype and shape
    /// against the artifact and returns the outputs as tensors.
    pub fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, CpuError> {
        let m = &self.art.manifest;
        if inputs.len() != m.inputs.len() {
            return Err(CpuError::Compile(format!(
                "the model takes {} inputs, {} given",
                m.inputs.len(),
                inputs.len()
            )));
        }
        let mut raw = Vec::with_capacity(inputs.len());
        for (io, t) in m.inputs.iter().zip(inputs) {
            let b = &m.buffers[io.buffer];
            let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
            if t.dtype.name() != b.dtype || shape != b.shape {
                return Err(CpuError::Compile(format!(
                    "input \"{}\": expected {}{:?}, got {}{:?}",
                    io.name,
                    b.dtype,
                    b.shape,
                    t.dtype.name(),
                    t.shape
                )));
            }
            raw.push(host::tensor_bytes(t).map_err(CpuError::Compile)?);
        }
        let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        let outs = self.run_bytes(&refs)?;
        m.outputs
            .iter()
            .zip(outs)
            .map(|(io, bytes)| {
                let b = &m.buffers[io.buffer];
                host::bytes_tensor(&b.dtype, &b.shape, bytes).map_err(CpuError::Compile)
            })
            .collect()
    }
}
