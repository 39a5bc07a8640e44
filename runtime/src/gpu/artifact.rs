//! The GPU artifact is a folder a person can read:
//!
//! ```text
//! model.gpu/
//!   manifest.json   target, buffers (arena offsets), kernels, launch steps
//!   kernels.ptx     one file per module: PTX (NVIDIA) or HIP C++ (AMD)
//!   gemm_0.ptx      ...
//!   weights.bin     every weight, 256-byte aligned, referenced by offset
//! ```
//!
//! The manifest names each module's file and checksum, so a module edited
//! by hand (or truncated) is noticed at load time.

use crate::cpu::{Buffer, Io};
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "smelt-gpu";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum GpuArtifactError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Grid and block of one launch; `shared_bytes` of dynamic shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_bytes: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleKind {
    /// PTX text, JIT-compiled by the CUDA driver at load.
    Ptx,
    /// HIP C++ source, compiled by hiprtc at load.
    Hip,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// File name inside the artifact folder.
    pub file: String,
    pub kind: ModuleKind,
    /// crc32 of the file's bytes.
    pub crc32: u32,
    /// Entry points defined by this module.
    pub kernels: Vec<String>,
}

/// One kernel argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arg {
    /// Device pointer to this buffer.
    Buffer(usize),
    /// A 64-bit integer by value.
    I64(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    /// Launch `kernel` of `module` in stream order.
    Launch {
        module: usize,
        kernel: String,
        args: Vec<Arg>,
        launch: Launch,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub name: String,
    pub producer: String,
    /// `sm_80`, `sm_90a`, `gfx90a`, `gfx942`.
    pub target: String,
    pub modules: Vec<Module>,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    /// Buffers as in the cpu manifest: arena offsets planned by liveness
    /// (one device allocation), weights by offset into `weights.bin`.
    pub buffers: Vec<Buffer>,
    pub arena_bytes: u64,
    pub weights_file: String,
    pub weights_bytes: u64,
    pub weights_crc32: u32,
    pub steps: Vec<Step>,
}
