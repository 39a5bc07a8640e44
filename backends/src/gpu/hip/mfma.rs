//! Matrix products on CDNA's matrix cores (MFMA), one kernel per
//! `smelt_runtime::cpu::Gemm` with its sizes and strides as constants.
//!
//! Instructions: `v_mfma_f32_16x16x4f32` (f32 in, f32 accumulate: full
//! single precision) and `v_mfma_f64_16x16x4f64`, both gfx90a and gfx942.
//! One wavefront (64 lanes) computes D(16x16) += A(16x4) B(4x16). Lane
//! layout (one block, no broadcast: cbsz = abid = blgp = 0), from AMD's
//! lab notes on matrix cores (amd/amd-lab-notes, matrix-cores/src/
//! mfma_fp32_16x16x4fp32.cpp and mfma_fp64_16x16x4fp64.cpp):
//!   A operand, one value per lane:  lane l holds A[i = l % 16][k = l / 16]
//!   B operand, one value per lane:  lane l holds B[k = l / 16][j = l % 16]
//!   D, four values per lane, d[r] of lane l is D[i][j = l % 16] with
//!     f32: i = 4 (l / 16) + r   (a lane's registers are consecutive rows)
//!     f64: i = l / 16 + 4 r     (its registers are rows 4 apart)
//! The D layouts differ between the two instructions. The host test
//! (tests/hip.rs) runs these kernels on an emulation of both builtins
//! written from the same layouts.
//!
//! Tiling: a 256-thread block is 4 wavefronts in a 2x2 grid, each owning a
//! 32x32 tile of C as 2x2 MFMA tiles, so a block covers 64x64 of C and
//! every loaded A/B value feeds two MFMAs. Operands are read straight
//! from global memory with bounds checks (zero outside), so any m, n, k
//! works; edges are masked at the store. Simple rather than fast: no LDS
//! staging or double buffering yet.

use super::{Arch, module_header};
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::Launch;
use std::fmt::Write;

const TILE: u64 = 64;

/// An elementwise epilogue fused into the GEMM (see `Printer::gemm_fused`):
/// its per-point body is the `__device__` function `function` (printed by
/// the kernel printer into `code`, together with the prelude it needs),
/// which the GEMM calls on every element of C it stores.
pub struct Fused<'a> {
    /// Kernel-IR name of the epilogue (for the comments).
    pub kernel: &'a str,
    pub function: &'a str,
    /// Everything the module needs before the GEMM kernel: prelude,
    /// format helpers, the device function.
    pub code: &'a str,
    /// One `(C++ pointer type, what it is)` per parameter of the epilogue.
    pub params: Vec<(String, String)>,
    /// Which of them is C.
    pub c_param: usize,
}

pub fn gemm(arch: Arch, name: &str, g: &Gemm) -> Option<(String, Launch)> {
    gemm_with(arch, name, g, None)
}

