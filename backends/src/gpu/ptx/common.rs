//! What the hand-written tensor-core GEMMs (`mma`, `wgmma`) share: the
//! checks on a product, the module header, the TF32 split, the store of
//! the accumulators into C and the fused epilogue's calls.

use super::super::Arch;
use smelt_runtime::cpu::Gemm;
use std::fmt::Write;

/// An elementwise epilogue fused into a GEMM: `text` is a PTX module
/// (header included, from `smelt_codegen::nvptx::point_func`) defining
/// `.func func(.b64 e0, ..., .b64 eN-1, .b64 p)`, the epilogue's body for
/// the point `p` (flat index into C) over its `params` buffers.
pub struct Epi<'a> {
    pub func: &'a str,
    pub params: usize,
    pub text: &'a str,
}

/// Element type of a tensor-core GEMM's A, B and C. f16/bf16 are
/// storage types: products are accumulated in f32 and C is rounded once
/// (to nearest even) when it is stored, as `gpu::gemm` defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    F32,
    F16,
    Bf16,
}

impl Elem {
    pub fn of(g: &Gemm) -> Option<Elem> {
        match g.dtype.as_str() {
            "f32" => Some(Elem::F32),
            "f16" => Some(Elem::F16),
            "bf16" => Some(Elem::Bf16),
            _ => None,
        }
    }

    pub fn bytes(self) -> u64 {
        if self == Elem::F32 { 4 } else { 2 }
    }

    /// The PTX type suffix of the MMA operands (`tf32`, `f16`, `bf16`).
    pub fn mma_type(self) -> &'static str {
        match self {
            Elem::F32 => "tf32",
            Elem::F16 => "f16",
            Elem::Bf16 => "bf16",
        }
    }
}

/// Whether the hand-written kernels can serve `g` under `name`: f32, f16
/// or bf16, non-empty, `beta` 0 or 1 (C is read only when it is 1), a plain
/// identifier, non-negative strides.
pub fn supported(arch: Arch, name: &str, g: &Gemm) -> bool {
    arch.is_nvidia()
        && Elem::of(g).is_some()
        && g.m > 0
        && g.n > 0
        && g.k > 0
        && g.batch > 0
        && (g.beta == 0.0 || g.beta == 1.0)
        && !name.is_empty()
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && g.a_strides
            .iter()
            .chain(&g.b_strides)
            .chain(&g.c_strides)
            .all(|&s| s >= 0)
}

/// The module: a comment, then either the epilogue's module (which
/// brings the `.version`/`.target` header and defines the function the
/// entry calls, before its use) or a header of our own, then the entry.
pub fn module(arch: Arch, comment: &str, entry: &str, epi: Option<&Epi>) -> String {
    let mut s = String::new();
    for l in comment.lines() {
        let _ = writeln!(s, "// {l}");
    }
    match epi {
        Some(e) => {
            s += e.text;
            s += "\n";
        }
        None => {
            let _ = writeln!(
                s,
                ".version {}\n.target {}\n.address_size 64\n",
                smelt_codegen::nvptx::PTX_VERSION,
                arch.name()
            );
        }
    }
    s += entry;
    s
}

/// The entry's parameter list: `A, B, C` and the epilogue's buffers.
pub fn params(name: &str, epi: Option<&Epi>) -> String {
    let mut ps: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|p| format!("\t.param .u64 {name}_{p}"))
        .collect();
    for i in 0..epi.map_or(0, |e| e.params) {
        ps.push(format!("\t.param .u64 {name}_e{i}"));
    }
    ps.join(",\n")
}

/// Registers `store_c` needs beyond the kernel's own (`cv`, `res`, `q`,
/// `off`, `addr` are the kernel's).
pub fn epi_regs(epi: Option<&Epi>) -> String {
    let mut s = "\t.reg .b16 ch;\n\t.reg .b32 cw;\n".to_string();
    if let Some(e) = epi {
        s += &format!(
            "\t.reg .u64 ep<{}>;\n\t.reg .s64 cb, fi;\n",
            e.params.max(1)
        );
    }
    s
}

/// `x = f32(h)` for a 16-bit register `h` of `e`: exact for both (bf16 is
/// the top half of an f32; done with integer ops so that it needs no
/// `cvt.f32.bf16`, which sm_80 lacks).
pub fn widen(s: &mut String, e: Elem, x: &str, h: &str) {
    match e {
        Elem::F16 => {
            let _ = writeln!(s, "\tcvt.f32.f16 {x}, {h};");
        }
        _ => {
            let _ = writeln!(
                s,
                "\tcvt.u32.u16 cw, {h};\n\tshl.b32 cw, cw, 16;\n\tmov.b32 {x}, cw;"
            );
        }
    }
}

pub fn f32_hex(x: f64) -> String {
    format!("0f{:08X}", (x as f32).to_bits())
}

