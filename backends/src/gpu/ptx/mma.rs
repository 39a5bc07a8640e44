//! Tensor-core GEMMs for NVIDIA, written as PTX text: `C = alpha * A·B +
//! beta * C` for f32, f16 and bf16 (`smelt_runtime::cpu::Gemm`), batched
//! by `ctaid.z`, specialized on sizes and strides (immediates), edges
//! predicated.
//!
//! f16/bf16: `mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}` with f32
//! accumulators; alpha, beta * C (C widened to f32) are applied in f32 and
//! the result is rounded once to the storage type (`cvt.rn.{f16,bf16}.f32`,
//! round to nearest even), the semantics of `gpu::gemm`.
//!
//! Accuracy: the tensor cores multiply TF32 (10-bit mantissa). Each operand
//! is split as `x = hi + lo` with `hi = tf32(x)`, `lo = tf32(x - hi)`, and
//! every product is accumulated as `a_lo*b_hi + a_hi*b_lo + a_hi*b_hi` in
//! f32 (the "3xTF32" scheme; the dropped `a_lo*b_lo` is below f32's ulp),
//! which keeps results within a few f32 ulps of an f32 GEMM.
//!
//! Status: used for sm_80 (and for sm_90a products `wgmma` declines;
//! mma.sync runs on Hopper too); sm_90a gets warpgroup MMA (`wgmma`). Not
//! done: shared-memory staging / cp.async pipelining here: fragments are
//! loaded straight from global memory (L1/L2 serve the reuse between the
//! warps). No GPU was available when this was written: the kernels are
//! checked by ptxas only, their numerics are NOT yet tested on hardware.
//!
//! Fragment layouts relied on (PTX ISA, "Matrix Fragments for
//! mma.m16n8k8", .tf32 variant,
//! <https://docs.nvidia.com/cuda/parallel-thread-execution/index.html#warp-level-matrix-fragment-mma-1688>),
//! with `g = laneid >> 2` (groupID) and `t = laneid % 4`
//! (threadID_in_group):
//! - A (16x8, `.row`), four .b32 registers: a0 = (row g, col t),
//!   a1 = (g + 8, t), a2 = (g, t + 4), a3 = (g + 8, t + 4);
//! - B (8x8, `.col`), two .b32 registers: b0 = (row t, col g),
//!   b1 = (t + 4, g);
//! - C/D (16x8 f32), four registers: c0 = (g, 2t), c1 = (g, 2t + 1),
//!   c2 = (g + 8, 2t), c3 = (g + 8, 2t + 1).
//!
//! and for f16/bf16 ("Matrix Fragments for mma.m16n8k16 with floating
//! point type",
//! <https://docs.nvidia.com/cuda/parallel-thread-execution/index.html#warp-level-matrix-fragment-mma-16816-float>),
//! each .f16x2/.bf16x2 register holding two elements, the first in the
//! low 16 bits:
//! - A (16x16, `.row`), four registers: a0 = (g, 2t..2t+1),
//!   a1 = (g + 8, 2t..2t+1), a2 = (g, 2t+8..2t+9), a3 = (g + 8, 2t+8..2t+9)
//!   (row, columns);
//! - B (16x8, `.col`), two registers: b0 = (rows 2t..2t+1, col g),
//!   b1 = (rows 2t+8..2t+9, col g);
//! - C/D as for m16n8k8 above.

use super::super::Arch;
use super::common::{self, Elem, Epi, Imp, split};
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::Launch;
use std::fmt::Write;

/// Warps per block; each warp computes `WARP_M x BLOCK_N` of C.
const WARPS: u64 = 4;
const WARP_M: u64 = 16;
/// n8 tiles per warp.
const NT: u64 = 4;
const BLOCK_M: u64 = WARPS * WARP_M;
const BLOCK_N: u64 = NT * 8;

