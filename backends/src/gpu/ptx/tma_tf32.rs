//! Hopper (`sm_90a`) f32 GEMM whose operand tiles arrive by TMA and are
//! split into TF32 hi/lo in shared memory: `C = alpha * A·B + beta * C`
//! with the 3xTF32 scheme of `mma`/`wgmma` (`hi = tf32(x)`, `lo =
//! tf32(x - hi)`, products lo·hi + hi·lo + hi·hi), so the numerics are
//! those of the staged `wgmma` kernel; batched by `ctaid.z`.
//!
//! Why a split pass: TMA copies bytes, and wgmma reads TF32 operands
//! from shared memory as they are, so the hi/lo pair has to be made
//! after the copy. TF32 wgmma also takes both operands K-major only,
//! while TMA delivers a tile in the operand's own order; the split pass
//! writes K-major whatever it read, so M/N-major operands (B row-major,
//! the common case) need no transpose anywhere else.
//!
//! What is TMA-fed: A, and B unless the GEMM is implicit (Conv: B is
//! im2col, computed by the loader `.func` per element, see
//! `Printer::gemm_implicit`; its tile is loaded into registers while the
//! previous tile's wgmmas run and split from there, as in `wgmma`). Maps
//! have no swizzle (`tma::view_with`): boxes of 16 (K) x 64 rows, f32, so
//! a row or batch stride must be a multiple of 16 bytes (K or N a
//! multiple of 4 for row-major operands); where an operand cannot be
//! viewed, `launch` declines and `wgmma` stages the GEMM through
//! registers as before.
//!
//! One warpgroup (128 threads) per block, a 64x64 tile of C, K tiles of
//! 16 (64 bytes of f32 per row: static shared memory is capped at 48
//! KiB, and the raw ring plus the hi/lo copies of a K tile of 32 would
//! not fit). Shared memory: a ring of `STAGES` raw tiles per TMA-fed
//! operand (4 KiB each) behind one mbarrier per stage, and one hi and one
//! lo copy per operand in wgmma's layout (`wgmma`'s core matrices: LBO
//! 128, SBO 512 for a 16-wide K tile). Per K tile: wait for the stage's
//! mbarrier (parity flips when the ring wraps), every thread reads 8
//! consecutive-in-memory elements per operand (`tid * 4 + 512 i`: a warp
//! reads 128 contiguous bytes), splits them, writes hi and lo;
//! `fence.proxy.async` (generic stores before async-proxy reads, and the
//! stage's generic reads before TMA writes it again), a barrier, thread
//! 0 refills the stage with the tile `STAGES` ahead, then 2 k8 steps x 3
//! wgmmas, `wait_group 0` and a barrier before the hi/lo copies are
//! written again. The copies of the next tiles are in flight the whole
//! time. Edges: the maps have the operands' true extents and TMA fills
//! out-of-bounds elements with zeros, which split into zeros.
//!
//! Layout of a raw tile (no swizzle): the box is stored densely, inner
//! dimension first, so element `e` of the 64 x 16 tile is at byte `4e`
//! with (row, k) = (e / 16, e % 16) for a K-major operand and (e % 64,
//! e / 64) for an M/N-major one (`coords`). Thread `tid` handles `e =
//! tid + 128 i`: its shared store offsets are its first one plus an
//! immediate (`smem_off` is additive over these, checked by a test).
//!
//! No GPU was available when this was written: checked by ptxas only;
//! its numerics (layouts, descriptors, the barrier protocol) are NOT yet
//! tested on hardware.

use super::super::Arch;
use super::common::{self, Elem, Epi, Imp, split};
use super::tma::{View, issue_ops, view_with};
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, TensorMap};
use std::fmt::Write;

const THREADS: u64 = 128;
/// Tile rows (M and N).
const T: u64 = 64;
/// K tile: 16 f32, 64 bytes per row.
const BK: u64 = 16;
/// Bytes of one operand's tile: raw, hi or lo.
const TILE: u64 = T * BK * 4;
const STAGES: u64 = 3;
/// Elements of each operand a thread splits per K tile.
const PER: u64 = T * BK / THREADS;
/// Next core matrix along K; next 8 rows (4 core matrices of a K tile).
const LBO: u64 = 128;
const SBO: u64 = BK / 4 * 128;

/// (row, k) of element `e` of a raw tile (see the module comment).
fn coords(k_major: bool, e: u64) -> (u64, u64) {
    if k_major {
        (e / BK, e % BK)
    } else {
        (e % T, e / T)
    }
}

