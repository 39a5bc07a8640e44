//! The PTX target without a GPU: every kernel smelt emits for the
//! conformance suite and the example models, printed through LLVM NVPTX,
//! assembles with NVIDIA's ptxas for sm_80 and sm_90a; so do the
//! tensor-core GEMMs (mma.sync on sm_80, wgmma on sm_90a), alone and with
//! every elementwise epilogue the programs put right after them fused in
//! (`Printer::gemm_fused`). ptxas's register and spill counts are summarized on
//! stdout and in `target/ptxas-report.txt`. PTX snapshots of a few kernels
//! live under `tests/gpu/ptx/` (bless with `INSTA_UPDATE=always`).
//!
//! Needs ptxas and libdevice from the PyPI wheel `nvidia-cuda-nvcc-cu12`
//! (scripts/prereqs.sh installs it into `.venv`); without them these tests
//! fail and say so.

use crate::common::{conformance_dir, repo};
use smelt_backends::cpu::Program;
use smelt_backends::gpu::ptx::{Ptx, mma, ptxas, wgmma};
use smelt_backends::gpu::{Arch, Printer};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::{Gemm, Step};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

const ARCHS: [Arch; 2] = [Arch::Sm80, Arch::Sm90a];
/// Kernels per PTX module: big enough that LLVM and ptxas start rarely,
/// small enough to spread over threads.
const CHUNK: usize = 150;

fn require_toolchain() {
    if let Err(e) = ptxas::check_toolchain() {
        panic!("{e}");
    }
}

/// A GEMM and the epilogue kernel run right after it on its C, with the
/// index of C among the epilogue's parameters.
type Pair = (Gemm, Scheduled, usize);

/// Kernels, GEMMs and (GEMM, epilogue) pairs of one graph built with the
/// GPU (`flat`) schedule; None when the cpu program builder refuses the
/// graph (dynamic shapes).
fn program_parts(g: &smelt_ir::Graph) -> Option<(Vec<Scheduled>, Vec<Gemm>, Vec<Pair>)> {
    let p = Program::build_with(g, smelt_kernel::schedule::flat).ok()?;
    let m = p.manifest();
    let gemms = m
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::Gemm(g) => Some(g.clone()),
            _ => None,
        })
        .collect();
    let pairs = m
        .steps
        .windows(2)
        .filter_map(|w| epilogue_pair(&w[0], &w[1], &p.kernels, &m.buffers))
        .collect();
    Some((p.kernels, gemms, pairs))
}

/// The lead's rule for fusing: a GEMM immediately followed by a kernel
/// named "...epilogue..." that takes C, whose domain is C's shape, C dense
/// row-major.
fn epilogue_pair(
    a: &Step,
    b: &Step,
    kernels: &[Scheduled],
    buffers: &[smelt_runtime::cpu::Buffer],
) -> Option<Pair> {
    let (Step::Gemm(g), Step::Kernel { kernel, args, .. }) = (a, b) else {
        return None;
    };
    let k = kernels.get(*kernel)?;
    let c_param = args.iter().position(|&x| x == g.c)?;
    let dense = g.c_strides[2] == 1
        && g.c_strides[1] == g.n as i64
        && (g.batch == 1 || g.c_strides[0] == (g.m * g.n) as i64);
    (k.kernel.name.contains("epilogue") && dense && k.kernel.domain == buffers.get(g.c)?.shape)
        .then(|| (g.clone(), k.clone(), c_param))
}

#[derive(Default)]
struct Collected {
    kernels: Vec<Scheduled>,
    gemms: Vec<Gemm>,
    seen: HashSet<String>,
    seen_gemm: HashSet<String>,
    pairs: Vec<Pair>,
    seen_pair: HashSet<String>,
    graphs: usize,
    skipped: usize,
}

