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
use smelt_backends::gpu::ptx::{Ptx, mma, ptxas, tma, wgmma};
use smelt_backends::gpu::record::{ImplicitGemm, Recorder};
use smelt_backends::gpu::{self, Arch, Printer};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::Gemm;
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

/// A GEMM and the epilogue fused into it, with the index of C among the
/// epilogue's parameters.
type Pair = (Gemm, Scheduled, usize);

/// Everything `gpu::compile_for` emitted for the graphs added, recorded
/// through `Recorder` per architecture and deduplicated: flat kernels
/// (incl. kernel-IR GEMMs), tensor-core GEMMs and fused (GEMM, epilogue)
/// kernels.
#[derive(Default)]
struct Collected {
    kernels: Vec<Scheduled>,
    gemms: Vec<(Arch, Gemm)>,
    pairs: Vec<(Arch, Pair)>,
    implicit: Vec<(Arch, ImplicitGemm)>,
    seen: HashSet<String>,
    graphs: usize,
    skipped: usize,
}

impl Collected {
    /// Compiles `g` for both architectures (specialized on `inputs` where
    /// its shapes need them) and keeps what each compile emitted.
    fn add_graph(&mut self, g: &smelt_ir::Graph, inputs: &[smelt_ir::interp::Tensor]) {
        let mut recs = Vec::new();
        for arch in ARCHS {
            let rec = Recorder::new(arch);
            if gpu::compile_for_with(g, inputs, &rec).is_err() {
                self.skipped += 1;
                return;
            }
            recs.push((arch, rec));
        }
        self.graphs += 1;
        for (arch, rec) in recs {
            for mut k in rec.kernels.take() {
                // Kernels of different graphs share names; dedupe on the
                // body (flat kernels do not depend on the architecture).
                let name = std::mem::take(&mut k.kernel.name);
                if self.seen.insert(smelt_kernel::print::scheduled(&k)) {
                    k.kernel.name = format!("k{}_{name}", self.kernels.len());
                    self.kernels.push(k);
                }
            }
            for g in rec.gemms.take() {
                if self.seen.insert(format!("{} {:?}", arch.name(), anon(&g))) {
                    self.gemms.push((arch, g));
                }
            }
            for (g, mut k, c) in rec.fused.take() {
                let name = std::mem::take(&mut k.kernel.name);
                let key = format!(
                    "{} {:?} {c} {}",
                    arch.name(),
                    anon(&g),
                    smelt_kernel::print::scheduled(&k)
                );
                if self.seen.insert(key) {
                    k.kernel.name = format!("e{}_{name}", self.pairs.len());
                    self.pairs.push((arch, (g, k, c)));
                }
            }
            for (g, mut l, b, epi) in rec.implicit.take() {
                let name = std::mem::take(&mut l.kernel.name);
                let key = format!(
                    "{} {:?} {b} {} {}",
                    arch.name(),
                    anon(&g),
                    smelt_kernel::print::scheduled(&l),
                    epi.as_ref().map_or(String::new(), |(e, c)| format!(
                        "{c} {}",
                        smelt_kernel::print::scheduled(e)
                    ))
                );
                if self.seen.insert(key) {
                    l.kernel.name = format!("l{}_{name}", self.implicit.len());
                    self.implicit.push((arch, (g, l, b, epi)));
                }
            }
        }
    }
}

