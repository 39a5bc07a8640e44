//! Hopper (`sm_90a`) f16/bf16 GEMM whose operand tiles arrive by TMA:
//! `C = alpha * A·B + beta * C`, f32 accumulators, C rounded once to the
//! storage type at the store (`common::store_c`), batched by `ctaid.z`.
//!
//! What is TMA-fed: the A and B tiles, with
//! `cp.async.bulk.tensor.{2d,3d}.shared::cluster.global.mbarrier::complete_tx::bytes`
//! through two `CUtensorMap`s the program asks for (`maps`, passed by value
//! after every other parameter, A's then B's). What is not: C (read for
//! beta = 1 and written from the accumulators by each thread, as in
//! `mma`/`wgmma`), f32 products (they need the TF32 hi/lo split after
//! the copy: `tma_tf32`), implicit GEMMs (B is computed), and
//! operands a map cannot describe (neither K nor M/N unit-stride, a row or
//! batch stride that is not a multiple of 16 bytes): `launch` declines and
//! the staged `wgmma` kernel serves them.
//!
//! Blocks come in two shapes (`Shape`). SMALL: one warpgroup (128
//! threads) computes a 64x64 tile of C; K tiles of 64 go through a
//! two-stage ring in static shared memory (2 x 16 KiB). Thread 0 arms
//! stage `s`'s mbarrier with `mbarrier.arrive.expect_tx` (the tiles'
//! bytes; TMA counts a whole box, out-of-bounds elements included) and
//! issues the copies; every thread waits with `mbarrier.try_wait.parity`
//! (the parity flips each time the ring wraps), runs 4
//! `wgmma.mma_async.m64n64k16` steps, waits for them (`wait_group 0`),
//! and after a barrier (every warp is done reading the stage) thread 0
//! refills the stage with the tile two ahead, so one copy is always in
//! flight while the tensor cores run. WIDE (products with enough blocks
//! to fill the GPU): two warpgroups compute 128x128, each its 64 rows
//! over two 64-column atoms of B (two m64n64k16 per k16 step, so every
//! tile in shared memory keeps the SMALL layout exactly); four stages in
//! dynamic shared memory (128 KiB + 1 KiB of alignment slack; the runtime
//! raises the function's limit); one tile's wgmmas stay in flight
//! (`wait_group 1`) while the next tile's are issued, and the stage of
//! the tile before is refilled once every warp has passed the barrier.
//! A stage holds A's 64-row boxes, then B's, each one TMA copy of the
//! same 64 x 64 box as SMALL. Edges need no predicates on the
//! loads: the maps have the operands' true extents and TMA fills
//! elements outside them with zeros, so K, M and N tails add 0.
//!
//! Layouts relied on (PTX ISA 8.x, "Asynchronous Warpgroup Level Matrix
//! Shared Memory Layout" and "Matrix Descriptor Format",
//! <https://docs.nvidia.com/cuda/parallel-thread-execution/index.html#asynchronous-warpgroup-level-matrix-shared-memory-layout>;
//! `cuTensorMapEncodeTiled` in the CUDA driver API):
//! - Every box is 64 x 64 elements with 128-byte swizzle: TMA writes row
//!   `r` of the box (128 bytes) at `r * 128` with its 16-byte chunk `c`
//!   moved to `c ^ (r % 8)`, which is the wgmma 128B-swizzle layout when
//!   the tile is 1024-byte aligned (matrix base offset 0).
//! - K-major operand (K stride 1: A row-major, B given as N x K): box
//!   rows are M (N), 128 bytes of K each. Descriptor: SBO = 1024 (next 8
//!   rows), LBO unused (K fits in one swizzle atom; set to 16), swizzle
//!   mode 1 (bits 62-63); the k16 step `j` starts 32 bytes further
//!   (`j * 32`, inside the swizzle atom, as CUTLASS advances it).
//!   Transpose immediate 0.
//! - M/N-major operand (M or N stride 1: B row-major, A given as K x M):
//!   box rows are K, 128 bytes of M (N) each, i.e. one 64-element swizzle
//!   atom along M/N. Descriptor: SBO = 1024 (next 8 K rows), LBO (next
//!   atom along M/N) unused with one atom, set to 16; step `j` starts
//!   `j * 2048` further (16 K rows). Transpose immediate 1.
//! - Accumulators as in `wgmma` (the m16n8 C fragment repeated over 8
//!   column tiles per 64-column atom, atoms in order), stored by
//!   `common::store_c`.
//!
//! No GPU was available when this was written: it is checked by ptxas
//! only; its numerics (layouts, swizzle, descriptors, the barrier
//! protocol) are NOT yet tested on hardware.