/// The MFMA kernel, with `fused`'s epilogue run on each stored element of
/// C when given (C must then be dense row-major: the epilogue's point is
/// C's flat index).
pub fn gemm_with(
    arch: Arch,
    name: &str,
    g: &Gemm,
    fused: Option<&Fused>,
) -> Option<(String, Launch)> {
    // The row of D that register r of a lane holds (see the layouts above).
    let (t, vec, mfma, d_row) = match g.dtype.as_str() {
        "f32" => (
            "float",
            "smelt_f32x4",
            "__builtin_amdgcn_mfma_f32_16x16x4f32",
            "4 * (lane / 16) + r",
        ),
        "f64" => (
            "double",
            "smelt_f64x4",
            "__builtin_amdgcn_mfma_f64_16x16x4f64",
            "lane / 16 + 4 * r",
        ),
        _ => return None,
    };
    if !super::names::is_ident(name) || g.m == 0 || g.n == 0 || g.batch == 0 {
        return None;
    }
    let gx = u32::try_from(g.n.div_ceil(TILE)).ok()?;
    let gy = u32::try_from(g.m.div_ceil(TILE)).ok()?;
    let gz = u32::try_from(g.batch).ok().filter(|&b| b <= 65535)?;
    // cbsz, abid, blgp: no broadcast between blocks.
    let extra = ", 0, 0, 0";
    let lit = |x: f64| {
        if g.dtype == "f32" {
            format!("{:?}f", x as f32)
        } else {
            format!("{x:?}")
        }
    };
    let [sab, sam, sak] = g.a_strides;
    let [sbb, sbk, sbn] = g.b_strides;
    let [scb, scm, scn] = g.c_strides;
    let what = match fused {
        Some(f) => format!(
            "MFMA matrix product `{name}` with the epilogue `{}` fused",
            f.kernel
        ),
        None => format!("MFMA matrix product `{name}`"),
    };
    let mut s = module_header(arch, &what);
    if let Some(f) = fused {
        s.push_str(f.code);
        s.push('\n');
    }
    // C is not `__restrict__` when fused: the epilogue gets it again as
    // one of its own parameters.
    let (c_decl, fused_says, epi_params, epi_call) = match fused {
        None => (
            format!("{t}* __restrict__ C"),
            String::new(),
            String::new(),
            String::new(),
        ),
        Some(f) => {
            let decls: Vec<String> = f
                .params
                .iter()
                .enumerate()
                .map(|(i, (ty, says))| format!(",\n    {ty} e{i} /* {says} */"))
                .collect();
            let args: Vec<String> = (0..f.params.len()).map(|i| format!("e{i}, ")).collect();
            (
                format!("{t}* C /* also e{}: not __restrict__ */", f.c_param),
                format!(
                    "// Fused epilogue: once a thread has stored an element of C, it runs\n\
                     // `{}` on it (the kernel-IR kernel `{}`,\n\
                     // printed above) with C's flat index over (batch, m, n). e0..e{} are\n\
                     // the epilogue's parameters in order; e{} is C itself.\n",
                    f.function,
                    f.kernel,
                    f.params.len().saturating_sub(1),
                    f.c_param
                ),
                decls.concat(),
                format!(
                    "\n          // Fused epilogue on the element just stored.\n\
                     \x20         {}({}(batch * M + i) * N + j);",
                    f.function,
                    args.concat()
                ),
            )
        }
    };
    let _ = write!(
        s,
        "#include <stdint.h>\n\n\
         typedef float smelt_f32x4 __attribute__((ext_vector_type(4)));\n\
         typedef double smelt_f64x4 __attribute__((ext_vector_type(4)));\n\n\
         // C[b] = {alpha} * A[b] B[b]{beta_says} for b < {batch}; A is {m}x{k}, B {k}x{n}, C {m}x{n}.\n\
         // Grid ({gx}, {gy}, {gz}) of 256-thread blocks, block (x, y, z) owns\n\
         // C[z][64y .. 64y+64][64x .. 64x+64]. Lane layout: see smelt's mfma.rs.\n\
         {fused_says}\
         extern \"C\" __global__ void __launch_bounds__(256) {name}(\n\
         \x20   const {t}* __restrict__ A,\n\
         \x20   const {t}* __restrict__ B,\n\
         \x20   {c_decl}{epi_params}) {{\n\
         \x20 constexpr int64_t M = {m}, N = {n}, K = {k};\n\
         \x20 // Element strides (batch, row, column) of A, B and C.\n\
         \x20 constexpr int64_t SA_B = {sab}, SA_M = {sam}, SA_K = {sak};\n\
         \x20 constexpr int64_t SB_B = {sbb}, SB_K = {sbk}, SB_N = {sbn};\n\
         \x20 constexpr int64_t SC_B = {scb}, SC_M = {scm}, SC_N = {scn};\n\
         \x20 const int lane = (int)__builtin_amdgcn_workitem_id_x() % 64;\n\
         \x20 const int wave = (int)__builtin_amdgcn_workitem_id_x() / 64;\n\
         \x20 const int64_t batch = __builtin_amdgcn_workgroup_id_z();\n\
         \x20 const int64_t row0 = (int64_t)__builtin_amdgcn_workgroup_id_y() * 64 + (wave / 2) * 32;\n\
         \x20 const int64_t col0 = (int64_t)__builtin_amdgcn_workgroup_id_x() * 64 + (wave % 2) * 32;\n\
         \x20 const {t}* a = A + batch * SA_B;\n\
         \x20 const {t}* b = B + batch * SB_B;\n\
         \x20 {t}* c = C + batch * SC_B;\n\
         \x20 {vec} acc[2][2] = {{}};\n\
         \x20 for (int64_t k0 = 0; k0 < K; k0 += 4) {{\n\
         \x20   const int64_t kk = k0 + lane / 16;  // this lane's k in the A and B operands\n\
         \x20   {t} av[2], bv[2];\n\
         \x20   for (int t = 0; t < 2; ++t) {{\n\
         \x20     const int64_t i = row0 + 16 * t + lane % 16;\n\
         \x20     const int64_t j = col0 + 16 * t + lane % 16;\n\
         \x20     av[t] = (i < M && kk < K) ? a[i * SA_M + kk * SA_K] : ({t})0;\n\
         \x20     bv[t] = (j < N && kk < K) ? b[kk * SB_K + j * SB_N] : ({t})0;\n\
         \x20   }}\n\
         \x20   for (int ti = 0; ti < 2; ++ti)\n\
         \x20     for (int tj = 0; tj < 2; ++tj)\n\
         \x20       acc[ti][tj] = {mfma}(av[ti], bv[tj], acc[ti][tj]{extra});\n\
         \x20 }}\n\
         \x20 for (int ti = 0; ti < 2; ++ti)\n\
         \x20   for (int tj = 0; tj < 2; ++tj)\n\
         \x20     for (int r = 0; r < 4; ++r) {{\n\
         \x20       const int64_t i = row0 + 16 * ti + {d_row};  // D's layout for {t}\n\
         \x20       const int64_t j = col0 + 16 * tj + lane % 16;\n\
         \x20       if (i < M && j < N) {{\n\
         \x20         {t}* out = &c[i * SC_M + j * SC_N];\n\
         \x20         *out = {store};{epi_call}\n\
         \x20       }}\n\
         \x20     }}\n\
         }}\n",
        alpha = g.alpha,
        beta_says = if g.beta == 0.0 {
            String::new()
        } else {
            format!(" + {} * C[b]", g.beta)
        },
        batch = g.batch,
        m = g.m,
        n = g.n,
        k = g.k,
        store = if g.beta == 0.0 {
            // C is overwritten, never read (it may hold garbage or NaN).
            format!("{} * acc[ti][tj][r]", lit(g.alpha))
        } else {
            format!("{} * acc[ti][tj][r] + {} * *out", lit(g.alpha), lit(g.beta))
        },
    );
    Some((
        s,
        Launch {
            grid: [gx, gy, gz],
            block: [256, 1, 1],
            shared_bytes: 0,
        },
    ))
}
