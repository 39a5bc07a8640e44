//! Graph -> GPU program: the cpu program's lowering, fusion and memory plan
//! with the one-thread-per-point schedule, then launches, the printer's
//! modules and the artifact manifest.

use super::{Arch, BLOCK, GpuError, Printer, gemm, printer};
use crate::cpu::{Program, Report};
use smelt_ir::Graph;
use smelt_kernel::{Scheduled, schedule};
use smelt_runtime::cpu::{self as rt, Gemm};
use smelt_runtime::gpu::{self as gpu, Arg, Launch, Manifest, Module, Step, TensorMap};
use std::collections::BTreeMap;

/// Most blocks of a flat launch; kernels stride over the rest.
const MAX_GRID: u64 = 1 << 16;

/// A compiled GPU program: the manifest, the module files (name, text)
/// and the weights.
#[derive(Debug)]
pub struct Compiled {
    pub manifest: Manifest,
    pub files: Vec<(String, String)>,
    pub weights: Vec<u8>,
    pub report: Report,
    /// Matrix products that run on a printer's tensor-core kernel, and
    /// those that fell back to the kernel-IR GEMM.
    pub tensor_core_gemms: usize,
    pub fallback_gemms: usize,
    /// Epilogue kernels that run inside their GEMM's kernel.
    pub fused_epilogues: usize,
    /// GEMMs that compute their B operand (Conv's im2col) as they go.
    pub implicit_gemms: usize,
}

/// Launch of a flat kernel over `total` points.
pub fn flat_launch(total: u64) -> Launch {
    let blocks = total.div_ceil(BLOCK as u64).clamp(1, MAX_GRID);
    Launch {
        grid: [blocks as u32, 1, 1],
        block: [BLOCK, 1, 1],
        shared_bytes: 0,
    }
}

/// Compiles `g` for these inputs: plainly when its shapes are static,
/// else specialized on the values of its small integer inputs (guarded).
pub fn compile_for(
    g: &Graph,
    inputs: &[smelt_ir::interp::Tensor],
    arch: Arch,
) -> Result<Compiled, GpuError> {
    compile_for_with(g, inputs, printer(arch).as_ref())
}

/// `compile_for` with a given printer (tests record through one).
pub fn compile_for_with(
    g: &Graph,
    inputs: &[smelt_ir::interp::Tensor],
    pr: &dyn Printer,
) -> Result<Compiled, GpuError> {
    let err = match compile_with(g, pr) {
        Ok(c) => return Ok(c),
        Err(e) if e.to_string().contains("needs static shapes") => e,
        Err(e) => return Err(e),
    };
    let spec = crate::cpu::specialize(g, inputs).map_err(|e| GpuError::Compile(e.to_string()))?;
    let Some((folded, guards)) = spec else {
        return Err(err);
    };
    let mut c = compile_with(&folded, pr).map_err(|_| err)?;
    c.manifest.guards = guards;
    Ok(c)
}

pub fn compile(g: &Graph, arch: Arch) -> Result<Compiled, GpuError> {
    compile_with(g, printer(arch).as_ref())
}

