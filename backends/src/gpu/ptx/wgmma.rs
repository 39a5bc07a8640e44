//! Hopper (`sm_90a`) tensor-core GEMM with warpgroup MMA: `C = alpha *
//! A·B + beta * C` for f32 (and f16/bf16, see below), batched by `ctaid.z`, specialized on sizes and
//! strides, edges predicated; the same 3xTF32 split as `mma` (see there).
//!
//! One warpgroup (128 threads) per block computes a 64x64 tile of C with
//! `wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32`, both operands
//! read from shared memory through matrix descriptors. Per K tile of 32:
//! every thread loads 16 elements of A and 16 of B from global memory
//! (issued while the previous tile's wgmmas run), splits each into TF32
//! hi/lo and stores both copies in shared memory; `fence.proxy.async`
//! makes those generic-proxy stores visible to wgmma (async proxy), a
//! barrier, then `wgmma.fence`, 4 k8 steps x 3 products, `commit_group`,
//! and `wait_group 0` plus a barrier before the buffers are written again.
//!
//! f16/bf16 use the same staging (one copy, no split; K tile 64,
//! `m64n64k16`, both operands K-major in shared memory) where `tma`
//! declines, i.e. where a tensor map cannot view an operand (no unit
//! stride, rows or batches not 16-byte aligned); otherwise `tma` serves
//! them. f32 comes here where `tma_tf32` (TMA copies, then the TF32
//! split as a pass over shared memory) declines for the same reasons.
//! No GPU was available when this was written: it is checked by ptxas
//! only, its numerics are NOT yet tested on hardware.
//!
//! Layouts relied on (PTX ISA 8.0, "Asynchronous Warpgroup Level Matrix
//! Multiply-Accumulate", <https://docs.nvidia.com/cuda/parallel-thread-execution/index.html#asynchronous-warpgroup-level-matrix-shared-memory-layout>):
//! - .tf32 operands must be K-major for both A and B (no transpose
//!   immediates for tf32). With no swizzling, a K-major operand is made of
//!   "core matrices" of 8 rows x 16 bytes (8 x 4 tf32), each stored
//!   contiguously (rows 16 bytes apart). We store core matrix (row group
//!   `r / 8`, k group `kk / 4`) at `(r / 8) * SBO + (kk / 4) * LBO` with
//!   LBO = 128 (next core matrix along K) and SBO = 1024 (next 8 rows:
//!   the 8 core matrices of a 32-wide K tile), i.e. element (r, kk) at
//!   `(r/8)*1024 + (kk/4)*128 + (r%8)*16 + (kk%4)*4`. B is stored the
//!   same way with n in place of r (N x K, K-major). A k8 step is two core
//!   matrices along K: its descriptor starts 256 bytes further.
//! - Matrix descriptor (64 bits): bits 0-13 start address >> 4 (shared
//!   window), 16-29 LBO >> 4, 32-45 SBO >> 4, 49-51 base offset (0 without
//!   swizzle), 62-63 swizzle mode (0 = none).
//! - Accumulator D of m64nNk8 .f32 (N/2 registers per thread): warp `w` of
//!   the warpgroup holds rows 16w..16w+15; register `4j + 2r + i` is (row
//!   16w + g + 8r, column 8j + 2t + i) with `g = lane >> 2`, `t = lane % 4`:
//!   the m16n8 C fragment of `mma`, repeated over N/8 column tiles, so the
//!   store of C is shared with it (`common::store_c`).

use super::super::Arch;
use super::common::{self, Elem, Epi, Imp, split};
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::Launch;
use std::fmt::Write;

