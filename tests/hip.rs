//! The HIP printer (AMD gfx90a / gfx942): every kernel the conformance
//! suite produces compiles for both architectures, MFMA GEMM kernels
//! compile, readable snapshots of a few kernels, and the printed kernels
//! run on the host (through a small shim header) with the numbers the
//! reference interpreter gives.

use crate::common::{conformance_dir, repo};
use smelt_backends::cpu::Program;
use smelt_backends::gpu::hip::{Hip, kernels_only, toolchain};
use smelt_backends::gpu::{Arch, Printer};
use smelt_kernel::Scheduled;
use smelt_runtime::cpu::{Gemm, Step};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

fn require_tools() {
    for arch in [Arch::Gfx90a, Arch::Gfx942] {
        let missing = toolchain::missing_tools(arch);
        assert!(
            missing.is_empty(),
            "HIP tests need {} for {}: run scripts/prereqs.sh (Debian packages hipcc rocm-device-libs clang-22 llvm-22)",
            missing.join(", "),
            arch.name()
        );
    }
}

/// Every conformance case that builds with the flat (GPU) schedule: its
/// kernels and GEMMs. Returns (kernels, gemms, cases built, cases skipped).
fn conformance_kernels() -> (Vec<Scheduled>, Vec<Gemm>, usize, usize) {
    let dir = conformance_dir();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    let (mut kernels, mut gemms) = (Vec::new(), Vec::new());
    let (mut built, mut skipped) = (0, 0);
    for case in &cases {
        let Ok(g) = smelt_frontend::import_file(&case.join("model.onnx")) else {
            skipped += 1;
            continue;
        };
        let Ok(p) = Program::build_with(&g, smelt_kernel::schedule::flat) else {
            skipped += 1;
            continue;
        };
        built += 1;
        kernels.extend(p.kernels.iter().cloned());
        for s in &p.manifest().steps {
            if let Step::Gemm(gm) = s {
                gemms.push(gm.clone());
            }
        }
    }
    (kernels, gemms, built, skipped)
}

/// Kernels that print the same apart from their name compile the same.
fn dedupe(kernels: Vec<Scheduled>) -> Vec<Scheduled> {
    let mut seen = BTreeMap::new();
    for k in kernels {
        let mut anon = k.clone();
        anon.kernel.name = "k".into();
        seen.entry(smelt_kernel::print::scheduled(&anon))
            .or_insert(k);
    }
    // Unique entry names within a module.
    seen.into_values()
        .enumerate()
        .map(|(i, mut k)| {
            k.kernel.name = format!("{}_{i}", k.kernel.name);
            k
        })
        .collect()
}

fn gemm(dtype: &str, batch: u64, m: u64, n: u64, k: u64, trans_b: bool, beta: f64) -> Gemm {
    Gemm {
        dtype: dtype.into(),
        batch,
        m,
        n,
        k,
        a: 0,
        b: 1,
        c: 2,
        a_strides: [(m * k) as i64, k as i64, 1],
        b_strides: if trans_b {
            [(k * n) as i64, 1, k as i64]
        } else {
            [(k * n) as i64, n as i64, 1]
        },
        c_strides: [(m * n) as i64, n as i64, 1],
        alpha: 1.0,
        beta,
    }
}

