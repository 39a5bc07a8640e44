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
    #[error(
        "input \"{name}\": this artifact was specialized on another value of it (its shapes depend on it); compile again for this value"
    )]
    Guard { name: String },
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
        for g in &m.guards {
            if inputs.get(g.input).is_none_or(|b| *b != g.bytes.as_slice()) {
                return Err(ExecError::Guard {
                    name: m
                        .inputs
                        .get(g.input)
                        .map_or_else(String::new, |io| io.name.clone()),
                });
            }
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
        if g.c_dtype() != g.dtype {
            return Err(format!(
                "gemm of {} into {} is not supported",
                g.dtype,
                g.c_dtype()
            ));
        }
        match g.dtype.as_str() {
            "f32" => {
                if !self.sgemm_avx512(g, ptrs) {
                    self.gemm_t::<f32>(g, ptrs, g.alpha as f32, g.beta as f32)
                }
            }
            "f64" => self.gemm_t::<f64>(g, ptrs, g.alpha, g.beta),
            d => return Err(format!("gemm of {d} is not supported")),
        }
        Ok(())
    }

    /// The AVX-512 path when the hardware and the operand layout allow it.
    #[cfg(target_arch = "x86_64")]
    fn sgemm_avx512(&self, g: &Gemm, ptrs: &[Ptr]) -> bool {
        if std::env::var_os("SMELT_GEMM_CRATE").is_some()
            || !avx512::available()
            || g.b_strides[2] != 1
            || g.c_strides[2] != 1
            || g.k == 0
        {
            return false;
        }
        let (a, b, c) = (ptrs[g.a], ptrs[g.b], ptrs[g.c]);
        for i in 0..g.batch as isize {
            // SAFETY: strides and extents were derived from the operands'
            // shapes by the backend, so every access is in bounds.
            unsafe {
                avx512::sgemm(
                    avx512::Args {
                        m: g.m as usize,
                        n: g.n as usize,
                        k: g.k as usize,
                        a: (a.get() as *const f32).offset(i * g.a_strides[0] as isize),
                        rsa: g.a_strides[1] as isize,
                        csa: g.a_strides[2] as isize,
                        b: (b.get() as *const f32).offset(i * g.b_strides[0] as isize),
                        rsb: g.b_strides[1] as isize,
                        c: (c.get() as *mut f32).offset(i * g.c_strides[0] as isize),
                        rsc: g.c_strides[1] as isize,
                        alpha: g.alpha as f32,
                        acc: g.beta != 0.0,
                    },
                    self.threads,
                )
            };
        }
        true
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn sgemm_avx512(&self, _: &Gemm, _: &[Ptr]) -> bool {
        false
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

/// An AVX-512 f32 GEMM for row-contiguous B and C (what the lowerings
/// emit): the `gemm` crate on stable Rust only has AVX2 kernels, half the
/// width this hardware has. 6x32 register tiles, B streamed in k-blocks
/// that stay in L1 while every row block of A passes over them; no packing.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    const MR: usize = 6;
    const NR: usize = 32;
    const KC: usize = 256;

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// Operand addressing for one GEMM (element strides; B and C have
    /// column stride 1).
    #[derive(Clone, Copy)]
    pub struct Args {
        pub m: usize,
        pub n: usize,
        pub k: usize,
        pub a: *const f32,
        pub rsa: isize,
        pub csa: isize,
        pub b: *const f32,
        pub rsb: isize,
        pub c: *mut f32,
        pub rsc: isize,
        pub alpha: f32,
        /// Add to C instead of overwriting it.
        pub acc: bool,
    }
    // SAFETY: tasks write disjoint tiles of C; A and B are only read.
    unsafe impl Send for Args {}
    unsafe impl Sync for Args {}

    /// One MR x NR tile of C (its first `rows` rows are stored) over
    /// k-block `p0..p0+kc`. Accumulators are named, not an array, so that
    /// they live in registers at any optimization level.
    /// `bp` points at B's element (p0, j0), rows `rsb` apart (B itself, or
    /// a packed panel).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        g: &Args,
        rows: usize,
        i0: usize,
        j0: usize,
        p0: usize,
        kc: usize,
        bp: *const f32,
        rsb: isize,
    ) {
        unsafe {
            let nleft = g.n - j0;
            let m0: __mmask16 = if nleft >= 16 {
                0xffff
            } else {
                ((1u32 << nleft) - 1) as u16
            };
            let m1: __mmask16 = if nleft >= 32 {
                0xffff
            } else if nleft > 16 {
                ((1u32 << (nleft - 16)) - 1) as u16
            } else {
                0
            };
            // Rows past the end repeat the last row (computed, never stored).
            // Wrapping pointer arithmetic: plain `offset` carries debug-build
            // checks into the inner loop.
            let row = |r: usize| {
                g.a.wrapping_offset((i0 + r.min(rows - 1)) as isize * g.rsa + p0 as isize * g.csa)
            };
            let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) =
                (row(0), row(1), row(2), row(3), row(4), row(5));
            let z = _mm512_setzero_ps();
            let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
            let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
            let mut bp = bp;
            let csa = g.csa;
            for _ in 0..kc {
                let b0 = _mm512_maskz_loadu_ps(m0, bp);
                let b1 = _mm512_maskz_loadu_ps(m1, bp.wrapping_add(16));
                let x = _mm512_broadcastss_ps(_mm_load_ss(a0));
                c00 = _mm512_fmadd_ps(x, b0, c00);
                c01 = _mm512_fmadd_ps(x, b1, c01);
                let x = _mm512_broadcastss_ps(_mm_load_ss(a1));
                c10 = _mm512_fmadd_ps(x, b0, c10);
                c11 = _mm512_fmadd_ps(x, b1, c11);
                let x = _mm512_broadcastss_ps(_mm_load_ss(a2));
                c20 = _mm512_fmadd_ps(x, b0, c20);
                c21 = _mm512_fmadd_ps(x, b1, c21);
                let x = _mm512_broadcastss_ps(_mm_load_ss(a3));
                c30 = _mm512_fmadd_ps(x, b0, c30);
                c31 = _mm512_fmadd_ps(x, b1, c31);
                let x = _mm512_broadcastss_ps(_mm_load_ss(a4));
                c40 = _mm512_fmadd_ps(x, b0, c40);
                c41 = _mm512_fmadd_ps(x, b1, c41);
                let x = _mm512_broadcastss_ps(_mm_load_ss(a5));
                c50 = _mm512_fmadd_ps(x, b0, c50);
                c51 = _mm512_fmadd_ps(x, b1, c51);
                bp = bp.wrapping_offset(rsb);
                a0 = a0.wrapping_offset(csa);
                a1 = a1.wrapping_offset(csa);
                a2 = a2.wrapping_offset(csa);
                a3 = a3.wrapping_offset(csa);
                a4 = a4.wrapping_offset(csa);
                a5 = a5.wrapping_offset(csa);
            }
            let acc = [
                [c00, c01],
                [c10, c11],
                [c20, c21],
                [c30, c31],
                [c40, c41],
                [c50, c51],
            ];
            let alpha = _mm512_set1_ps(g.alpha);
            let add = g.acc || p0 > 0;
            for (r, pair) in acc.iter().enumerate().take(rows) {
                let cp = g.c.wrapping_offset((i0 + r) as isize * g.rsc + j0 as isize);
                for (h, (&v, mask)) in pair.iter().zip([m0, m1]).enumerate() {
                    if mask == 0 {
                        continue;
                    }
                    let p = cp.wrapping_add(16 * h);
                    let mut x = _mm512_mul_ps(alpha, v);
                    if add {
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, p));
                    }
                    _mm512_mask_storeu_ps(p, mask, x);
                }
            }
        }
    }

    /// Rows `i0..i1` of C for column strip `j0..j0+NR`, all of k. Each
    /// k-block of the strip's B columns is first copied into a contiguous
    /// panel: B's own rows are a whole row of the matrix apart (16 KB for a
    /// 4096-wide weight), which maps every row to the same L1 sets, and the
    /// panel is then reused by every row tile.
    unsafe fn strip(g: &Args, i0: usize, i1: usize, j0: usize) {
        let mut panel = [0f32; KC * NR];
        let ncols = NR.min(g.n - j0);
        let mut p0 = 0;
        while p0 < g.k {
            let kc = KC.min(g.k - p0);
            let tiles = (i1 - i0).div_ceil(MR);
            let (bp, rsb) = if tiles > 1 {
                for p in 0..kc {
                    // SAFETY: row p0 + p and columns j0..j0+ncols are in B.
                    let src = g.b.wrapping_offset((p0 + p) as isize * g.rsb + j0 as isize);
                    unsafe {
                        std::ptr::copy_nonoverlapping(src, panel.as_mut_ptr().add(p * NR), ncols)
                    };
                }
                (panel.as_ptr(), NR as isize)
            } else {
                (
                    g.b.wrapping_offset(p0 as isize * g.rsb + j0 as isize),
                    g.rsb,
                )
            };
            let mut i = i0;
            while i < i1 {
                let r = MR.min(i1 - i);
                // SAFETY: the caller checked avx512f; indices are in bounds.
                unsafe { tile(g, r, i, j0, p0, kc, bp, rsb) };
                i += r;
            }
            p0 += kc;
        }
    }

    /// # Safety
    /// `available()` must be true and the operands must cover the
    /// addressed elements; k must be at least 1.
    pub unsafe fn sgemm(g: Args, threads: usize) {
        let strips = g.n.div_ceil(NR);
        let row_blocks = g.m.div_ceil(MR);
        let flops = g.m * g.n * g.k;
        let want = if threads > 1 && flops >= 1 << 18 {
            threads * 4
        } else {
            1
        };
        // Split rows too when there are few column strips.
        let row_chunks = want.div_ceil(strips).clamp(1, row_blocks);
        let rows_per = row_blocks.div_ceil(row_chunks) * MR;
        let tasks = strips * row_chunks;
        let run = |t: usize| {
            let (s, rc) = (t % strips, t / strips);
            let i0 = rc * rows_per;
            let i1 = (i0 + rows_per).min(g.m);
            if i0 < i1 {
                // SAFETY: as for `sgemm`; tasks own disjoint tiles.
                unsafe { strip(&g, i0, i1, s * NR) };
            }
        };
        if want > 1 {
            (0..tasks).into_par_iter().for_each(run);
        } else {
            (0..tasks).for_each(run);
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::avx512;

    /// Small integers make every product and sum exact in f32, so the
    /// tiled kernel must agree exactly with the textbook triple loop; the
    /// sizes exercise partial row blocks, masked columns and k-blocks.
    #[test]
    fn avx512_sgemm_matches_triple_loop() {
        if !avx512::available() {
            return;
        }
        // Several row tiles (the packed-panel path), a ragged column strip
        // and more than one k-block.
        let (m, n, k) = (13usize, 35usize, 300usize);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
        for (acc, alpha) in [(false, 1.0f32), (true, 2.0)] {
            let mut c = vec![1.0f32; m * n];
            let mut want = c.clone();
            for i in 0..m {
                for j in 0..n {
                    let dot: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    want[i * n + j] = alpha * dot + if acc { want[i * n + j] } else { 0.0 };
                }
            }
            // SAFETY: the strides address exactly the three vectors.
            unsafe {
                avx512::sgemm(
                    avx512::Args {
                        m,
                        n,
                        k,
                        a: a.as_ptr(),
                        rsa: k as isize,
                        csa: 1,
                        b: b.as_ptr(),
                        rsb: n as isize,
                        c: c.as_mut_ptr(),
                        rsc: n as isize,
                        alpha,
                        acc,
                    },
                    2,
                )
            };
            assert_eq!(c, want);
        }
    }
}
