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

pub mod gemm;
pub mod hip;
pub mod program;
pub mod ptx;
pub mod record;

use smelt_kernel::Scheduled;
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, ModuleKind, TensorMap};

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("{0}")]
    Compile(String),
    /// A printer cannot express this kernel.
    #[error("{target}: kernel {kernel}: {msg}")]
    Print {
        target: &'static str,
        kernel: String,
        msg: String,
    },
    #[error(transparent)]
    Codegen(#[from] smelt_codegen::Error),
}

/// What differs between the GPU targets: how kernels are printed. The
/// lowering, schedule, memory plan and launches are shared.
pub trait Printer {
    fn arch(&self) -> Arch;
    /// Module file kind and extension (`ptx` / `hip`).
    fn kind(&self) -> ModuleKind;
    /// One module holding every kernel of `kernels`, each an entry point
    /// named after `Kernel::name`, with the calling convention above.
    fn module(&self, kernels: &[Scheduled]) -> Result<String, GpuError>;
    /// A tensor-core (mma.sync / wgmma / MFMA) kernel named `name` for this
    /// matrix product, as a module of its own with its launch, taking
    /// `(A, B, C)` device pointers; `None` where it has no such kernel for
    /// these sizes and dtype (the product then runs as a kernel-IR GEMM).
    fn gemm(&self, name: &str, g: &Gemm) -> Option<(String, Launch)>;
    /// `gemm` with an elementwise epilogue fused into it: `epi` is a flat
    /// kernel over C's elements that reads C (its parameter `c_param`)
    /// only at each point's own element, writes either C or one other
    /// buffer of C's size (a dtype conversion) only there, and may read
    /// other buffers. The fused kernel takes `(A, B, C, e0, ..., eN)` (every
    /// parameter of `epi`, in order) and, once it has stored an element
    /// of C, runs `epi`'s body for that element (`p` = its flat index in
    /// C). `None` where the printer cannot fuse it (the epilogue then
    /// runs as its own kernel).
    fn gemm_fused(
        &self,
        _name: &str,
        _g: &Gemm,
        _epi: &Scheduled,
        _c_param: usize,
    ) -> Option<(String, Launch)> {
        None
    }
    /// An implicit GEMM: `gemm` (optionally with an epilogue, as in
    /// `gemm_fused`) whose B operand is not read but computed. `loader` is
    /// a flat kernel over B's elements (B dense row-major over (batch, k,
    /// n), so point `p` of the loader is B's element `p`) that stores B's
    /// element once per point through its parameter `b_param` and reads
    /// only other buffers (Conv's im2col). The kernel takes `(A, B, C,
    /// l0, ..., lN[, e0, ..., eM])` (the loader's parameters, then the
    /// epilogue's, in order) and, where it would load B's element `p`,
    /// evaluates the loader's body for `p` instead. `None` where the
    /// printer has no such kernel (the loader then runs on its own).
    fn gemm_implicit(
        &self,
        _name: &str,
        _g: &Gemm,
        _loader: &Scheduled,
        _b_param: usize,
        _epi: Option<(&Scheduled, usize)>,
    ) -> Option<(String, Launch)> {
        None
    }
    /// TMA descriptors (`CUtensorMap`, by value) that the kernels of
    /// `gemm`/`gemm_fused` for `g` take after all their other parameters:
    /// per map, the operand it views (0 = A, 1 = B, 2 = C) and the map
    /// (its `buffer` is set by the program). The runtime encodes them at
    /// load time, when the buffers' addresses are known.
    fn gemm_tensor_maps(&self, _g: &Gemm) -> Vec<(usize, TensorMap)> {
        Vec::new()
    }
    /// `gemm_tensor_maps` for the kernels of `gemm_implicit` (which take
    /// them after the loader's and the epilogue's parameters); never B,
    /// which they compute.
    fn gemm_implicit_tensor_maps(&self, _g: &Gemm) -> Vec<(usize, TensorMap)> {
        Vec::new()
    }
}

/// The printer of `arch`.
pub fn printer(arch: Arch) -> Box<dyn Printer> {
    if arch.is_nvidia() {
        Box::new(ptx::Ptx(arch))
    } else {
        Box::new(hip::Hip(arch))
    }
}
pub use program::{Compiled, compile, compile_for, compile_for_with, compile_with, flat_launch};
