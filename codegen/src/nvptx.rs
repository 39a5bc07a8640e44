//! Scheduled kernels -> PTX text for NVIDIA GPUs (`sm_80`, `sm_90a`) through
//! LLVM's NVPTX backend.
//!
//! The module is the one `crate::llvm` builds for the host (so the per-point
//! body is shared with the cpu target); only the edges differ:
//! - each kernel's CPU entry `name(ptr args, i64 start, i64 end)` is replaced
//!   by a `ptx_kernel` entry `name(ptr p0, ..., ptr pN, i64 total)` (the GPU
//!   calling convention of `smelt_backends::gpu`): a grid-stride loop over
//!   `p = ctaid.x * ntid.x + tid.x` that runs the body for `[p, p + 1)`;
//! - math that NVPTX cannot select (`llvm.exp`/`log`/`sin`/`cos`/`pow` and
//!   the libm calls the host path makes) is redirected to NVIDIA's libdevice
//!   (`__nv_expf`, `__nv_tanh`, ...), linked in as bitcode;
//! - everything but the entries is internalized, and O3 runs for the NVPTX
//!   target machine before the assembly printer writes PTX.

use crate::Error;
use inkwell::OptimizationLevel;
use inkwell::attributes::AttributeLoc;
use inkwell::context::Context;
use inkwell::intrinsics::Intrinsic;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::{FlagBehavior, Linkage, Module};
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{
    CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple,
};
use inkwell::types::BasicMetadataTypeEnum;
use inkwell::values::{BasicMetadataValueEnum, BasicValue, FunctionValue, IntValue};
use inkwell::{AddressSpace, IntPredicate};
use smelt_kernel::Scheduled;
use std::path::{Path, PathBuf};
use std::sync::{Once, OnceLock};

type R<T> = Result<T, Error>;

fn be<E: std::fmt::Display>(e: E) -> Error {
    Error::Llvm(e.to_string())
}

/// `ptx_kernel` in LLVM's `CallingConv.h`: the function becomes a PTX `.entry`.
const PTX_KERNEL_CC: u32 = 71;

/// PTX ISA version written into every module. 8.0 is the first with
/// `sm_90a` and `wgmma`; CUDA 12.0+ drivers JIT it and ptxas 12.x accepts it.
pub const PTX_VERSION: &str = "8.0";

/// The GPU architectures this module emits for.
pub const ARCHS: [&str; 2] = ["sm_80", "sm_90a"];

/// Where the PyPI wheel `nvidia-cuda-nvcc-cu12` puts its files, relative to
/// a virtual environment's root.
const WHEEL_DIR: &str = "lib/python3.11/site-packages/nvidia/cuda_nvcc";

/// Finds `rel` (e.g. `bin/ptxas`, `nvvm/libdevice/libdevice.10.bc`) inside
/// an installed `nvidia-cuda-nvcc-cu12` wheel: in a `.venv` of the current
/// directory, of the running executable's folders or of their ancestors
/// (a test binary under `target/` finds the repository's `.venv`), or under
/// `/usr/local/cuda`.
pub fn find_cuda_file(rel: &str) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(d) = std::env::current_dir() {
        roots.extend(d.ancestors().map(Path::to_path_buf));
    }
    if let Ok(e) = std::env::current_exe() {
        roots.extend(e.ancestors().skip(1).map(Path::to_path_buf));
    }
    for r in &roots {
        for venv in [".venv", "venv"] {
            let p = r.join(venv).join(WHEEL_DIR).join(rel);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = Path::new("/usr/local/cuda").join(rel);
    p.is_file().then_some(p)
}

/// The path of NVIDIA's libdevice bitcode: `$SMELT_LIBDEVICE`, else the
/// places `find_cuda_file` looks.
pub fn libdevice_path() -> R<PathBuf> {
    if let Some(p) = std::env::var_os("SMELT_LIBDEVICE") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Llvm(format!(
                "SMELT_LIBDEVICE={} is not a file",
                p.display()
            )))
        };
    }
    find_cuda_file("nvvm/libdevice/libdevice.10.bc").ok_or_else(|| {
        Error::Llvm(
            "NVIDIA libdevice (libdevice.10.bc) not found: run scripts/prereqs.sh or \
             `pip install nvidia-cuda-nvcc-cu12` into the repository's .venv, or set \
             SMELT_LIBDEVICE to the file"
                .into(),
        )
    })
}

