//! NVIDIA: kernels as PTX through LLVM NVPTX (smelt-codegen), tensor-core
//! GEMMs as hand-written PTX (`mma`), and the ptxas check (`ptxas`).

pub mod mma;
pub mod ptxas;

use super::{Arch, GpuError, Printer};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, ModuleKind};

pub struct Ptx(pub Arch);

impl Printer for Ptx {
    fn arch(&self) -> Arch {
        self.0
    }
    fn kind(&self) -> ModuleKind {
        ModuleKind::Ptx
    }
    fn module(&self, kernels: &[Scheduled]) -> Result<String, GpuError> {
        if !self.0.is_nvidia() {
            return Err(GpuError::Compile(format!(
                "{}: not an NVIDIA architecture",
                self.0.name()
            )));
        }
        Ok(smelt_codegen::nvptx::ptx(kernels, self.0.name())?)
    }
    fn gemm(&self, name: &str, g: &Gemm) -> Option<(String, Launch)> {
        mma::gemm(self.0, name, g)
    }
}