const THREADS: u64 = 128;
const BM: u64 = 64;
const BN: u64 = 64;
// Both operand tiles are 64 rows (m or n) x 32 (k): one staging walk and
// one edge test serve both.
const _: () = assert!(BM == BN);
/// K tile: 32 f32 or 64 f16/bf16, 128 bytes of a row either way.
fn bk(e: Elem) -> u64 {
    128 / e.bytes()
}
/// Elements of A (and of B) each thread stages per K tile.
fn per_thread(e: Elem) -> u64 {
    BM * bk(e) / THREADS
}
/// Bytes of one operand copy (hi or lo) of a tile: 64 x 128 bytes.
const COPY: u64 = BM * 128;
/// Elements of one core-matrix row (16 bytes).
fn core(e: Elem) -> u64 {
    16 / e.bytes()
}
const LBO: u64 = 128;
/// 8 core matrices along the K tile's 128 bytes.
const SBO: u64 = 8 * 128;

/// Offset in a staged tile of the element at (row or n `r`, k `kk`).
fn smem_off(e: Elem, r: u64, kk: u64) -> u64 {
    let c = core(e);
    (r / 8) * SBO + (r % 8) * 16 + (kk / c) * LBO + (kk % c) * e.bytes()
}

/// How a thread walks one operand's 64 x 32 tile: its i-th element is at
/// (row `rb + i * dr`, k `kb + i * dk`). `rb`/`kb` come from `tid` as
/// PTX expressions; the walk follows the contiguous dimension so that a
/// warp's loads coalesce. With `rb < dr` (dr = 4) or `kb < dk` (dk = 2)
/// the element's shared offset is the first's plus `smem_off(i*dr,
/// i*dk)` (no carry between the bit fields), a compile-time immediate.
struct Walk {
    rb: String,
    kb: String,
    dr: u64,
    dk: u64,
}

/// `k_contiguous`: the operand's K stride is 1 (A row-major, B
/// transposed); then a K tile's row (32 or 64 threads) reads along K,
/// else 64 threads along rows.
fn walk(e: Elem, k_contiguous: bool) -> Walk {
    let bk = bk(e);
    if k_contiguous {
        Walk {
            rb: format!("shr.u32 ur, tid, {}", bk.trailing_zeros()),
            kb: format!("and.b32 uk, tid, {}", bk - 1),
            dr: THREADS / bk,
            dk: 0,
        }
    } else {
        Walk {
            rb: "and.b32 ur, tid, 63".into(),
            kb: "shr.u32 uk, tid, 6".into(),
            dr: 0,
            dk: THREADS / BM,
        }
    }
}

/// The tensor-core kernel for `g` as a module of its own, or None where
/// it cannot serve it.
pub fn gemm(arch: Arch, name: &str, g: &Gemm) -> Option<(String, Launch)> {
    let l = launch(arch, name, g)?;
    Some((module(arch, name, g, None, None), l))
}

/// The launch for `g`, or None: not sm_90a (wgmma needs the `a`
/// features), what `common::supported` refuses, grids beyond y/z limits,
/// strides whose per-thread offsets do not fit an immediate.
pub fn launch(arch: Arch, name: &str, g: &Gemm) -> Option<Launch> {
    if arch != Arch::Sm90a || !common::supported(arch, name, g) {
        return None;
    }
    let gx = g.n.div_ceil(BN);
    let gy = g.m.div_ceil(BM);
    if gx > u32::MAX as u64 || gy > 65_535 || g.batch > 65_535 {
        return None;
    }
    let e = Elem::of(g)?;
    let (wa, wb) = walks(g);
    let span = |w: &Walk, sr: i64, sk: i64| {
        (per_thread(e) as i128 - 1)
            * (w.dr as i128 * sr as i128 + w.dk as i128 * sk as i128)
            * e.bytes() as i128
    };
    let far =
        span(&wa, g.a_strides[1], g.a_strides[2]).max(span(&wb, g.b_strides[2], g.b_strides[1]));
    if far > i32::MAX as i128 {
        return None;
    }
    Some(Launch {
        grid: [gx as u32, gy as u32, g.batch as u32],
        block: [THREADS as u32, 1, 1],
        shared_bytes: 0,
    })
}

fn walks(g: &Gemm) -> (Walk, Walk) {
    let e = elem(g);
    (walk(e, g.a_strides[2] == 1), walk(e, g.b_strides[1] == 1))
}