/// `compile` with a given printer.
pub fn compile_with(g: &Graph, pr: &dyn Printer) -> Result<Compiled, GpuError> {
    let arch = pr.arch();
    let p = Program::build_gpu(g).map_err(|e| GpuError::Compile(e.to_string()))?;
    let m = p.manifest().clone();
    let weights = p.weights().to_vec();
    let report = p.report.clone();
    if !report.host_ops.is_empty() {
        let mut ops: Vec<String> = report
            .host_ops
            .iter()
            .map(|(op, why)| format!("{op} ({why})"))
            .collect();
        ops.dedup();
        return Err(GpuError::Compile(format!(
            "{}: no GPU kernel for {} node(s): {}",
            arch.name(),
            report.host_ops.len(),
            ops.join(", ")
        )));
    }
    let mut kernels: Vec<Scheduled> = p.kernels;
    let ext = match pr.kind() {
        gpu::ModuleKind::Ptx => "ptx",
        gpu::ModuleKind::Hip => "hip",
    };
    let elems = |b: usize| -> u64 { m.buffers[b].shape.iter().product() };
    let mut files: Vec<(String, String)> = Vec::new();
    let mut gemm_modules: Vec<(String, Vec<String>)> = Vec::new();
    // Identical products (same sizes, strides, scalars) share one module.
    let mut tc_index: BTreeMap<String, (usize, Launch)> = BTreeMap::new();
    let mut steps = Vec::with_capacity(m.steps.len());
    let (mut tc, mut fallback) = (0, 0);
    let mut fused_epilogues = 0;
    let mut implicit = 0;
    let mut skip = 0usize;
    for (si, st) in m.steps.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        // A kernel that only computes a GEMM's B operand (Conv's im2col)
        // folds into the GEMM, which then computes B's elements as it
        // needs them instead of reading them (implicit GEMM); an epilogue
        // after it may fuse as well.
        if let rt::Step::Kernel { kernel, args, .. } = st
            && let Some(rt::Step::Gemm(gm)) = m.steps.get(si + 1)
            && let Some(b_param) = b_loader(gm, &kernels[*kernel], args, &m)
        {
            let epi = match m.steps.get(si + 2) {
                Some(rt::Step::Kernel {
                    kernel: ek,
                    args: eargs,
                    ..
                }) => fusable_epilogue(gm, &kernels[*ek], eargs, &m)
                    .map(|c| (&kernels[*ek], c, eargs)),
                _ => None,
            };
            let name = format!("gemm{}", gemm_modules.len());
            let loader = &kernels[*kernel];
            let with_epi = epi.and_then(|(ek, c, eargs)| {
                pr.gemm_implicit(&name, gm, loader, b_param, Some((ek, c)))
                    .map(|r| (r, Some(eargs)))
            });
            let done = with_epi.or_else(|| {
                pr.gemm_implicit(&name, gm, loader, b_param, None)
                    .map(|r| (r, None))
            });
            if let Some(((text, launch), eargs)) = done {
                gemm_modules.push((text, vec![name.clone()]));
                let mut a = vec![Arg::Buffer(gm.a), Arg::Buffer(gm.b), Arg::Buffer(gm.c)];
                a.extend(args.iter().map(|&b| Arg::Buffer(b)));
                if let Some(e) = eargs {
                    a.extend(e.iter().map(|&b| Arg::Buffer(b)));
                    fused_epilogues += 1;
                }
                a.extend(maps_args(gm, pr.gemm_implicit_tensor_maps(gm)));
                steps.push(Step::Launch {
                    module: gemm_modules.len(),
                    kernel: name,
                    args: a,
                    launch,
                });
                tc += 1;
                implicit += 1;
                skip = if eargs.is_some() { 2 } else { 1 };
                continue;
            }
        }
        // A GEMM followed by an elementwise epilogue over its output runs
        // as one kernel where the printer can fuse them.
        if let rt::Step::Gemm(gm) = st
            && let Some(rt::Step::Kernel { kernel, args, .. }) = m.steps.get(si + 1)
            && let Some(c_param) = fusable_epilogue(gm, &kernels[*kernel], args, &m)
        {
            let name = format!("gemm{}", gemm_modules.len());
            if let Some((text, launch)) = pr.gemm_fused(&name, gm, &kernels[*kernel], c_param) {
                gemm_modules.push((text, vec![name.clone()]));
                let mut a = vec![Arg::Buffer(gm.a), Arg::Buffer(gm.b), Arg::Buffer(gm.c)];
                a.extend(args.iter().map(|&b| Arg::Buffer(b)));
                a.extend(tensor_maps(pr, gm));
                steps.push(Step::Launch {
                    module: gemm_modules.len(),
                    kernel: name,
                    args: a,
                    launch,
                });
                tc += 1;
                fused_epilogues += 1;
                skip = 1;
                continue;
            }
        }
        match st {
            rt::Step::Kernel {
                kernel,
                args,
                parallel_extent,
                ..
            } => steps.push(flat_step(&kernels[*kernel], args, *parallel_extent)),
            rt::Step::Gemm(gm) => {
                let key = gemm_key(gm);
                let hit = tc_index.get(&key).copied();
                let found = match hit {
                    Some(x) => Some(x),
                    None => {
                        let name = format!("gemm{}", gemm_modules.len());
                        pr.gemm(&name, gm).map(|(text, launch)| {
                            gemm_modules.push((text, vec![name]));
                            let x = (gemm_modules.len() - 1, launch);
                            tc_index.insert(key, x);
                            x
                        })
                    }
                };
                if let Some((module, launch)) = found {
                    tc += 1;
                    steps.push(Step::Launch {
                        // Module 0 holds the flat kernels.
                        module: 1 + module,
                        kernel: gemm_modules[module].1[0].clone(),
                        args: [Arg::Buffer(gm.a), Arg::Buffer(gm.b), Arg::Buffer(gm.c)]
                            .into_iter()
                            .chain(tensor_maps(pr, gm))
                            .collect(),
                        launch,
                    });
                } else {
                    fallback += 1;
                    let k = gemm::kernel(gm, [elems(gm.a), elems(gm.b), elems(gm.c)]).ok_or_else(
                        || GpuError::Compile(format!("matrix product of {}", gm.dtype)),
                    )?;
                    let mut sk = schedule::flat(&k);
                    sk.kernel.name = format!("k{}_gemm", kernels.len());
                    let total = sk.parallel_extent;
                    kernels.push(sk);
                    steps.push(flat_step(
                        &kernels[kernels.len() - 1],
                        &[gm.a, gm.b, gm.c],
                        total,
                    ));
                }
            }
            rt::Step::Host { op, .. } => {
                return Err(GpuError::Compile(format!("host step {op}")));
            }
        }
    }
    // Epilogues fused into their GEMM no longer run on their own.
    let launched: std::collections::BTreeSet<&str> = steps
        .iter()
        .map(|s| {
            let Step::Launch { module, kernel, .. } = s;
            (*module, kernel.as_str())
        })
        .filter(|(m, _)| *m == 0)
        .map(|(_, k)| k)
        .collect();
    let kernels: Vec<Scheduled> = kernels
        .iter()
        .filter(|k| launched.contains(k.kernel.name.as_str()))
        .cloned()
        .collect();
    let main_text = pr.module(&kernels)?;
    let mut modules = vec![module(format!("kernels.{ext}"), pr, &main_text, {
        kernels.iter().map(|k| k.kernel.name.clone()).collect()
    })];
    files.push((format!("kernels.{ext}"), main_text));
    for (i, (text, names)) in gemm_modules.into_iter().enumerate() {
        let file = format!("gemm_{i}.{ext}");
        modules.push(module(file.clone(), pr, &text, names));
        files.push((file, text));
    }
    let manifest = Manifest {
        format: gpu::artifact::FORMAT.into(),
        version: gpu::artifact::VERSION,
        name: m.name.clone(),
        producer: m.producer.clone(),
        target: arch.name().into(),
        modules,
        inputs: m.inputs.clone(),
        outputs: m.outputs.clone(),
        buffers: m.buffers.clone(),
        arena_bytes: m.arena_bytes,
        weights_file: "weights.bin".into(),
        weights_bytes: weights.len() as u64,
        weights_crc32: gpu::artifact::crc32(&weights),
        steps,
        guards: Vec::new(),
    };
    Ok(Compiled {
        manifest,
        files,
        weights,
        report,
        tensor_core_gemms: tc,
        fallback_gemms: fallback,
        fused_epilogues,
        implicit_gemms: implicit,
    })
}