fn libdevice_bytes() -> R<&'static [u8]> {
    static BYTES: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let p = libdevice_path().map_err(|e| e.to_string())?;
            std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
        })
        .as_ref()
        .map(Vec::as_slice)
        .map_err(|e| Error::Llvm(e.clone()))
}

fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| Target::initialize_nvptx(&InitializationConfig::default()));
}

fn machine(arch: &str) -> R<TargetMachine> {
    if !ARCHS.contains(&arch) {
        return Err(Error::Llvm(format!(
            "unknown NVIDIA architecture {arch} (known: {})",
            ARCHS.join(", ")
        )));
    }
    init();
    let triple = TargetTriple::create("nvptx64-nvidia-cuda");
    let t = Target::from_triple(&triple).map_err(be)?;
    let features = format!("+ptx{}", PTX_VERSION.replace('.', ""));
    t.create_target_machine(
        &triple,
        arch,
        &features,
        OptimizationLevel::Aggressive,
        RelocMode::Default,
        CodeModel::Default,
    )
    .ok_or_else(|| Error::Llvm(format!("LLVM cannot target NVPTX {arch}")))
}

/// libdevice replacements of what the host path calls: LLVM intrinsics by
/// their base name, libm by its double-precision name (`tanh`; the f32
/// variant is `tanhf` / `__nv_tanhf`).
const INTRINSIC_MATH: [&str; 5] = ["exp", "log", "sin", "cos", "pow"];
const LIBM: [&str; 13] = [
    "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "erf",
    "atan2", "exp2",
];

/// The libdevice function for a declaration `name` of the host module.
fn libdevice_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("llvm.") {
        let (base, ty) = rest.split_once('.')?;
        if !INTRINSIC_MATH.contains(&base) {
            return None;
        }
        return match ty {
            "f32" => Some(format!("__nv_{base}f")),
            "f64" => Some(format!("__nv_{base}")),
            _ => None,
        };
    }
    if LIBM.contains(&name) {
        return Some(format!("__nv_{name}"));
    }
    let base = name.strip_suffix('f')?;
    LIBM.contains(&base).then(|| format!("__nv_{name}"))
}

/// PTX text of `kernels` for `arch` (`sm_80` or `sm_90a`): one `.entry`
/// per kernel, named after it.
pub fn ptx(kernels: &[Scheduled], arch: &str) -> R<String> {
    match ptx_module(kernels, arch) {
        Ok(s) => Ok(s),
        // Name the kernel: retry one by one to find the first that fails.
        Err(e) if kernels.len() > 1 => {
            for k in kernels {
                if let Err(e) = ptx_module(std::slice::from_ref(k), arch) {
                    return Err(Error::Kernel(format!("{}: {e}", k.kernel.name)));
                }
            }
            Err(e)
        }
        Err(e) => Err(Error::Kernel(format!(
            "{}: {e}",
            kernels.first().map_or("(none)", |k| k.kernel.name.as_str())
        ))),
    }
}

fn ptx_module(kernels: &[Scheduled], arch: &str) -> R<String> {
    let tm = machine(arch)?;
    let ctx = Context::create();
    let m = crate::llvm::module(&ctx, "smelt", kernels)?;
    m.set_triple(&tm.get_triple());
    m.set_data_layout(&tm.get_target_data().get_data_layout());
    for k in kernels {
        gpu_entry(&ctx, &m, k)?;
    }
    let entries: Vec<&str> = kernels.iter().map(|k| k.kernel.name.as_str()).collect();
    finish(&ctx, &m, &tm, &entries)
}

/// A module holding `k`'s per-point body function (`NAME.body`) for
/// `tm`, without the host entry, with `func` still free: what the `.func`
/// printers below wrap.
fn body_module<'c>(
    ctx: &'c Context,
    tm: &TargetMachine,
    k: &Scheduled,
    func: &str,
) -> R<(Module<'c>, FunctionValue<'c>)> {
    let m = crate::llvm::module(ctx, "smelt", std::slice::from_ref(k))?;
    m.set_triple(&tm.get_triple());
    m.set_data_layout(&tm.get_target_data().get_data_layout());
    let name = &k.kernel.name;
    let body = m
        .get_function(&format!("{name}.body"))
        .ok_or(Error::Internal("kernel body"))?;
    if let Some(host) = m.get_function(name) {
        // SAFETY: the host entry has no users inside the module.
        unsafe { host.delete() };
    }
    if m.get_function(func).is_some() {
        return Err(Error::Kernel(format!("{func} is already defined")));
    }
    Ok((m, body))
}