fn elem(g: &Gemm) -> Elem {
    Elem::of(g).unwrap_or(Elem::F32)
}

/// The module (see `common::module`): call only where `launch` is Some.
pub fn module(arch: Arch, name: &str, g: &Gemm, epi: Option<&Epi>, imp: Option<&Imp>) -> String {
    let e = elem(g);
    let how = match e {
        Elem::F32 => format!("3xTF32 wgmma.m64n{BN}k8"),
        _ => format!("{} wgmma.m64n{BN}k16, f32 accumulation", e.mma_type()),
    };
    let comment = format!(
        "smelt tensor-core GEMM {name}: {} batch {} x [{}x{}] * [{}x{}], alpha {}, beta {}\n\
         {how}, block {BM}x{BN}, K tile {}, one warpgroup, staged through registers{}",
        common::dtypes(g),
        g.batch,
        g.m,
        g.k,
        g.k,
        g.n,
        g.alpha,
        g.beta,
        bk(e),
        epi.map_or(String::new(), |e| format!(", epilogue {}", e.func))
            + &imp.map_or(String::new(), |i| format!(", B computed by {}", i.func))
    );
    common::module(arch, &comment, &entry(name, g, epi, imp), epi, imp)
}

/// Operand `p` ("a" or "b") of the loop: registers `p{x}`, `s{x}`,
/// `pk{x}`, `kq{x}`, `r{x}`, `x{x}<16>`.
struct Operand<'a> {
    x: &'a str,
    w: Walk,
    /// Element strides along the tile's rows (m or n) and along K.
    sr: i64,
    sk: i64,
    /// Rows of the operand (m or n); rows or K are checked only where the
    /// tile can overhang them.
    rows: u64,
}

