//! A printer that records what a GPU compile asks for — every flat kernel,
//! every tensor-core GEMM and fused GEMM its inner printer accepted — so
//! that tests can check exactly what `compile` emits, batched across many
//! graphs (one compiler run per batch instead of per graph).

use super::{Arch, GpuError, Printer};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, ModuleKind};
use std::cell::RefCell;

pub struct Recorder {
    pub inner: Box<dyn Printer>,
    pub kernels: RefCell<Vec<Scheduled>>,
    pub gemms: RefCell<Vec<Gemm>>,
    /// (GEMM, epilogue, C's parameter in the epilogue).
    pub fused: RefCell<Vec<(Gemm, Scheduled, usize)>>,
    /// (GEMM, B's loader, B's parameter in it, fused epilogue).
    pub implicit: RefCell<Vec<ImplicitGemm>>,
}

pub type ImplicitGemm = (Gemm, Scheduled, usize, Option<(Scheduled, usize)>);

impl Recorder {
    pub fn new(arch: Arch) -> Self {
        Recorder {
            inner: super::printer(arch),
            kernels: RefCell::default(),
            gemms: RefCell::default(),
            fused: RefCell::default(),
            implicit: RefCell::default(),
        }
    }
}

impl Printer for Recorder {
    fn arch(&self) -> Arch {
        self.inner.arch()
    }

    fn kind(&self) -> ModuleKind {
        self.inner.kind()
    }

    /// Records the kernels; the module text is left to the caller.
    fn module(&self, kernels: &[Scheduled]) -> Result<String, GpuError> {
        self.kernels.borrow_mut().extend(kernels.iter().cloned());
        Ok(String::new())
    }

    fn gemm(&self, name: &str, g: &Gemm) -> Option<(String, Launch)> {
        let r = self.inner.gemm(name, g);
        if r.is_some() {
            self.gemms.borrow_mut().push(g.clone());
        }
        r
    }

    fn gemm_implicit(
        &self,
        name: &str,
        g: &Gemm,
        loader: &Scheduled,
        b_param: usize,
        epi: Option<(&Scheduled, usize)>,
    ) -> Option<(String, Launch)> {
        let r = self.inner.gemm_implicit(name, g, loader, b_param, epi);
        if r.is_some() {
            self.implicit.borrow_mut().push((
                g.clone(),
                loader.clone(),
                b_param,
                epi.map(|(e, c)| (e.clone(), c)),
            ));
        }
        r
    }

    fn gemm_tensor_maps(&self, g: &Gemm) -> Vec<(usize, smelt_runtime::gpu::TensorMap)> {
        self.inner.gemm_tensor_maps(g)
    }

    fn gemm_implicit_tensor_maps(&self, g: &Gemm) -> Vec<(usize, smelt_runtime::gpu::TensorMap)> {
        self.inner.gemm_implicit_tensor_maps(g)
    }

    fn gemm_fused(
        &self,
        name: &str,
        g: &Gemm,
        epi: &Scheduled,
        c_param: usize,
    ) -> Option<(String, Launch)> {
        let r = self.inner.gemm_fused(name, g, epi, c_param);
        if r.is_some() {
            self.fused
                .borrow_mut()
                .push((g.clone(), epi.clone(), c_param));
        }
        r
    }
}
