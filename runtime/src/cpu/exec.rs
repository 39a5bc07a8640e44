//! Runs a cpu artifact: binds buffers to memory (arena, weights, inputs),
//! then executes the steps in order, splitting each kernel's parallel loop
//! across threads.

use super::artifact::{Artifact, Gemm, Place, Step};
use rayon::prelude::*;

/// Every kernel's entry point (see smelt-codegen's `KernelFn`): one pointer
/// per parameter, and the sub-range of the parallel loop to run.
pub type KernelFn = unsafe extern "C" fn(args: *const *mut u8, start: i64, end: i64);

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("expected {expected} inputs, got {got}")]
    InputCount { expected: usize, got: usize },
    #[error("input \"{name}\": expected {expected} bytes, got {got}")]
    InputSize {
        name: String,
        expected: u64,
        got: usize,
    },
    #[error("artifact names {expected} kernels, {got} were compiled")]
    KernelCount { expected: usize, got: usize },
    #[error("step {step}: {msg}")]
    Step { step: usize, msg: String },
}

/// A tensor handed to a host step.
pub struct HostTensor<'a> {
    pub dtype: &'a str,
    pub shape: &'a [u64],
    pub bytes: &'a [u8],
}

/// Runs the ops that have no kernel lowering (`Step::Host`). Returns one
/// byte vector per wanted output, each exactly the output buffer's size.
pub trait HostOps {
    fn run(
        &self,
        op: &str,
        inputs: &[Option<HostTensor>],
        outputs: &[Option<(&str, &[u64])>],
    ) -> Result<Vec<Option<Vec<u8>>>, String>;
}

/// Memory aligned for any element type and for vector loads.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

fn aligned(bytes: u64) -> Vec<Line> {
    vec![Line([0; 64]); (bytes as usize).div_ceil(64).max(1)]
}

#[derive(Clone, Copy)]
struct Ptr(*mut u8);
// SAFETY: kernels write disjoint elements per parallel iteration; the
// pointers themselves are plain addresses into memory that outlives the step.
unsafe impl Send for Ptr {}
unsafe impl Sync for Ptr {}

impl Ptr {
    // A method, not `.0`: closures then capture the Send wrapper, not the
    // raw pointer field.
    fn get(self) -> *mut u8 {
        self.0
    }
}

/// Memory reused across runs: allocating (and page-faulting) a fresh
/// arena per run would cost more than small models take to run.
struct Scratch {
    arena: Vec<Line>,
    inputs: Vec<Vec<Line>>,
}

/// A loaded artifact ready to run many times.
pub struct Executor {
    art: std::sync::Arc<Artifact>,
    kernels: Vec<KernelFn>,
    weights: Vec<Line>,
    threads: usize,
    scratch: std::sync::Mutex<Scratch>,
}

