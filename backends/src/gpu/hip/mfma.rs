//! Matrix products on CDNA's matrix cores (MFMA), one kernel per
//! `smelt_runtime::cpu::Gemm` with its sizes and strides as constants.
//!
//! Instructions (all on gfx90a and gfx942), one wavefront (64 lanes)
//! computing D(16x16) += A(16xK) B(Kx16) with no broadcast (cbsz = abid =
//! blgp = 0):
//!   f32:  `v_mfma_f32_16x16x4f32`, K = 4 (f32 in, f32 accumulate)
//!   f64:  `v_mfma_f64_16x16x4f64`, K = 4
//!   f16:  `v_mfma_f32_16x16x16f16`, K = 16 (half4 operands, f32 accumulate)
//!   bf16: `v_mfma_f32_16x16x16bf16_1k`, K = 16 (short4 operands holding
//!         bf16 bits, f32 accumulate)
//! Lane layouts, from AMD's lab notes on matrix cores (amd/amd-lab-notes,
//! matrix-cores/src/mfma_fp32_16x16x4fp32.cpp, mfma_fp64_16x16x4fp64.cpp,
//! mfma_fp32_16x16x16fp16.cpp) and AMD's "Matrix Core Programming on
//! CDNA3 and CDNA4" (ROCm blog, 2025: 16x16x16 f16 and bf16 share one
//! layout; the `_1k` bf16 builtin takes 4 bf16 per lane like f16):
//!   K = 4 (one value per lane):  lane l holds A[i = l % 16][k = l / 16]
//!                                and B[k = l / 16][j = l % 16]
//!   K = 16 (four values per lane): element e of lane l is
//!                                A[i = l % 16][k = 4 (l / 16) + e] and
//!                                B[k = 4 (l / 16) + e][j = l % 16]
//!   D, four values per lane, d[r] of lane l is D[i][j = l % 16] with
//!     f32 out (f32, f16, bf16 in): i = 4 (l / 16) + r  (consecutive rows)
//!     f64:                         i = l / 16 + 4 r    (rows 4 apart)
//! No AMD hardware was available while writing this: the host test
//! (tests/hip.rs) runs these kernels on an emulation of the builtins
//! written from the same layouts, and the toolchain test compiles them
//! for both architectures.
//!
//! f16 and bf16 are storage types, as in the kernel-IR fallback
//! (`gpu::gemm`): products are summed in f32, alpha and beta applied in
//! f32, and the result rounds once (to nearest even) when stored.
//!
//! Tiling: a 256-thread block is 4 wavefronts in a 2x2 grid, each owning a
//! 32x32 tile of C as 2x2 MFMA tiles, so a block covers 64x64 of C and
//! every loaded A/B value feeds two MFMAs. Operands are read straight
//! from global memory with bounds checks (zero outside, which also pads k
//! to a whole MFMA step), so any m, n, k works; edges are masked at the
//! store. Simple rather than fast: no LDS staging or double buffering yet.

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
    /// One `(C++ pointer type, what it is)` per parameter of the epilogue.
    pub params: Vec<(String, String)>,
    /// Which of them is C.
    pub c_param: usize,
}

/// An implicit GEMM's B operand (see `Printer::gemm_implicit`): the
/// `__device__` function `function` (printed by the kernel printer from
/// the loader kernel) returns B's element for its flat index over (batch,
/// k, n); the GEMM calls it where it would load B.
pub struct Implicit<'a> {
    /// Kernel-IR name of the loader (for the comments).
    pub kernel: &'a str,
    pub function: &'a str,
    /// One `(C++ pointer type, what it is)` per parameter of the loader.
    pub params: Vec<(String, String)>,
}

pub fn gemm(arch: Arch, name: &str, g: &Gemm) -> Option<(String, Launch)> {
    gemm_with(arch, name, g, "", None, None)
}