impl Collected {
    fn add_graph(&mut self, g: &smelt_ir::Graph) {
        let Some((ks, gs, ps)) = program_parts(g) else {
            self.skipped += 1;
            return;
        };
        self.graphs += 1;
        for mut k in ks {
            // Kernels of different graphs share names; dedupe on the body.
            let name = std::mem::take(&mut k.kernel.name);
            let text = smelt_kernel::print::scheduled(&k);
            if self.seen.insert(text) {
                k.kernel.name = format!("k{}_{name}", self.kernels.len());
                self.kernels.push(k);
            }
        }
        for g in gs {
            if self.seen_gemm.insert(format!("{g:?}")) {
                self.gemms.push(g);
            }
        }
        for (g, mut k, c) in ps {
            let name = std::mem::take(&mut k.kernel.name);
            let key = format!("{g:?} {c} {}", smelt_kernel::print::scheduled(&k));
            if self.seen_pair.insert(key) {
                k.kernel.name = format!("e{}_{name}", self.pairs.len());
                self.pairs.push((g, k, c));
            }
        }
    }
}

fn conformance_graphs(c: &mut Collected) {
    let dir = conformance_dir();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    for case in cases {
        match smelt_frontend::import_file(&case.join("model.onnx")) {
            Ok(g) => c.add_graph(&g),
            Err(_) => c.skipped += 1,
        }
    }
}