/// Splits register `x` (f32) into TF32 `hi`/`lo`: `hi = tf32(x)`, `lo =
/// tf32(x - hi)` (the 3xTF32 scheme, see `mma`).
pub fn split(s: &mut String, x: &str, hi: &str, lo: &str) {
    let _ = writeln!(s, "\tcvt.rna.tf32.f32 {hi}, {x};");
    let _ = writeln!(s, "\tsub.f32 tmp, {x}, {hi};");
    let _ = writeln!(s, "\tcvt.rna.tf32.f32 {lo}, tmp;");
}

/// Stores the accumulators into C, then runs the epilogue (if any) on
/// each stored element. Both kernels hold C in the m16n8 accumulator
/// layout: `acc(4j + 2r + i)` is C[row_r, col + 8j + 2t + i] for n8 tile
/// `j < nt`, with registers `row0`/`row1` (rows, s64), `pr0`/`pr1` (row in
/// range), `col` (first column of the thread block's tile), `t` (lane %
/// 4), `bz` (batch), `C` (global address of this batch's C).
///
/// The epilogue runs after every store of this thread: it reads C only at
/// its own element, which this thread has just written (program order
/// makes the value visible), and the accumulators are dead by then, so
/// the calls do not keep them live.
pub fn store_c(s: &mut String, name: &str, g: &Gemm, nt: usize, epi: Option<&Epi>) {
    let (m, n) = (g.m, g.n);
    let alpha = f32_hex(g.alpha);
    let e = Elem::of(g).unwrap_or(Elem::F32);
    let eb = e.bytes() as i64;
    let elems =
        || (0..nt).flat_map(|j| (0..2usize).flat_map(move |r| (0..2usize).map(move |i| (j, r, i))));
    // off = the element's column; q = it is inside C.
    let column = |s: &mut String, j: usize, r: usize, i: usize| {
        let _ = writeln!(
            s,
            "\tcvt.u64.u32 off, t;\n\tshl.b64 off, off, 1;\n\tadd.s64 off, off, col;\n\
             \tadd.s64 off, off, {};\n\tsetp.lt.s64 q, off, {n};\n\tand.pred q, q, pr{r};",
            8 * j + i
        );
    };
    for (j, r, i) in elems() {
        let a = 4 * j + 2 * r + i;
        column(s, j, r, i);
        let _ = writeln!(
            s,
            "\tmul.lo.s64 off, off, {};\n\tmul.lo.s64 addr, row{r}, {};\n\
             \tadd.s64 addr, addr, off;\n\tadd.s64 addr, addr, C;\n\
             \tmul.f32 res, acc{a}, {alpha};",
            g.c_strides[2] * eb,
            g.c_strides[1] * eb
        );
        match e {
            Elem::F32 => {
                if g.beta != 0.0 {
                    *s += "\t@q ld.global.f32 cv, [addr];\n\t@q add.f32 res, res, cv;\n";
                }
                *s += "\t@q st.global.f32 [addr], res;\n";
            }
            _ => {
                // f32 sum (and C), then one rounding to nearest even.
                if g.beta != 0.0 {
                    *s += "\tmov.b16 ch, 0;\n\t@q ld.global.b16 ch, [addr];\n";
                    widen(s, e, "cv", "ch");
                    *s += "\tadd.f32 res, res, cv;\n";
                }
                let _ = writeln!(
                    s,
                    "\tcvt.rn.{}.f32 ch, res;\n\t@q st.global.b16 [addr], ch;",
                    e.mma_type()
                );
            }
        }
    }
    let Some(e) = epi else {
        return;
    };
    // The epilogue's point is the element's flat index in C (dense,
    // row-major over batch, m, n: the caller checked).
    for i in 0..e.params {
        let _ = writeln!(s, "\tld.param.u64 ep{i}, [{name}_e{i}];");
    }
    let _ = writeln!(s, "\tcvt.u64.u32 cb, bz;\n\tmul.lo.s64 cb, cb, {};", m * n);
    for (j, r, i) in elems() {
        let a = 4 * j + 2 * r + i;
        column(s, j, r, i);
        let _ = writeln!(
            s,
            "\tmul.lo.s64 fi, row{r}, {n};\n\tadd.s64 fi, fi, off;\n\tadd.s64 fi, fi, cb;\n\
             \t@!q bra $Le{a};\n\t{{"
        );
        let mut args = Vec::new();
        for p in 0..e.params {
            let _ = writeln!(s, "\t.param .b64 ea{p};\n\tst.param.b64 [ea{p}], ep{p};");
            args.push(format!("ea{p}"));
        }
        let _ = writeln!(s, "\t.param .b64 ept;\n\tst.param.b64 [ept], fi;");
        args.push("ept".into());
        let _ = writeln!(
            s,
            "\tcall {}, ({});\n\t}}\n$Le{a}:",
            e.func,
            args.join(", ")
        );
    }
}