/// Offset of (row, k) in a hi or lo copy: 8 x 4 core matrices, K-major.
fn smem_off(r: u64, kk: u64) -> u64 {
    (r / 8) * SBO + (r % 8) * 16 + (kk / 4) * LBO + (kk % 4) * 4
}

/// A's view and B's (None when B is computed: `implicit`), if this
/// kernel serves `g` on `arch`.
pub fn views(arch: Arch, g: &Gemm, implicit: bool) -> Option<(View, Option<View>)> {
    if arch != Arch::Sm90a
        || Elem::of(g) != Some(Elem::F32)
        || !common::supported(arch, "g", g)
        || g.n.div_ceil(T) > u32::MAX as u64
        || g.m.div_ceil(T) > 65_535
        || g.batch > 65_535
    {
        return None;
    }
    let v = |rows: u64, s: [i64; 3]| {
        view_with("f32", 4, (g.batch, rows, g.k), s, (BK as u32, T as u32), 0)
    };
    let a = v(g.m, g.a_strides)?;
    let b = if implicit {
        None
    } else {
        let [sb0, sb1, sb2] = g.b_strides;
        Some(v(g.n, [sb0, sb2, sb1])?)
    };
    Some((a, b))
}

/// The maps the kernel for `g` takes (0 = A, then 1 = B unless
/// `implicit`), empty where this kernel does not serve `g`.
pub fn maps(arch: Arch, g: &Gemm, implicit: bool) -> Vec<(usize, TensorMap)> {
    let Some((a, b)) = views(arch, g, implicit) else {
        return Vec::new();
    };
    let mut v = vec![(0, a.map)];
    v.extend(b.map(|b| (1, b.map)));
    v
}

/// The launch for `g`, or None where this kernel cannot serve it.
pub fn launch(arch: Arch, name: &str, g: &Gemm, implicit: bool) -> Option<Launch> {
    views(arch, g, implicit)?;
    if !common::supported(arch, name, g) {
        return None;
    }
    Some(Launch {
        grid: [
            g.n.div_ceil(T) as u32,
            g.m.div_ceil(T) as u32,
            g.batch as u32,
        ],
        block: [THREADS as u32, 1, 1],
        shared_bytes: 0,
    })
}

/// The module (see `common::module`): call only where `launch` is Some
/// (with `implicit` = `imp.is_some()`).
pub fn module(arch: Arch, name: &str, g: &Gemm, epi: Option<&Epi>, imp: Option<&Imp>) -> String {
    let Some((a, b)) = views(arch, g, imp.is_some()) else {
        return String::new();
    };
    fn major<'a>(v: &View, mn: &'a str) -> &'a str {
        if v.k_major { "K" } else { mn }
    }
    let comment = format!(
        "smelt tensor-core GEMM {name}: {} batch {} x [{}x{}] * [{}x{}], alpha {}, beta {}\n\
         3xTF32 wgmma.m64n64k8, block 64x64, K tile {BK}, one warpgroup,\n\
         A ({}-major) {}by TMA, {STAGES} stages, TF32 hi/lo split in shared memory{}",
        g.dtype,
        g.batch,
        g.m,
        g.k,
        g.k,
        g.n,
        g.alpha,
        g.beta,
        major(&a, "M"),
        b.as_ref().map_or(String::new(), |b| format!(
            "and B ({}-major) ",
            major(b, "N")
        )),
        epi.map_or(String::new(), |e| format!(", epilogue {}", e.func))
            + &imp.map_or(String::new(), |i| format!(", B computed by {}", i.func))
    );
    common::module(
        arch,
        &comment,
        &entry(name, g, &a, b.as_ref(), epi, imp),
        epi,
        imp,
    )
}

/// `ur`, `uk` = (row, k) of the thread's first element, then `w{x}` =
/// the shared address of its hi copy.
fn write_base(s: &mut String, name: &str, x: &str, k_major: bool) {
    let (r, k) = if k_major {
        ("shr.u32 ur, tid, 4", "and.b32 uk, tid, 15")
    } else {
        ("and.b32 ur, tid, 63", "shr.u32 uk, tid, 6")
    };
    let _ = writeln!(
        s,
        "\t{r};\n\t{k};\n\
         \tshr.u32 u, ur, 3;\n\tmul.lo.u32 u, u, {SBO};\n\tand.b32 v, ur, 7;\n\tmad.lo.u32 u, v, 16, u;\n\
         \tshr.u32 v, uk, 2;\n\tmad.lo.u32 u, v, {LBO}, u;\n\tand.b32 v, uk, 3;\n\tmad.lo.u32 u, v, 4, u;\n\
         \tmov.u64 w{x}, {name}_s{x};\n\tcvt.u64.u32 off, u;\n\tadd.s64 w{x}, w{x}, off;"
    );
}