use super::super::Arch;
use super::common::{self, Elem, Epi};
use smelt_runtime::cpu::Gemm;
use smelt_runtime::gpu::{Launch, TensorMap};
use std::fmt::Write;

const THREADS: u64 = 128;
/// Tile edge in elements: BM = BN = BK = 64 (128 bytes of 16-bit data,
/// the 128-byte swizzle span).
const T: u64 = 64;
/// Bytes of one operand's tile.
const TILE: u64 = T * T * 2;
const SBO: u64 = 1024;
/// Blocks that fill an H100/H200 (132 SMs): below this many wide blocks a
/// product keeps the small ones, which spread over more SMs.
const FILL: u64 = 132;

/// A block's shape: `wm` warpgroups, each computing 64 rows of C over
/// `wn` 64-column atoms, with `stages` K tiles in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub wm: u64,
    pub wn: u64,
    pub stages: u64,
}

/// 64 x 64, one warpgroup, two stages in static shared memory (32 KiB).
pub const SMALL: Shape = Shape {
    wm: 1,
    wn: 1,
    stages: 2,
};
/// 128 x 128, two warpgroups, four stages (128 KiB of dynamic shared
/// memory): each operand byte loaded feeds twice the products of SMALL,
/// and three tiles are in flight while one is multiplied.
pub const WIDE: Shape = Shape {
    wm: 2,
    wn: 2,
    stages: 4,
};

impl Shape {
    /// WIDE where its blocks still fill the GPU, else SMALL.
    pub fn of(g: &Gemm) -> Shape {
        let blocks = |s: Shape| g.m.div_ceil(s.bm()) * g.n.div_ceil(s.bn()) * g.batch;
        if blocks(WIDE) >= FILL { WIDE } else { SMALL }
    }
    pub fn bm(self) -> u64 {
        T * self.wm
    }
    pub fn bn(self) -> u64 {
        T * self.wn
    }
    fn stage_bytes(self) -> u64 {
        (self.wm + self.wn) * TILE
    }
    /// Past the 48 KiB of static shared memory: the ring is dynamic.
    fn dynamic(self) -> bool {
        self.stages * self.stage_bytes() > 48 * 1024
    }
    /// Products of one tile stay in flight while the next tile's are
    /// issued (more than two stages: a refill then still runs ahead).
    fn pipelined(self) -> bool {
        self.stages > 2
    }
    /// Dynamic shared memory the launch asks for: the ring plus 1 KiB to
    /// align it.
    pub fn shared_bytes(self) -> u32 {
        if self.dynamic() {
            (self.stages * self.stage_bytes() + 1024) as u32
        } else {
            0
        }
    }
}

/// How an operand is read: its map (buffer left 0 for the program to set)
/// and whether K is its contiguous dimension.
#[derive(Clone, Debug)]
pub struct View {
    pub map: TensorMap,
    pub k_major: bool,
}

/// The operand `rows x k` (batch `batch`) with element strides `s_batch`,
/// `s_row` (along M or N) and `s_k`, as a tiled map of `eb`-byte
/// elements with boxes of `bk` (along K) x `brow` (along the rows) and
/// `swizzle`, if TMA can read it.
pub fn view_with(
    dtype: &str,
    eb: u64,
    (batch, rows, k): (u64, u64, u64),
    s: [i64; 3],
    (bk, brow): (u32, u32),
    swizzle: u32,
) -> Option<View> {
    let [s_batch, s_row, s_k] = s;
    // Inner dimension first; the other's stride in bytes must be a
    // multiple of 16 and the rows must not overlap.
    let (k_major, inner, outer, s_outer, box_dims) = if s_k == 1 {
        (true, k, rows, s_row, vec![bk, brow])
    } else if s_row == 1 {
        (false, rows, k, s_k, vec![brow, bk])
    } else {
        return None;
    };
    let mut box_dims = box_dims;
    let s_outer = if outer == 1 {
        // Never stepped: any legal stride.
        (inner * eb).div_ceil(16) * 16
    } else {
        u64::try_from(s_outer).ok()? * eb
    };
    if !s_outer.is_multiple_of(16) || s_outer < inner * eb {
        return None;
    }
    let mut dims = vec![inner, outer];
    let mut strides = vec![s_outer];
    if batch > 1 && s_batch != 0 {
        let sb = u64::try_from(s_batch).ok()? * eb;
        if !sb.is_multiple_of(16) {
            return None;
        }
        dims.push(batch);
        strides.push(sb);
        box_dims.push(1);
    }
    if dims.iter().any(|&d| d > u32::MAX as u64) || strides.iter().any(|&x| x >= 1 << 40) {
        return None;
    }
    Some(View {
        map: TensorMap {
            buffer: 0,
            dtype: dtype.into(),
            dims,
            strides,
            box_dims,
            swizzle,
        },
        k_major,
    })
}

