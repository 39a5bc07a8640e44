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

use crate::cpu::{Buffer, Guard, Io};
use serde::{Deserialize, Serialize};
use std::path::Path;

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

/// The most dynamic shared memory one block may ask for: 227 KiB on
/// sm_90 (sm_80: 163 KiB, gfx9: 64 KiB; the driver refuses more at load).
pub const MAX_SHARED_BYTES: u32 = 227 * 1024;

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
    /// A TMA descriptor (NVIDIA sm_90+: `CUtensorMap`, 128 bytes by value)
    /// over a buffer, encoded by the driver when the artifact is loaded
    /// (it holds the buffer's device address).
    TensorMap(TensorMap),
}

/// A tiled tensor map: the view of `buffer` that bulk tensor copies
/// (`cp.async.bulk.tensor`) read box by box. Dimensions innermost first,
/// as the CUDA driver takes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorMap {
    pub buffer: usize,
    /// Element type (`f32`, `f16`, `bf16`).
    pub dtype: String,
    /// Elements per dimension, innermost first (1 to 5 dimensions).
    pub dims: Vec<u64>,
    /// Byte strides of dimensions 1.. (multiples of 16).
    pub strides: Vec<u64>,
    /// Box (tile) extent per dimension, each at most 256.
    pub box_dims: Vec<u32>,
    /// Shared-memory swizzle: 0 (none), 32, 64 or 128 bytes.
    pub swizzle: u32,
}

impl TensorMap {
    /// Bytes per element of `dtype`, if a tensor map may hold it.
    pub fn elem_bytes(&self) -> Option<u64> {
        match self.dtype.as_str() {
            "f32" | "i32" | "u32" => Some(4),
            "f16" | "bf16" => Some(2),
            "f64" | "i64" => Some(8),
            "u8" | "i8" => Some(1),
            _ => None,
        }
    }

    /// Whether the map is well-formed and stays inside `bytes`.
    pub fn check(&self, bytes: u64) -> Result<(), String> {
        let e = self.elem_bytes().ok_or(format!("dtype {}", self.dtype))?;
        let r = self.dims.len();
        if !(1..=5).contains(&r) || self.box_dims.len() != r || self.strides.len() + 1 != r {
            return Err("rank or box/stride counts".into());
        }
        if self.box_dims.iter().any(|&b| b == 0 || b > 256) || self.dims.contains(&0) {
            return Err("box extents must be 1..=256 and dims non-zero".into());
        }
        if self.strides.iter().any(|s| s % 16 != 0) || ![0, 32, 64, 128].contains(&self.swizzle) {
            return Err("strides must be multiples of 16, swizzle 0/32/64/128".into());
        }
        let mut last = (self.dims[0] - 1) * e + e;
        for (d, s) in self.dims[1..].iter().zip(&self.strides) {
            last = d
                .checked_sub(1)
                .and_then(|x| x.checked_mul(*s))
                .and_then(|x| x.checked_add(last))
                .ok_or("overflow")?;
        }
        if last > bytes {
            return Err(format!("reaches byte {last} of a {bytes}-byte buffer"));
        }
        Ok(())
    }
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
    /// Input values the program was specialized on (as in the cpu
    /// manifest): any other value is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<Guard>,
}

pub use crate::maia::artifact::crc32;