fn entry(
    name: &str,
    g: &Gemm,
    a: &View,
    b: Option<&View>,
    epi: Option<&Epi>,
    imp: Option<&Imp>,
) -> String {
    let ktiles = g.k.div_ceil(BK);
    let nacc = T / 2;
    let mut s = String::new();
    let _ = writeln!(s, ".shared .align 128 .b8 {name}_ra[{}];", STAGES * TILE);
    if b.is_some() {
        let _ = writeln!(s, ".shared .align 128 .b8 {name}_rb[{}];", STAGES * TILE);
    }
    for x in ["a", "b"] {
        let _ = writeln!(s, ".shared .align 128 .b8 {name}_s{x}[{}];", 2 * TILE);
    }
    let _ = writeln!(s, ".shared .align 8 .b64 {name}_bar[{STAGES}];");
    let mut maps = format!("\t.param .align 64 .b8 {name}_ta[128]");
    if b.is_some() {
        let _ = write!(maps, ",\n\t.param .align 64 .b8 {name}_tb[128]");
    }
    let _ = writeln!(
        s,
        "\n.visible .entry {name}(\n{},\n{maps}\n)\n.maxntid {THREADS}, 1, 1\n{{",
        common::params(name, epi, imp)
    );
    s += &common::epi_regs(epi);
    let _ = writeln!(
        s,
        "\t.reg .pred pt, lead, rdy, pr0, pr1, q, qk, more;\n\
         \t.reg .u32 tid, warp, lane, g, t, bx, by, bz, st, ph, kt, kn, ur, uk, u, v;\n\
         \t.reg .b32 cm, cn, ck, hi, lo;\n\
         \t.reg .s64 C, row0, row1, col, off, addr, so, barb, baddr, sab, sbb, dsta, dstb;\n\
         \t.reg .s64 tq, ra, rb, wa, wb, kq, nb;\n\
         \t.reg .u64 da, db, dah<2>, dal<2>, dbh<2>, dbl<2>, ta, tb;\n\
         \t.reg .f32 tmp, acc<{nacc}>, cv, res, xa<{PER}>, xb<{PER}>;"
    );
    let _ = writeln!(
        s,
        "\tld.param.u64 C, [{name}_c];\n\tcvta.to.global.u64 C, C;\n\
         \tmov.u32 tid, %tid.x;\n\tshr.u32 warp, tid, 5;\n\tand.b32 lane, tid, 31;\n\
         \tshr.u32 g, lane, 2;\n\tand.b32 t, lane, 3;\n\
         \tmov.u32 bx, %ctaid.x;\n\tmov.u32 by, %ctaid.y;\n\tmov.u32 bz, %ctaid.z;\n\
         \tsetp.eq.u32 pt, tid, tid;\n\tsetp.eq.u32 lead, tid, 0;\n\
         \tcvt.u64.u32 off, bz;\n\tmul.lo.s64 addr, off, {};\n\tadd.s64 C, C, addr;\n\
         \tshl.b32 cm, by, 6;\n\tshl.b32 cn, bx, 6;\n\
         \tmov.u64 sab, {name}_ra;\n\tmov.u64 barb, {name}_bar;\n\
         \tmov.u64 ta, {name}_ta;\n\tcvta.param.u64 ta, ta;\n\
         \tcvt.u64.u32 tq, tid;\n\tshl.b64 tq, tq, 2;",
        g.c_strides[0] * 4
    );
    if b.is_some() {
        let _ = writeln!(
            s,
            "\tmov.u64 sbb, {name}_rb;\n\tmov.u64 tb, {name}_tb;\n\tcvta.param.u64 tb, tb;"
        );
    } else {
        // The loader's column: this thread's n (its k varies per tile).
        let _ = writeln!(
            s,
            "\tmul.wide.u32 nb, bx, {T};\n\tand.b32 u, tid, 63;\n\tcvt.u64.u32 off, u;\n\
             \tadd.s64 nb, nb, off;"
        );
    }
    common::imp_setup(&mut s, name, g, imp);
    // A computed B is walked like an N-major tile (n = tid % 64): a warp's
    // loader calls read neighbouring columns.
    let b_major = b.is_some_and(|v| v.k_major);
    write_base(&mut s, name, "a", a.k_major);
    write_base(&mut s, name, "b", b_major);
    for x in ["a", "b"] {
        let _ = writeln!(
            s,
            "\tmov.u64 d{x}, {name}_s{x};\n\tshr.u64 d{x}, d{x}, 4;\n\tand.b64 d{x}, d{x}, 16383;\n\
             \tor.b64 d{x}, d{x}, {};",
            ((LBO >> 4) << 16) | ((SBO >> 4) << 32)
        );
        // k8 step j: two core matrices along K further.
        for j in 0..BK / 8 {
            let _ = writeln!(
                s,
                "\tadd.s64 d{x}h{j}, d{x}, {};\n\tadd.s64 d{x}l{j}, d{x}, {};",
                (j * 2 * LBO) >> 4,
                (TILE + j * 2 * LBO) >> 4
            );
        }
    }
    let mut ops: Vec<(&str, &View, &str)> = vec![("a", a, "cm")];
    if let Some(b) = b {
        ops.push(("b", b, "cn"));
    }
    // One arrival (thread 0's expect_tx) plus the copies' bytes complete
    // a phase; the init must be visible to the async proxy before use.
    let _ = writeln!(s, "\t@!lead bra $Linit;");
    for i in 0..STAGES {
        let _ = writeln!(s, "\tmbarrier.init.shared::cta.b64 [barb+{}], 1;", 8 * i);
    }
    s += "\tfence.mbarrier_init.release.cluster;\n$Linit:\n\tbar.sync 0;\n";
    for i in 0..nacc {
        let _ = writeln!(s, "\tmov.f32 acc{i}, 0f00000000;");
    }
    s += "\t@!lead bra $Lpro;\n";
    for i in 0..STAGES.min(ktiles) {
        let _ = writeln!(
            s,
            "\tmov.u64 so, {};\n\tadd.s64 baddr, barb, {};\n\tmov.u32 kn, {i};",
            i * TILE,
            8 * i
        );
        issue_ops(&mut s, &ops, TILE, BK.trailing_zeros());
    }
    s += "$Lpro:\n\tmov.u32 st, 0;\n\tmov.u32 ph, 0;\n\tmov.u32 kt, 0;\n";
    if let Some(imp) = imp {
        load_b(&mut s, g, imp, "p");
    }
    s += "$Lk:\n";
    let _ = writeln!(
        s,
        "\tcvt.u64.u32 off, st;\n\tmul.lo.s64 so, off, {TILE};\n\tshl.b64 off, off, 3;\n\
         \tadd.s64 baddr, barb, off;\n\
         $Lwait:\n\tmbarrier.try_wait.parity.shared::cta.b64 rdy, [baddr], ph;\n\t@!rdy bra $Lwait;"
    );
    for &(x, _, _) in &ops {
        let _ = writeln!(s, "\tadd.s64 r{x}, s{x}b, so;\n\tadd.s64 r{x}, r{x}, tq;");
        for i in 0..PER {
            let _ = writeln!(s, "\tld.shared.f32 x{x}{i}, [r{x}+{}];", 4 * THREADS * i);
        }
    }
    for (x, k_major) in [("a", a.k_major), ("b", b_major)] {
        for i in 0..PER {
            let (r, kk) = coords(k_major, THREADS * i);
            let d = smem_off(r, kk);
            split(&mut s, &format!("x{x}{i}"), "hi", "lo");
            let _ = writeln!(
                s,
                "\tst.shared.b32 [w{x}+{d}], hi;\n\tst.shared.b32 [w{x}+{}], lo;",
                TILE + d
            );
        }
    }
    // The stage is read: thread 0 refills it with the tile STAGES ahead.
    let _ = writeln!(
        s,
        "\tfence.proxy.async.shared::cta;\n\tbar.sync 0;\n\
         \tadd.u32 kn, kt, {STAGES};\n\tsetp.lt.u32 q, kn, {ktiles};\n\tand.pred q, q, lead;\n\
         \t@!q bra $Lfed;"
    );
    issue_ops(&mut s, &ops, TILE, BK.trailing_zeros());
    s += "$Lfed:\n\twgmma.fence.sync.aligned;\n";
    let accs: Vec<String> = (0..nacc).map(|i| format!("acc{i}")).collect();
    let d = format!("{{{}}}", accs.join(", "));
    for j in 0..BK / 8 {
        // Small terms first, then the large one (less rounding in the sum).
        for (x, y) in [("l", "h"), ("h", "l"), ("h", "h")] {
            let _ = writeln!(
                s,
                "\twgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 {d}, da{x}{j}, db{y}{j}, pt, 1, 1;"
            );
        }
    }
    let _ = writeln!(
        s,
        "\twgmma.commit_group.sync.aligned;\n\tadd.u32 kt, kt, 1;\n\tsetp.lt.u32 more, kt, {ktiles};"
    );
    if let Some(imp) = imp {
        // The next tile's loader calls overlap the tensor cores.
        s += "\t@!more bra.uni $Lw;\n";
        load_b(&mut s, g, imp, "n");
        s += "$Lw:\n";
    }
    let _ = writeln!(
        s,
        "\twgmma.wait_group.sync.aligned 0;\n\tbar.sync 0;\n\
         \tadd.u32 st, st, 1;\n\tsetp.eq.u32 q, st, {STAGES};\n\
         \t@q mov.u32 st, 0;\n\t@q xor.b32 ph, ph, 1;\n\t@more bra.uni $Lk;"
    );
    // C: warp w holds rows 16w + g (+ 8) of the block's 64.
    let _ = writeln!(
        s,
        "\tmul.wide.u32 row0, by, {T};\n\tmul.wide.u32 off, warp, 16;\n\tadd.s64 row0, row0, off;\n\
         \tcvt.u64.u32 off, g;\n\tadd.s64 row0, row0, off;\n\tadd.s64 row1, row0, 8;\n\
         \tsetp.lt.s64 pr0, row0, {};\n\tsetp.lt.s64 pr1, row1, {};\n\tmul.wide.u32 col, bx, {T};",
        g.m, g.m
    );
    common::store_c(&mut s, name, g, (T / 8) as usize, epi);
    s += "\tret;\n}\n";
    s
}