/// The parameter through which `epi` updates the GEMM's output in place,
/// if `epi` is an elementwise epilogue of it: its domain is C's shape, C is
/// dense row-major, and every access to C is at the point's own element.
fn fusable_epilogue(g: &Gemm, epi: &Scheduled, args: &[usize], m: &rt::Manifest) -> Option<usize> {
    use smelt_kernel::ir::build::flat;
    use smelt_kernel::{Access, Expr, Stmt, Var};
    let k = &epi.kernel;
    if args.iter().filter(|&&b| b == g.c).count() != 1 {
        return None;
    }
    let c_param = args.iter().position(|&b| b == g.c)?;
    // What the epilogue writes: C itself (bias, activation, residual in
    // place) or one other buffer of C's elements (a dtype conversion).
    let mut writes = k
        .params
        .iter()
        .enumerate()
        .filter(|(_, p)| p.access == Access::Write);
    let (w_param, w) = writes.next()?;
    if writes.next().is_some() {
        return None;
    }
    let dims = &m.buffers.get(g.c)?.shape;
    let dense = g.c_strides[2] == 1
        && g.c_strides[1] == g.n as i64
        && (g.batch == 1 || g.c_strides[0] == (g.m * g.n) as i64);
    let points = g.batch * g.m * g.n;
    // The epilogue may see C through another view of the same elements
    // (Conv's bias runs over (N, M, H*W) of a 4-D C): the access check
    // below is over its own domain, whose row-major order is C's.
    let domain_points: u64 = k.domain.iter().product();
    if !dense || domain_points != points || dims.iter().product::<u64>() != points {
        return None;
    }
    if w_param != c_param {
        // Written while other blocks of the GEMM still read A and B: it
        // must not be either, nor share their memory (the plan may have
        // reused a buffer that died at the GEMM).
        let range = |b: usize| match m.buffers.get(b).map(|x| (&x.place, x.bytes)) {
            Some((rt::Place::Arena { offset }, bytes)) => Some((*offset, offset + bytes)),
            _ => None,
        };
        let wb = args[w_param];
        let clash = [g.a, g.b].iter().any(|&x| {
            x == wb
                || matches!((range(x), range(wb)), (Some((a0, a1)), Some((w0, w1))) if a0 < w1 && w0 < a1)
        });
        if clash || w.len != points {
            return None;
        }
    }
    let own: Vec<Expr> = (0..k.domain.len())
        .map(|d| Expr::Var(Var(d as u32)))
        .collect();
    let own = flat(&own, &k.domain);
    let watched = |b: usize| b == c_param || b == w_param;
    let mut ok = true;
    let mut check_expr = |e: &Expr| {
        e.visit(&mut |x| {
            if let Expr::Load(b, i) = x
                && watched(*b)
                && **i != own
            {
                ok = false;
            }
        })
    };
    fn walk(
        body: &[Stmt],
        watched: &dyn Fn(usize) -> bool,
        own: &Expr,
        ok: &mut bool,
        f: &mut dyn FnMut(&Expr),
    ) {
        for s in body {
            match s {
                Stmt::Let(_, e) | Stmt::Decl(_, e) | Stmt::Set(_, e) => f(e),
                Stmt::Store { buf, index, value } => {
                    if watched(*buf) && index != own {
                        *ok = false;
                    }
                    f(index);
                    f(value);
                }
                Stmt::Loop { extent, body, .. } => {
                    f(extent);
                    walk(body, watched, own, ok, f);
                }
                Stmt::If { cond, then, els } => {
                    f(cond);
                    walk(then, watched, own, ok, f);
                    walk(els, watched, own, ok, f);
                }
            }
        }
    }
    let mut store_ok = true;
    walk(&epi.body, &watched, &own, &mut store_ok, &mut check_expr);
    (ok && store_ok).then_some(c_param)
}