fn bad(path: &Path, msg: impl Into<String>) -> GpuArtifactError {
    GpuArtifactError::Bad {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GpuArtifactError + '_ {
    move |source| GpuArtifactError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A file name inside the folder: no separators, no `..`, so a manifest
/// can never make the loader read outside it.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.starts_with('.')
}

/// An artifact folder read back and checked.
#[derive(Debug)]
pub struct Folder {
    pub manifest: Manifest,
    /// Module file contents, in `manifest.modules` order.
    pub modules: Vec<Vec<u8>>,
    pub weights: Vec<u8>,
}

impl Manifest {
    /// Writes the folder `dir`: module files, weights, then the manifest
    /// (last, so that a folder without one is visibly incomplete). An
    /// existing folder is replaced only if it is empty or a smelt GPU
    /// artifact; nothing is written outside it.
    pub fn write(
        &self,
        dir: &Path,
        files: &[(String, String)],
        weights: &[u8],
    ) -> Result<(), GpuArtifactError> {
        if dir.exists() {
            if !dir.is_dir() {
                return Err(bad(dir, "exists and is not a folder"));
            }
            let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
            let ours = std::fs::read_to_string(dir.join("manifest.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["format"] == FORMAT);
            if !empty && !ours {
                return Err(bad(
                    dir,
                    "exists and is not a smelt GPU artifact; refusing to overwrite it",
                ));
            }
            if ours {
                // Old modules of a previous compile must not linger.
                for e in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
                    let p = e.path();
                    if p.is_file() {
                        std::fs::remove_file(&p).map_err(io(&p))?;
                    }
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (name, text) in files {
            if !plain(name) {
                return Err(bad(dir, format!("bad module file name {name:?}")));
            }
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(io(&p))?;
        }
        let p = dir.join(&self.weights_file);
        std::fs::write(&p, weights).map_err(io(&p))?;
        let text = serde_json::to_string_pretty(self).map_err(|e| bad(dir, e.to_string()))?;
        let p = dir.join("manifest.json");
        std::fs::write(&p, text + "\n").map_err(io(&p))?;
        Ok(())
    }
}

/// Whether `dir` looks like a GPU artifact folder.
pub fn is_folder(dir: &Path) -> bool {
    dir.is_dir() && dir.join("manifest.json").is_file()
}

/// Reads and checks an artifact folder: format and version, every file's
/// checksum, and that every index and offset in the manifest is in range.
pub fn read(dir: &Path) -> Result<Folder, GpuArtifactError> {
    let mp = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mp).map_err(io(&mp))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(&mp, format!("not JSON: {e}")))?;
    if v["format"] != FORMAT {
        return Err(bad(&mp, "not a smelt GPU artifact manifest"));
    }
    if v["version"] != VERSION {
        return Err(bad(
            &mp,
            format!(
                "artifact version {}, this smelt reads version {VERSION}",
                v["version"]
            ),
        ));
    }
    let m: Manifest = serde_json::from_value(v).map_err(|e| bad(&mp, e.to_string()))?;
    let mut modules = Vec::with_capacity(m.modules.len());
    for md in &m.modules {
        if !plain(&md.file) {
            return Err(bad(&mp, format!("bad module file name {:?}", md.file)));
        }
        let p = dir.join(&md.file);
        let bytes = std::fs::read(&p).map_err(io(&p))?;
        if crc32(&bytes) != md.crc32 {
            return Err(bad(&p, "checksum mismatch (edited, corrupt or truncated)"));
        }
        modules.push(bytes);
    }
    if !plain(&m.weights_file) {
        return Err(bad(
            &mp,
            format!("bad weights file name {:?}", m.weights_file),
        ));
    }
    let wp = dir.join(&m.weights_file);
    let weights = std::fs::read(&wp).map_err(io(&wp))?;
    if weights.len() as u64 != m.weights_bytes || crc32(&weights) != m.weights_crc32 {
        return Err(bad(&wp, "size or checksum mismatch (corrupt or truncated)"));
    }
    check(&m).map_err(|msg| bad(&mp, msg))?;
    Ok(Folder {
        manifest: m,
        modules,
        weights,
    })
}

/// Every index and range in the manifest, so the executor can trust them.
fn check(m: &Manifest) -> Result<(), String> {
    use crate::cpu::Place;
    let nb = m.buffers.len();
    for (i, b) in m.buffers.iter().enumerate() {
        let end = |off: u64| off.checked_add(b.bytes);
        match b.place {
            Place::Arena { offset } if end(offset).is_none_or(|e| e > m.arena_bytes) => {
                return Err(format!("buffer {i} lies outside the arena"));
            }
            Place::Weight { offset } if end(offset).is_none_or(|e| e > m.weights_bytes) => {
                return Err(format!("buffer {i} lies outside the weights"));
            }
            Place::Input { index } if index >= m.inputs.len() => {
                return Err(format!(
                    "buffer {i} names input {index}, which does not exist"
                ));
            }
            _ => {}
        }
    }
    for io in m.inputs.iter().chain(&m.outputs) {
        if io.buffer >= nb {
            return Err(format!("{}: buffer {} does not exist", io.name, io.buffer));
        }
    }
    for g in &m.guards {
        if g.input >= m.inputs.len() {
            return Err(format!("guard on input {}, which does not exist", g.input));
        }
    }
    for (s, st) in m.steps.iter().enumerate() {
        let Step::Launch {
            module,
            kernel,
            args,
            launch,
        } = st;
        let md = m
            .modules
            .get(*module)
            .ok_or_else(|| format!("step {s}: module {module} does not exist"))?;
        if !md.kernels.contains(kernel) {
            return Err(format!(
                "step {s}: module {} has no kernel {kernel}",
                md.file
            ));
        }
        for a in args {
            match a {
                Arg::Buffer(b) if *b >= nb => {
                    return Err(format!("step {s}: buffer {b} does not exist"));
                }
                Arg::TensorMap(t) => {
                    let b = m
                        .buffers
                        .get(t.buffer)
                        .ok_or_else(|| format!("step {s}: buffer {} does not exist", t.buffer))?;
                    t.check(b.bytes).map_err(|e| {
                        format!("step {s}: tensor map over buffer {}: {e}", t.buffer)
                    })?;
                }
                _ => {}
            }
        }
        if launch.grid.contains(&0) || launch.block.contains(&0) {
            return Err(format!("step {s}: empty launch"));
        }
        if launch.shared_bytes > MAX_SHARED_BYTES {
            return Err(format!(
                "step {s}: {} bytes of dynamic shared memory (no supported GPU has more than {MAX_SHARED_BYTES})",
                launch.shared_bytes
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::TensorMap;

    fn map(dims: Vec<u64>, strides: Vec<u64>, box_dims: Vec<u32>) -> TensorMap {
        TensorMap {
            buffer: 0,
            dtype: "f32".into(),
            dims,
            strides,
            box_dims,
            swizzle: 128,
        }
    }

    #[test]
    fn tensor_maps_must_stay_inside_their_buffer() {
        // A 64 x 32 f32 row-major matrix is 8192 bytes.
        let m = map(vec![32, 64], vec![128], vec![32, 64]);
        assert!(m.check(8192).is_ok());
        assert!(m.check(8191).unwrap_err().contains("reaches byte 8192"));
        assert!(
            map(vec![32, 64], vec![100], vec![32, 64])
                .check(1 << 20)
                .is_err()
        );
        assert!(
            map(vec![32, 64], vec![128], vec![32, 512])
                .check(1 << 20)
                .is_err()
        );
        assert!(
            map(vec![32, 64], vec![], vec![32, 64])
                .check(1 << 20)
                .is_err()
        );
    }
}
