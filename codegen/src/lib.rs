//! LLVM code generation for kernel IR (`smelt-kernel`), through inkwell.
//! The only crate of smelt that links LLVM: `llvm` builds target-independent
//! LLVM IR from scheduled kernels; `jit` compiles it for the host CPU;
//! `nvptx` turns it into PTX for NVIDIA GPUs.

pub mod f8;
pub mod jit;
pub mod llvm;
pub mod nvptx;

pub use jit::{Jit, KernelFn};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("LLVM: {0}")]
    Llvm(String),
    #[error("kernel IR: {0}")]
    Kernel(String),
    #[error("internal error in code generation: {0}")]
    Internal(&'static str),
}

#[cfg(test)]
mod tests;
