//! NVIDIA: kernels as PTX through LLVM NVPTX (smelt-codegen), tensor-core
//! GEMMs as hand-written PTX (`mma` with mma.sync for sm_80, `wgmma` with
//! warpgroup MMA for sm_90a; what they share in `common`), elementwise
//! epilogues fused into those GEMMs, and the ptxas check (`ptxas`).

pub mod common;
pub mod mma;
pub mod ptxas;
pub mod tma;
pub mod tma_tf32;
pub mod wgmma;

use super::{Arch, GpuError, Printer};
use common::{Epi, Imp};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, ModuleKind, TensorMap};

pub struct Ptx(pub Arch);

impl Ptx {
    /// The GEMM module of this architecture: on sm_90a wgmma fed by TMA
    /// where tensor maps can view the operands it reads (`tma` for
    /// f16/bf16, `tma_tf32` for f32 with the TF32 split in shared
    /// memory), else wgmma staged through registers; mma.sync otherwise
    /// (and on sm_90a where wgmma declines). `Printer::gemm_tensor_maps`
    /// and `gemm_implicit_tensor_maps` must agree: they ask for maps
    /// exactly where a TMA kernel serves.
    /// With `imp` (an implicit GEMM) only A is TMA-fed: B is computed.
    fn tensor_core(
        &self,
        name: &str,
        g: &Gemm,
        epi: Option<&Epi>,
        imp: Option<&Imp>,
    ) -> Option<(String, Launch)> {
        if imp.is_none()
            && let Some(l) = tma::launch(self.0, name, g)
        {
            return Some((tma::module(self.0, name, g, epi), l));
        }
        if let Some(l) = tma_tf32::launch(self.0, name, g, imp.is_some()) {
            return Some((tma_tf32::module(self.0, name, g, epi, imp), l));
        }
        if let Some(l) = wgmma::launch(self.0, name, g) {
            return Some((wgmma::module(self.0, name, g, epi, imp), l));
        }
        let l = mma::launch(self.0, name, g)?;
        Some((mma::module(self.0, name, g, epi, imp), l))
    }

    /// The fused epilogue's `.func` text (see `gemm_fused`), or None where
    /// it cannot fuse.
    fn epilogue(&self, g: &Gemm, epi: &Scheduled, c_param: usize, func: &str) -> Option<String> {
        let elems = g.batch.checked_mul(g.m)?.checked_mul(g.n)?;
        let dense = g.c_strides[2] == 1
            && g.c_strides[1] == g.n as i64
            && (g.batch == 1 || g.c_strides[0] == (g.m * g.n) as i64);
        let k = &epi.kernel;
        if !dense
            || c_param >= k.params.len()
            || epi.parallel_extent != elems
            || epi.points_per_iter != 1
            || k.domain.iter().product::<u64>() != elems
        {
            return None;
        }
        smelt_codegen::nvptx::point_func(epi, self.0.name(), func).ok()
    }
}

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
        self.tensor_core(name, g, None, None)
    }
    fn gemm_tensor_maps(&self, g: &Gemm) -> Vec<(usize, TensorMap)> {
        let mut v = tma::maps(self.0, g);
        v.extend(tma_tf32::maps(self.0, g, false));
        v
    }
    fn gemm_implicit_tensor_maps(&self, g: &Gemm) -> Vec<(usize, TensorMap)> {
        tma_tf32::maps(self.0, g, true)
    }
    /// The epilogue's body becomes a `.func` (`NAME_epi`, printed from the
    /// kernel IR by LLVM, libdevice linked) in the GEMM's module; the GEMM
    /// calls it for each element it stored, with the element's flat index.
    /// Declines (None) unless C is dense row-major and the epilogue is one
    /// point per iteration over exactly C's elements.
    fn gemm_fused(
        &self,
        name: &str,
        g: &Gemm,
        epi: &Scheduled,
        c_param: usize,
    ) -> Option<(String, Launch)> {
        let func = format!("{name}_epi");
        let text = self.epilogue(g, epi, c_param, &func)?;
        let e = Epi {
            func: &func,
            params: epi.kernel.params.len(),
            text: &text,
        };
        self.tensor_core(name, g, Some(&e), None)
    }
    /// B's loader becomes a value `.func` (`NAME_loader`, printed from the
    /// kernel IR by LLVM) returning B's element `p`; the kernels call it
    /// where they would load B (on sm_90a f32, A still comes by TMA where
    /// a map can view it). Declines (None) unless B is dense
    /// and of the GEMM's type and the loader is one point per iteration
    /// over exactly B's elements.
    fn gemm_implicit(
        &self,
        name: &str,
        g: &Gemm,
        loader: &Scheduled,
        b_param: usize,
        epi: Option<(&Scheduled, usize)>,
    ) -> Option<(String, Launch)> {
        use smelt_kernel::{Access, Ty};
        let k = &loader.kernel;
        let ty = match common::Elem::of(g)? {
            common::Elem::F32 => Ty::F32,
            common::Elem::F16 => Ty::F16,
            common::Elem::Bf16 => Ty::BF16,
        };
        let b_elems = g.batch.checked_mul(g.k)?.checked_mul(g.n)?;
        let dense = g.b_strides[2] == 1
            && g.b_strides[1] == g.n as i64
            && (g.batch == 1 || g.b_strides[0] == (g.k * g.n) as i64);
        let b = k.params.get(b_param)?;
        if !dense
            || b.ty != ty
            || b.access != Access::Write
            || b.len < b_elems
            || k.domain.iter().product::<u64>() != b_elems
            || loader.parallel_extent != b_elems
            || loader.points_per_iter != 1
        {
            return None;
        }
        let lfunc = format!("{name}_loader");
        let ltext =
            smelt_codegen::nvptx::value_func(loader, self.0.name(), &lfunc, b_param).ok()?;
        let imp = Imp {
            func: &lfunc,
            params: k.params.len(),
            text: &ltext,
        };
        let efunc = format!("{name}_epi");
        let etext = match epi {
            Some((e, c)) => Some((self.epilogue(g, e, c, &efunc)?, e.kernel.params.len())),
            None => None,
        };
        let e = etext.as_ref().map(|(text, params)| Epi {
            func: &efunc,
            params: *params,
            text,
        });
        self.tensor_core(name, g, e.as_ref(), Some(&imp))
    }
}