/// The MFMA kernel, with `fused`'s epilogue run on each stored element of
/// C when given (C must then be dense row-major: the epilogue's point is
/// C's flat index), and B computed by `implicit`'s loader instead of read
/// when given (B must then be dense row-major over (batch, k, n)). `code`
/// is everything the module needs before the GEMM kernel when either is
/// given: prelude, format helpers, their device functions.
pub fn gemm_with(
    arch: Arch,
    name: &str,
    g: &Gemm,
    code: &str,
    fused: Option<&Fused>,
    implicit: Option<&Implicit>,
) -> Option<(String, Launch)> {
    let mut f = Format::of(&g.dtype)?;
    // C of another dtype: only f32 sums of 16-bit operands, stored as the
    // accumulators hold them.
    let ct = if g.c_dtype() == g.dtype {
        f.storage
    } else if g.c_dtype() == "f32" && f.acc == "smelt_f32x4" {
        f.read_c = "*out";
        f.to_storage = "{}";
        "float"
    } else {
        return None;
    };
    let dense_b = g.b_strides[2] == 1
        && g.b_strides[1] == i64::try_from(g.n).ok()?
        && (g.batch == 1 || g.b_strides[0] == i64::try_from(g.k.checked_mul(g.n)?).ok()?);
    if implicit.is_some() && !dense_b {
        return None;
    }
    let (t, vec, mfma, d_row) = (f.storage, f.acc, f.mfma, f.d_row);
    if !super::names::is_ident(name) || g.m == 0 || g.n == 0 || g.batch == 0 {
        return None;
    }
    let gx = u32::try_from(g.n.div_ceil(TILE)).ok()?;
    let gy = u32::try_from(g.m.div_ceil(TILE)).ok()?;
    let gz = u32::try_from(g.batch).ok().filter(|&b| b <= 65535)?;
    // cbsz, abid, blgp: no broadcast between blocks.
    let extra = ", 0, 0, 0";
    let lit = |x: f64| {
        if g.dtype == "f64" {
            format!("{x:?}")
        } else {
            format!("{:?}f", x as f32)
        }
    };
    let [sab, sam, sak] = g.a_strides;
    let [sbb, sbk, sbn] = g.b_strides;
    let [scb, scm, scn] = g.c_strides;
    let mut what = format!("MFMA matrix product `{name}`");
    if let Some(im) = implicit {
        let _ = write!(what, " with B computed by `{}`", im.kernel);
    }
    if let Some(fu) = fused {
        let _ = write!(what, " with the epilogue `{}` fused", fu.kernel);
    }
    let mut s = module_header(arch, &what);
    if fused.is_some() || implicit.is_some() {
        s.push_str(code);
        s.push('\n');
    } else if f.k_step == 16 {
        // The 16-bit stores use the prelude's conversions.
        s.push_str(super::PRELUDE);
        s.push('\n');
    }
    let (b_decl, loader_params, b_load, implicit_says) = match implicit {
        None => (
            format!("const {t}* __restrict__ B"),
            String::new(),
            "b[kk * SB_K + j * SB_N]".to_string(),
            String::new(),
        ),
        Some(im) => {
            let decls: Vec<String> = im
                .params
                .iter()
                .enumerate()
                .map(|(i, (ty, says))| format!(",\n    {ty} l{i} /* {says} */"))
                .collect();
            let args: Vec<String> = (0..im.params.len()).map(|i| format!("l{i}, ")).collect();
            (
                format!("const {t}* B /* not read: computed by `{}` */", im.function),
                decls.concat(),
                format!("{}({}(batch * K + kk) * N + j)", im.function, args.concat()),
                format!(
                    "// Implicit GEMM: B is never read; `{}` (the kernel-IR kernel `{}`,\n\
                     // printed above) computes B's element at its flat index over (batch,\n\
                     // k, n) where the loop would load it. l0..l{} are the loader's\n\
                     // parameters in order.\n",
                    im.function,
                    im.kernel,
                    im.params.len().saturating_sub(1),
                ),
            )
        }
    };
    // C is not `__restrict__` when fused: the epilogue gets it again as
    // one of its own parameters.
    let (c_decl, fused_says, epi_params, epi_call) = match fused {
        None => (
            format!("{ct}* __restrict__ C"),
            String::new(),
            String::new(),
            String::new(),
        ),
        Some(fu) => {
            let decls: Vec<String> = fu
                .params
                .iter()
                .enumerate()
                .map(|(i, (ty, says))| format!(",\n    {ty} e{i} /* {says} */"))
                .collect();
            let args: Vec<String> = (0..fu.params.len()).map(|i| format!("e{i}, ")).collect();
            (
                format!("{ct}* C /* also e{}: not __restrict__ */", fu.c_param),
                format!(
                    "// Fused epilogue: once a thread has stored an element of C, it runs\n\
                     // `{}` on it (the kernel-IR kernel `{}`,\n\
                     // printed above) with C's flat index over (batch, m, n). e0..e{} are\n\
                     // the epilogue's parameters in order; e{} is C itself.\n",
                    fu.function,
                    fu.kernel,
                    fu.params.len().saturating_sub(1),
                    fu.c_param
                ),
                decls.concat(),
                format!(
                    "\n          // Fused epilogue on the element just stored.\n\
                     \x20         {}({}(batch * M + i) * N + j);",
                    fu.function,
                    args.concat()
                ),
            )
        }
    };
    let _ = write!(
        s,
        "#include <stdint.h>\n\n\
         typedef float smelt_f32x4 __attribute__((ext_vector_type(4)));\n\
         typedef double smelt_f64x4 __attribute__((ext_vector_type(4)));\n{typedefs}\n\
         // C[b] = {alpha} * A[b] B[b]{beta_says} for b < {batch}; A is {m}x{k}, B {k}x{n}, C {m}x{n}.\n\
         // Grid ({gx}, {gy}, {gz}) of 256-thread blocks, block (x, y, z) owns\n\
         // C[z][64y .. 64y+64][64x .. 64x+64]. Lane layout: see smelt's mfma.rs.\n\
         {implicit_says}{fused_says}\
         extern \"C\" __global__ void __launch_bounds__(256) {name}(\n\
         \x20   const {t}* __restrict__ A,\n\
         \x20   {b_decl},\n\
         \x20   {c_decl}{loader_params}{epi_params}) {{\n\
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
         \x20 {ct}* c = C + batch * SC_B;\n\
         \x20 {vec} acc[2][2] = {{}};\n\
         {k_loop}\
         \x20   for (int ti = 0; ti < 2; ++ti)\n\
         \x20     for (int tj = 0; tj < 2; ++tj)\n\
         \x20       acc[ti][tj] = {mfma}(av[ti], bv[tj], acc[ti][tj]{extra});\n\
         \x20 }}\n\
         \x20 for (int ti = 0; ti < 2; ++ti)\n\
         \x20   for (int tj = 0; tj < 2; ++tj)\n\
         \x20     for (int r = 0; r < 4; ++r) {{\n\
         \x20       const int64_t i = row0 + 16 * ti + {d_row};  // D's layout for {d_says}\n\
         \x20       const int64_t j = col0 + 16 * tj + lane % 16;\n\
         \x20       if (i < M && j < N) {{\n\
         \x20         {ct}* out = &c[i * SC_M + j * SC_N];\n\
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
        typedefs = f.typedefs,
        k_loop = f.k_loop(&b_load),
        d_says = f.d_says,
        store = f.store(&if g.beta == 0.0 {
            // C is overwritten, never read (it may hold garbage or NaN).
            format!("{} * acc[ti][tj][r]", lit(g.alpha))
        } else {
            format!(
                "{} * acc[ti][tj][r] + {} * {}",
                lit(g.alpha),
                lit(g.beta),
                f.read_c
            )
        }),
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

/// What differs between the element types: storage, operands, builtin.
struct Format {
    /// C++ type of A, B and C in memory.
    storage: &'static str,
    /// The accumulator vector (four values per lane).
    acc: &'static str,
    mfma: &'static str,
    /// k per MFMA: 4 (one operand value per lane) or 16 (four).
    k_step: u32,
    /// The row of D that register r of a lane holds (see the layouts above).
    d_row: &'static str,
    d_says: &'static str,
    /// Extra vector types the kernel needs.
    typedefs: &'static str,
    /// For k_step 16: the operand vector type, and how a stored element
    /// becomes an operand element.
    operand: &'static str,
    to_operand: &'static str,
    /// `*out` (a stored element of C) in the accumulator's type.
    read_c: &'static str,
    /// How a value in the accumulator's type is stored (`{}` is the value).
    to_storage: &'static str,
}

impl Format {
    fn of(dtype: &str) -> Option<Format> {
        let f32_out = "4 * (lane / 16) + r";
        let one_per_lane = |storage, acc, mfma, d_row, d_says| Format {
            storage,
            acc,
            mfma,
            k_step: 4,
            d_row,
            d_says,
            typedefs: "",
            operand: storage,
            to_operand: "{}",
            read_c: "*out",
            to_storage: "{}",
        };
        Some(match dtype {
            "f32" => one_per_lane(
                "float",
                "smelt_f32x4",
                "__builtin_amdgcn_mfma_f32_16x16x4f32",
                f32_out,
                "float",
            ),
            "f64" => one_per_lane(
                "double",
                "smelt_f64x4",
                "__builtin_amdgcn_mfma_f64_16x16x4f64",
                "lane / 16 + 4 * r",
                "double",
            ),
            // f32 -> _Float16 conversion rounds to nearest even (the
            // hardware's default mode; the prelude relies on it too).
            "f16" => Format {
                storage: "_Float16",
                acc: "smelt_f32x4",
                mfma: "__builtin_amdgcn_mfma_f32_16x16x16f16",
                k_step: 16,
                d_row: f32_out,
                d_says: "f32 accumulators",
                typedefs: "typedef _Float16 smelt_f16x4 __attribute__((ext_vector_type(4)));\n",
                operand: "smelt_f16x4",
                to_operand: "{}",
                read_c: "(float)*out",
                to_storage: "(_Float16)({})",
            },
            // bf16 travels as its bits; the builtin takes them as shorts.
            "bf16" => Format {
                storage: "uint16_t",
                acc: "smelt_f32x4",
                mfma: "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
                k_step: 16,
                d_row: f32_out,
                d_says: "f32 accumulators",
                typedefs: "typedef short smelt_bf16x4 __attribute__((ext_vector_type(4)));\n",
                operand: "smelt_bf16x4",
                to_operand: "(short){}",
                read_c: "smelt_bf16_to_f32(*out)",
                to_storage: "smelt_f32_to_bf16({})",
            },
            _ => return None,
        })
    }

    fn store(&self, v: &str) -> String {
        self.to_storage.replace("{}", v)
    }

    /// The head of the loop over k: operands loaded per the lane layout
    /// (zero outside A and B, which also pads K to a whole step).
    fn k_loop(&self, b_load: &str) -> String {
        let t = self.storage;
        if self.k_step == 4 {
            format!(
                "  for (int64_t k0 = 0; k0 < K; k0 += 4) {{\n\
                 \x20   const int64_t kk = k0 + lane / 16;  // this lane's k in the A and B operands\n\
                 \x20   {t} av[2], bv[2];\n\
                 \x20   for (int t = 0; t < 2; ++t) {{\n\
                 \x20     const int64_t i = row0 + 16 * t + lane % 16;\n\
                 \x20     const int64_t j = col0 + 16 * t + lane % 16;\n\
                 \x20     av[t] = (i < M && kk < K) ? a[i * SA_M + kk * SA_K] : ({t})0;\n\
                 \x20     bv[t] = (j < N && kk < K) ? {b_load} : ({t})0;\n\
                 \x20   }}\n"
            )
        } else {
            let (v, op) = (self.operand, |x: &str| self.to_operand.replace("{}", x));
            format!(
                "  for (int64_t k0 = 0; k0 < K; k0 += 16) {{\n\
                 \x20   // Element e of this lane's operands is k = kb + e.\n\
                 \x20   const int64_t kb = k0 + 4 * (lane / 16);\n\
                 \x20   {v} av[2], bv[2];\n\
                 \x20   for (int t = 0; t < 2; ++t) {{\n\
                 \x20     const int64_t i = row0 + 16 * t + lane % 16;\n\
                 \x20     const int64_t j = col0 + 16 * t + lane % 16;\n\
                 \x20     for (int e = 0; e < 4; ++e) {{\n\
                 \x20       const int64_t kk = kb + e;\n\
                 \x20       av[t][e] = (i < M && kk < K) ? {} : 0;\n\
                 \x20       bv[t][e] = (j < N && kk < K) ? {} : 0;\n\
                 \x20     }}\n\
                 \x20   }}\n",
                op("a[i * SA_M + kk * SA_K]"),
                op(b_load),
            )
        }
    }
}