/// B's K tile `kt` from the loader into `xb<PER>` (zero outside B):
/// element `i` of this thread is (k = kt * 16 + tid / 64 + 2i, n = nb),
/// the N-major walk of `coords`. Labels are tagged with `tag`.
fn load_b(s: &mut String, g: &Gemm, imp: &Imp, tag: &str) {
    let _ = writeln!(
        s,
        "\tcvt.u64.u32 kq, kt;\n\tshl.b64 kq, kq, {};\n\tshr.u32 u, tid, 6;\n\
         \tcvt.u64.u32 off, u;\n\tadd.s64 kq, kq, off;",
        BK.trailing_zeros()
    );
    let n_edge = !g.n.is_multiple_of(T);
    let k_edge = !g.k.is_multiple_of(BK);
    for i in 0..PER {
        let (_, dk) = coords(false, THREADS * i);
        let k_lim = g.k as i64 - dk as i64;
        let _ = writeln!(s, "\tmov.f32 xb{i}, 0f00000000;");
        if k_edge && k_lim <= 0 {
            continue;
        }
        let guard = match (n_edge, k_edge) {
            (false, false) => None,
            (true, false) => {
                let _ = writeln!(s, "\tsetp.lt.s64 q, nb, {};", g.n);
                Some("q")
            }
            (false, true) => {
                let _ = writeln!(s, "\tsetp.lt.s64 q, kq, {k_lim};");
                Some("q")
            }
            (true, true) => {
                let _ = writeln!(
                    s,
                    "\tsetp.lt.s64 q, nb, {};\n\tsetp.lt.s64 qk, kq, {k_lim};\n\tand.pred q, q, qk;",
                    g.n
                );
                Some("q")
            }
        };
        common::load_b(
            s,
            g,
            imp,
            ("kq", dk),
            ("nb", 0),
            &format!("xb{i}"),
            false,
            guard,
            &format!("{tag}{i}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(m: u64, n: u64, k: u64) -> Gemm {
        Gemm {
            dtype: "f32".into(),
            batch: 1,
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
    fn views_need_16_byte_rows() {
        // A 100x72 row-major: K innermost, rows 288 bytes apart; B 72x40:
        // N innermost, rows 160 bytes apart.
        let (a, b) = views(Arch::Sm90a, &g(100, 40, 72), false).unwrap();
        let b = b.unwrap();
        assert!(a.k_major && !b.k_major);
        assert_eq!(
            (a.map.dims.clone(), a.map.strides.clone()),
            (vec![72, 100], vec![288])
        );
        assert_eq!(
            (b.map.dims.clone(), b.map.strides.clone()),
            (vec![40, 72], vec![160])
        );
        // Boxes: 16 along K, 64 along the rows; no swizzle.
        assert_eq!(a.map.box_dims, vec![16, 64]);
        assert_eq!(b.map.box_dims, vec![64, 16]);
        assert_eq!(a.map.swizzle, 0);
        assert!(a.map.check(100 * 72 * 4).is_ok() && b.map.check(72 * 40 * 4).is_ok());
        // K = 9: A's rows 36 bytes apart; B (N = 40) alone is fine, so an
        // implicit GEMM (B computed) still cannot use TMA for A.
        assert!(views(Arch::Sm90a, &g(5, 40, 9), false).is_none());
        assert!(views(Arch::Sm90a, &g(5, 40, 9), true).is_none());
        // One row of A is never stepped: any K.
        let (_, b) = views(Arch::Sm90a, &g(1, 40, 9), true).unwrap();
        assert!(b.is_none());
        assert_eq!(maps(Arch::Sm90a, &g(1, 40, 9), true).len(), 1);
        // N = 10: B's rows 40 bytes apart.
        assert!(views(Arch::Sm90a, &g(64, 10, 64), false).is_none());
        assert!(views(Arch::Sm80, &g(64, 64, 64), false).is_none());
        let mut h = g(64, 64, 64);
        h.dtype = "f16".into();
        assert!(views(Arch::Sm90a, &h, false).is_none());
    }

    #[test]
    fn split_offsets_are_first_plus_immediate() {
        // Raw element e of thread tid is tid + 128 i; its hi/lo offset is
        // the thread's first plus an immediate that depends on i only.
        for k_major in [true, false] {
            let mut seen = std::collections::HashSet::new();
            for tid in 0..THREADS {
                for i in 0..PER {
                    let (r, kk) = coords(k_major, tid + THREADS * i);
                    assert!(r < T && kk < BK);
                    let (r0, k0) = coords(k_major, tid);
                    let (ri, ki) = coords(k_major, THREADS * i);
                    assert_eq!(smem_off(r, kk), smem_off(r0, k0) + smem_off(ri, ki));
                    assert!(seen.insert(smem_off(r, kk)));
                }
            }
            // Every element of the tile exactly once, inside one copy.
            assert_eq!(seen.len() as u64, T * BK);
            assert!(seen.iter().all(|&o| o < TILE && o % 4 == 0));
        }
        // Core matrices: 8 rows of 16 bytes, 4 along K (LBO 128), then
        // the next 8 rows (SBO 512).
        assert_eq!(smem_off(1, 0), 16);
        assert_eq!(smem_off(0, 4), 128);
        assert_eq!(smem_off(8, 0), 512);
        assert_eq!(smem_off(63, 15), 7 * 512 + 7 * 16 + 3 * 128 + 3 * 4);
    }

    #[test]
    fn module_uses_tma_and_three_products_per_step() {
        let mut x = g(100, 72, 200);
        x.batch = 2;
        x.a_strides[0] = 0;
        let l = launch(Arch::Sm90a, "g0", &x, false).unwrap();
        assert_eq!(l.grid, [2, 2, 2]);
        let ptx = module(Arch::Sm90a, "g0", &x, None, None);
        // A broadcast over the batch: 2-D; B per batch: 3-D.
        assert!(ptx.contains("cp.async.bulk.tensor.2d"));
        assert!(ptx.contains("cp.async.bulk.tensor.3d"));
        // Two k8 steps per K tile of 16, three products each.
        assert_eq!(ptx.matches("wgmma.mma_async").count(), 6);
        assert_eq!(ptx.matches("cvt.rna.tf32.f32").count(), (4 * PER) as usize);
        // Both operands' bytes arm the barrier.
        assert!(ptx.contains(&format!(
            "expect_tx.shared::cta.b64 _, [baddr], {}",
            2 * TILE
        )));
        // 40 KiB of static shared memory, under the 48 KiB limit.
        const { assert!(2 * STAGES * TILE + 4 * TILE + 8 * STAGES <= 48 * 1024) };
    }
}