/// PTX text (header included) of a module holding only `k`'s per-point
/// body as a callable non-entry function `.visible .func func(.b64 p0,
/// ..., .b64 pN, .b64 p)`: the kernel's body for the single point `p`,
/// with `pI` the generic address of `k`'s parameter I. Hand-written PTX
/// appended after this text may `call` it (a tensor-core GEMM running an
/// elementwise epilogue per stored element). Math goes through libdevice
/// and O3 runs as for entries, so the semantics are the kernel IR's.
pub fn point_func(k: &Scheduled, arch: &str, func: &str) -> R<String> {
    if func.is_empty() || !func.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(Error::Kernel(format!("point function name {func:?}")));
    }
    let tm = machine(arch)?;
    let ctx = Context::create();
    let (m, body) = body_module(&ctx, &tm, k, func)?;
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i64t = ctx.i64_type();
    let n = k.kernel.params.len();
    let mut ptypes: Vec<BasicMetadataTypeEnum> = vec![ptr.into(); n];
    ptypes.push(i64t.into());
    let f = m.add_function(func, ctx.void_type().fn_type(&ptypes, false), None);
    let b = ctx.create_builder();
    b.position_at_end(ctx.append_basic_block(f, "entry"));
    let mut args: Vec<BasicMetadataValueEnum> = (0..=n)
        .map(|i| {
            f.get_nth_param(i as u32)
                .map(Into::into)
                .ok_or(Error::Internal("param"))
        })
        .collect::<R<_>>()?;
    let p = f
        .get_nth_param(n as u32)
        .ok_or(Error::Internal("point"))?
        .into_int_value();
    let next = b
        .build_int_add(p, i64t.const_int(1, false), "p1")
        .map_err(be)?;
    args.push(next.into());
    b.build_call(body, &args, "").map_err(be)?;
    b.build_return(None).map_err(be)?;
    finish(&ctx, &m, &tm, &[func])
}

/// PTX text (header included) of a module holding `k`'s per-point body as
/// a value function `.visible .func (.param .b32 r) func(.b64 p0, ...,
/// .b64 pN, .b64 p)`: the body for the single point `p`, returning the
/// value it stores through parameter `out` (its bits, zero-extended to 32:
/// f32 as is, 16-bit types in the low half) instead of storing it. `out`
/// must be f32, f16 or bf16 and stored once, at element `p` (the caller
/// checks: an implicit GEMM's B loader); `pI` for `out` is ignored. The
/// body's pointer for `out` is a local slot offset by `-p` elements, so
/// its store at `p` lands in the slot; O3 keeps the slot in registers.
pub fn value_func(k: &Scheduled, arch: &str, func: &str, out: usize) -> R<String> {
    if func.is_empty() || !func.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        return Err(Error::Kernel(format!("value function name {func:?}")));
    }
    let eb = match k.kernel.params.get(out).map(|p| p.ty) {
        Some(smelt_kernel::Ty::F32) => 4,
        Some(smelt_kernel::Ty::F16 | smelt_kernel::Ty::BF16) => 2,
        _ => {
            return Err(Error::Kernel(format!(
                "value function {func}: parameter {out} is not f32, f16 or bf16"
            )));
        }
    };
    let tm = machine(arch)?;
    let ctx = Context::create();
    let (m, body) = body_module(&ctx, &tm, k, func)?;
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i64t = ctx.i64_type();
    let i32t = ctx.i32_type();
    let n = k.kernel.params.len();
    let mut ptypes: Vec<BasicMetadataTypeEnum> = vec![ptr.into(); n];
    ptypes.push(i64t.into());
    let f = m.add_function(func, i32t.fn_type(&ptypes, false), None);
    let b = ctx.create_builder();
    b.position_at_end(ctx.append_basic_block(f, "entry"));
    let slot = b.build_alloca(i32t, "slot").map_err(be)?;
    b.build_store(slot, i32t.const_zero()).map_err(be)?;
    let p = f
        .get_nth_param(n as u32)
        .ok_or(Error::Internal("point"))?
        .into_int_value();
    let back = b
        .build_int_mul(p, i64t.const_int(eb, false), "back")
        .map_err(be)?;
    let back = b.build_int_neg(back, "neg").map_err(be)?;
    // SAFETY: a plain (not inbounds) byte offset; the body adds it back.
    let base = unsafe { b.build_gep(ctx.i8_type(), slot, &[back], "base") }.map_err(be)?;
    let mut args: Vec<BasicMetadataValueEnum> = Vec::with_capacity(n + 2);
    for i in 0..n {
        if i == out {
            args.push(base.into());
        } else {
            args.push(
                f.get_nth_param(i as u32)
                    .ok_or(Error::Internal("param"))?
                    .into(),
            );
        }
    }
    let next = b
        .build_int_add(p, i64t.const_int(1, false), "p1")
        .map_err(be)?;
    args.push(p.into());
    args.push(next.into());
    b.build_call(body, &args, "").map_err(be)?;
    let v = if eb == 4 {
        b.build_load(i32t, slot, "v").map_err(be)?.into_int_value()
    } else {
        let h = b
            .build_load(ctx.i16_type(), slot, "h")
            .map_err(be)?
            .into_int_value();
        b.build_int_z_extend(h, i32t, "v").map_err(be)?
    };
    b.build_return(Some(&v)).map_err(be)?;
    finish(&ctx, &m, &tm, &[func])
}

