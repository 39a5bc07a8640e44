//! The `.smc` artifact of the cpu target: a manifest (buffers, steps, graph
//! inputs and outputs), the kernels as LLVM bitcode (compiled for the host
//! when the artifact is loaded), and the weights.
//!
//! Layout: `SMELTCPU` | version u32 | crc32 u32 of everything after it |
//! manifest length u64 | manifest (JSON) | bitcode length u64 | bitcode |
//! padding to 64 | weights. Weight buffers are referenced by offset into the
//! weights section, which starts 64-byte aligned so that a memory map hands
//! kernels aligned data.

use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MAGIC: &[u8; 8] = b"SMELTCPU";
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}: not a smelt cpu artifact (bad magic)")]
    Magic(String),
    #[error("{path}: artifact version {found}, this smelt reads version {VERSION}")]
    Version { path: String, found: u32 },
    #[error("{0}: checksum mismatch (the file is corrupt or truncated)")]
    Checksum(String),
    #[error("{path}: truncated at {what}")]
    Truncated { path: String, what: &'static str },
    #[error("{path}: bad manifest: {msg}")]
    Manifest { path: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Where a buffer's bytes live at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Place {
    /// In the activation arena at this byte offset (planned by liveness).
    Arena { offset: u64 },
    /// In the weights section at this byte offset.
    Weight { offset: u64 },
    /// The caller's `i`-th input.
    Input { index: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buffer {
    /// smelt dtype name (`f32`, `bf16`, `i64`, ...).
    pub dtype: String,
    pub shape: Vec<u64>,
    pub bytes: u64,
    pub place: Place,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Io {
    pub name: String,
    pub buffer: usize,
}

/// A matrix multiply `C[b] = alpha * A[b] x B[b] + beta * C[b]` over a batch,
/// each operand addressed by strides (in elements), so transposes and
/// broadcast batches cost nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gemm {
    /// `f32` or `f64`.
    pub dtype: String,
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a: usize,
    pub b: usize,
    pub c: usize,
    /// (batch, row, col) strides of A, B and C.
    pub a_strides: [i64; 3],
    pub b_strides: [i64; 3],
    pub c_strides: [i64; 3],
    pub alpha: f64,
    /// 0 (C is overwritten) or 1 (accumulate into C, e.g. a broadcast bias
    /// copied there first).
    pub beta: f64,
    /// C's dtype where it differs from A's and B's: `f32` for f16/bf16
    /// products whose sums must not be rounded to 16 bits (attention
    /// scores that go on to a softmax). Only GPU printers take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub c_dtype: Option<String>,
}

impl Gemm {
    /// C's dtype: `c_dtype` where set, else the operands'.
    pub fn c_dtype(&self) -> &str {
        self.c_dtype.as_deref().unwrap_or(&self.dtype)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Run a JIT kernel over `0..parallel_extent`, one buffer per parameter.
    Kernel {
        kernel: usize,
        args: Vec<usize>,
        parallel_extent: u64,
        points_per_iter: u64,
    },
    Gemm(Gemm),
    /// An op with no kernel lowering, run by the host's reference
    /// implementation (`HostOps`). `op` is opaque to the runtime.
    Host {
        op: String,
        inputs: Vec<Option<usize>>,
        outputs: Vec<Option<usize>>,
    },
}

/// The artifact was specialized on this input's value (its shapes depend
/// on it): any other value is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guard {
    pub input: usize,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// The host features the kernels were tuned for is decided at load
    /// time; this records what produced the artifact.
    pub producer: String,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub buffers: Vec<Buffer>,
    pub arena_bytes: u64,
    /// Kernel entry points in the bitcode, indexed by `Step::Kernel::kernel`.
    pub kernels: Vec<String>,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
}

/// A whole artifact in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Artifact {
    pub manifest: Manifest,
    pub bitcode: Vec<u8>,
    pub weights: Vec<u8>,
}

const ALIGN: usize = 64;

impl Artifact {
    pub fn to_bytes(&self) -> Vec<u8> {
        let manifest = serde_json::to_vec(&self.manifest).expect("manifest serializes");
        let mut out =
            Vec::with_capacity(manifest.len() + self.bitcode.len() + self.weights.len() + 128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
        out.extend_from_slice(&manifest);
        out.extend_from_slice(&(self.bitcode.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.bitcode);
        while out.len() % ALIGN != 0 {
            out.push(0);
        }
        out.extend_from_slice(&self.weights);
        let crc = crate::maia::artifact::crc32(&out[16..]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    pub fn from_bytes(b: &[u8], path: &str) -> Result<Artifact, ArtifactError> {
        let trunc = |what| ArtifactError::Truncated {
            path: path.to_string(),
            what,
        };
        if b.len() < 16 || &b[..8] != MAGIC {
            return Err(if b.len() < 8 {
                trunc("header")
            } else {
                ArtifactError::Magic(path.to_string())
            });
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version != VERSION {
            return Err(ArtifactError::Version {
                path: path.to_string(),
                found: version,
            });
        }
        let crc = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if crate::maia::artifact::crc32(&b[16..]) != crc {
            return Err(ArtifactError::Checksum(path.to_string()));
        }
        let mut pos = 16usize;
        let mut section = |what: &'static str| -> Result<&[u8], ArtifactError> {
            let len_end = pos
                .checked_add(8)
                .filter(|&e| e <= b.len())
                .ok_or(trunc(what))?;
            let mut l = [0u8; 8];
            l.copy_from_slice(&b[pos..len_end]);
            let len = usize::try_from(u64::from_le_bytes(l)).map_err(|_| trunc(what))?;
            let end = len_end
                .checked_add(len)
                .filter(|&e| e <= b.len())
                .ok_or(trunc(what))?;
            pos = end;
            Ok(&b[len_end..end])
        };
        let manifest_bytes = section("manifest")?;
        let manifest: Manifest =
            serde_json::from_slice(manifest_bytes).map_err(|e| ArtifactError::Manifest {
                path: path.to_string(),
                msg: e.to_string(),
            })?;
        let bitcode = section("bitcode")?.to_vec();
        let wstart = pos.div_ceil(ALIGN) * ALIGN;
        let weights = b.get(wstart.min(b.len())..).unwrap_or(&[]).to_vec();
        let a = Artifact {
            manifest,
            bitcode,
            weights,
        };
        a.validate(path)?;
        Ok(a)
    }

    pub fn read(path: &Path) -> Result<Artifact, ArtifactError> {
        let p = path.display().to_string();
        let b = std::fs::read(path).map_err(|source| ArtifactError::Io {
            path: p.clone(),
            source,
        })?;
        Self::from_bytes(&b, &p)
    }

    /// Every index and byte range in the manifest is in bounds, so that the
    /// executor can trust it.
    fn validate(&self, path: &str) -> Result<(), ArtifactError> {
        let m = &self.manifest;
        let bad = |msg: String| ArtifactError::Manifest {
            path: path.to_string(),
            msg,
        };
        let nb = m.buffers.len();
        for (i, buf) in m.buffers.iter().enumerate() {
            let end = match buf.place {
                Place::Arena { offset } => (offset.checked_add(buf.bytes), m.arena_bytes),
                Place::Weight { offset } => {
                    (offset.checked_add(buf.bytes), self.weights.len() as u64)
                }
                Place::Input { index } => {
                    if index >= m.inputs.len() {
                        return Err(bad(format!("buffer {i}: input {index} does not exist")));
                    }
                    (Some(0), 0)
                }
            };
            if end.0.is_none_or(|e| e > end.1) {
                return Err(bad(format!("buffer {i} lies outside its memory")));
            }
        }
        for io in m.inputs.iter().chain(&m.outputs) {
            if io.buffer >= nb {
                return Err(bad(format!(
                    "\"{}\": buffer {} does not exist",
                    io.name, io.buffer
                )));
            }
        }
        if let Some(g) = m.guards.iter().find(|g| g.input >= m.inputs.len()) {
            return Err(bad(format!(
                "guard on input {} which does not exist",
                g.input
            )));
        }
        for (s, step) in m.steps.iter().enumerate() {
            let ids: Vec<usize> = match step {
                Step::Kernel { kernel, args, .. } => {
                    if *kernel >= m.kernels.len() {
                        return Err(bad(format!("step {s}: kernel {kernel} does not exist")));
                    }
                    args.clone()
                }
                Step::Gemm(g) => vec![g.a, g.b, g.c],
                Step::Host {
                    inputs, outputs, ..
                } => inputs.iter().chain(outputs).flatten().copied().collect(),
            };
            if let Some(b) = ids.iter().find(|&&b| b >= nb) {
                return Err(bad(format!("step {s}: buffer {b} does not exist")));
            }
        }
        Ok(())
    }
}