/// The parameter through which `loader` writes `g`'s B operand, if it is a
/// kernel that only produces B for this GEMM: B is dense row-major over
/// (batch, k, n), no other step touches it, and the loader stores it once
/// per point at the point's own element and never reads it.
fn b_loader(g: &Gemm, loader: &Scheduled, args: &[usize], m: &rt::Manifest) -> Option<usize> {
    use smelt_kernel::ir::build::flat;
    use smelt_kernel::{Access, Expr, Stmt, Var};
    let k = &loader.kernel;
    let b_param = k
        .params
        .iter()
        .zip(args)
        .position(|(p, &b)| p.access == Access::Write && b == g.b)?;
    let writes = k
        .params
        .iter()
        .filter(|p| p.access == Access::Write)
        .count();
    let points = g.batch * g.k * g.n;
    let dense = g.b_strides[2] == 1
        && g.b_strides[1] == g.n as i64
        && (g.batch == 1 || g.b_strides[0] == (g.k * g.n) as i64);
    let is_output = m.outputs.iter().any(|o| o.buffer == g.b);
    let uses: usize = m
        .steps
        .iter()
        .map(|s| match s {
            rt::Step::Kernel { args, .. } => args.iter().filter(|&&b| b == g.b).count(),
            rt::Step::Gemm(x) => [x.a, x.b, x.c].iter().filter(|&&b| b == g.b).count(),
            rt::Step::Host {
                inputs, outputs, ..
            } => inputs
                .iter()
                .chain(outputs)
                .filter(|b| **b == Some(g.b))
                .count(),
        })
        .sum();
    // The loader's inputs are read while the GEMM writes C: the memory
    // plan may have put C over an input that died at the loader's step.
    let range = |b: usize| match m.buffers.get(b).map(|x| (&x.place, x.bytes)) {
        Some((rt::Place::Arena { offset }, bytes)) => Some((*offset, offset + bytes)),
        _ => None,
    };
    let overlaps_c = k.params.iter().zip(args).any(|(p, &b)| {
        p.access == Access::Read
            && matches!((range(b), range(g.c)), (Some((a0, a1)), Some((c0, c1))) if a0 < c1 && c0 < a1)
    });
    let domain_points: u64 = k.domain.iter().product();
    if writes != 1
        || overlaps_c
        || !dense
        || is_output
        || uses != 2
        || domain_points != points
        || loader.points_per_iter != 1
        || args.iter().filter(|&&b| b == g.b).count() != 1
    {
        return None;
    }
    let own: Vec<Expr> = (0..k.domain.len())
        .map(|d| Expr::Var(Var(d as u32)))
        .collect();
    let own = flat(&own, &k.domain);
    let mut ok = true;
    let mut stores = 0;
    fn walk(body: &[Stmt], b: usize, own: &Expr, ok: &mut bool, stores: &mut usize) {
        let reads_b = |e: &Expr| {
            let mut r = false;
            e.visit(&mut |x| r |= matches!(x, Expr::Load(p, _) if *p == b));
            r
        };
        for s in body {
            match s {
                Stmt::Let(_, e) | Stmt::Decl(_, e) | Stmt::Set(_, e) => *ok &= !reads_b(e),
                Stmt::Store { buf, index, value } => {
                    *ok &= !reads_b(index) && !reads_b(value);
                    if *buf == b {
                        *ok &= index == own;
                        *stores += 1;
                    }
                }
                Stmt::Loop {
                    extent, body, kind, ..
                } => {
                    *ok &= !reads_b(extent);
                    // A store inside a serial loop would run more than once.
                    let before = *stores;
                    walk(body, b, own, ok, stores);
                    if *kind != smelt_kernel::LoopKind::Parallel && *stores != before {
                        *ok = false;
                    }
                }
                Stmt::If { cond, then, els } => {
                    *ok &= !reads_b(cond);
                    let before = *stores;
                    walk(then, b, own, ok, stores);
                    walk(els, b, own, ok, stores);
                    // Stored on one path only: some elements would be unset.
                    if *stores != before {
                        *ok = false;
                    }
                }
            }
        }
    }
    walk(&loader.body, b_param, &own, &mut ok, &mut stores);
    (ok && stores == 1).then_some(b_param)
}