/// A product without its buffers (its identity for the printer).
fn anon(g: &Gemm) -> Gemm {
    Gemm {
        a: 0,
        b: 1,
        c: 2,
        ..g.clone()
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
        let Ok(g) = smelt_frontend::import_file(&case.join("model.onnx")) else {
            c.skipped += 1;
            continue;
        };
        let inputs: Vec<_> = (0..g.inputs.len())
            .map_while(|i| {
                let p = case.join(format!("test_data_set_0/input_{i}.pb"));
                smelt_frontend::tensor_io::read_tensor(&p)
                    .ok()
                    .map(|(_, t)| t)
            })
            .collect();
        c.add_graph(&g, &inputs);
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
/// otherwise the ones BENCHMARKS.md times (ResNet-50, BERT-base, MLP) are
/// generated into a temporary folder with `$SMELT_PYTHON` (~5 s, ~0.5 GB).
/// Returns the names of the models added.
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
            .args(["--only", "mlp", "resnet50", "bert_base"])
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
    c.add_graph(&g, &[]);
    c.add_graph(&opt, &[]);
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
/// broadcast A (batch stride 0), a transposed A; each in f32, f16 and
/// bf16 (those with 16-byte aligned rows are TMA-fed on sm_90a).
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
        c_dtype: None,
    };
    let mut v = vec![
        plain(1, 1, 1, 1),
        plain(1, 17, 13, 5),
        plain(3, 65, 33, 9),
        plain(1, 1, 1000, 768),
        plain(2, 128, 3072, 768),
        plain(1, 100, 72, 200),
    ];
    let mut t = plain(2, 31, 47, 29);
    t.b_strides = [(29 * 47) as i64, 1, 29];
    t.alpha = 0.125;
    t.beta = 1.0;
    v.push(t);
    let mut t = plain(2, 70, 90, 136);
    t.b_strides = [(136 * 90) as i64, 1, 136];
    t.beta = 1.0;
    v.push(t);
    // A given as K x M (M contiguous).
    let mut ta = plain(1, 80, 64, 48);
    ta.a_strides = [0, 1, 80];
    v.push(ta);
    let mut bc = plain(4, 20, 24, 16);
    bc.a_strides[0] = 0;
    v.push(bc);
    // Large enough for sm_90a's wide TMA blocks (128 x 128, dynamic
    // shared memory): row-major, B given as N x K, A given as K x M.
    v.push(plain(1, 2048, 2048, 2048));
    let mut wb = plain(2, 1152, 1024, 256);
    wb.b_strides = [(256 * 1024) as i64, 1, 256];
    v.push(wb);
    let mut wa = plain(1, 2048, 1536, 192);
    wa.a_strides = [0, 1, 2048];
    v.push(wa);
    let mut all = v.clone();
    for dtype in ["f16", "bf16"] {
        all.extend(v.iter().map(|g| Gemm {
            dtype: dtype.into(),
            ..g.clone()
        }));
    }
    all
}

/// Assembly jobs for GEMMs, each for the architecture whose compile
/// emitted it (the printer must accept it again).
fn gemm_jobs(gemms: &[(Arch, Gemm)]) -> Vec<Job> {
    gemms
        .iter()
        .enumerate()
        .map(|(i, (arch, g))| {
            let name = format!("gemm_{i}");
            Job {
                label: format!("{name} {g:?}"),
                arch: *arch,
                ptx: Ptx(*arch)
                    .gemm(&name, g)
                    .map(|(p, _)| p)
                    .ok_or_else(|| "the printer declined a GEMM it accepted before".into()),
            }
        })
        .collect()
}

fn fused_jobs(pairs: &[(Arch, Pair)]) -> Vec<Job> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, (arch, (g, epi, c)))| {
            let name = format!("gemm_fused_{i}");
            Job {
                label: format!("{name} {g:?} + {}", epi.kernel.name),
                arch: *arch,
                ptx: Ptx(*arch)
                    .gemm_fused(&name, g, epi, *c)
                    .map(|(p, _)| p)
                    .ok_or_else(|| "the printer declined a pair it fused before".into()),
            }
        })
        .collect()
}

/// Implicit GEMMs (Conv: B computed by its im2col loader), with their
/// fused epilogues, each for the architecture whose compile emitted it.
fn implicit_jobs(imps: &[(Arch, ImplicitGemm)]) -> Vec<Job> {
    imps.iter()
        .enumerate()
        .map(|(i, (arch, (g, l, b, epi)))| {
            let name = format!("gemm_implicit_{i}");
            Job {
                label: format!("{name} {g:?} <- {}", l.kernel.name),
                arch: *arch,
                ptx: Ptx(*arch)
                    .gemm_implicit(&name, g, l, *b, epi.as_ref().map(|(e, c)| (e, *c)))
                    .map(|(p, _)| p)
                    .ok_or_else(|| "the printer declined an implicit GEMM it took before".into()),
            }
        })
        .collect()
}