/// Compiles `modules` for both architectures, the two compilers in
/// parallel threads; returns the failures.
fn compile_all(modules: &[(String, String)], dir: &Path) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = [Arch::Gfx90a, Arch::Gfx942]
            .into_iter()
            .map(|arch| {
                s.spawn(move || {
                    let t = Instant::now();
                    let mut errs = Vec::new();
                    for (name, src) in modules {
                        if let Err(e) = toolchain::compile(arch, src, dir, name) {
                            errs.push(e.to_string());
                        }
                    }
                    eprintln!(
                        "hip: {} modules compiled for {} in {:.1} s",
                        modules.len(),
                        arch.name(),
                        t.elapsed().as_secs_f64()
                    );
                    errs
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn hip_every_conformance_kernel_compiles_for_gfx90a_and_gfx942() {
    require_tools();
    let (kernels, gemms, built, skipped) = conformance_kernels();
    let total = kernels.len();
    let kernels = dedupe(kernels);
    eprintln!(
        "hip: {built} conformance cases built with the flat schedule, {skipped} skipped (import or build refused); {total} kernels, {} distinct",
        kernels.len()
    );
    assert!(kernels.len() > 500, "only {} kernels", kernels.len());
    // Every kernel prints (unsupported constructs would be an error here).
    let (mut modules, mut failed_print) = (Vec::new(), Vec::new());
    const PER_MODULE: usize = 400;
    for (i, chunk) in kernels.chunks(PER_MODULE).enumerate() {
        match Hip(Arch::Gfx942).module(chunk) {
            Ok(src) => modules.push((format!("conformance_{i}"), src)),
            Err(e) => failed_print.push(e.to_string()),
        }
    }
    assert!(
        failed_print.is_empty(),
        "printing failed: {failed_print:#?}"
    );
    // GEMMs of the suite (deduplicated) plus odd shapes: edges in m, n, k,
    // k below one MFMA step, batches, transposed B, accumulation.
    let mut gemms: Vec<Gemm> = gemms;
    gemms.extend([
        gemm("f32", 1, 1, 1, 1, false, 0.0),
        gemm("f32", 3, 17, 33, 5, true, 1.0),
        gemm("f32", 1, 100, 70, 129, false, 0.0),
        gemm("f64", 2, 31, 15, 7, false, 1.0),
        gemm("f64", 1, 64, 64, 64, true, 0.0),
    ]);
    let mut src = String::new();
    let mut names = std::collections::BTreeSet::new();
    let mut checked = 0;
    for (i, g) in gemms.iter().enumerate() {
        let key = format!("{g:?}");
        if !names.insert(key) {
            continue;
        }
        if let Some((s, _)) = Hip(Arch::Gfx942).gemm(&format!("gemm_{i}"), g) {
            // One module of many GEMMs: the first whole, then only the
            // kernels (from their leading comment) of the rest.
            if src.is_empty() {
                src = s;
            } else if let Some(at) = s.find("// C[b] = ") {
                src.push('\n');
                src.push_str(&s[at..]);
            }
            checked += 1;
        }
    }
    modules.push(("gemms".into(), src));
    // A fixed folder, kept after a failure so the sources can be read.
    let dir = std::env::temp_dir().join("smelt-hip-conformance");
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let errs = compile_all(&modules, &dir);
    eprintln!(
        "hip: {} kernels + {checked} MFMA GEMMs in {} modules, both archs, {:.1} s",
        kernels.len(),
        modules.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(errs.is_empty(), "{}", errs.join("\n\n"));
}

fn flat_kernels(smelt_file: &str) -> Vec<Scheduled> {
    let path = repo().join("tests/kernels").join(smelt_file);
    let g = smelt_ir::text::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Program::build_with(&g, smelt_kernel::schedule::flat)
        .unwrap()
        .kernels
}

#[test]
fn hip_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(repo().join("tests/gpu/hip/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for f in ["bias_gelu", "softmax", "layernorm"] {
            let m = Hip(Arch::Gfx942)
                .module(&flat_kernels(&format!("{f}.smelt")))
                .unwrap();
            insta::assert_snapshot!(format!("hip_{f}"), kernels_only(&m));
        }
        let (src, launch) = Hip(Arch::Gfx90a)
            .gemm("gemm_example", &gemm("f32", 2, 100, 70, 129, true, 1.0))
            .unwrap();
        insta::assert_snapshot!("hip_mfma_gemm", format!("{launch:?}\n{src}"));
    });
}

#[test]
fn hip_snapshot_kernels_compile() {
    require_tools();
    let dir = tempfile::tempdir().unwrap();
    let mut ks = Vec::new();
    for f in ["bias_gelu", "softmax", "layernorm", "where_cast"] {
        ks.extend(flat_kernels(&format!("{f}.smelt")));
    }
    let ks = dedupe(ks);
    let src = Hip(Arch::Gfx942).module(&ks).unwrap();
    let errs = compile_all(&[("snap".into(), src)], dir.path());
    assert!(errs.is_empty(), "{}", errs.join("\n\n"));
}