/// The example models committed to the repository (ONNX).
fn example_graphs(c: &mut Collected) {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("model.onnx"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in files {
        add_with_optimized(c, &f);
    }
}

/// The benchmark models (examples/models/make_all.py): from
/// `$SMELT_MODELS_DIR` or `.cache/models` where `make bench-cpu` left them;
/// otherwise the MLP is generated into a temporary folder with
/// `$SMELT_PYTHON`. Returns the names of the models added.
fn benchmark_graphs(c: &mut Collected) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SMELT_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/models"));
    let dir = if dir.is_dir() {
        dir
    } else if let Some(py) = std::env::var_os("SMELT_PYTHON") {
        let out = std::process::Command::new(py)
            .arg(repo().join("examples/models/make_all.py"))
            .arg(tmp.path())
            .args(["--only", "mlp"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "make_all.py: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmp.path().to_path_buf()
    } else {
        println!("no benchmark models (set SMELT_MODELS_DIR or SMELT_PYTHON)");
        return Vec::new();
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        add_with_optimized(c, &dir.join(n).join("model.onnx"));
    }
    names
}

/// Adds the graph as imported and as the default passes optimize it (its
/// fused kernels are what runs).
fn add_with_optimized(c: &mut Collected, f: &Path) {
    let g = smelt_frontend::import_file(f).unwrap();
    let target = smelt_ir::target::Target::builtin("cpu").unwrap();
    let (opt, _) = smelt_passes::optimize(&g, &target, &smelt_passes::Options::default()).unwrap();
    c.add_graph(&g);
    c.add_graph(&opt);
}

/// One PTX module to assemble.
struct Job {
    label: String,
    arch: Arch,
    ptx: Result<String, String>,
}

/// ptxas over every job on a few threads; panics listing every failure.
fn assemble_all(jobs: Vec<Job>) -> Vec<(String, Arch, ptxas::EntryReport)> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
    let jobs = std::sync::Mutex::new(jobs.into_iter().enumerate().collect::<Vec<_>>());
    let results = std::sync::Mutex::new(Vec::new());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let Some((_, job)) = jobs.lock().unwrap().pop() else {
                        return;
                    };
                    let r = job.ptx.clone().and_then(|p| {
                        ptxas::assemble(&p, job.arch.name()).map_err(|e| e.to_string())
                    });
                    match r {
                        Ok(entries) => results.lock().unwrap().extend(
                            entries
                                .into_iter()
                                .map(|e| (job.label.clone(), job.arch, e)),
                        ),
                        Err(e) => failures.lock().unwrap().push(format!(
                            "{} ({}): {e}",
                            job.label,
                            job.arch.name()
                        )),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} PTX modules failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let mut r = results.into_inner().unwrap();
    r.sort_by(|a, b| (&a.2.name, a.1.name()).cmp(&(&b.2.name, b.1.name())));
    r
}

/// Kernel-IR kernels as chunked modules, PTX printed on threads.
fn kernel_jobs(kernels: &[Scheduled]) -> Vec<Job> {
    let chunks: Vec<&[Scheduled]> = kernels.chunks(CHUNK).collect();
    let mut jobs = Vec::new();
    std::thread::scope(|s| {
        let hs: Vec<_> = chunks
            .iter()
            .enumerate()
            .flat_map(|(i, ch)| {
                ARCHS.map(|arch| {
                    s.spawn(move || Job {
                        label: format!("kernels chunk {i}"),
                        arch,
                        ptx: Ptx(arch).module(ch).map_err(|e| e.to_string()),
                    })
                })
            })
            .collect();
        for h in hs {
            jobs.push(h.join().unwrap());
        }
    });
    jobs
}

/// Shapes the models may not produce: single elements, edges in every
/// dimension, a transposed B (column stride), accumulation into C, a
/// broadcast A (batch stride 0).
fn odd_gemms() -> Vec<Gemm> {
    let plain = |batch: u64, m: u64, n: u64, k: u64| Gemm {
        dtype: "f32".into(),
        batch,
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
    };
    let mut v = vec![
        plain(1, 1, 1, 1),
        plain(1, 17, 13, 5),
        plain(3, 65, 33, 9),
        plain(1, 1, 1000, 768),
        plain(2, 128, 3072, 768),
    ];
    let mut t = plain(2, 31, 47, 29);
    t.b_strides = [(29 * 47) as i64, 1, 29];
    t.alpha = 0.125;
    t.beta = 1.0;
    v.push(t);
    let mut bc = plain(4, 20, 24, 16);
    bc.a_strides[0] = 0;
    v.push(bc);
    v
}

fn gemm_jobs(gemms: &[Gemm]) -> (Vec<Job>, usize) {
    let mut jobs = Vec::new();
    let mut declined = 0;
    for (i, g) in gemms.iter().enumerate() {
        for arch in ARCHS {
            let name = format!("gemm_{i}");
            match Ptx(arch).gemm(&name, g) {
                Some((ptx, _)) => jobs.push(Job {
                    label: format!("{name} {g:?}"),
                    arch,
                    ptx: Ok(ptx),
                }),
                None => declined += 1,
            }
        }
    }
    (jobs, declined)
}

/// Every (GEMM, epilogue) pair fused, for both architectures. Returns the
/// jobs and how many pairs of f32 GEMMs the printer declined.
fn fused_jobs(pairs: &[Pair]) -> (Vec<Job>, usize) {
    let mut jobs = Vec::new();
    let mut declined = 0;
    for (i, (g, epi, c)) in pairs.iter().enumerate() {
        for arch in ARCHS {
            let name = format!("gemm_fused_{i}");
            match Ptx(arch).gemm_fused(&name, g, epi, *c) {
                Some((ptx, _)) => jobs.push(Job {
                    label: format!("{name} {g:?} + {}", epi.kernel.name),
                    arch,
                    ptx: Ok(ptx),
                }),
                None if g.dtype == "f32" => declined += 1,
                None => {}
            }
        }
    }
    (jobs, declined)
}

/// Writes the register/spill summary to stdout and target/ptxas-report.txt.
fn report(title: &str, rows: &[(String, Arch, ptxas::EntryReport)], extra: &str) {
    let mut s = format!("# {title}\n{extra}");
    for arch in ARCHS {
        let of: Vec<_> = rows.iter().filter(|r| r.1 == arch).collect();
        let max = of.iter().max_by_key(|r| r.2.registers);
        let spills: Vec<_> = of
            .iter()
            .filter(|r| r.2.spill_stores + r.2.spill_loads > 0)
            .collect();
        let mut hist: BTreeMap<u32, usize> = BTreeMap::new();
        for r in &of {
            *hist.entry(r.2.registers.next_power_of_two()).or_default() += 1;
        }
        s += &format!(
            "{}: {} entries, max registers {} ({}), {} with spills\n  registers (<= power of two: count): {:?}\n",
            arch.name(),
            of.len(),
            max.map_or(0, |r| r.2.registers),
            max.map_or("-", |r| r.2.name.as_str()),
            spills.len(),
            hist
        );
        for (what, fused) in [("tensor-core GEMMs", false), ("with fused epilogue", true)] {
            let gs: Vec<_> = of
                .iter()
                .filter(|r| r.0.starts_with("gemm") && r.0.starts_with("gemm_fused") == fused)
                .collect();
            s += &format!(
                "  {what}: {} entries, max registers {}, max stack {} B, {} with spills\n",
                gs.len(),
                gs.iter().map(|r| r.2.registers).max().unwrap_or(0),
                gs.iter().map(|r| r.2.stack_bytes).max().unwrap_or(0),
                gs.iter()
                    .filter(|r| r.2.spill_stores + r.2.spill_loads > 0)
                    .count()
            );
        }
        for r in spills.iter().take(20) {
            s += &format!(
                "  spills: {} {} registers, {} B stores, {} B loads\n",
                r.2.name, r.2.registers, r.2.spill_stores, r.2.spill_loads
            );
        }
    }
    print!("{s}");
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("ptxas-report-{}.txt", title.replace(' ', "-")));
    let _ = std::fs::write(&path, &s);
    println!("(written to {})", path.display());
}