/// f16/bf16 graphs: plain and fused (bias + GELU) MatMuls, batched, odd
/// sizes, through the whole compile.
fn half_graphs(c: &mut Collected) {
    for t in ["f16", "bf16"] {
        for (m, k, n) in [(32, 48, 40), (17, 5, 13), (128, 256, 64)] {
            let src = format!(
                r#"graph "mm_{t}"(%x: {t}[{m},{k}], %w: {t}[{k},{n}], %b: {t}[{n}]) {{
  %y: {t}[{m},{n}] = FusedMatMul(%x, %w, %b, _) {{activation="Gelu"}}
  %z: {t}[{m},{n}] = MatMul(%x, %w)
  return %y, %z
}}"#
            );
            c.add_graph(&smelt_ir::text::parse(&src).unwrap(), &[]);
        }
        let src = format!(
            r#"graph "bmm_{t}"(%x: {t}[3,33,72], %w: {t}[3,72,24]) {{
  %y: {t}[3,33,24] = MatMul(%x, %w)
  return %y
}}"#
        );
        c.add_graph(&smelt_ir::text::parse(&src).unwrap(), &[]);
        // Attention at BERT-base's head shape, and grouped-query heads
        // with a causal mask: both products on tensor cores.
        let src = format!(
            r#"graph "attn_{t}"(%q: {t}[1,12,128,64], %k: {t}[1,12,128,64], %v: {t}[1,12,128,64]) {{
  %y: {t}[1,12,128,64] = Attention(%q, %k, %v)
  return %y
}}"#
        );
        c.add_graph(&smelt_ir::text::parse(&src).unwrap(), &[]);
        let src = format!(
            r#"graph "attn_gqa_{t}"(%q: {t}[2,8,33,64], %k: {t}[2,2,40,64], %v: {t}[2,2,40,64]) {{
  %y: {t}[2,8,33,64] = Attention(%q, %k, %v) {{is_causal=1}}
  return %y
}}"#
        );
        c.add_graph(&smelt_ir::text::parse(&src).unwrap(), &[]);
    }
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