/// The tensor-core kernel for `g` as a module of its own, or None where
/// this printer has none (see `common::supported`, and grids beyond the
/// hardware's y/z limits).
pub fn gemm(arch: Arch, name: &str, g: &Gemm) -> Option<(String, Launch)> {
    let l = launch(arch, name, g)?;
    Some((module(arch, name, g, None, None), l))
}

/// The launch of this kernel for `g`, or None where it cannot serve it.
pub fn launch(arch: Arch, name: &str, g: &Gemm) -> Option<Launch> {
    if !common::supported(arch, name, g) {
        return None;
    }
    let gx = g.n.div_ceil(BLOCK_N);
    let gy = g.m.div_ceil(BLOCK_M);
    if gx > u32::MAX as u64 || gy > 65_535 || g.batch > 65_535 {
        return None;
    }
    Some(Launch {
        grid: [gx as u32, gy as u32, g.batch as u32],
        block: [(WARPS * 32) as u32, 1, 1],
        shared_bytes: 0,
    })
}

/// The module (see `common::module`): call only where `launch` is Some.
pub fn module(arch: Arch, name: &str, g: &Gemm, epi: Option<&Epi>, imp: Option<&Imp>) -> String {
    let how = match Elem::of(g) {
        Some(Elem::F32) | None => "3xTF32 mma.sync.m16n8k8".to_string(),
        Some(e) => format!("{} mma.sync.m16n8k16, f32 accumulation", e.mma_type()),
    };
    let comment = format!(
        "smelt tensor-core GEMM {name}: {} batch {} x [{}x{}] * [{}x{}], alpha {}, beta {}\n\
         {how}, block {BLOCK_M}x{BLOCK_N}, {WARPS} warps{}",
        common::dtypes(g),
        g.batch,
        g.m,
        g.k,
        g.k,
        g.n,
        g.alpha,
        g.beta,
        epi.map_or(String::new(), |e| format!(", epilogue {}", e.func))
            + &imp.map_or(String::new(), |i| format!(", B computed by {}", i.func))
    );
    common::module(arch, &comment, &mma_sync(name, g, epi, imp), epi, imp)
}