/// A 16-bit operand's view: 64 x 64 boxes, 128-byte swizzle.
fn view(dtype: &str, batch: u64, rows: u64, k: u64, s: [i64; 3]) -> Option<View> {
    view_with(dtype, 2, (batch, rows, k), s, (T as u32, T as u32), 128)
}

/// A's and B's views, if this kernel serves `g` on `arch`.
pub fn views(arch: Arch, g: &Gemm) -> Option<(View, View)> {
    if arch != Arch::Sm90a
        || !matches!(Elem::of(g), Some(Elem::F16 | Elem::Bf16))
        || !common::supported(arch, "g", g)
        || g.n.div_ceil(T) > u32::MAX as u64
        || g.m.div_ceil(T) > 65_535
        || g.batch > 65_535
    {
        return None;
    }
    let a = view(&g.dtype, g.batch, g.m, g.k, g.a_strides)?;
    let [sb0, sb1, sb2] = g.b_strides;
    let b = view(&g.dtype, g.batch, g.n, g.k, [sb0, sb2, sb1])?;
    Some((a, b))
}

/// The maps the kernel for `g` takes (operand 0 = A, 1 = B), empty where
/// this kernel does not serve `g`.
pub fn maps(arch: Arch, g: &Gemm) -> Vec<(usize, TensorMap)> {
    views(arch, g).map_or_else(Vec::new, |(a, b)| vec![(0, a.map), (1, b.map)])
}

/// The launch for `g`, or None where this kernel cannot serve it.
pub fn launch(arch: Arch, name: &str, g: &Gemm) -> Option<Launch> {
    views(arch, g)?;
    if !common::supported(arch, name, g) {
        return None;
    }
    let sh = Shape::of(g);
    Some(Launch {
        grid: [
            g.n.div_ceil(sh.bn()) as u32,
            g.m.div_ceil(sh.bm()) as u32,
            g.batch as u32,
        ],
        block: [(THREADS * sh.wm) as u32, 1, 1],
        shared_bytes: sh.shared_bytes(),
    })
}

/// The module (see `common::module`): call only where `launch` is Some.
pub fn module(arch: Arch, name: &str, g: &Gemm, epi: Option<&Epi>) -> String {
    let Some((a, b)) = views(arch, g) else {
        return String::new();
    };
    let sh = Shape::of(g);
    let comment = format!(
        "smelt tensor-core GEMM {name}: {} batch {} x [{}x{}] * [{}x{}], alpha {}, beta {}\n\
         {} wgmma.m64n64k16, f32 accumulation, block {}x{}, K tile 64, {} warpgroup(s),\n\
         A ({}-major) and B ({}-major) by TMA (128B swizzle), {} stages{}{}",
        common::dtypes(g),
        g.batch,
        g.m,
        g.k,
        g.k,
        g.n,
        g.alpha,
        g.beta,
        g.dtype,
        sh.bm(),
        sh.bn(),
        sh.wm,
        if a.k_major { "K" } else { "M" },
        if b.k_major { "K" } else { "N" },
        sh.stages,
        if sh.shared_bytes() > 0 {
            format!(" ({} B dynamic shared memory)", sh.shared_bytes())
        } else {
            String::new()
        },
        epi.map_or(String::new(), |e| format!(", epilogue {}", e.func))
    );
    common::module(arch, &comment, &entry(name, g, &a, &b, epi), epi, None)
}

/// The 64-bit descriptor of a 1024-aligned 128B-swizzled tile at shared
/// address register `addr`, into `d`, minus the start address's step.
fn descriptor(s: &mut String, d: &str, addr: &str) {
    let _ = writeln!(
        s,
        "\tshr.u64 {d}, {addr}, 4;\n\tand.b64 {d}, {d}, 16383;\n\tor.b64 {d}, {d}, {};",
        (1u64 << 16) | ((SBO >> 4) << 32) | (1u64 << 62)
    );
}