/// Everything `gpu::compile_for` emits for the conformance cases, the
/// example and benchmark models and a few f16/bf16 graphs, recorded per
/// architecture, plus odd GEMM shapes in f32/f16/bf16, assembles for
/// sm_80 and sm_90a.
#[test]
fn ptx_every_kernel_assembles() {
    require_toolchain();
    let t0 = Instant::now();
    let mut c = Collected::default();
    conformance_graphs(&mut c);
    example_graphs(&mut c);
    half_graphs(&mut c);
    let models = benchmark_graphs(&mut c);
    let t_build = t0.elapsed();
    assert!(c.kernels.len() > 500, "only {} kernels", c.kernels.len());
    let t1 = Instant::now();
    let mut jobs = kernel_jobs(&c.kernels);
    let t_print = t1.elapsed();
    let n_program_gemms = c.gemms.len();
    let mut declined = 0;
    for g in odd_gemms() {
        for arch in ARCHS {
            if Ptx(arch).gemm("g", &g).is_some() {
                c.gemms.push((arch, g.clone()));
            } else {
                declined += 1;
            }
        }
    }
    // Every odd shape has a tensor-core kernel on both architectures.
    assert_eq!(declined, 0);
    for dtype in ["f16", "bf16"] {
        assert!(
            c.gemms.iter().any(|(_, g)| g.dtype == dtype)
                && c.pairs.iter().any(|(_, p)| p.0.dtype == dtype),
            "no {dtype} GEMM (plain and fused) was emitted"
        );
    }
    // Attention's scores: 16-bit operands, f32 C, on tensor cores on both
    // architectures (TMA-fed on sm_90a where the maps fit).
    let scores = |arch: Arch, dtype: &str| {
        c.gemms
            .iter()
            .map(|(a, g)| (*a, g))
            .chain(c.pairs.iter().map(|(a, p)| (*a, &p.0)))
            .filter(|(a, g)| *a == arch && g.dtype == dtype && g.c_dtype() == "f32")
            .map(|(_, g)| g.clone())
            .collect::<Vec<Gemm>>()
    };
    for dtype in ["f16", "bf16"] {
        assert!(
            !scores(Arch::Sm80, dtype).is_empty(),
            "no {dtype} scores GEMM"
        );
        assert!(
            scores(Arch::Sm90a, dtype)
                .iter()
                .any(|g| !Ptx(Arch::Sm90a).gemm_tensor_maps(g).is_empty()),
            "no TMA-fed {dtype} scores GEMM"
        );
    }
    let gj = gemm_jobs(&c.gemms);
    let fj = fused_jobs(&c.pairs);
    let on90 = |j: &&Job| j.arch == Arch::Sm90a;
    let text = |j: &Job, what: &str| j.ptx.as_ref().is_ok_and(|p| p.contains(what));
    let tc90: Vec<&Job> = gj.iter().chain(&fj).filter(on90).collect();
    let wgmma_jobs = tc90.iter().filter(|j| text(j, "wgmma.mma_async")).count();
    let tma_jobs = tc90
        .iter()
        .filter(|j| text(j, "cp.async.bulk.tensor"))
        .count();
    // Every sm_90a tensor-core GEMM is wgmma (it declines only strides
    // too large for its immediate offsets), and TMA feeds exactly those
    // whose operands tensor maps can view (f16/bf16 directly, f32 with the
    // TF32 split in shared memory).
    assert_eq!(wgmma_jobs, tc90.len());
    let sm90: Vec<&Gemm> = c
        .gemms
        .iter()
        .map(|(a, g)| (*a, g))
        .chain(c.pairs.iter().map(|(a, p)| (*a, &p.0)))
        .filter(|(a, _)| *a == Arch::Sm90a)
        .map(|(_, g)| g)
        .collect();
    let tma_fed = |g: &Gemm| !Ptx(Arch::Sm90a).gemm_tensor_maps(g).is_empty();
    let tma_expected = sm90.iter().filter(|g| tma_fed(g)).count();
    assert_eq!(tma_jobs, tma_expected);
    // The wide 16-bit TMA blocks (two warpgroups, a four-stage ring in
    // dynamic shared memory, one tile's products in flight) serve exactly
    // the products with enough of them to fill the GPU.
    let wide_jobs = tc90
        .iter()
        .filter(|j| text(j, ".extern .shared") && text(j, "wgmma.wait_group.sync.aligned 1"))
        .count();
    let wide_expected = sm90
        .iter()
        .filter(|g| g.dtype != "f32" && tma_fed(g) && tma::Shape::of(g) == tma::WIDE)
        .count();
    assert_eq!(wide_jobs, wide_expected);
    assert!(wide_jobs >= 6, "only {wide_jobs} wide TMA GEMMs");
    assert!(tma_jobs > 0, "no TMA-fed GEMM");
    let tma_f32 = sm90
        .iter()
        .filter(|g| g.dtype == "f32" && tma_fed(g))
        .count();
    let f32_90 = sm90.iter().filter(|g| g.dtype == "f32").count();
    assert!(tma_f32 > 0, "no TMA-fed f32 GEMM");
    // f32 TMA kernels split into TF32 hi/lo after the copy.
    assert!(
        tc90.iter()
            .filter(|j| text(j, "cp.async.bulk.tensor") && text(j, ".tf32.tf32"))
            .all(|j| text(j, "cvt.rna.tf32.f32") && text(j, "ld.shared.f32"))
    );
    let ij = implicit_jobs(&c.implicit);
    for arch in ARCHS {
        let n = c.implicit.iter().filter(|x| x.0 == arch).count();
        assert!(n > 0, "no implicit GEMM on {}", arch.name());
    }
    // The sm_90a implicit GEMMs are wgmma calling their loader; A (the
    // weights) comes by TMA exactly where a tensor map can view it.
    let ij90: Vec<&Job> = ij.iter().filter(|j| j.arch == Arch::Sm90a).collect();
    assert!(
        ij90.iter()
            .all(|j| text(j, "wgmma.mma_async") && text(j, "_loader"))
    );
    let tma_implicit = ij90
        .iter()
        .filter(|j| text(j, "cp.async.bulk.tensor"))
        .count();
    let tma_implicit_expected = c
        .implicit
        .iter()
        .filter(|(a, x)| *a == Arch::Sm90a && Ptx(*a).gemm_implicit_tensor_maps(&x.0).len() == 1)
        .count();
    assert_eq!(tma_implicit, tma_implicit_expected);
    assert!(tma_implicit > 0, "no TMA-fed implicit GEMM");
    let implicit_90 = ij90.len();
    let tma_labels: HashSet<String> = tc90
        .iter()
        .chain(&ij90)
        .filter(|j| text(j, "cp.async.bulk.tensor"))
        .map(|j| j.label.clone())
        .collect();
    let n_implicit_jobs = ij.len();
    let implicit_with_epi = c.implicit.iter().filter(|x| x.1.3.is_some()).count();
    let (n_gemm_jobs, n_fused_jobs) = (gj.len(), fj.len());
    let f32_pairs = c.pairs.iter().filter(|p| p.1.0.dtype == "f32").count();
    assert!(
        f32_pairs >= 5 * ARCHS.len(),
        "only {f32_pairs} f32 (GEMM, epilogue) pairs fused"
    );
    jobs.extend(gj);
    jobs.extend(fj);
    jobs.extend(ij);
    let t2 = Instant::now();
    let rows = assemble_all(jobs);
    let t_ptxas = t2.elapsed();
    let kernel_rows = rows.iter().filter(|r| !r.0.starts_with("gemm")).count();
    assert_eq!(
        kernel_rows,
        c.kernels.len() * ARCHS.len(),
        "ptxas reported a different number of entries than kernels printed"
    );
    let tma_rows: Vec<_> = rows.iter().filter(|r| tma_labels.contains(&r.0)).collect();
    assert_eq!(tma_rows.len(), tma_labels.len(), "one entry per TMA module");
    let tma_spills = tma_rows
        .iter()
        .filter(|r| r.2.spill_stores + r.2.spill_loads > 0)
        .count();
    assert_eq!(tma_spills, 0, "a TMA-fed GEMM spills");
    let tma_regs = tma_rows.iter().map(|r| r.2.registers).max().unwrap_or(0);
    let by_dtype = |v: &mut dyn Iterator<Item = &Gemm>| {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for g in v {
            *m.entry(g.dtype.as_str()).or_default() += 1;
        }
        format!("{m:?}")
    };
    let extra = format!(
        "benchmark models: {}\n{} graphs compiled per architecture ({} skipped: import or compile refused), \
         {} distinct flat kernels (incl. kernel-IR GEMMs); tensor-core GEMM modules (both archs): {} from \
         programs + {} odd shapes = {} {}, fused GEMM+epilogue modules: {} {}, implicit GEMMs: {} ({} with epilogue) {}; sm_90a: {} wgmma, {} of them \
         TMA-fed ({} of {} f32), implicit: {} of {} with A TMA-fed; TMA-fed entries: max registers {}, \
         {} with spills; build {:.1}s, PTX {:.1}s, ptxas {:.1}s\n",
        if models.is_empty() {
            "none".to_string()
        } else {
            models.join(", ")
        },
        c.graphs,
        c.skipped,
        c.kernels.len(),
        n_program_gemms,
        n_gemm_jobs - n_program_gemms,
        n_gemm_jobs,
        by_dtype(&mut c.gemms.iter().map(|x| &x.1)),
        n_fused_jobs,
        by_dtype(&mut c.pairs.iter().map(|x| &x.1.0)),
        n_implicit_jobs,
        implicit_with_epi,
        by_dtype(&mut c.implicit.iter().map(|x| &x.1.0)),
        wgmma_jobs,
        tma_jobs,
        tma_f32,
        f32_90,
        tma_implicit,
        implicit_90,
        tma_regs,
        tma_spills,
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

/// A 32x48 * 48x40 MatMul with bias and GELU (FusedMatMul): the GEMM
/// and epilogue that compile fuses.
fn bias_gelu_pair() -> Pair {
    let src = r#"graph "mm_bias_gelu"(%x: f32[32,48], %w: f32[48,40], %b: f32[40]) {
  %y: f32[32,40] = FusedMatMul(%x, %w, %b, _) {activation="Gelu"}
  return %y
}"#;
    let g = smelt_ir::text::parse(src).unwrap();
    let rec = Recorder::new(Arch::Sm80);
    gpu::compile_with(&g, &rec).unwrap();
    let mut pairs = rec.fused.take();
    assert_eq!(pairs.len(), 1, "one GEMM fused with its epilogue");
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
        // One bf16 GEMM per architecture: 100x200 * 200x72, rows 16-byte
        // aligned, so sm_90a feeds it by TMA.
        let bf = odd_gemms()
            .into_iter()
            .find(|g| g.dtype == "bf16" && (g.m, g.n, g.k) == (100, 72, 200))
            .unwrap();
        for arch in ARCHS {
            let (ptx, launch) = Ptx(arch).gemm("gemm_bf16_100x72x200", &bf).unwrap();
            ptxas::assemble(&ptx, arch.name()).unwrap();
            let want = if arch == Arch::Sm80 {
                // Blocks of 64 x 32 (mma.sync m16n8k16, 4 warps).
                [3, 2, 1]
            } else {
                // Blocks of 64 x 64 (wgmma m64n64k16), two tensor maps.
                assert_eq!(Ptx(arch).gemm_tensor_maps(&bf).len(), 2);
                assert!(ptx.contains("cp.async.bulk.tensor.2d"));
                [2, 2, 1]
            };
            assert_eq!(launch.grid, want);
            assert!(ptx.contains("cvt.rn.bf16.f32"));
            insta::assert_snapshot!(format!("gemm_bf16_100x72x200_{}", arch.name()), ptx);
        }
        assert!(Ptx(Arch::Sm80).gemm_tensor_maps(&bf).is_empty());
        // The same product in f32 on sm_90a: rows of 800 and 288 bytes,
        // so both operands come by TMA and are split into TF32 hi/lo in
        // shared memory.
        let f = Gemm {
            dtype: "f32".into(),
            ..bf.clone()
        };
        let (ptx, launch) = Ptx(Arch::Sm90a)
            .gemm("gemm_f32_100x72x200", &f)
            .unwrap();
        ptxas::assemble(&ptx, "sm_90a").unwrap();
        assert_eq!(launch.grid, [2, 2, 1]);
        assert_eq!(Ptx(Arch::Sm90a).gemm_tensor_maps(&f).len(), 2);
        assert!(ptx.contains("cp.async.bulk.tensor.2d") && ptx.contains("cvt.rna.tf32.f32"));
        assert!(!ptx.contains("ld.global.f32 xa"));
        insta::assert_snapshot!("gemm_f32_100x72x200_tma_sm_90a", ptx);
        // A bf16 product large enough for the wide TMA blocks: 128 x 128,
        // two warpgroups, a four-stage ring in dynamic shared memory.
        let wide = Gemm {
            m: 2048,
            n: 2048,
            k: 2048,
            a_strides: [0, 2048, 1],
            b_strides: [0, 2048, 1],
            c_strides: [0, 2048, 1],
            ..bf.clone()
        };
        let (ptx, launch) = Ptx(Arch::Sm90a).gemm("gemm_bf16_2048_wide", &wide).unwrap();
        let rep = ptxas::assemble(&ptx, "sm_90a").unwrap();
        assert_eq!((launch.grid, launch.block[0]), ([16, 16, 1], 256));
        assert!(launch.shared_bytes > 48 * 1024);
        assert!(rep.iter().all(|r| r.spill_stores + r.spill_loads == 0));
        insta::assert_snapshot!("gemm_bf16_2048_wide_tma_sm_90a", ptx);
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
        // A 3x3 convolution (padding 1, bias + Relu) as an implicit GEMM:
        // B (im2col) computed by the loader's .func, the epilogue fused.
        let src = r#"graph "conv3x3_relu"(%x: f32[1,3,9,9], %w: f32[5,3,3,3], %b: f32[5]) {
  %y: f32[1,5,9,9] = FusedConv(%x, %w, %b) {kernel_shape=[3, 3], pads=[1, 1, 1, 1], activation="Relu"}
  return %y
}"#;
        let cg = smelt_ir::text::parse(src).unwrap();
        for arch in ARCHS {
            let rec = Recorder::new(arch);
            gpu::compile_with(&cg, &rec).unwrap();
            let mut imps = rec.implicit.take();
            assert_eq!(imps.len(), 1, "one implicit GEMM");
            let (gm, l, b, epi) = imps.remove(0);
            // C = W[5, 27] * im2col[27, 81].
            assert_eq!((gm.m, gm.n, gm.k), (5, 81, 27));
            assert!(epi.is_some(), "bias + Relu fused");
            let (ptx, _) = Ptx(arch)
                .gemm_implicit("gemm_conv", &gm, &l, b, epi.as_ref().map(|(e, c)| (e, *c)))
                .unwrap();
            let rep = ptxas::assemble(&ptx, arch.name()).unwrap();
            assert_eq!(rep.len(), 1, "one entry: loader and epilogue are .funcs");
            assert!(ptx.contains("call (lr), gemm_conv_loader,"));
            assert!(ptx.contains("gemm_conv_epi"));
            // B is never read from memory.
            assert!(!ptx.contains("ld.global.f32 y") && !ptx.contains("ld.global.f32 xb"));
            insta::assert_snapshot!(format!("gemm_conv3x3_implicit_{}", arch.name()), ptx);
        }
        // With 4 input channels K = 36: W's rows are 144 bytes apart, so
        // on sm_90a the weights come by TMA while B is still computed.
        let src = r#"graph "conv4ch"(%x: f32[1,4,9,9], %w: f32[8,4,3,3]) {
  %y: f32[1,8,9,9] = Conv(%x, %w) {kernel_shape=[3, 3], pads=[1, 1, 1, 1]}
  return %y
}"#;
        let cg = smelt_ir::text::parse(src).unwrap();
        let rec = Recorder::new(Arch::Sm90a);
        gpu::compile_with(&cg, &rec).unwrap();
        let mut imps = rec.implicit.take();
        assert_eq!(imps.len(), 1, "one implicit GEMM");
        let (gm, l, b, epi) = imps.remove(0);
        assert_eq!((gm.m, gm.n, gm.k), (8, 81, 36));
        let pr = Ptx(Arch::Sm90a);
        let maps = pr.gemm_implicit_tensor_maps(&gm);
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].0, 0, "the map views A");
        let (ptx, launch) = pr
            .gemm_implicit("gemm_conv_tma", &gm, &l, b, epi.as_ref().map(|(e, c)| (e, *c)))
            .unwrap();
        assert_eq!(launch.grid, [2, 1, 1]);
        let rep = ptxas::assemble(&ptx, "sm_90a").unwrap();
        assert_eq!(rep.len(), 1);
        assert!(ptx.contains("call (lr), gemm_conv_tma_loader,"));
        // K tiles of 16: 3, all issued in the prologue, plus the refill.
        assert_eq!(ptx.matches("cp.async.bulk.tensor.2d").count(), 4);
        insta::assert_snapshot!("gemm_conv4ch_implicit_tma_sm_90a", ptx);
    });
}