fn mma_sync(name: &str, g: &Gemm, epi: Option<&Epi>, imp: Option<&Imp>) -> String {
    let e = Elem::of(g).unwrap_or(Elem::F32);
    let eb = e.bytes() as i64;
    let (m, n, k) = (g.m, g.n, g.k);
    let [sa0, sa1, _] = g.a_strides;
    let sb0 = g.b_strides[0];
    let sc0 = g.c_strides[0];
    let mut s = String::new();
    let _ = writeln!(
        s,
        ".visible .entry {name}(\n{}\n)\n.maxntid {}, 1, 1\n{{",
        common::params(name, epi, imp),
        WARPS * 32
    );
    s += &common::epi_regs(epi);
    s += "\t.reg .pred p, pr0, pr1, pk0, pk1, pk2, pk3, pn<4>, q, more;\n\
          \t.reg .u32 tid, warp, lane, g, t, bx, by, bz;\n\
          \t.reg .s64 A, B, C, row0, row1, col, kk, k0, k1, k2, k3, ra0, ra1, off, addr, n<4>;\n\
          \t.reg .f32 x<4>, y<8>, tmp, acc<16>, cv, res;\n\
          \t.reg .b32 ah<4>, al<4>, bh<8>, bl<8>;\n\
          \t.reg .b16 ha<8>, hb<16>;\n";
    let _ = writeln!(
        s,
        "\tld.param.u64 A, [{name}_a];\n\tld.param.u64 B, [{name}_b];\n\tld.param.u64 C, [{name}_c];\n\
         \tcvta.to.global.u64 A, A;\n\tcvta.to.global.u64 B, B;\n\tcvta.to.global.u64 C, C;"
    );
    s += "\tmov.u32 tid, %tid.x;\n\tshr.u32 warp, tid, 5;\n\tand.b32 lane, tid, 31;\n\
          \tshr.u32 g, lane, 2;\n\tand.b32 t, lane, 3;\n\
          \tmov.u32 bx, %ctaid.x;\n\tmov.u32 by, %ctaid.y;\n\tmov.u32 bz, %ctaid.z;\n";
    common::imp_setup(&mut s, name, g, imp);
    // Batch offsets (element strides).
    s += "\tcvt.u64.u32 off, bz;\n";
    let cb = Elem::of_c(g).unwrap_or(e).bytes() as i64;
    for (p, st) in [("A", sa0 * eb), ("B", sb0 * eb), ("C", sc0 * cb)] {
        let _ = writeln!(
            s,
            "\tmul.lo.s64 addr, off, {st};\n\tadd.s64 {p}, {p}, addr;"
        );
    }
    // row0 = by*BLOCK_M + warp*16 + g; row1 = row0 + 8; col = bx*BLOCK_N.
    let _ = writeln!(
        s,
        "\tmul.wide.u32 row0, by, {BLOCK_M};\n\tmul.wide.u32 off, warp, {WARP_M};\n\tadd.s64 row0, row0, off;\n\
         \tcvt.u64.u32 off, g;\n\tadd.s64 row0, row0, off;\n\tadd.s64 row1, row0, 8;\n\
         \tsetp.lt.s64 pr0, row0, {m};\n\tsetp.lt.s64 pr1, row1, {m};\n\
         \tmul.lo.s64 ra0, row0, {};\n\tmul.lo.s64 ra1, row1, {};\n\
         \tmul.wide.u32 col, bx, {BLOCK_N};",
        sa1 * eb,
        sa1 * eb
    );
    // n_j = col + 8j + g: the B column this thread loads for tile j.
    for j in 0..NT {
        let _ = writeln!(
            s,
            "\tadd.s64 n{j}, col, {};\n\tcvt.u64.u32 off, g;\n\tadd.s64 n{j}, n{j}, off;\n\tsetp.lt.s64 pn{j}, n{j}, {n};",
            8 * j
        );
    }
    for i in 0..16 {
        let _ = writeln!(s, "\tmov.f32 acc{i}, 0f00000000;");
    }
    s += "\tmov.u64 kk, 0;\n$Lk:\n";
    let kstep = if e == Elem::F32 {
        tf32_step(&mut s, g, imp);
        8
    } else {
        half_step(&mut s, g, e, imp);
        16
    };
    let _ = writeln!(
        s,
        "\tadd.s64 kk, kk, {kstep};\n\tsetp.lt.s64 more, kk, {k};\n\t@more bra.uni $Lk;"
    );
    common::store_c(&mut s, name, g, NT as usize, epi);
    s += "\tret;\n}\n";
    s
}