/// Every kernel of every conformance case and example model that the cpu
/// program builder accepts assembles for both architectures, and so does
/// every tensor-core GEMM of those programs.
#[test]
fn ptx_every_kernel_assembles() {
    require_toolchain();
    let t0 = Instant::now();
    let mut c = Collected::default();
    conformance_graphs(&mut c);
    example_graphs(&mut c);
    let models = benchmark_graphs(&mut c);
    let t_build = t0.elapsed();
    assert!(c.kernels.len() > 500, "only {} kernels", c.kernels.len());
    let t1 = Instant::now();
    let mut jobs = kernel_jobs(&c.kernels);
    let t_print = t1.elapsed();
    let n_model_gemms = c.gemms.len();
    c.gemms.extend(odd_gemms());
    let (gj, declined) = gemm_jobs(&c.gemms);
    let n_gemm_jobs = gj.len();
    let sm90 = |j: &&Job| j.arch == Arch::Sm90a;
    let wgmma_jobs = gj
        .iter()
        .filter(sm90)
        .filter(|j| j.ptx.as_ref().is_ok_and(|p| p.contains("wgmma.mma_async")))
        .count();
    // Every sm_90a product that has a tensor-core kernel gets wgmma (it
    // declines only strides too large for its immediate offsets).
    assert_eq!(wgmma_jobs, gj.iter().filter(sm90).count());
    jobs.extend(gj);
    let (fj, fused_declined) = fused_jobs(&c.pairs);
    let n_fused_jobs = fj.len();
    let f32_pairs = c.pairs.iter().filter(|p| p.0.dtype == "f32").count();
    assert!(
        f32_pairs >= 5,
        "only {f32_pairs} f32 (GEMM, epilogue) pairs found"
    );
    assert_eq!(
        fused_declined, 0,
        "the printer declined to fuse some f32 (GEMM, epilogue) pairs"
    );
    assert_eq!(n_fused_jobs, f32_pairs * ARCHS.len());
    jobs.extend(fj);
    let t2 = Instant::now();
    let rows = assemble_all(jobs);
    let t_ptxas = t2.elapsed();
    let kernel_rows = rows.iter().filter(|r| !r.0.starts_with("gemm")).count();
    assert_eq!(
        kernel_rows,
        c.kernels.len() * ARCHS.len(),
        "ptxas reported a different number of entries than kernels printed"
    );
    let extra = format!(
        "benchmark models: {}\n{} graphs built ({} skipped: import or cpu build refused), {} distinct kernels, \
         {} GEMMs from programs + {} odd shapes ({} tensor-core modules, {} of them wgmma, {} declined); \
         {} (GEMM, epilogue) pairs ({} f32: {} fused modules); build {:.1}s, PTX {:.1}s, ptxas {:.1}s\n",
        if models.is_empty() {
            "none".to_string()
        } else {
            models.join(", ")
        },
        c.graphs,
        c.skipped,
        c.kernels.len(),
        n_model_gemms,
        c.gemms.len() - n_model_gemms,
        n_gemm_jobs,
        wgmma_jobs,
        declined,
        c.pairs.len(),
        f32_pairs,
        n_fused_jobs,
        t_build.as_secs_f64(),
        t_print.as_secs_f64(),
        t_ptxas.as_secs_f64()
    );
    report("conformance and examples", &rows, &extra);
}

