//! Offline compile checks for printed HIP modules (nothing AMD runs on the
//! build machine). gfx90a: Debian's `hipcc` (ROCm 5.2 clang with its device
//! libraries). gfx942: `clang-22` with `-nogpulib` — Debian's device
//! libraries predate gfx942, which is why the prelude needs none. A code
//! object with undefined symbols (e.g. an `__ocml_*` call that slipped in)
//! would fail to load, so it is an error here too.

use super::Arch;
use crate::gpu::GpuError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags every compile gets (and the runtime's hiprtc must pass too):
/// wrapping signed arithmetic (the kernel IR's integer rules), the CDNA
/// wavefront, room for the deeply nested expressions of long fused
/// chains (clang's default bracket depth is 256), full optimization.
pub const COMMON_FLAGS: &[&str] = &[
    "-O3",
    "-fwrapv",
    "-D__AMDGCN_WAVEFRONT_SIZE=64",
    "-fbracket-depth=4096",
];

/// The command that compiles `src` (HIP C++) into the code object `out`.
pub fn command(arch: Arch, src: &Path, out: &Path) -> Result<Command, GpuError> {
    let mut c = match arch {
        Arch::Gfx90a => {
            let mut c = Command::new("hipcc");
            c.args(["--genco", "--offload-arch=gfx90a", "--no-gpu-bundle-output"]);
            c
        }
        Arch::Gfx942 => {
            let mut c = Command::new("clang-22");
            c.args([
                "-x",
                "hip",
                "--cuda-device-only",
                "--offload-arch=gfx942",
                "-nogpulib",
                "--no-gpu-bundle-output",
                "-mcode-object-version=5",
                "--rocm-path=/usr",
            ]);
            c
        }
        a => {
            return Err(GpuError::Compile(format!(
                "{} is not an AMD architecture",
                a.name()
            )));
        }
    };
    c.args(COMMON_FLAGS).arg(src).arg("-o").arg(out);
    Ok(c)
}

/// Which tools this machine lacks for `arch` (empty when all are there).
pub fn missing_tools(arch: Arch) -> Vec<&'static str> {
    let tools: &[&'static str] = match arch {
        Arch::Gfx90a => &["hipcc", "llvm-nm-22"],
        _ => &["clang-22", "llvm-nm-22"],
    };
    tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Compiles `source` for `arch` into a code object in `dir` (named
/// `name.co`) and checks it defines every symbol it uses. Returns the
/// code object's path.
pub fn compile(arch: Arch, source: &str, dir: &Path, name: &str) -> Result<PathBuf, GpuError> {
    let missing = missing_tools(arch);
    if !missing.is_empty() {
        return Err(GpuError::Compile(format!(
            "cannot compile for {}: {} not found (install with scripts/prereqs.sh: hipcc rocm-device-libs clang-22 llvm-22)",
            arch.name(),
            missing.join(", ")
        )));
    }
    let io = |e: std::io::Error| GpuError::Compile(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    // One source per arch: compilers map their input, and a build of the
    // same module for the other arch running at the same time must not
    // rewrite it underneath (clang dies with SIGBUS).
    let src = dir.join(format!("{name}.{}.hip", arch.name()));
    let out = dir.join(format!("{name}.{}.co", arch.name()));
    std::fs::write(&src, source).map_err(io)?;
    let res = command(arch, &src, &out)?
        .output()
        .map_err(|e| GpuError::Compile(format!("running the {} compiler: {e}", arch.name())))?;
    if !res.status.success() || !out.is_file() {
        return Err(GpuError::Compile(format!(
            "{} compile of {} failed ({}):\n{}",
            arch.name(),
            src.display(),
            res.status,
            compiler_messages(&String::from_utf8_lossy(&res.stderr))
        )));
    }
    let nm = Command::new("llvm-nm-22")
        .arg("-u")
        .arg(&out)
        .output()
        .map_err(|e| GpuError::Compile(format!("running llvm-nm-22: {e}")))?;
    let undefined = String::from_utf8_lossy(&nm.stdout).trim().to_string();
    if !nm.status.success() || !undefined.is_empty() {
        return Err(GpuError::Compile(format!(
            "{}: {} has undefined symbols (the device library is not linked):\n{undefined}{}",
            arch.name(),
            out.display(),
            String::from_utf8_lossy(&nm.stderr)
        )));
    }
    Ok(out)
}

/// The compiler's stderr without the noise Debian's hipcc adds (it runs
/// rocm_agent_enumerator, which fails on a machine without a GPU).
fn compiler_messages(stderr: &str) -> String {
    let mut skip = false;
    let mut out = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("Traceback") {
            skip = true;
            continue;
        }
        if skip {
            if line.starts_with(' ') || line.contains("Error: [Errno") {
                continue;
            }
            skip = false;
        }
        out.push(line);
    }
    out.join("\n")
}
