//! The host JIT: LLVM IR -> machine code for the CPU smelt runs on, with
//! the host's own CPU name and features (AVX2 / AVX-512 where present), so
//! the vectorizer targets the widest registers the machine has.

use crate::Error;
use inkwell::OptimizationLevel;
use inkwell::attributes::AttributeLoc;
use inkwell::context::Context;
use inkwell::execution_engine::ExecutionEngine;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, InitializationConfig, RelocMode, Target, TargetMachine};
use smelt_kernel::Scheduled;
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::Once;

/// Every kernel's entry: `args` holds one pointer per kernel parameter;
/// the kernel runs parallel iterations `start..end`.
pub type KernelFn = unsafe extern "C" fn(args: *const *mut u8, start: i64, end: i64);

/// Compiled kernels of one program. Owns its LLVM context and engine; the
/// function pointers are valid while it lives.
pub struct Jit {
    ctx: *mut Context,
    engine: ManuallyDrop<ExecutionEngine<'static>>,
    fns: HashMap<String, KernelFn>,
}

// SAFETY: after construction the engine is only read (function addresses
// were resolved up front); the kernels themselves are re-entrant.
unsafe impl Send for Jit {}
unsafe impl Sync for Jit {}

impl Drop for Jit {
    fn drop(&mut self) {
        // SAFETY: the engine borrows the context, so it goes first; the
        // context came from Box::into_raw in `from_module_builder`.
        unsafe {
            ManuallyDrop::drop(&mut self.engine);
            drop(Box::from_raw(self.ctx));
        }
    }
}

fn init() -> Result<(), Error> {
    static ONCE: Once = Once::new();
    let mut r = Ok(());
    ONCE.call_once(|| {
        r = Target::initialize_native(&InitializationConfig::default()).map_err(Error::Llvm);
        if load_libmvec() {
            // Vectorized loops then call libmvec's SIMD expf/tanhf/erff
            // (_ZGV*) instead of scalarizing to one libm call per lane.
            let args = [c"smelt".as_ptr(), c"-vector-library=LIBMVEC".as_ptr()];
            // SAFETY: two valid C strings; called once, before any pass runs.
            unsafe {
                inkwell::llvm_sys::support::LLVMParseCommandLineOptions(
                    args.len() as i32,
                    args.as_ptr(),
                    std::ptr::null(),
                )
            };
        }
    });
    r
}

/// Loads glibc's libmvec into the process (symbols global) so that the
/// JIT can resolve the vector math functions; false where it is absent.
fn load_libmvec() -> bool {
    if std::env::var_os("SMELT_NO_LIBMVEC").is_some() {
        return false;
    }
    // SAFETY: libmvec has no initialisers with side effects beyond glibc's.
    match unsafe {
        libloading::os::unix::Library::open(
            Some("libmvec.so.1"),
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
        )
    } {
        Ok(lib) => {
            // Kept for the life of the process: kernels call into it.
            std::mem::forget(lib);
            true
        }
        Err(_) => false,
    }
}

/// The host's target machine, also used to tune the optimization pipeline.
pub fn host_machine() -> Result<TargetMachine, Error> {
    init()?;
    let triple = TargetMachine::get_default_triple();
    let t = Target::from_triple(&triple).map_err(|e| Error::Llvm(e.to_string()))?;
    let cpu = TargetMachine::get_host_cpu_name().to_string();
    let features = TargetMachine::get_host_cpu_features().to_string();
    t.create_target_machine(
        &triple,
        &cpu,
        &features,
        OptimizationLevel::Aggressive,
        RelocMode::Default,
        CodeModel::JITDefault,
    )
    .ok_or_else(|| Error::Llvm("cannot create a target machine for this host".into()))
}

