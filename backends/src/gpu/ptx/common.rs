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

/// An implicit GEMM's B operand (see `Printer::gemm_implicit`): `text` is
/// a PTX module (header included, from `smelt_codegen::nvptx::value_func`)
/// defining `.func (.param .b32 r) func(.b64 l0, ..., .b64 lN-1, .b64 p)`,
/// B's element `p` (its bits) computed by the loader over its `params`
/// buffers. The kernel calls it where it would load B.
pub struct Imp<'a> {
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

    /// C's element type: the operands' or, for f16/bf16 products, f32
    /// (`Gemm::c_dtype`).
    pub fn of_c(g: &Gemm) -> Option<Elem> {
        let a = Elem::of(g)?;
        match g.c_dtype() {
            "f32" => Some(Elem::F32),
            c if c == g.dtype => Some(a),
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

/// The product's dtypes for a module's comment: `f16`, or `f16 -> f32`
/// where C differs.
pub fn dtypes(g: &Gemm) -> String {
    if g.c_dtype() == g.dtype {
        g.dtype.clone()
    } else {
        format!("{} -> {}", g.dtype, g.c_dtype())
    }
}

/// Whether the hand-written kernels can serve `g` under `name`: f32, f16
/// or bf16, non-empty, `beta` 0 or 1 (C is read only when it is 1), a plain
/// identifier, non-negative strides.
pub fn supported(arch: Arch, name: &str, g: &Gemm) -> bool {
    arch.is_nvidia()
        && Elem::of_c(g).is_some()
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
pub fn module(
    arch: Arch,
    comment: &str,
    entry: &str,
    epi: Option<&Epi>,
    imp: Option<&Imp>,
) -> String {
    let mut s = String::new();
    for l in comment.lines() {
        let _ = writeln!(s, "// {l}");
    }
    let texts: Vec<&str> = imp
        .map(|i| i.text)
        .into_iter()
        .chain(epi.map(|e| e.text))
        .collect();
    match texts.split_first() {
        Some((first, rest)) => {
            s += first;
            s += "\n";
            // One header per module: the later texts lose theirs.
            for t in rest {
                for l in t.lines() {
                    let l2 = l.trim_start();
                    if !(l2.starts_with(".version")
                        || l2.starts_with(".target")
                        || l2.starts_with(".address_size"))
                    {
                        s += l;
                        s += "\n";
                    }
                }
            }
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

/// The entry's parameter list: `A, B, C`, the loader's buffers, then the
/// epilogue's.
pub fn params(name: &str, epi: Option<&Epi>, imp: Option<&Imp>) -> String {
    let mut ps: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|p| format!("\t.param .u64 {name}_{p}"))
        .collect();
    for i in 0..imp.map_or(0, |e| e.params) {
        ps.push(format!("\t.param .u64 {name}_l{i}"));
    }
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

/// Registers `load_b` needs, and the loader's parameters loaded into
/// `lp<i>`; `bb` = this batch's first row of B (`bz * K`). After `bz` is
/// set.
pub fn imp_setup(s: &mut String, name: &str, g: &Gemm, imp: Option<&Imp>) {
    let Some(i) = imp else {
        return;
    };
    let _ = writeln!(
        s,
        "\t.reg .u64 lp<{}>;\n\t.reg .s64 bb, bi;\n\t.reg .b32 lv;",
        i.params.max(1)
    );
    for p in 0..i.params {
        let _ = writeln!(s, "\tld.param.u64 lp{p}, [{name}_l{p}];");
    }
    let _ = writeln!(s, "\tcvt.u64.u32 bb, bz;\n\tmul.lo.s64 bb, bb, {};", g.k);
}

/// B's element at row `k` (s64 register) plus `dk`, column `n` (s64
/// register) plus `dn`, from the loader (`imp_setup` ran): into `dst` (an
/// f32 register, or a b16 one where `half`), under predicate `guard`
/// (`dst` is left as it was where it is false). `label` must be unique
/// in the kernel.
#[allow(clippy::too_many_arguments)]
pub fn load_b(
    s: &mut String,
    g: &Gemm,
    imp: &Imp,
    (k, dk): (&str, u64),
    (n, dn): (&str, u64),
    dst: &str,
    half: bool,
    guard: Option<&str>,
    label: &str,
) {
    let _ = writeln!(
        s,
        "\tadd.s64 bi, bb, {k};\n\tadd.s64 bi, bi, {dk};\n\tmul.lo.s64 bi, bi, {};\n\
         \tadd.s64 bi, bi, {n};\n\tadd.s64 bi, bi, {dn};",
        g.n
    );
    if let Some(q) = guard {
        let _ = writeln!(s, "\t@!{q} bra $Lb{label};");
    }
    s.push_str("\t{\n");
    let mut args = Vec::new();
    for p in 0..imp.params {
        let _ = writeln!(s, "\t.param .b64 la{p};\n\tst.param.b64 [la{p}], lp{p};");
        args.push(format!("la{p}"));
    }
    let _ = writeln!(
        s,
        "\t.param .b64 lpt;\n\tst.param.b64 [lpt], bi;\n\t.param .b32 lr;\n\
         \tcall (lr), {}, ({}, lpt);\n\tld.param.b32 lv, [lr];",
        imp.func,
        args.join(", ")
    );
    if half {
        let _ = writeln!(s, "\tcvt.u16.u32 {dst}, lv;");
    } else {
        let _ = writeln!(s, "\tmov.b32 {dst}, lv;");
    }
    s.push_str("\t}\n");
    if guard.is_some() {
        let _ = writeln!(s, "$Lb{label}:");
    }
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
    let e = Elem::of_c(g).unwrap_or(Elem::F32);
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