/// libdevice, internalization of all but `keep`, O3 and the assembly
/// printer: the common tail of every module.
fn finish<'c>(ctx: &'c Context, m: &Module<'c>, tm: &TargetMachine, keep: &[&str]) -> R<String> {
    redirect_math(m)?;
    link_libdevice(ctx, m, tm)?;
    // libdevice asks `__nvvm_reflect("__CUDA_FTZ")`: keep denormals (the
    // results then match the host's and the reference's).
    m.add_basic_value_flag(
        "nvvm-reflect-ftz",
        FlagBehavior::Override,
        ctx.i32_type().const_zero(),
    );
    internalize(m, keep);
    let cpu = tm.get_cpu().to_string();
    let features = tm.get_feature_string().to_string_lossy().into_owned();
    for f in m.get_functions() {
        if f.count_basic_blocks() > 0 {
            f.add_attribute(
                AttributeLoc::Function,
                ctx.create_string_attribute("target-cpu", &cpu),
            );
            f.add_attribute(
                AttributeLoc::Function,
                ctx.create_string_attribute("target-features", &features),
            );
        }
    }
    m.verify()
        .map_err(|e| Error::Llvm(format!("NVPTX module: {e}")))?;
    m.run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(be)?;
    check_resolved(m)?;
    let buf = tm
        .write_to_memory_buffer(m, FileType::Assembly)
        .map_err(be)?;
    String::from_utf8(buf.as_slice().to_vec())
        .map_err(|_| Error::Llvm("NVPTX printed non-UTF-8 assembly".into()))
}

