//! AMD: kernels printed as HIP C++ (gfx90a, gfx942).
//!
//! A module is `#include <hip/hip_runtime.h>`, the fixed prelude of device
//! helpers (`prelude.hip`: storage conversions, integer rules, math
//! functions that need no device library), the per-format FP8/FP4
//! helpers generated from `smelt_codegen::f8`, then one
//! `extern "C" __global__` function per kernel with the calling convention
//! of `gpu/mod.rs`. Matrix products get an MFMA kernel (`mfma.rs`);
//! `toolchain.rs` compiles modules offline to check them.

mod kernel;
pub mod mfma;
mod names;
pub mod toolchain;

pub use kernel::{storage_c, value_c};

use super::{Arch, GpuError, Printer};
use smelt_kernel::{Access, Scheduled, Ty};
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, ModuleKind};
use std::fmt::Write;

/// The device helpers every module starts with.
pub const PRELUDE: &str = include_str!("prelude.hip");

pub struct Hip(pub Arch);

impl Hip {
    fn target(&self) -> &'static str {
        self.0.name()
    }
}

/// The module's opening lines: what it is, for which GPU, how to compile it.
pub fn module_header(arch: Arch, what: &str) -> String {
    format!(
        "// smelt: {what} for {} (AMD CDNA, wavefront 64), printed as HIP C++.\n\
         // Compile with -fwrapv -D__AMDGCN_WAVEFRONT_SIZE=64 (smelt's toolchain.rs\n\
         // gives the full command lines).\n\
         #include <hip/hip_runtime.h>\n\n",
        arch.name()
    )
}

/// One decode/encode pair per 8-bit (and 4-bit) float format, with the
/// format's constants from `smelt_codegen::f8` (the same ones the LLVM
/// emitter uses).
fn float_formats() -> String {
    let mut s = String::from("// ---- the FP8 / FP4 formats ----\n");
    for t in [
        Ty::F8E4M3FN,
        Ty::F8E4M3FNUZ,
        Ty::F8E5M2,
        Ty::F8E5M2FNUZ,
        Ty::F4E2M1,
    ] {
        let Some(f) = smelt_codegen::f8::format(t) else {
            continue;
        };
        let over = if f.always_saturates() {
            f.max_code()
        } else {
            f.inf_code().unwrap_or(f.nan_code())
        };
        let over_says = if f.always_saturates() {
            "saturates".to_string()
        } else if f.inf_code().is_some() {
            "gives inf".to_string()
        } else {
            "gives NaN".to_string()
        };
        let _ = writeln!(
            s,
            "// {}: {} exponent bits, {} mantissa bits, bias {}; largest finite {}; overflow {}.",
            t.name(),
            f.exp_bits,
            f.man_bits,
            f.bias,
            f.max_value(),
            over_says
        );
        let _ = writeln!(
            s,
            "SMELT_INLINE float smelt_decode_{n}(uint32_t code) {{ return smelt_fp_decode<{}, {}, {}, {}, {}, {}, {}>(code); }}",
            f.bits,
            f.exp_bits,
            f.man_bits,
            f.bias,
            f.ieee,
            f.fn_nan,
            f.uz,
            n = t.name()
        );
        let _ = writeln!(
            s,
            "SMELT_INLINE uint8_t smelt_encode_{n}(float x) {{ return smelt_fp_encode<{}, {}, {:#x}, {:#x}, {:#x}, {:#x}, {}>(x); }}",
            f.man_bits,
            f.bias,
            f.max_code(),
            f.sign_bit(),
            f.nan_code(),
            over,
            f.uz,
            n = t.name()
        );
    }
    s.push('\n');
    s
}

