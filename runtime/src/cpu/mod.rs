//! The cpu target's runtime half: the `.smc` artifact and its executor.
//! Kernels arrive as function pointers (the JIT lives in smelt-codegen), so
//! this crate links no LLVM.

pub mod artifact;
pub mod exec;

pub use artifact::{Artifact, ArtifactError, Buffer, Gemm, Guard, Io, Manifest, Place, Step};
pub use exec::{ExecError, Executor, HostOps, HostTensor, KernelFn};