/// Start-address step (bytes) of k16 step `j` in a tile.
fn step(k_major: bool, j: u64) -> u64 {
    if k_major { 32 * j } else { 2048 * j }
}

fn entry(name: &str, g: &Gemm, a: &View, b: &View, epi: Option<&Epi>) -> String {
    let e = Elem::of(g).unwrap_or(Elem::Bf16);
    let ty = e.mma_type();
    let sh = Shape::of(g);
    let (wm, wn, stages) = (sh.wm, sh.wn, sh.stages);
    let stage = sh.stage_bytes();
    let ktiles = g.k.div_ceil(T);
    let nacc = wn * T / 2;
    let mut s = String::new();
    if sh.dynamic() {
        let _ = writeln!(s, ".extern .shared .align 1024 .b8 {name}_s[];");
    } else {
        let _ = writeln!(s, ".shared .align 1024 .b8 {name}_s[{}];", stages * stage);
    }
    let _ = writeln!(s, ".shared .align 8 .b64 {name}_bar[{stages}];");
    let _ = writeln!(
        s,
        "\n.visible .entry {name}(\n{},\n\t.param .align 64 .b8 {name}_ta[128],\n\
         \t.param .align 64 .b8 {name}_tb[128]\n)\n.maxntid {}, 1, 1\n{{",
        common::params(name, epi, None),
        THREADS * wm
    );
    s += &common::epi_regs(epi);
    let _ = writeln!(
        s,
        "\t.reg .pred pt, lead, rdy, pr0, pr1, q, more;\n\
         \t.reg .u32 tid, warp, wg, lane, g, t, bx, by, bz, st, ph, kt, kn, ps;\n\
         \t.reg .b32 cm, cn, ck, cmi;\n\
         \t.reg .s64 C, row0, row1, col, off, addr, so, barb, baddr, sm, sab, sbb, dst;\n\
         \t.reg .u64 da0, db0, da, db, daj, dbj, ta, tb;\n\
         \t.reg .f32 acc<{nacc}>, cv, res;"
    );
    let _ = writeln!(
        s,
        "\tld.param.u64 C, [{name}_c];\n\tcvta.to.global.u64 C, C;\n\
         \tmov.u32 tid, %tid.x;\n\tshr.u32 warp, tid, 5;\n\tshr.u32 wg, tid, 7;\n\tand.b32 lane, tid, 31;\n\
         \tshr.u32 g, lane, 2;\n\tand.b32 t, lane, 3;\n\
         \tmov.u32 bx, %ctaid.x;\n\tmov.u32 by, %ctaid.y;\n\tmov.u32 bz, %ctaid.z;\n\
         \tsetp.eq.u32 pt, tid, tid;\n\tsetp.eq.u32 lead, tid, 0;\n\
         \tcvt.u64.u32 off, bz;\n\tmul.lo.s64 addr, off, {};\n\tadd.s64 C, C, addr;\n\
         \tmul.lo.u32 cm, by, {};\n\tmul.lo.u32 cn, bx, {};\n\
         \tmov.u64 sm, {name}_s;\n\tmov.u64 barb, {name}_bar;\n\
         \tmov.u64 ta, {name}_ta;\n\tcvta.param.u64 ta, ta;\n\tmov.u64 tb, {name}_tb;\n\tcvta.param.u64 tb, tb;",
        g.c_strides[0] * Elem::of_c(g).unwrap_or(e).bytes() as i64,
        sh.bm(),
        sh.bn(),
    );
    if sh.dynamic() {
        // The swizzled tiles need 1024-byte alignment; the launch asks for
        // 1 KiB of slack so that rounding up stays inside the allocation.
        s += "\tadd.s64 sm, sm, 1023;\n\tand.b64 sm, sm, -1024;\n";
    }
    // This warpgroup's A atom and the first B atom of stage 0.
    let _ = writeln!(
        s,
        "\tmul.wide.u32 off, wg, {TILE};\n\tadd.s64 sab, sm, off;\n\tadd.s64 sbb, sm, {};",
        wm * TILE
    );
    descriptor(&mut s, "da0", "sab");
    descriptor(&mut s, "db0", "sbb");
    // One arrival (thread 0's expect_tx) plus the copies' bytes complete
    // a phase; the init must be visible to the async proxy before use.
    let _ = writeln!(s, "\t@!lead bra $Linit;");
    for i in 0..stages {
        let _ = writeln!(s, "\tmbarrier.init.shared::cta.b64 [barb+{}], 1;", 8 * i);
    }
    s += "\tfence.mbarrier_init.release.cluster;\n$Linit:\n\tbar.sync 0;\n";
    for i in 0..nacc {
        let _ = writeln!(s, "\tmov.f32 acc{i}, 0f00000000;");
    }
    // Prologue: thread 0 fills every stage it can.
    s += "\t@!lead bra $Lpro;\n";
    for i in 0..stages.min(ktiles) {
        let _ = writeln!(
            s,
            "\tmov.u64 so, {};\n\tadd.s64 baddr, barb, {};\n\tmov.u32 kn, {i};",
            i * stage,
            8 * i
        );
        issue(&mut s, sh, a, b);
    }
    s += "$Lpro:\n\tmov.u32 st, 0;\n\tmov.u32 ph, 0;\n\tmov.u32 kt, 0;\n$Lk:\n";
    let _ = writeln!(
        s,
        "\tcvt.u64.u32 off, st;\n\tmul.lo.s64 so, off, {stage};\n\tshl.b64 off, off, 3;\n\
         \tadd.s64 baddr, barb, off;\n\
         $Lwait:\n\tmbarrier.try_wait.parity.shared::cta.b64 rdy, [baddr], ph;\n\t@!rdy bra $Lwait;\n\
         \tshr.u64 off, so, 4;\n\tadd.s64 da, da0, off;\n\tadd.s64 db, db0, off;\n\
         \twgmma.fence.sync.aligned;"
    );
    for j in 0..T / 16 {
        for jn in 0..wn {
            let accs: Vec<String> = (jn * T / 2..(jn + 1) * T / 2)
                .map(|i| format!("acc{i}"))
                .collect();
            let _ = writeln!(
                s,
                "\tadd.s64 daj, da, {};\n\tadd.s64 dbj, db, {};\n\
                 \twgmma.mma_async.sync.aligned.m64n64k16.f32.{ty}.{ty} {{{}}}, daj, dbj, pt, 1, 1, {}, {};",
                step(a.k_major, j) >> 4,
                (jn * TILE + step(b.k_major, j)) >> 4,
                accs.join(", "),
                u8::from(!a.k_major),
                u8::from(!b.k_major)
            );
        }
    }
    s += "\twgmma.commit_group.sync.aligned;\n";
    if sh.pipelined() {
        // This tile's products stay in flight; the previous tile's are
        // done in every warp after the barrier, so its stage is refilled
        // with the tile `stages` after it.
        let _ = writeln!(
            s,
            "\twgmma.wait_group.sync.aligned 1;\n\tbar.sync 0;\n\
             \tsetp.eq.u32 q, kt, 0;\n\t@q bra $Lnext;\n\
             \tadd.u32 kn, kt, {};\n\tsetp.lt.u32 q, kn, {ktiles};\n\tand.pred q, q, lead;\n\
             \t@!q bra $Lnext;\n\
             \tadd.u32 ps, st, {};\n\trem.u32 ps, ps, {stages};\n\tcvt.u64.u32 off, ps;\n\
             \tmul.lo.s64 so, off, {stage};\n\tshl.b64 off, off, 3;\n\tadd.s64 baddr, barb, off;",
            stages - 1,
            stages - 1
        );
    } else {
        // Every warp is done with this stage before it is refilled.
        let _ = writeln!(
            s,
            "\twgmma.wait_group.sync.aligned 0;\n\tbar.sync 0;\n\
             \tadd.u32 kn, kt, {stages};\n\tsetp.lt.u32 q, kn, {ktiles};\n\tand.pred q, q, lead;\n\
             \t@!q bra $Lnext;"
        );
    }
    issue(&mut s, sh, a, b);
    let _ = writeln!(
        s,
        "$Lnext:\n\tadd.u32 kt, kt, 1;\n\tadd.u32 st, st, 1;\n\tsetp.eq.u32 q, st, {stages};\n\
         \t@q mov.u32 st, 0;\n\t@q xor.b32 ph, ph, 1;\n\
         \tsetp.lt.u32 more, kt, {ktiles};\n\t@more bra.uni $Lk;"
    );
    if sh.pipelined() {
        s += "\twgmma.wait_group.sync.aligned 0;\n";
    }
    // C: warp w holds rows 16w + g (+ 8) of the block's; the warpgroup's
    // atoms are consecutive 64-column tiles of the accumulators.
    let _ = writeln!(
        s,
        "\tmul.wide.u32 row0, by, {};\n\tmul.wide.u32 off, warp, 16;\n\tadd.s64 row0, row0, off;\n\
         \tcvt.u64.u32 off, g;\n\tadd.s64 row0, row0, off;\n\tadd.s64 row1, row0, 8;\n\
         \tsetp.lt.s64 pr0, row0, {};\n\tsetp.lt.s64 pr1, row1, {};\n\tmul.wide.u32 col, bx, {};",
        sh.bm(),
        g.m,
        g.m,
        sh.bn()
    );
    common::store_c(&mut s, name, g, (wn * T / 8) as usize, epi);
    s += "\tret;\n}\n";
    s
}

