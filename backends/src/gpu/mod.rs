//! The GPU targets: NVIDIA (`sm_80`, `sm_90a`: PTX) and AMD (`gfx90a`,
//! `gfx942`: HIP C++). Both share the lowering (`crate::lower`) and the
//! kernel IR with the cpu target; kernels get the one-thread-per-point
//! schedule (`schedule::flat`) and only the printers differ:
//! `ptx` (LLVM NVPTX through smelt-codegen) and `hip` (C++ text).
//!
//! Calling convention shared by both printers, for a scheduled kernel
//! `k` with parameters `p0..pN`:
//! `NAME(p0, ..., pN, int64 total)`, launched 1-D with `BLOCK` threads per
//! block; each thread runs the body of the kernel's parallel loop for
//! `p = blockIdx.x * blockDim.x + threadIdx.x`, striding by
//! `gridDim.x * blockDim.x` while `p < total` (so the runtime may cap the
//! grid). Matrix products (`smelt_runtime::cpu::Gemm`) go either to a
//! printer's tensor-core kernel or, where it declines, to a kernel-IR
//! GEMM (`gemm.rs`) printed like any other kernel.

/// Threads per block of every flat kernel (a multiple of both the NVIDIA
/// warp, 32, and the AMD wavefront, 64).
pub const BLOCK: u32 = 256;

/// A GPU architecture smelt compiles for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Sm80,
    Sm90a,
    Gfx90a,
    Gfx942,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Sm80, Arch::Sm90a, Arch::Gfx90a, Arch::Gfx942];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Sm80 => "sm_80",
            Arch::Sm90a => "sm_90a",
            Arch::Gfx90a => "gfx90a",
            Arch::Gfx942 => "gfx942",
        }
    }

    pub fn parse(s: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == s)
    }

    pub fn is_nvidia(self) -> bool {
        matches!(self, Arch::Sm80 | Arch::Sm90a)
    }

    /// Threads that execute in lockstep: 32 on NVIDIA, 64 on CDNA.
    pub fn wave(self) -> u32 {
        if self.is_nvidia() { 32 } else { 64 }
    }
}
