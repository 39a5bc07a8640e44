//! AMD: kernels printed as HIP C++.

use super::{Arch, GpuError, Printer};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, ModuleKind};

pub struct Hip(pub Arch);

impl Printer for Hip {
    fn arch(&self) -> Arch {
        self.0
    }
    fn kind(&self) -> ModuleKind {
        ModuleKind::Hip
    }
    fn module(&self, kernels: &[Scheduled]) -> Result<String, GpuError> {
        Err(GpuError::Compile(format!(
            "{}: the HIP printer is not written yet ({} kernels)",
            self.0.name(),
            kernels.len()
        )))
    }
    fn gemm(&self, _name: &str, _g: &Gemm) -> Option<(String, Launch)> {
        None
    }
}