/// Thread 0 arms the barrier at `baddr` and copies K tile `kn` of A
/// (`wm` boxes of 64 rows from `cm`) and B (`wn` boxes from `cn`) into
/// the stage at byte offset `so` of the ring at `sm`: A's boxes first,
/// then B's, one 64 x 64 tile each.
fn issue(s: &mut String, sh: Shape, a: &View, b: &View) {
    let _ = writeln!(
        s,
        "\tmbarrier.arrive.expect_tx.shared::cta.b64 _, [baddr], {};\n\tshl.b32 ck, kn, 6;",
        sh.stage_bytes()
    );
    let boxes = (0..sh.wm)
        .map(|i| ("ta", a, "cm", i))
        .chain((0..sh.wn).map(|j| ("tb", b, "cn", j)));
    for (slot, (map, v, first, i)) in boxes.enumerate() {
        let mut c = if v.k_major {
            vec!["ck", "cmi"]
        } else {
            vec!["cmi", "ck"]
        };
        if v.map.dims.len() == 3 {
            c.push("bz");
        }
        let _ = writeln!(
            s,
            "\tadd.s64 dst, sm, so;\n\tadd.s64 dst, dst, {};\n\tadd.u32 cmi, {first}, {};\n\
             \tcp.async.bulk.tensor.{}d.shared::cluster.global.mbarrier::complete_tx::bytes \
             [dst], [{map}, {{{}}}], [baddr];",
            slot as u64 * TILE,
            i * T,
            c.len(),
            c.join(", ")
        );
    }
}