/// One k8 step of 3xTF32 m16n8k8 products (layouts in the module docs).
fn tf32_step(s: &mut String, g: &Gemm, imp: Option<&Imp>) {
    let k = g.k;
    let sa2 = g.a_strides[2];
    let [_, sb1, sb2] = g.b_strides;
    // k0 = kk + t, k1 = k0 + 4.
    let _ = writeln!(
        s,
        "\tcvt.u64.u32 off, t;\n\tadd.s64 k0, kk, off;\n\tadd.s64 k1, k0, 4;\n\
         \tsetp.lt.s64 pk0, k0, {k};\n\tsetp.lt.s64 pk1, k1, {k};"
    );
    // A fragment: x0 = A[row0, k0], x1 = A[row1, k0], x2 = A[row0, k1], x3 = A[row1, k1].
    for (i, (ra, pr, kr, pk)) in [
        ("ra0", "pr0", "k0", "pk0"),
        ("ra1", "pr1", "k0", "pk0"),
        ("ra0", "pr0", "k1", "pk1"),
        ("ra1", "pr1", "k1", "pk1"),
    ]
    .into_iter()
    .enumerate()
    {
        let _ = writeln!(
            s,
            "\tmov.f32 x{i}, 0f00000000;\n\tand.pred q, {pr}, {pk};\n\
             \tmul.lo.s64 addr, {kr}, {};\n\tadd.s64 addr, addr, {ra};\n\tadd.s64 addr, addr, A;\n\
             \t@q ld.global.f32 x{i}, [addr];",
            sa2 * 4
        );
        split(s, &format!("x{i}"), &format!("ah{i}"), &format!("al{i}"));
    }
    // B fragments: y(2j) = B[k0, n_j], y(2j+1) = B[k1, n_j].
    for j in 0..NT {
        for (h, (kr, pk)) in [("k0", "pk0"), ("k1", "pk1")].into_iter().enumerate() {
            let y = 2 * j as usize + h;
            if let Some(imp) = imp {
                let _ = writeln!(s, "\tmov.f32 y{y}, 0f00000000;\n\tand.pred q, pn{j}, {pk};");
                let n = format!("n{j}");
                common::load_b(
                    s,
                    g,
                    imp,
                    (kr, 0),
                    (&n, 0),
                    &format!("y{y}"),
                    false,
                    Some("q"),
                    &format!("f{y}"),
                );
                split(s, &format!("y{y}"), &format!("bh{y}"), &format!("bl{y}"));
                continue;
            }
            let _ = writeln!(
                s,
                "\tmov.f32 y{y}, 0f00000000;\n\tand.pred q, pn{j}, {pk};\n\
                 \tmul.lo.s64 addr, {kr}, {};\n\tmul.lo.s64 off, n{j}, {};\n\tadd.s64 addr, addr, off;\n\
                 \tadd.s64 addr, addr, B;\n\t@q ld.global.f32 y{y}, [addr];",
                sb1 * 4,
                sb2 * 4
            );
            split(s, &format!("y{y}"), &format!("bh{y}"), &format!("bl{y}"));
        }
    }
    // Small terms first, then the large one (less rounding in the sum).
    for j in 0..NT as usize {
        let d = acc_tile(j);
        for (a, b) in [("al", "bh"), ("ah", "bl"), ("ah", "bh")] {
            let _ = writeln!(
                s,
                "\tmma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {d}, {{{a}0, {a}1, {a}2, {a}3}}, {{{b}{}, {b}{}}}, {d};",
                2 * j,
                2 * j + 1
            );
        }
    }
}

fn acc_tile(j: usize) -> String {
    format!(
        "{{acc{}, acc{}, acc{}, acc{}}}",
        4 * j,
        4 * j + 1,
        4 * j + 2,
        4 * j + 3
    )
}