fn snapshot_graph(path: &Path) -> Vec<Scheduled> {
    let src = std::fs::read_to_string(path).unwrap();
    let g = smelt_ir::text::parse(&src).unwrap();
    Program::build_with(&g, smelt_kernel::schedule::flat)
        .unwrap()
        .kernels
}

/// A 32x48 * 48x40 MatMul with bias and GELU (FusedMatMul): its GEMM
/// and the epilogue kernel right after it.
fn bias_gelu_pair() -> Pair {
    let src = r#"graph "mm_bias_gelu"(%x: f32[32,48], %w: f32[48,40], %b: f32[40]) {
  %y: f32[32,40] = FusedMatMul(%x, %w, %b, _) {activation="Gelu"}
  return %y
}"#;
    let g = smelt_ir::text::parse(src).unwrap();
    let (_, _, mut pairs) = program_parts(&g).unwrap();
    assert_eq!(pairs.len(), 1, "one GEMM followed by its epilogue");
    let (gm, epi, c) = pairs.remove(0);
    assert_eq!((gm.m, gm.n, gm.k), (32, 40, 48));
    assert_eq!(epi.kernel.params.len(), 2, "C and the bias");
    (gm, epi, c)
}

/// PTX of a fused bias+GELU and a softmax (sm_80), and one tensor-core GEMM
/// per architecture. Also assembled, so a snapshot is never invalid PTX.
#[test]
fn ptx_snapshots() {
    require_toolchain();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(repo().join("tests/gpu/ptx"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for name in ["bias_gelu", "softmax"] {
            let ks = snapshot_graph(&repo().join(format!("tests/kernels/{name}.smelt")));
            let ptx = Ptx(Arch::Sm80).module(&ks).unwrap();
            ptxas::assemble(&ptx, "sm_80").unwrap();
            insta::assert_snapshot!(format!("{name}_sm_80"), ptx);
        }
        let g = &odd_gemms()[1];
        for arch in ARCHS {
            let (ptx, launch) = Ptx(arch).gemm("gemm_17x13x5", g).unwrap();
            ptxas::assemble(&ptx, arch.name()).unwrap();
            assert_eq!(launch.grid, [1, 1, 1]);
            insta::assert_snapshot!(format!("gemm_17x13x5_{}", arch.name()), ptx);
        }
        // sm_80 keeps mma.sync; sm_90a uses warpgroup MMA.
        assert!(mma::gemm(Arch::Sm80, "g", g).is_some());
        assert!(wgmma::gemm(Arch::Sm80, "g", g).is_none());
        assert!(
            Ptx(Arch::Sm90a)
                .gemm("g", g)
                .unwrap()
                .0
                .contains("wgmma.mma_async")
        );
        let (gm, epi, c) = bias_gelu_pair();
        for arch in ARCHS {
            let (ptx, launch) = Ptx(arch)
                .gemm_fused("gemm_bias_gelu", &gm, &epi, c)
                .unwrap();
            let rep = ptxas::assemble(&ptx, arch.name()).unwrap();
            assert_eq!(rep.len(), 1, "one entry: the epilogue is a .func");
            // 40 columns, 32 rows: blocks of 64x32 (mma) or 64x64 (wgmma).
            let gx = if arch == Arch::Sm80 { 2 } else { 1 };
            assert_eq!(launch.grid, [gx, 1, 1]);
            // The GELU's erf is libdevice's, inlined into the .func.
            assert!(ptx.contains(".visible .func gemm_bias_gelu_epi("));
            assert!(!ptx.contains("__nv_erff("));
            insta::assert_snapshot!(format!("gemm_bias_gelu_{}", arch.name()), ptx);
        }
    });
}