fn entry(name: &str, g: &Gemm, epi: Option<&Epi>, imp: Option<&Imp>) -> String {
    let (wa, wb) = walks(g);
    let ops = [
        Operand {
            x: "a",
            w: wa,
            sr: g.a_strides[1],
            sk: g.a_strides[2],
            rows: g.m,
        },
        Operand {
            x: "b",
            w: wb,
            sr: g.b_strides[2],
            sk: g.b_strides[1],
            rows: g.n,
        },
    ];
    let k = g.k;
    let e = elem(g);
    let eb = e.bytes() as i64;
    let (bk, pt) = (bk(e), per_thread(e));
    let c = core(e);
    // f32 keeps a hi and a lo TF32 copy of each tile; f16/bf16 one.
    let copies = if e == Elem::F32 { 2 } else { 1 };
    let nacc = BN / 2;
    let mut s = String::new();
    for x in ["a", "b"] {
        let _ = writeln!(s, ".shared .align 128 .b8 {name}_s{x}[{}];", copies * COPY);
    }
    let _ = writeln!(
        s,
        "\n.visible .entry {name}(\n{}\n)\n.maxntid {THREADS}, 1, 1\n{{",
        common::params(name, epi, imp)
    );
    s += &common::epi_regs(epi);
    let _ = writeln!(
        s,
        "\t.reg .pred pt, pr0, pr1, q, qk, more;\n\
         \t.reg .u32 tid, warp, lane, g, t, bx, by, bz, ur, uk, u, v;\n\
         \t.reg .s64 A, B, C, row0, row1, col, kt, off, addr;\n\
         \t.reg .s64 pa, pb, pka, pkb, kqa, kqb, ra, rb, sa, sb;\n\
         \t.reg .u64 da, db, dah<4>, dal<4>, dbh<4>, dbl<4>;\n\
         \t.reg .{} xa<{pt}>, xb<{pt}>;\n\
         \t.reg .f32 tmp, acc<{nacc}>, cv, res;\n\
         \t.reg .b32 hi, lo;",
        if e == Elem::F32 { "f32" } else { "b16" }
    );
    let _ = writeln!(
        s,
        "\tld.param.u64 A, [{name}_a];\n\tld.param.u64 B, [{name}_b];\n\tld.param.u64 C, [{name}_c];\n\
         \tcvta.to.global.u64 A, A;\n\tcvta.to.global.u64 B, B;\n\tcvta.to.global.u64 C, C;\n\
         \tmov.u32 tid, %tid.x;\n\tshr.u32 warp, tid, 5;\n\tand.b32 lane, tid, 31;\n\
         \tshr.u32 g, lane, 2;\n\tand.b32 t, lane, 3;\n\
         \tmov.u32 bx, %ctaid.x;\n\tmov.u32 by, %ctaid.y;\n\tmov.u32 bz, %ctaid.z;\n\
         \tsetp.eq.u32 pt, tid, tid;\n\tcvt.u64.u32 off, bz;"
    );
    common::imp_setup(&mut s, name, g, imp);
    let cb = Elem::of_c(g).unwrap_or(e).bytes() as i64;
    for (p, st) in [
        ("A", g.a_strides[0] * eb),
        ("B", g.b_strides[0] * eb),
        ("C", g.c_strides[0] * cb),
    ] {
        let _ = writeln!(
            s,
            "\tmul.lo.s64 addr, off, {st};\n\tadd.s64 {p}, {p}, addr;"
        );
    }
    // Per operand: first row (r{x}), global address of the first element
    // at k = 0 (p{x}), shared address of its hi copy (s{x}).
    for (op, (base, first)) in ops.iter().zip([("A", "by"), ("B", "bx")]) {
        let x = op.x;
        let _ = writeln!(
            s,
            "\t{};\n\t{};\n\
             \tmul.wide.u32 r{x}, {first}, {BM};\n\tcvt.u64.u32 off, ur;\n\tadd.s64 r{x}, r{x}, off;\n\
             \tmul.lo.s64 p{x}, r{x}, {};\n\tcvt.u64.u32 off, uk;\n\tmul.lo.s64 off, off, {};\n\
             \tadd.s64 p{x}, p{x}, off;\n\tadd.s64 p{x}, p{x}, {base};\n\
             \tshr.u32 u, ur, 3;\n\tmul.lo.u32 u, u, {SBO};\n\tand.b32 v, ur, 7;\n\tmad.lo.u32 u, v, 16, u;\n\
             \tshr.u32 v, uk, {};\n\tmad.lo.u32 u, v, {LBO}, u;\n\tand.b32 v, uk, {};\n\tmad.lo.u32 u, v, {eb}, u;\n\
             \tmov.u64 s{x}, {name}_s{x};\n\tcvt.u64.u32 off, u;\n\tadd.s64 s{x}, s{x}, off;",
            op.w.rb,
            op.w.kb,
            op.sr * eb,
            op.sk * eb,
            c.trailing_zeros(),
            c - 1
        );
        // Descriptors of k step j (two core matrices along K), hi and lo
        // copies.
        let _ = writeln!(
            s,
            "\tmov.u64 d{x}, {name}_s{x};\n\tshr.u64 d{x}, d{x}, 4;\n\tand.b64 d{x}, d{x}, 16383;\n\
             \tor.b64 d{x}, d{x}, {};",
            ((LBO >> 4) << 16) | ((SBO >> 4) << 32)
        );
        for j in 0..bk / (2 * c) {
            let _ = writeln!(
                s,
                "\tadd.s64 d{x}h{j}, d{x}, {};\n\tadd.s64 d{x}l{j}, d{x}, {};",
                (j * 2 * LBO) >> 4,
                (COPY + j * 2 * LBO) >> 4
            );
        }
    }
    for i in 0..nacc {
        let _ = writeln!(s, "\tmov.f32 acc{i}, 0f00000000;");
    }
    s += "\tmov.u64 kt, 0;\n";
    load(&mut s, &ops, g, e, imp, "p");
    s += "$Lk:\n";
    // Split and stage (the previous tile's wgmmas are done: see below).
    for op in &ops {
        let x = op.x;
        for i in 0..pt {
            let d = smem_off(e, i * op.w.dr, i * op.w.dk);
            if e == Elem::F32 {
                split(&mut s, &format!("x{x}{i}"), "hi", "lo");
                let _ = writeln!(
                    s,
                    "\tst.shared.b32 [s{x}+{d}], hi;\n\tst.shared.b32 [s{x}+{}], lo;",
                    COPY + d
                );
            } else {
                let _ = writeln!(s, "\tst.shared.b16 [s{x}+{d}], x{x}{i};");
            }
        }
    }
    s += "\tfence.proxy.async.shared::cta;\n\tbar.sync 0;\n\twgmma.fence.sync.aligned;\n";
    let accs: Vec<String> = (0..nacc).map(|i| format!("acc{i}")).collect();
    let d = format!("{{{}}}", accs.join(", "));
    for j in 0..bk / (2 * c) {
        if e == Elem::F32 {
            // Small terms first, then the large one (less rounding in the sum).
            for (a, b) in [("l", "h"), ("h", "l"), ("h", "h")] {
                let _ = writeln!(
                    s,
                    "\twgmma.mma_async.sync.aligned.m64n{BN}k8.f32.tf32.tf32 {d}, da{a}{j}, db{b}{j}, pt, 1, 1;"
                );
            }
        } else {
            // Both operands K-major in shared memory: no transposes.
            let t = e.mma_type();
            let _ = writeln!(
                s,
                "\twgmma.mma_async.sync.aligned.m64n{BN}k16.f32.{t}.{t} {d}, dah{j}, dbh{j}, pt, 1, 1, 0, 0;"
            );
        }
    }
    let _ = writeln!(
        s,
        "\twgmma.commit_group.sync.aligned;\n\
         \tadd.s64 kt, kt, {bk};\n\tsetp.lt.s64 more, kt, {k};\n\t@!more bra.uni $Lw;"
    );
    // The next tile's global loads overlap the tensor cores.
    load(&mut s, &ops, g, e, imp, "n");
    s += "$Lw:\n\twgmma.wait_group.sync.aligned 0;\n\tbar.sync 0;\n\t@more bra.uni $Lk;\n";
    // C: warp w holds rows 16w + g (+ 8) of the block's 64.
    let _ = writeln!(
        s,
        "\tmul.wide.u32 row0, by, {BM};\n\tmul.wide.u32 off, warp, 16;\n\tadd.s64 row0, row0, off;\n\
         \tcvt.u64.u32 off, g;\n\tadd.s64 row0, row0, off;\n\tadd.s64 row1, row0, 8;\n\
         \tsetp.lt.s64 pr0, row0, {};\n\tsetp.lt.s64 pr1, row1, {};\n\tmul.wide.u32 col, bx, {BN};",
        g.m, g.m
    );
    common::store_c(&mut s, name, g, (BN / 8) as usize, epi);
    s += "\tret;\n}\n";
    s
}