/// The GEMM kernel's tensor-map arguments, over its operands' buffers.
fn tensor_maps(pr: &dyn Printer, g: &Gemm) -> Vec<Arg> {
    maps_args(g, pr.gemm_tensor_maps(g))
}

/// Tensor-map arguments over the operands' buffers.
fn maps_args(g: &Gemm, maps: Vec<(usize, TensorMap)>) -> Vec<Arg> {
    maps.into_iter()
        .map(|(op, mut t)| {
            t.buffer = [g.a, g.b, g.c][op.min(2)];
            Arg::TensorMap(t)
        })
        .collect()
}

fn module(file: String, pr: &dyn Printer, text: &str, kernels: Vec<String>) -> Module {
    Module {
        file,
        kind: pr.kind(),
        crc32: gpu::artifact::crc32(text.as_bytes()),
        kernels,
    }
}

fn flat_step(k: &Scheduled, args: &[usize], total: u64) -> Step {
    let mut a: Vec<Arg> = args.iter().map(|&b| Arg::Buffer(b)).collect();
    a.push(Arg::I64(total as i64));
    Step::Launch {
        module: 0,
        kernel: k.kernel.name.clone(),
        args: a,
        launch: flat_launch(total),
    }
}

/// A product's identity without its buffers.
fn gemm_key(g: &Gemm) -> String {
    let g = Gemm {
        a: 0,
        b: 0,
        c: 0,
        ..g.clone()
    };
    serde_json::to_string(&g).unwrap_or_default()
}

impl Compiled {
    /// The artifact as the runtime reads it, without going through files.
    pub fn folder(&self) -> smelt_runtime::gpu::Folder {
        smelt_runtime::gpu::Folder {
            manifest: self.manifest.clone(),
            modules: self
                .manifest
                .modules
                .iter()
                .map(|m| {
                    self.files
                        .iter()
                        .find(|(n, _)| *n == m.file)
                        .map(|(_, t)| t.as_bytes().to_vec())
                        .unwrap_or_default()
                })
                .collect(),
            weights: self.weights.clone(),
        }
    }
}