/// One k16 step of f16/bf16 m16n8k16 products (layouts in the module
/// docs): each operand element is loaded as 16 bits (zero outside the
/// matrix) and pairs are packed into the .f16x2/.bf16x2 registers, the
/// lower k in the low half.
fn half_step(s: &mut String, g: &Gemm, e: Elem, imp: Option<&Imp>) {
    let k = g.k;
    let sa2 = g.a_strides[2] * 2;
    let [_, sb1, sb2] = g.b_strides.map(|x| x * 2);
    // k0 = kk + 2t, k1 = k0 + 1, k2 = k0 + 8, k3 = k0 + 9.
    let _ = writeln!(
        s,
        "\tcvt.u64.u32 off, t;\n\tshl.b64 off, off, 1;\n\tadd.s64 k0, kk, off;\n\tadd.s64 k1, k0, 1;\n\
         \tadd.s64 k2, k0, 8;\n\tadd.s64 k3, k0, 9;\n\tsetp.lt.s64 pk0, k0, {k};\n\tsetp.lt.s64 pk1, k1, {k};\n\
         \tsetp.lt.s64 pk2, k2, {k};\n\tsetp.lt.s64 pk3, k3, {k};"
    );
    // ha(2i + h): register i of the A fragment, half h.
    let a_regs = [
        ("ra0", "pr0", ["k0", "k1"]),
        ("ra1", "pr1", ["k0", "k1"]),
        ("ra0", "pr0", ["k2", "k3"]),
        ("ra1", "pr1", ["k2", "k3"]),
    ];
    for (i, (ra, pr, ks)) in a_regs.into_iter().enumerate() {
        for (h, kr) in ks.into_iter().enumerate() {
            let x = 2 * i + h;
            let pk = kr.replace('k', "pk");
            let _ = writeln!(
                s,
                "\tmov.b16 ha{x}, 0;\n\tand.pred q, {pr}, {pk};\n\
                 \tmul.lo.s64 addr, {kr}, {sa2};\n\tadd.s64 addr, addr, {ra};\n\tadd.s64 addr, addr, A;\n\
                 \t@q ld.global.b16 ha{x}, [addr];"
            );
        }
        let _ = writeln!(s, "\tmov.b32 ah{i}, {{ha{}, ha{}}};", 2 * i, 2 * i + 1);
    }
    // hb(4j + 2r + h): register r of tile j's B fragment, half h.
    for j in 0..NT as usize {
        for (r, ks) in [["k0", "k1"], ["k2", "k3"]].into_iter().enumerate() {
            for (h, kr) in ks.into_iter().enumerate() {
                let x = 4 * j + 2 * r + h;
                let pk = kr.replace('k', "pk");
                if let Some(imp) = imp {
                    let _ = writeln!(s, "\tmov.b16 hb{x}, 0;\n\tand.pred q, pn{j}, {pk};");
                    let n = format!("n{j}");
                    common::load_b(
                        s,
                        g,
                        imp,
                        (kr, 0),
                        (&n, 0),
                        &format!("hb{x}"),
                        true,
                        Some("q"),
                        &format!("h{x}"),
                    );
                    continue;
                }
                let _ = writeln!(
                    s,
                    "\tmov.b16 hb{x}, 0;\n\tand.pred q, pn{j}, {pk};\n\
                     \tmul.lo.s64 addr, {kr}, {sb1};\n\tmul.lo.s64 off, n{j}, {sb2};\n\tadd.s64 addr, addr, off;\n\
                     \tadd.s64 addr, addr, B;\n\t@q ld.global.b16 hb{x}, [addr];"
                );
            }
            let _ = writeln!(
                s,
                "\tmov.b32 bh{}, {{hb{}, hb{}}};",
                2 * j + r,
                4 * j + 2 * r,
                4 * j + 2 * r + 1
            );
        }
    }
    let t = e.mma_type();
    for j in 0..NT as usize {
        let d = acc_tile(j);
        let _ = writeln!(
            s,
            "\tmma.sync.aligned.m16n8k16.row.col.f32.{t}.{t}.f32 {d}, {{ah0, ah1, ah2, ah3}}, {{bh{}, bh{}}}, {d};",
            2 * j,
            2 * j + 1
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(m: u64, n: u64, k: u64) -> Gemm {
        Gemm {
            dtype: "f32".into(),
            batch: 2,
            m,
            n,
            k,
            a: 0,
            b: 1,
            c: 2,
            a_strides: [(m * k) as i64, k as i64, 1],
            b_strides: [(k * n) as i64, n as i64, 1],
            c_strides: [(m * n) as i64, n as i64, 1],
            alpha: 1.0,
            beta: 0.0,
            c_dtype: None,
        }
    }

    #[test]
    fn launch_covers_the_output() {
        let (ptx, l) = gemm(Arch::Sm80, "g0", &g(100, 70, 9)).unwrap();
        // 70 columns in blocks of 32, 100 rows in blocks of 64, batch 2.
        assert_eq!(l.grid, [3, 2, 2]);
        assert_eq!(l.block, [128, 1, 1]);
        assert!(ptx.contains(".target sm_80"));
        assert_eq!(ptx.matches("mma.sync.aligned.m16n8k8").count(), 12);
    }

    #[test]
    fn declines_what_it_cannot_do() {
        let mut x = g(4, 4, 4);
        x.dtype = "f64".into();
        assert!(gemm(Arch::Sm80, "g", &x).is_none());
        assert!(gemm(Arch::Sm80, "g", &g(4, 4, 0)).is_none());
        assert!(gemm(Arch::Gfx90a, "g", &g(4, 4, 4)).is_none());
    }
}