impl Executor {
    /// `kernels[i]` is the compiled entry of `manifest.kernels[i]`.
    pub fn new(art: std::sync::Arc<Artifact>, kernels: Vec<KernelFn>) -> Result<Self, ExecError> {
        if kernels.len() != art.manifest.kernels.len() {
            return Err(ExecError::KernelCount {
                expected: art.manifest.kernels.len(),
                got: kernels.len(),
            });
        }
        let mut weights = aligned(art.weights.len() as u64);
        // SAFETY: `weights` holds at least `art.weights.len()` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                art.weights.as_ptr(),
                weights.as_mut_ptr() as *mut u8,
                art.weights.len(),
            )
        };
        let scratch = Scratch {
            arena: aligned(art.manifest.arena_bytes),
            inputs: art
                .manifest
                .inputs
                .iter()
                .map(|io| aligned(art.manifest.buffers[io.buffer].bytes))
                .collect(),
        };
        Ok(Executor {
            art,
            kernels,
            weights,
            threads: rayon::current_num_threads(),
            scratch: std::sync::Mutex::new(scratch),
        })
    }

    /// Runs the program on `inputs` (raw little-endian bytes in graph-input
    /// order) and returns the outputs' bytes.
    pub fn run(&self, inputs: &[&[u8]], host: &dyn HostOps) -> Result<Vec<Vec<u8>>, ExecError> {
        let m = &self.art.manifest;
        if inputs.len() != m.inputs.len() {
            return Err(ExecError::InputCount {
                expected: m.inputs.len(),
                got: inputs.len(),
            });
        }
        // One run at a time per executor: the arena is shared state.
        let mut scratch = self
            .scratch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Scratch {
            arena,
            inputs: input_mem,
        } = &mut *scratch;
        for ((io, bytes), mem) in m.inputs.iter().zip(inputs).zip(input_mem.iter_mut()) {
            let want = m.buffers[io.buffer].bytes;
            if bytes.len() as u64 != want {
                return Err(ExecError::InputSize {
                    name: io.name.clone(),
                    expected: want,
                    got: bytes.len(),
                });
            }
            // SAFETY: `mem` holds at least `want` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    mem.as_mut_ptr() as *mut u8,
                    bytes.len(),
                )
            };
        }
        let arena_base = arena.as_mut_ptr() as *mut u8;
        let weight_base = self.weights.as_ptr() as *mut u8;
        // SAFETY (all pointer arithmetic below): the manifest was validated
        // on load, so every buffer lies inside its memory.
        let ptrs: Vec<Ptr> = m
            .buffers
            .iter()
            .map(|b| {
                Ptr(match b.place {
                    Place::Arena { offset } => unsafe { arena_base.add(offset as usize) },
                    Place::Weight { offset } => unsafe { weight_base.add(offset as usize) },
                    Place::Input { index } => input_mem[index].as_mut_ptr() as *mut u8,
                })
            })
            .collect();
        for (s, step) in m.steps.iter().enumerate() {
            match step {
                Step::Kernel {
                    kernel,
                    args,
                    parallel_extent,
                    points_per_iter,
                } => {
                    let f = self.kernels[*kernel];
                    let a: Vec<*mut u8> = args.iter().map(|&b| ptrs[b].0).collect();
                    self.launch(f, &a, *parallel_extent, *points_per_iter);
                }
                Step::Gemm(g) => self
                    .gemm(g, &ptrs)
                    .map_err(|msg| ExecError::Step { step: s, msg })?,
                Step::Host {
                    op,
                    inputs,
                    outputs,
                } => {
                    let ins: Vec<Option<HostTensor>> = inputs
                        .iter()
                        .map(|x| {
                            x.map(|b| {
                                let buf = &m.buffers[b];
                                HostTensor {
                                    dtype: &buf.dtype,
                                    shape: &buf.shape,
                                    // SAFETY: the buffer is `bytes` long and
                                    // not written during this step.
                                    bytes: unsafe {
                                        std::slice::from_raw_parts(ptrs[b].0, buf.bytes as usize)
                                    },
                                }
                            })
                        })
                        .collect();
                    let outs: Vec<Option<(&str, &[u64])>> = outputs
                        .iter()
                        .map(|x| {
                            x.map(|b| (m.buffers[b].dtype.as_str(), m.buffers[b].shape.as_slice()))
                        })
                        .collect();
                    let results = host
                        .run(op, &ins, &outs)
                        .map_err(|msg| ExecError::Step { step: s, msg })?;
                    for (slot, r) in outputs.iter().zip(results) {
                        if let (Some(b), Some(bytes)) = (slot, r) {
                            let want = m.buffers[*b].bytes as usize;
                            if bytes.len() != want {
                                return Err(ExecError::Step {
                                    step: s,
                                    msg: format!(
                                        "host op produced {} bytes, {want} expected",
                                        bytes.len()
                                    ),
                                });
                            }
                            // SAFETY: the output buffer is `want` bytes.
                            unsafe {
                                std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptrs[*b].0, want)
                            };
                        }
                    }
                }
            }
        }
        let outs = m
            .outputs
            .iter()
            .map(|io| {
                let b = &m.buffers[io.buffer];
                // SAFETY: the buffer is `bytes` long.
                unsafe { std::slice::from_raw_parts(ptrs[io.buffer].0, b.bytes as usize) }.to_vec()
            })
            .collect();
        Ok(outs)
    }

    fn launch(&self, f: KernelFn, args: &[*mut u8], extent: u64, per_iter: u64) {
        // Below this many points a kernel is not worth a thread hop.
        const MIN_POINTS_PER_TASK: u64 = 16 * 1024;
        let total = extent.saturating_mul(per_iter.max(1));
        if self.threads <= 1 || extent <= 1 || total < 2 * MIN_POINTS_PER_TASK {
            // SAFETY: the artifact's kernels take exactly these buffers.
            unsafe { f(args.as_ptr(), 0, extent as i64) };
            return;
        }
        let tasks = (total / MIN_POINTS_PER_TASK)
            .min(self.threads as u64 * 4)
            .min(extent)
            .max(1);
        let chunk = extent.div_ceil(tasks);
        let a: Vec<Ptr> = args.iter().map(|&p| Ptr(p)).collect();
        (0..tasks).into_par_iter().for_each(|t| {
            let lo = t * chunk;
            let hi = ((t + 1) * chunk).min(extent);
            if lo < hi {
                let raw: Vec<*mut u8> = a.iter().map(|p| p.get()).collect();
                // SAFETY: disjoint iteration ranges write disjoint elements.
                unsafe { f(raw.as_ptr(), lo as i64, hi as i64) };
            }
        });
    }

    fn gemm(&self, g: &Gemm, ptrs: &[Ptr]) -> Result<(), String> {
        match g.dtype.as_str() {
            "f32" => self.gemm_t::<f32>(g, ptrs, g.alpha as f32, g.beta as f32),
            "f64" => self.gemm_t::<f64>(g, ptrs, g.alpha, g.beta),
            d => return Err(format!("gemm of {d} is not supported")),
        }
        Ok(())
    }

    fn gemm_t<T: 'static + Copy + Send + Sync>(&self, g: &Gemm, ptrs: &[Ptr], alpha: T, beta: T) {
        let (a, b, c) = (ptrs[g.a], ptrs[g.b], ptrs[g.c]);
        let one = |i: u64, par: gemm::Parallelism| {
            let i = i as isize;
            // SAFETY: strides and extents were derived from the operands'
            // shapes by the backend, so every access is in bounds.
            unsafe {
                let pa = (a.get() as *const T).offset(i * g.a_strides[0] as isize);
                let pb = (b.get() as *const T).offset(i * g.b_strides[0] as isize);
                let pc = (c.get() as *mut T).offset(i * g.c_strides[0] as isize);
                // The gemm crate computes dst = alpha * dst + beta * lhs * rhs.
                gemm::gemm(
                    g.m as usize,
                    g.n as usize,
                    g.k as usize,
                    pc,
                    g.c_strides[2] as isize,
                    g.c_strides[1] as isize,
                    g.beta != 0.0,
                    pa,
                    g.a_strides[2] as isize,
                    g.a_strides[1] as isize,
                    pb,
                    g.b_strides[2] as isize,
                    g.b_strides[1] as isize,
                    beta,
                    alpha,
                    false,
                    false,
                    false,
                    par,
                );
            }
        };
        let flops = g.m * g.n * g.k;
        if g.batch > 1 && self.threads > 1 && flops < 1 << 22 {
            (0..g.batch)
                .into_par_iter()
                .for_each(|i| one(i, gemm::Parallelism::None));
        } else {
            let par = if self.threads > 1 && flops >= 1 << 15 {
                gemm::Parallelism::Rayon(self.threads)
            } else {
                gemm::Parallelism::None
            };
            for i in 0..g.batch {
                one(i, par);
            }
        }
    }
}