/// Optimizes `m` for the host (O3 with the host's CPU and features).
pub fn optimize_for_host(ctx: &Context, m: &Module, tm: &TargetMachine) -> Result<(), Error> {
    let cpu = TargetMachine::get_host_cpu_name().to_string();
    let features = TargetMachine::get_host_cpu_features().to_string();
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
    m.set_triple(&tm.get_triple());
    m.set_data_layout(&tm.get_target_data().get_data_layout());
    m.run_passes("default<O3>", tm, PassBuilderOptions::create())
        .map_err(|e| Error::Llvm(e.to_string()))
}

impl Jit {
    /// Compiles scheduled kernels for the host.
    pub fn compile(kernels: &[Scheduled]) -> Result<Jit, Error> {
        let names: Vec<String> = kernels.iter().map(|k| k.kernel.name.clone()).collect();
        Self::build(&names, |ctx| crate::llvm::module(ctx, "smelt", kernels))
    }

    /// Compiles LLVM bitcode (as written by `crate::bitcode`) for the host;
    /// `names` are the kernels to resolve.
    pub fn from_bitcode(bitcode: &[u8], names: &[String]) -> Result<Jit, Error> {
        Self::build(names, |ctx| {
            let buf = MemoryBuffer::create_from_memory_range_copy(bitcode, "smelt");
            Module::parse_bitcode_from_buffer(&buf, ctx)
                .map_err(|e| Error::Llvm(format!("kernel bitcode: {e}")))
        })
    }

    fn build(
        names: &[String],
        make: impl for<'c> FnOnce(&'c Context) -> Result<Module<'c>, Error>,
    ) -> Result<Jit, Error> {
        let tm = host_machine()?;
        let ctx: &'static Context = Box::leak(Box::new(Context::create()));
        let ctx_ptr = ctx as *const Context as *mut Context;
        let result = (|| {
            let m = make(ctx)?;
            optimize_for_host(ctx, &m, &tm)?;
            // For reading what the vectorizer did: SMELT_DUMP_LLVM=FILE.
            if let Some(p) = std::env::var_os("SMELT_DUMP_LLVM") {
                let _ = std::fs::write(p, m.print_to_string().to_string());
            }
            let engine = m
                .create_jit_execution_engine(OptimizationLevel::Aggressive)
                .map_err(|e| Error::Llvm(e.to_string()))?;
            let mut fns = HashMap::new();
            for n in names {
                let addr = engine
                    .get_function_address(n)
                    .map_err(|e| Error::Llvm(format!("kernel {n}: {e}")))?;
                // SAFETY: every kernel entry has the `KernelFn` signature
                // (llvm.rs emits it so).
                let f: KernelFn = unsafe { std::mem::transmute::<usize, KernelFn>(addr) };
                fns.insert(n.clone(), f);
            }
            Ok((engine, fns))
        })();
        match result {
            Ok((engine, fns)) => Ok(Jit {
                ctx: ctx_ptr,
                engine: ManuallyDrop::new(engine),
                fns,
            }),
            Err(e) => {
                // SAFETY: nothing borrowing the context survived the closure.
                unsafe { drop(Box::from_raw(ctx_ptr)) };
                Err(e)
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<KernelFn> {
        self.fns.get(name).copied()
    }
}

/// LLVM bitcode of the (unoptimized, target-independent) kernels: what a
/// `.smc` artifact carries; `Jit::from_bitcode` compiles it on the machine
/// that runs it.
pub fn bitcode(kernels: &[Scheduled]) -> Result<Vec<u8>, Error> {
    let ctx = Context::create();
    let m = crate::llvm::module(&ctx, "smelt", kernels)?;
    Ok(m.write_bitcode_to_memory().as_slice().to_vec())
}

/// The optimized LLVM IR text of the kernels for this host (for
/// `--dump-llvm` and for reading what the vectorizer did).
pub fn host_llvm_text(kernels: &[Scheduled]) -> Result<String, Error> {
    let tm = host_machine()?;
    let ctx = Context::create();
    let m = crate::llvm::module(&ctx, "smelt", kernels)?;
    optimize_for_host(&ctx, &m, &tm)?;
    Ok(m.print_to_string().to_string())
}