impl Printer for Hip {
    fn arch(&self) -> Arch {
        self.0
    }
    fn kind(&self) -> ModuleKind {
        ModuleKind::Hip
    }
    fn module(&self, kernels: &[Scheduled]) -> Result<String, GpuError> {
        let mut s = module_header(self.0, &format!("{} kernels", kernels.len()));
        s.push_str(PRELUDE);
        s.push('\n');
        s.push_str(&float_formats());
        for k in kernels {
            s.push_str(&kernel::KernelPrinter::print(self.target(), k)?);
            s.push('\n');
        }
        Ok(s)
    }
    fn gemm(&self, name: &str, g: &Gemm) -> Option<(String, Launch)> {
        mfma::gemm(self.0, name, g)
    }
    fn gemm_fused(
        &self,
        name: &str,
        g: &Gemm,
        epi: &Scheduled,
        c_param: usize,
    ) -> Option<(String, Launch)> {
        let mut code = String::from(PRELUDE);
        code.push('\n');
        code.push_str(&float_formats());
        let function = format!("{name}_epilogue");
        let fused = self.epilogue(g, epi, c_param, &function, &mut code)?;
        mfma::gemm_with(self.0, name, g, &code, Some(&fused), None)
    }
    fn gemm_implicit(
        &self,
        name: &str,
        g: &Gemm,
        loader: &Scheduled,
        b_param: usize,
        epi: Option<(&Scheduled, usize)>,
    ) -> Option<(String, Launch)> {
        let k = &loader.kernel;
        let ty = gemm_ty(&g.dtype)?;
        let b_elems = g.batch.checked_mul(g.k)?.checked_mul(g.n)?;
        // The loader's point is B's flat index: one thread per element of
        // B, storing it once (`b_loader` in program.rs checks the store).
        let b = k.params.get(b_param)?;
        if b.ty != ty
            || b.access != Access::Write
            || b.len < b_elems
            || k.points() != b_elems
            || loader.parallel_extent != b_elems
            || loader.points_per_iter != 1
        {
            return None;
        }
        let mut code = String::from(PRELUDE);
        code.push('\n');
        code.push_str(&float_formats());
        let function = format!("{name}_loader");
        code.push_str(
            &kernel::KernelPrinter::print_value_fn(self.target(), loader, &function, b_param)
                .ok()?,
        );
        let implicit = mfma::Implicit {
            kernel: &k.name,
            function: &function,
            params: param_decls(
                k,
                |i, pname| (i == b_param).then(|| format!("loader's `{pname}` = B (unused)")),
                "loader",
            ),
        };
        let efn = format!("{name}_epilogue");
        let fused = match epi {
            Some((e, c)) => Some(self.epilogue(g, e, c, &efn, &mut code)?),
            None => None,
        };
        mfma::gemm_with(self.0, name, g, &code, fused.as_ref(), Some(&implicit))
    }
}

impl Hip {
    /// The fused epilogue `epi` of `g` as the device function `function`
    /// (appended to `code`); `None` where it cannot fuse.
    fn epilogue<'a>(
        &self,
        g: &Gemm,
        epi: &'a Scheduled,
        c_param: usize,
        function: &'a str,
        code: &mut String,
    ) -> Option<mfma::Fused<'a>> {
        let k = &epi.kernel;
        let ty = gemm_ty(g.c_dtype())?;
        let c_elems = g.batch.checked_mul(g.m)?.checked_mul(g.n)?;
        let (m, n) = (i64::try_from(g.m).ok()?, i64::try_from(g.n).ok()?);
        // The epilogue's point is C's flat index: C must be dense row-major
        // and the epilogue one thread per element of C.
        let dense = g.c_strides[2] == 1
            && g.c_strides[1] == n
            && (g.batch == 1 || g.c_strides[0] == m.checked_mul(n)?);
        let c = k.params.get(c_param)?;
        if !dense
            || c.ty != ty
            || c.len < c_elems
            || k.points() != c_elems
            || epi.parallel_extent != c_elems
            || epi.points_per_iter != 1
        {
            return None;
        }
        code.push_str(&kernel::KernelPrinter::print_point_fn(self.target(), epi, function).ok()?);
        Some(mfma::Fused {
            kernel: &k.name,
            function,
            params: param_decls(
                k,
                |i, pname| (i == c_param).then(|| format!("epilogue's `{pname}` = C")),
                "epilogue",
            ),
            c_param,
        })
    }
}

/// A storage type of a GEMM operand with an MFMA kernel.
fn gemm_ty(dtype: &str) -> Option<Ty> {
    Some(match dtype {
        "f32" => Ty::F32,
        "f64" => Ty::F64,
        "f16" => Ty::F16,
        "bf16" => Ty::BF16,
        _ => return None,
    })
}

/// `(C++ pointer type, what it is)` per parameter of `k` (a kernel whose
/// body a GEMM calls), `special` naming the one the GEMM's own operand is.
fn param_decls(
    k: &smelt_kernel::Kernel,
    special: impl Fn(usize, &str) -> Option<String>,
    role: &str,
) -> Vec<(String, String)> {
    k.params
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // Kernel-IR names go into C comments: keep them inert.
            let pname: String = p
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '?'
                    }
                })
                .collect();
            let cst = if p.access == Access::Read {
                "const "
            } else {
                ""
            };
            let says = special(i, &pname).unwrap_or_else(|| {
                format!(
                    "{role}'s `{pname}`: {} {}[{}]",
                    if p.access == Access::Read {
                        "in"
                    } else {
                        "out"
                    },
                    p.ty.name(),
                    p.len
                )
            });
            (format!("{cst}{}*", kernel::storage_c(p.ty)), says)
        })
        .collect()
}

/// The part of a module after the prelude and format helpers: the kernels
/// alone (for snapshots and readers).
pub fn kernels_only(module: &str) -> &str {
    let marker = "// ---- the FP8 / FP4 formats ----\n";
    match module.find(marker) {
        Some(i) => {
            let rest = &module[i..];
            rest.find("\n\n").map_or(rest, |j| &rest[j + 2..])
        }
        None => module,
    }
}
