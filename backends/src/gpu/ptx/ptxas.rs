//! Assembling PTX with NVIDIA's `ptxas` (no GPU needed): the check that
//! every kernel smelt prints is valid PTX for its architecture, and the
//! source of register and spill counts per entry (`ptxas -v`).
//!
//! ptxas comes from the PyPI wheel `nvidia-cuda-nvcc-cu12` (CUDA 12.9),
//! found through `$SMELT_PTXAS`, `PATH`, or the repository's `.venv`.

use super::super::GpuError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

/// What ptxas reports for one `.entry`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryReport {
    pub name: String,
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub stack_bytes: u32,
    pub shared_bytes: u32,
}

/// The `ptxas` binary to use, or an error saying how to install it.
pub fn ptxas_path() -> Result<PathBuf, GpuError> {
    if let Some(p) = std::env::var_os("SMELT_PTXAS") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(GpuError::Compile(format!(
                "SMELT_PTXAS={} is not a file",
                p.display()
            )))
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("ptxas");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    smelt_codegen::nvptx::find_cuda_file("bin/ptxas").ok_or_else(|| {
        GpuError::Compile(
            "ptxas not found: run scripts/prereqs.sh or `pip install nvidia-cuda-nvcc-cu12` \
             into the repository's .venv, or set SMELT_PTXAS to the binary"
                .into(),
        )
    })
}

/// Both tools the PTX target needs offline: ptxas and NVIDIA's libdevice.
pub fn check_toolchain() -> Result<(), GpuError> {
    ptxas_path()?;
    smelt_codegen::nvptx::libdevice_path()?;
    Ok(())
}

/// Assembles `ptx` for `arch` (`sm_80`, `sm_90a`) and returns ptxas's
/// report per entry, in the order ptxas prints them. A failure carries
/// ptxas's own message.
pub fn assemble(ptx: &str, arch: &str) -> Result<Vec<EntryReport>, GpuError> {
    let exe = ptxas_path()?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "smelt-ptxas-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| GpuError::Compile(format!("{}: {e}", dir.display())))?;
    let result = run(&exe, &dir, ptx, arch);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run(exe: &Path, dir: &Path, ptx: &str, arch: &str) -> Result<Vec<EntryReport>, GpuError> {
    let src = dir.join("module.ptx");
    let out = dir.join("module.cubin");
    std::fs::write(&src, ptx).map_err(|e| GpuError::Compile(format!("{}: {e}", src.display())))?;
    let res = Command::new(exe)
        .arg(format!("-arch={arch}"))
        .arg("-v")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| GpuError::Compile(format!("cannot run {}: {e}", exe.display())))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    if !res.status.success() {
        let msg: String = text
            .lines()
            .filter(|l| !l.starts_with("ptxas info") && !l.starts_with("    "))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n");
        return Err(GpuError::Compile(format!(
            "ptxas -arch={arch} failed:\n{msg}"
        )));
    }
    Ok(parse_report(&text))
}

/// Reads `ptxas -v` output:
/// ```text
/// ptxas info    : Compiling entry function 'k' for 'sm_80'
/// ptxas info    : Function properties for k
///     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 10 registers, used 0 barriers, 384 bytes cmem[0]
/// ```
pub fn parse_report(text: &str) -> Vec<EntryReport> {
    let mut out: Vec<EntryReport> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(EntryReport {
                name,
                ..EntryReport::default()
            });
            continue;
        }
        let Some(cur) = out.last_mut() else {
            continue;
        };
        for part in line.split(',') {
            let part = part.trim().trim_start_matches("ptxas info    : ");
            let words: Vec<&str> = part.split_whitespace().collect();
            let num = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok());
            match words.as_slice() {
                ["Used", _, "registers"] => cur.registers = num(1).unwrap_or(0),
                [_, "bytes", "stack", "frame"] => cur.stack_bytes = num(0).unwrap_or(0),
                [_, "bytes", "spill", "stores"] => cur.spill_stores = num(0).unwrap_or(0),
                [_, "bytes", "spill", "loads"] => cur.spill_loads = num(0).unwrap_or(0),
                [_, "bytes", "smem"] => cur.shared_bytes = num(0).unwrap_or(0),
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ptxas_verbose_output() {
        let text = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'add_0' for 'sm_90a'\n\
ptxas info    : Function properties for add_0\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 380 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'mul_1' for 'sm_90a'\n\
ptxas info    : Function properties for mul_1\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 8 registers, 372 bytes cmem[0]\n";
        let r = parse_report(text);
        assert_eq!(
            r,
            vec![
                EntryReport {
                    name: "add_0".into(),
                    registers: 40,
                    spill_stores: 4,
                    spill_loads: 12,
                    stack_bytes: 8,
                    shared_bytes: 2048,
                },
                EntryReport {
                    name: "mul_1".into(),
                    registers: 8,
                    ..EntryReport::default()
                },
            ]
        );
    }
}