/// Replaces the host entry of `sk` by the GPU one (see the module doc).
fn gpu_entry<'c>(ctx: &'c Context, m: &Module<'c>, sk: &Scheduled) -> R<()> {
    let k = &sk.kernel;
    let body = m
        .get_function(&format!("{}.body", k.name))
        .ok_or(Error::Internal("kernel body"))?;
    if let Some(host) = m.get_function(&k.name) {
        // SAFETY: the host entry has no users inside the module.
        unsafe { host.delete() };
    }
    let ptr = ctx.ptr_type(AddressSpace::default());
    let i64t = ctx.i64_type();
    let mut ptypes: Vec<BasicMetadataTypeEnum> = vec![ptr.into(); k.params.len()];
    ptypes.push(i64t.into());
    let f = m.add_function(&k.name, ctx.void_type().fn_type(&ptypes, false), None);
    f.set_call_conventions(PTX_KERNEL_CC);
    for (i, p) in k.params.iter().enumerate() {
        if let Some(v) = f.get_nth_param(i as u32) {
            v.set_name(&p.name);
        }
    }
    let total = f
        .get_nth_param(k.params.len() as u32)
        .ok_or(Error::Internal("total"))?
        .into_int_value();
    total.set_name("total");

    let b = ctx.create_builder();
    let entry = ctx.append_basic_block(f, "entry");
    let head = ctx.append_basic_block(f, "loop");
    let work = ctx.append_basic_block(f, "body");
    let exit = ctx.append_basic_block(f, "exit");
    b.position_at_end(entry);
    let sreg = |n: &str| -> R<IntValue<'c>> {
        let name = format!("llvm.nvvm.read.ptx.sreg.{n}");
        let i =
            Intrinsic::find(&name).ok_or_else(|| Error::Llvm(format!("no intrinsic {name}")))?;
        let d = i
            .get_declaration(m, &[])
            .ok_or_else(|| Error::Llvm(format!("cannot declare {name}")))?;
        let v = b
            .build_call(d, &[], n)
            .map_err(be)?
            .try_as_basic_value()
            .basic()
            .ok_or(Error::Internal("sreg"))?
            .into_int_value();
        b.build_int_z_extend(v, i64t, n).map_err(be)
    };
    let tid = sreg("tid.x")?;
    let ntid = sreg("ntid.x")?;
    let ctaid = sreg("ctaid.x")?;
    let nctaid = sreg("nctaid.x")?;
    let first = b
        .build_int_add(b.build_int_mul(ctaid, ntid, "base").map_err(be)?, tid, "p0")
        .map_err(be)?;
    let stride = b.build_int_mul(nctaid, ntid, "stride").map_err(be)?;
    b.build_unconditional_branch(head).map_err(be)?;

    b.position_at_end(head);
    let phi = b.build_phi(i64t, "p").map_err(be)?;
    let p = phi.as_basic_value().into_int_value();
    let more = b
        .build_int_compare(IntPredicate::SLT, p, total, "more")
        .map_err(be)?;
    b.build_conditional_branch(more, work, exit).map_err(be)?;

    b.position_at_end(work);
    let mut args: Vec<BasicMetadataValueEnum> = (0..k.params.len())
        .map(|i| {
            f.get_nth_param(i as u32)
                .map(Into::into)
                .ok_or(Error::Internal("param"))
        })
        .collect::<R<_>>()?;
    let one = i64t.const_int(1, false);
    let next = b.build_int_add(p, one, "p1").map_err(be)?;
    args.push(p.into());
    args.push(next.into());
    b.build_call(body, &args, "").map_err(be)?;
    let step = b.build_int_add(p, stride, "pn").map_err(be)?;
    b.build_unconditional_branch(head).map_err(be)?;
    phi.add_incoming(&[(&first, entry), (&step, work)]);

    b.position_at_end(exit);
    b.build_return(None).map_err(be)?;
    Ok(())
}

/// Points every call of a math intrinsic or libm function NVPTX cannot
/// lower at its libdevice definition (same signature).
fn redirect_math(m: &Module) -> R<()> {
    let decls: Vec<FunctionValue> = m
        .get_functions()
        .filter(|f| f.count_basic_blocks() == 0)
        .collect();
    for f in decls {
        let Ok(name) = f.get_name().to_str() else {
            continue;
        };
        let Some(nv) = libdevice_name(name) else {
            continue;
        };
        let target = m
            .get_function(&nv)
            .unwrap_or_else(|| m.add_function(&nv, f.get_type(), Some(Linkage::External)));
        f.replace_all_uses_with(target);
        // SAFETY: every use was just redirected.
        unsafe { f.delete() };
    }
    Ok(())
}

fn link_libdevice<'c>(ctx: &'c Context, m: &Module<'c>, tm: &TargetMachine) -> R<()> {
    let wanted = m
        .get_functions()
        .any(|f| f.count_basic_blocks() == 0 && f.get_name().to_bytes().starts_with(b"__nv_"));
    if !wanted {
        return Ok(());
    }
    let buf = MemoryBuffer::create_from_memory_range(libdevice_bytes()?, "libdevice");
    let lib = Module::parse_bitcode_from_buffer(&buf, ctx)
        .map_err(|e| Error::Llvm(format!("libdevice: {e}")))?;
    // libdevice says `nvptx64-nvidia-gpulibs`; agree on ours so that the
    // linker does not warn.
    lib.set_triple(&tm.get_triple());
    lib.set_data_layout(&tm.get_target_data().get_data_layout());
    m.link_in_module(lib)
        .map_err(|e| Error::Llvm(format!("linking libdevice: {e}")))
}