/// Thread 0 arms the barrier at `baddr` for `tile` bytes per operand and
/// copies K tile `kn` (K coordinate `kn << kshift`) of each operand `x`
/// through map `t{x}` into shared memory at `s{x}b + so`; `mn` names the
/// register holding the tile's first row (M or N).
pub fn issue_ops(s: &mut String, ops: &[(&str, &View, &str)], tile: u64, kshift: u32) {
    let _ = writeln!(
        s,
        "\tmbarrier.arrive.expect_tx.shared::cta.b64 _, [baddr], {};\n\tshl.b32 ck, kn, {kshift};",
        ops.len() as u64 * tile
    );
    for &(x, _, _) in ops {
        let _ = writeln!(s, "\tadd.s64 dst{x}, s{x}b, so;");
    }
    for &(x, v, mn) in ops {
        let mut c = if v.k_major {
            vec!["ck", mn]
        } else {
            vec![mn, "ck"]
        };
        if v.map.dims.len() == 3 {
            c.push("bz");
        }
        let _ = writeln!(
            s,
            "\tcp.async.bulk.tensor.{}d.shared::cluster.global.mbarrier::complete_tx::bytes \
             [dst{x}], [t{x}, {{{}}}], [baddr];",
            c.len(),
            c.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(dtype: &str, m: u64, n: u64, k: u64) -> Gemm {
        Gemm {
            dtype: dtype.into(),
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
    fn maps_view_row_major_operands() {
        // A 100x72 bf16 row-major: K (72) innermost, rows 144 bytes apart.
        let (a, b) = views(Arch::Sm90a, &g("bf16", 100, 40, 72)).unwrap();
        assert!(a.k_major && !b.k_major);
        assert_eq!(a.map.dims, vec![72, 100]);
        assert_eq!(a.map.strides, vec![144]);
        // B 72x40: N innermost, rows 80 bytes apart.
        assert_eq!(b.map.dims, vec![40, 72]);
        assert_eq!(b.map.strides, vec![80]);
        assert_eq!(a.map.box_dims, vec![64, 64]);
        assert_eq!(a.map.swizzle, 128);
        // Every view stays inside its operand (the runtime checks too).
        assert!(a.map.check(100 * 72 * 2).is_ok());
        assert!(b.map.check(72 * 40 * 2).is_ok());
        // K = 5: rows 10 bytes apart, not a multiple of 16: no TMA.
        assert!(views(Arch::Sm90a, &g("bf16", 17, 16, 5)).is_none());
        // f32 is `tma_tf32`'s; sm_80 has no TMA.
        assert!(views(Arch::Sm90a, &g("f32", 64, 64, 64)).is_none());
        assert!(views(Arch::Sm80, &g("f16", 64, 64, 64)).is_none());
    }

    #[test]
    fn batched_operands_get_a_third_dimension() {
        let mut x = g("f16", 64, 64, 64);
        x.batch = 3;
        let (a, _) = views(Arch::Sm90a, &x).unwrap();
        assert_eq!(a.map.dims, vec![64, 64, 3]);
        assert_eq!(a.map.strides, vec![128, 64 * 64 * 2]);
        assert_eq!(a.map.box_dims, vec![64, 64, 1]);
        // A broadcast over the batch (stride 0) is one 2-D view.
        x.a_strides[0] = 0;
        let (a, _) = views(Arch::Sm90a, &x).unwrap();
        assert_eq!(a.map.dims.len(), 2);
        let (ptx, l) = (
            module(Arch::Sm90a, "g0", &x, None),
            launch(Arch::Sm90a, "g0", &x),
        );
        assert_eq!(l.unwrap().grid, [1, 1, 3]);
        assert!(ptx.contains("cp.async.bulk.tensor.2d"));
        assert!(ptx.contains("cp.async.bulk.tensor.3d"));
    }

    #[test]
    fn wide_blocks_only_where_they_fill_the_gpu() {
        // 8192^3: 64 x 64 wide blocks.
        let big = g("bf16", 8192, 8192, 8192);
        assert_eq!(Shape::of(&big), WIDE);
        let l = launch(Arch::Sm90a, "g0", &big).unwrap();
        assert_eq!((l.grid, l.block[0]), ([64, 64, 1], 256));
        assert_eq!(l.shared_bytes, 4 * 4 * 8192 + 1024);
        let ptx = module(Arch::Sm90a, "g0", &big, None);
        assert!(ptx.contains(".extern .shared .align 1024 .b8 g0_s[];"));
        assert!(ptx.contains("wgmma.wait_group.sync.aligned 1;"));
        assert!(ptx.contains("and.b64 sm, sm, -1024;"));
        // Per K tile: 4 k16 steps x 2 B atoms, each on 32 accumulators.
        assert_eq!(ptx.matches("wgmma.mma_async").count(), 8);
        assert!(ptx.contains("acc63"));
        // Two A boxes and two B boxes per stage: the prologue's four
        // stages and the refill.
        assert_eq!(ptx.matches("cp.async.bulk.tensor").count(), 5 * 4);
        // BERT-base's products (M = 128 tokens) give 6 wide blocks: small
        // ones, in static shared memory.
        let bert = g("f16", 128, 768, 768);
        assert_eq!(Shape::of(&bert), SMALL);
        let l = launch(Arch::Sm90a, "g0", &bert).unwrap();
        assert_eq!((l.grid, l.block[0], l.shared_bytes), ([12, 2, 1], 128, 0));
        let ptx = module(Arch::Sm90a, "g0", &bert, None);
        assert!(!ptx.contains(".extern"));
        assert_eq!(ptx.matches("wgmma.mma_async").count(), 4);
    }

    #[test]
    fn descriptor_fields() {
        // SBO 1024 >> 4 = 64 at bit 32, LBO 1 at bit 16, 128B swizzle (1)
        // at bits 62-63.
        let mut s = String::new();
        descriptor(&mut s, "d", "x");
        assert!(s.contains(&format!("{}", (64u64 << 32) | (1 << 16) | (1 << 62))));
        // k16 steps: 32 bytes inside a K-major atom, 16 rows of 128 bytes
        // in an M/N-major tile.
        assert_eq!(step(true, 3), 96);
        assert_eq!(step(false, 1), 2048);
    }
}