/// Global loads of the K tile at `kt` into `x{a,b}<per_thread>` (zero
/// outside the operand).
/// With `imp`, B's elements come from the loader instead (labels tagged
/// with `tag`).
fn load(s: &mut String, ops: &[Operand], g: &Gemm, e: Elem, imp: Option<&Imp>, tag: &str) {
    let k = g.k;
    let eb = e.bytes() as i64;
    let (ty, zero) = match e {
        Elem::F32 => ("f32", "0f00000000"),
        _ => ("b16", "0"),
    };
    for op in ops {
        let x = op.x;
        let _ = writeln!(
            s,
            "\tmul.lo.s64 off, kt, {};\n\tadd.s64 pk{x}, p{x}, off;\n\
             \tcvt.u64.u32 off, uk;\n\tadd.s64 kq{x}, kt, off;",
            op.sk * eb
        );
        let rows_edge = !op.rows.is_multiple_of(BM);
        let k_edge = !k.is_multiple_of(bk(e));
        for i in 0..per_thread(e) {
            let row_lim = op.rows as i64 - (i * op.w.dr) as i64;
            let k_lim = k as i64 - (i * op.w.dk) as i64;
            let imm = i as i64 * (op.w.dr as i64 * op.sr + op.w.dk as i64 * op.sk) * eb;
            let _ = writeln!(s, "\tmov.{ty} x{x}{i}, {zero};");
            if (rows_edge && row_lim <= 0) || (k_edge && k_lim <= 0) {
                continue;
            }
            let guard = match (rows_edge, k_edge) {
                (false, false) => "",
                (true, false) => {
                    let _ = writeln!(s, "\tsetp.lt.s64 q, r{x}, {row_lim};");
                    "@q "
                }
                (false, true) => {
                    let _ = writeln!(s, "\tsetp.lt.s64 q, kq{x}, {k_lim};");
                    "@q "
                }
                (true, true) => {
                    let _ = writeln!(
                        s,
                        "\tsetp.lt.s64 q, r{x}, {row_lim};\n\tsetp.lt.s64 qk, kq{x}, {k_lim};\n\
                         \tand.pred q, q, qk;"
                    );
                    "@q "
                }
            };
            if let (Some(imp), "b") = (imp, x) {
                // Op B's rows are n, its K index is kqb.
                let q = (!guard.is_empty()).then_some("q");
                common::load_b(
                    s,
                    g,
                    imp,
                    ("kqb", i * op.w.dk),
                    ("rb", i * op.w.dr),
                    &format!("x{x}{i}"),
                    e != Elem::F32,
                    q,
                    &format!("{tag}{i}"),
                );
                continue;
            }
            let _ = writeln!(s, "\t{guard}ld.global.{ty} x{x}{i}, [pk{x}+{imm}];");
        }
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
        let (ptx, l) = gemm(Arch::Sm90a, "g0", &g(100, 70, 9)).unwrap();
        // 70 columns and 100 rows in blocks of 64, batch 2.
        assert_eq!(l.grid, [2, 2, 2]);
        assert_eq!(l.block, [128, 1, 1]);
        assert!(ptx.contains(".target sm_90a"));
        // 4 k8 steps per K tile of 32, three products each (3xTF32).
        assert_eq!(ptx.matches("wgmma.mma_async").count(), 12);
        assert!(gemm(Arch::Sm80, "g0", &g(100, 70, 9)).is_none());
    }

    #[test]
    fn staged_layout_is_core_matrices() {
        // Element (r, kk) of a 64x32 tile: 8x4 core matrices of 128 bytes,
        // 8 along K (LBO 128), then the next 8 rows (SBO 1024).
        let f = Elem::F32;
        assert_eq!(smem_off(f, 0, 0), 0);
        assert_eq!(smem_off(f, 1, 0), 16);
        assert_eq!(smem_off(f, 0, 1), 4);
        assert_eq!(smem_off(f, 0, 4), 128);
        assert_eq!(smem_off(f, 8, 0), 1024);
        assert_eq!(smem_off(f, 63, 31), 7 * 1024 + 7 * 16 + 7 * 128 + 3 * 4);
        // 16-bit: core matrices of 8 rows x 8 elements, a 64-wide K tile.
        let h = Elem::Bf16;
        assert_eq!(smem_off(h, 0, 1), 2);
        assert_eq!(smem_off(h, 0, 8), 128);
        assert_eq!(smem_off(h, 63, 63), 7 * 1024 + 7 * 16 + 7 * 128 + 7 * 2);
        // The walks' offsets are separable: first element + immediate.
        for e in [Elem::F32, Elem::F16] {
            for k_contiguous in [true, false] {
                let w = walk(e, k_contiguous);
                let (rbs, kbs) = if k_contiguous {
                    (w.dr, bk(e))
                } else {
                    (BM, w.dk)
                };
                for rb in 0..rbs {
                    for kb in 0..kbs {
                        for i in 0..per_thread(e) {
                            let (r, kk) = (rb + i * w.dr, kb + i * w.dk);
                            assert!(r < BM && kk < bk(e));
                            assert_eq!(
                                smem_off(e, r, kk),
                                smem_off(e, rb, kb) + smem_off(e, i * w.dr, i * w.dk)
                            );
                        }
                    }
                }
            }
        }
    }
}