/// Only the entries stay visible: O3 then inlines the bodies and drops the
/// unused libdevice functions.
fn internalize(m: &Module, entries: &[&str]) {
    for f in m.get_functions() {
        let keep = f.get_name().to_str().is_ok_and(|n| entries.contains(&n));
        if f.count_basic_blocks() > 0 && !keep {
            f.set_linkage(Linkage::Internal);
        }
    }
    for g in m.get_globals() {
        if g.get_initializer().is_some() {
            g.set_linkage(Linkage::Internal);
        }
    }
}

/// After optimization only NVVM intrinsics may stay undefined: anything
/// else would fail at ptxas or at module load with a less clear message.
fn check_resolved(m: &Module) -> R<()> {
    for f in m.get_functions() {
        if f.count_basic_blocks() == 0
            && f.get_intrinsic_id() == 0
            && f.as_global_value()
                .as_pointer_value()
                .get_first_use()
                .is_some()
        {
            return Err(Error::Llvm(format!(
                "calls {} which has no NVPTX definition",
                f.get_name().to_string_lossy()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{libdevice_name, point_func, value_func};
    use smelt_kernel::ir::build::{load, mul};
    use smelt_kernel::{Access, Kernel, Stmt, Ty, schedule};

    #[test]
    fn point_func_is_a_callable_func() {
        // y[i] = y[i] * x[i] over 8 points: no math, so no libdevice needed.
        let mut k = Kernel::new("epi", vec![8]);
        let y = k.param("y", Ty::F32, 8, Access::Write);
        let x = k.param("x", Ty::F32, 8, Access::Read);
        let i = k.index(0);
        k.body.push(Stmt::Store {
            buf: y,
            index: i.clone(),
            value: mul(load(y, i.clone()), load(x, i)),
        });
        let sk = schedule::flat(&k);
        let ptx = point_func(&sk, "sm_90a", "g0_epi").unwrap();
        assert!(ptx.contains(".target sm_90a"));
        assert!(ptx.contains(".visible .func g0_epi("));
        // Two buffers and the point.
        assert!(ptx.contains("g0_epi_param_2"));
        assert!(!ptx.contains("g0_epi_param_3"));
        assert!(!ptx.contains(".entry"));
        assert!(point_func(&sk, "sm_90a", "g0.epi").is_err());
        assert!(point_func(&sk, "sm_90a", "").is_err());
    }

    #[test]
    fn value_func_returns_the_stored_value() {
        // y[i] = x[i] * x[i] over 8 points, y returned instead of stored.
        let mut k = Kernel::new("ld", vec![8]);
        let x = k.param("x", Ty::F32, 8, Access::Read);
        let y = k.param("y", Ty::F32, 8, Access::Write);
        let i = k.index(0);
        k.body.push(Stmt::Store {
            buf: y,
            index: i.clone(),
            value: mul(load(x, i.clone()), load(x, i)),
        });
        let sk = schedule::flat(&k);
        let ptx = value_func(&sk, "sm_80", "g0_ld", 1).unwrap();
        assert!(ptx.contains(".visible .func  (.param .b32 func_retval0) g0_ld("));
        assert!(ptx.contains("g0_ld_param_2"));
        // The slot lives in registers.
        assert!(
            !ptx.contains("st.global") && !ptx.contains(".local"),
            "{ptx}"
        );
        assert!(value_func(&sk, "sm_80", "g0_ld", 0).is_ok());
        assert!(value_func(&sk, "sm_80", "g0_ld", 2).is_err());
    }

    #[test]
    fn math_maps_to_libdevice() {
        assert_eq!(libdevice_name("llvm.exp.f32").as_deref(), Some("__nv_expf"));
        assert_eq!(libdevice_name("llvm.pow.f64").as_deref(), Some("__nv_pow"));
        assert_eq!(libdevice_name("tanhf").as_deref(), Some("__nv_tanhf"));
        assert_eq!(libdevice_name("erf").as_deref(), Some("__nv_erf"));
        assert_eq!(libdevice_name("atan2f").as_deref(), Some("__nv_atan2f"));
        assert_eq!(libdevice_name("llvm.sqrt.f32"), None);
        assert_eq!(libdevice_name("llvm.exp.v4f32"), None);
        assert_eq!(libdevice_name("memcpy"), None);
    }
}
