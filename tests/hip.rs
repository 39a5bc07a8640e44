//! The HIP printer (AMD gfx90a / gfx942): every kernel the conformance
//! suite produces compiles for both architectures, MFMA GEMM kernels
//! compile, readable snapshots of a few kernels, and the printed kernels
//! run on the host (through a small shim header) with the numbers the
//! reference interpreter gives.

use crate::common::{conformance_dir, repo};
use smelt_backends::cpu::Program;
use smelt_backends::gpu::hip::{Hip, kernels_only, storage_c, toolchain};
use smelt_backends::gpu::record::{ImplicitGemm, Recorder};
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

/// A GEMM and the elementwise epilogue the GPU program may fuse into it:
/// a `Step::Gemm` immediately followed by a kernel step whose kernel is an
/// epilogue over C (its name says so, C is one of its arguments, its
/// domain has C's elements: C's shape, or a view of it) with C dense
/// row-major. `usize` is C's position
/// among the epilogue's parameters.
type Fusable = (Gemm, Scheduled, usize);

fn fusable_pairs(p: &Program) -> Vec<Fusable> {
    (0..p.manifest().steps.len())
        .filter_map(|i| fusable_at(p, i))
        .collect()
}

/// The pair starting at step `i`, if steps `i` and `i + 1` are one.
fn fusable_at(p: &Program, i: usize) -> Option<Fusable> {
    let m = p.manifest();
    let (Step::Gemm(g), Step::Kernel { kernel, args, .. }) = (m.steps.get(i)?, m.steps.get(i + 1)?)
    else {
        return None;
    };
    let sk = p.kernels.get(*kernel)?;
    let c_param = args.iter().position(|&a| a == g.c)?;
    let (mm, n) = (g.m as i64, g.n as i64);
    let dense =
        g.c_strides[2] == 1 && g.c_strides[1] == n && (g.batch == 1 || g.c_strides[0] == mm * n);
    // Conv's epilogue runs over an (N, M, H*W) view of its 4-D output:
    // the same elements in the same row-major order as C's buffer.
    let c_elems: u64 = m.buffers.get(g.c)?.shape.iter().product();
    let ok = sk.kernel.name.contains("epilogue")
        && dense
        && sk.kernel.points() == c_elems
        && c_elems == g.batch * g.m * g.n;
    ok.then(|| (g.clone(), sk.clone(), c_param))
}

/// What `gpu::compile_for` emits for every conformance case it compiles
/// (specialized on the case's inputs where shapes depend on them): flat
/// kernels, tensor-core GEMMs and fused (GEMM, epilogue) kernels, recorded
/// through the printer. Returns (kernels, gemms, fused, built, skipped).
fn conformance_kernels() -> (
    Vec<Scheduled>,
    Vec<Gemm>,
    Vec<Fusable>,
    Vec<ImplicitGemm>,
    usize,
    usize,
) {
    let dir = conformance_dir();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    let rec = Recorder::new(Arch::Gfx942);
    let (mut built, mut skipped) = (0, 0);
    for case in &cases {
        let Ok(g) = smelt_frontend::import_file(&case.join("model.onnx")) else {
            skipped += 1;
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
        if smelt_backends::gpu::compile_for_with(&g, &inputs, &rec).is_err() {
            skipped += 1;
            continue;
        }
        built += 1;
    }
    (
        rec.kernels.take(),
        rec.gemms.take(),
        rec.fused.take(),
        rec.implicit.take(),
        built,
        skipped,
    )
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
        c_dtype: None,
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
    let (kernels, gemms, pairs, implicit, built, skipped) = conformance_kernels();
    let total = kernels.len();
    let kernels = dedupe(kernels);
    eprintln!(
        "hip: {built} conformance cases compiled for the GPU, {skipped} skipped (import or compile refused); {total} kernels, {} distinct",
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
        // 16-bit storage, f32 accumulation: k below one 16-wide MFMA step,
        // k not a multiple of 16, edges in m and n, batches, transposed B,
        // accumulation into C.
        gemm("f16", 1, 1, 1, 1, false, 0.0),
        gemm("f16", 3, 17, 33, 5, true, 1.0),
        gemm("f16", 1, 100, 70, 129, false, 0.0),
        gemm("bf16", 2, 31, 15, 7, false, 1.0),
        gemm("bf16", 1, 64, 64, 64, true, 0.0),
        gemm("bf16", 4, 65, 130, 33, false, 0.0),
    ]);
    // One module of GEMMs per dtype (their vector types and helpers
    // differ): the first whole, then only the kernels (from their leading
    // comment) of the rest.
    let mut by_dtype: BTreeMap<String, String> = BTreeMap::new();
    let mut names = std::collections::BTreeSet::new();
    let mut checked = 0;
    for (i, g) in gemms.iter().enumerate() {
        let key = format!("{g:?}");
        if !names.insert(key) {
            continue;
        }
        if let Some((s, _)) = Hip(Arch::Gfx942).gemm(&format!("gemm_{i}"), g) {
            let src = by_dtype.entry(g.dtype.clone()).or_default();
            if src.is_empty() {
                *src = s;
            } else if let Some(at) = s.find("// C[b] = ") {
                src.push('\n');
                src.push_str(&s[at..]);
            }
            checked += 1;
        }
    }
    let per_dtype: BTreeMap<&str, usize> = by_dtype
        .iter()
        .map(|(d, src)| (d.as_str(), src.matches("extern \"C\" __global__").count()))
        .collect();
    eprintln!("hip: distinct MFMA GEMMs per dtype: {per_dtype:?}");
    for want in ["f32", "f64", "f16", "bf16"] {
        assert!(by_dtype.contains_key(want), "no {want} MFMA GEMM compiled");
    }
    for (dt, src) in by_dtype {
        modules.push((format!("gemms_{dt}"), src));
    }
    // Every (GEMM, epilogue) pair fused: one module each (each carries
    // its own prelude and device function).
    let fused = fused_modules(&pairs);
    eprintln!(
        "hip: {} fusable (GEMM, epilogue) pairs in the suite, {} distinct",
        pairs.len(),
        fused.len()
    );
    // The suite has few such pairs (none at the time of writing: what
    // follows its GEMMs is attention masking, casts, transposes); the
    // graphs of `FUSABLE` cover fusion for sure.
    let mut fused = fused;
    let ours = fused_modules(
        &FUSABLE
            .iter()
            .flat_map(|t| fusable_pairs(&flat_program(t)))
            .collect::<Vec<_>>(),
    );
    assert!(
        ours.len() >= FUSABLE.len(),
        "{} fused GEMMs from {} graphs",
        ours.len(),
        FUSABLE.len()
    );
    for (name, src) in ours {
        fused.push((format!("graph_{name}"), src));
    }
    let n_fused = fused.len();
    modules.extend(fused);
    // Every implicit GEMM (Conv's im2col computed inside the GEMM) the
    // suite recorded, and those of the `CONVS` graphs.
    let mut implicit = implicit;
    let n_suite = implicit.len();
    for t in CONVS {
        let rec = Recorder::new(Arch::Gfx942);
        let g = smelt_ir::text::parse(t).unwrap();
        smelt_backends::gpu::compile_with(&g, &rec).unwrap();
        implicit.extend(rec.implicit.take());
    }
    let implicit = implicit_modules(&implicit);
    eprintln!(
        "hip: {n_suite} implicit GEMMs in the suite; {} distinct with the CONVS graphs'",
        implicit.len()
    );
    assert!(n_suite > 0, "no implicit GEMM in the suite");
    let n_fused = n_fused + implicit.len();
    modules.extend(implicit);
    // Kept after a failure so the sources can be read; one per process,
    // since compilers map their inputs and another run must not rewrite
    // them underneath (clang dies with SIGBUS).
    let dir = std::env::temp_dir().join(format!("smelt-hip-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let t = Instant::now();
    let errs = compile_all(&modules, &dir);
    eprintln!(
        "hip: {} kernels + {checked} MFMA GEMMs + {n_fused} fused or implicit GEMMs in {} modules, both archs, {:.1} s",
        kernels.len(),
        modules.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(errs.is_empty(), "{}", errs.join("\n\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The fused module of each distinct pair; every pair must fuse.
fn fused_modules(pairs: &[Fusable]) -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (g, sk, c_param) in pairs {
        let mut anon = sk.clone();
        anon.kernel.name = "epilogue".into();
        let key = (
            format!("{g:?}"),
            smelt_kernel::print::scheduled(&anon),
            *c_param,
        );
        if !seen.insert(key) {
            continue;
        }
        let name = format!("fused_{}", out.len());
        let (src, _) = Hip(Arch::Gfx942)
            .gemm_fused(&name, g, sk, *c_param)
            .unwrap_or_else(|| panic!("{}: no fused GEMM for {g:?}", sk.kernel.name));
        out.push((name, src));
    }
    out
}

/// The module of each distinct implicit GEMM; every one must print.
fn implicit_modules(list: &[ImplicitGemm]) -> Vec<(String, String)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (g, loader, b_param, epi) in list {
        let mut anon = loader.clone();
        anon.kernel.name = "loader".into();
        let epi_key = epi.as_ref().map(|(e, c)| {
            let mut e = e.clone();
            e.kernel.name = "epilogue".into();
            (smelt_kernel::print::scheduled(&e), *c)
        });
        let key = (
            format!("{g:?}"),
            smelt_kernel::print::scheduled(&anon),
            *b_param,
            epi_key,
        );
        if !seen.insert(key) {
            continue;
        }
        let name = format!("implicit_{}", out.len());
        let (src, _) = Hip(Arch::Gfx942)
            .gemm_implicit(
                &name,
                g,
                loader,
                *b_param,
                epi.as_ref().map(|(e, c)| (e, *c)),
            )
            .unwrap_or_else(|| panic!("{}: no implicit GEMM for {g:?}", loader.kernel.name));
        out.push((name, src));
    }
    out
}

/// A graph in smelt's text form, built for the GPU (flat schedule, f16/bf16
/// products as GEMM steps): its program.
fn flat_program(text: &str) -> Program {
    let g = smelt_ir::text::parse(text).unwrap();
    Program::build_gpu(&g).unwrap()
}

/// `gelu(x W + b)` as one FusedMatMul (what the optimizer makes of a
/// transformer's FFN up-projection): a GEMM, then a bias + GELU epilogue.
const MATMUL_BIAS_GELU: &str = r#"graph "matmul_bias_gelu"(%x: f32[2,40,24], %w: f32[24,72], %b: f32[72]) {
  %y: f32[2,40,72] = FusedMatMul(%x, %w, %b, _) {activation="Gelu"}
  return %y
}
"#;

/// Graphs whose GEMMs all get a fusable epilogue: f32 and f64, bias,
/// activation, residual, a batched product, Conv's per-channel bias over a
/// 4-D output.
const FUSABLE: &[&str] = &[
    MATMUL_BIAS_GELU,
    r#"graph "matmul_res"(%x: f64[3,5,7], %w: f64[3,7,9], %b: f64[9], %r: f64[3,5,9]) {
  %y: f64[3,5,9] = FusedMatMul(%x, %w, %b, %r) {activation="Relu"}
  return %y
}
"#,
    r#"graph "matmul_sigmoid"(%x: f32[33,17], %w: f32[17,65]) {
  %y: f32[33,65] = FusedMatMul(%x, %w, _, _) {activation="Sigmoid"}
  return %y
}
"#,
    r#"graph "conv_bias"(%x: f32[2,3,8,8], %w: f32[4,3,3,3], %b: f32[4]) {
  %y: f32[2,4,6,6] = Conv(%x, %w, %b) {kernel_shape=[3, 3]}
  return %y
}
"#,
    MATMUL_BIAS_GELU_F16,
    // Sigmoid, not a residual + Relu: the fused epilogue reads C already
    // rounded to bf16 (as the unfused program does), so where a residual
    // cancels C the error is half an ulp of C, not of the output; the
    // interpreter rounds once. Sigmoid damps that error (slope <= 1/4).
    r#"graph "matmul_sigmoid_bf16"(%x: bf16[2,19,37], %w: bf16[2,37,21], %b: bf16[21]) {
  %y: bf16[2,19,21] = FusedMatMul(%x, %w, %b, _) {activation="Sigmoid"}
  return %y
}
"#,
];

/// Convolutions whose im2col the GPU program folds into the GEMM
/// (implicit GEMM): 3x3 with padding 1 at strides 1 and 2 with bias and
/// Relu (the epilogue fused as well), odd sizes (n = H*W not a multiple
/// of the 64-wide tile, k = C*9 not a multiple of 4), a batch, f64, and
/// one with no bias (no epilogue).
const CONVS: &[&str] = &[
    r#"graph "conv3x3_relu"(%x: f32[2,3,9,9], %w: f32[5,3,3,3], %b: f32[5]) {
  %y: f32[2,5,9,9] = FusedConv(%x, %w, %b) {kernel_shape=[3, 3], pads=[1, 1, 1, 1], activation="Relu"}
  return %y
}
"#,
    r#"graph "conv3x3_s2_relu"(%x: f32[1,4,11,11], %w: f32[6,4,3,3], %b: f32[6]) {
  %y: f32[1,6,6,6] = FusedConv(%x, %w, %b) {kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2], activation="Relu"}
  return %y
}
"#,
    r#"graph "conv3x3_f64"(%x: f64[1,2,7,7], %w: f64[3,2,3,3]) {
  %y: f64[1,3,7,7] = Conv(%x, %w) {kernel_shape=[3, 3], pads=[1, 1, 1, 1]}
  return %y
}
"#,
];

/// `gelu(x W + b)` in f16 (f32 accumulation): k = 40 is not a multiple of
/// the MFMA's 16.
const MATMUL_BIAS_GELU_F16: &str = r#"graph "matmul_bias_gelu_f16"(%x: f16[2,33,40], %w: f16[40,72], %b: f16[72]) {
  %y: f16[2,33,72] = FusedMatMul(%x, %w, %b, _) {activation="Gelu"}
  return %y
}
"#;

/// Plain f16/bf16 products (MFMA GEMMs with f32 accumulation): odd m, n,
/// k (k below one 16-wide step, k = 16 + 1), a batch with B per batch, a
/// shared B (one tall GEMM), a row-vector times matrix, an edge tile of
/// several blocks.
const MATMULS_16: &[&str] = &[
    r#"graph "mm_f16"(%a: f16[37,45], %b: f16[45,29]) {
  %y: f16[37,29] = MatMul(%a, %b)
  return %y
}
"#,
    r#"graph "mm_bf16_batched"(%a: bf16[3,17,17], %b: bf16[3,17,33]) {
  %y: bf16[3,17,33] = MatMul(%a, %b)
  return %y
}
"#,
    r#"graph "mm_bf16_k5"(%a: bf16[2,70,5], %b: bf16[5,66]) {
  %y: bf16[2,70,66] = MatMul(%a, %b)
  return %y
}
"#,
    r#"graph "mm_f16_vec"(%a: f16[1,130], %b: f16[130,3]) {
  %y: f16[1,3] = MatMul(%a, %b)
  return %y
}
"#,
    r#"graph "mm_bf16_big"(%a: bf16[129,64], %b: bf16[64,131]) {
  %y: bf16[129,131] = MatMul(%a, %b)
  return %y
}
"#,
];

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
        // bf16 in, f32 accumulation, one rounding at the store; k = 20 is
        // one 16-wide MFMA step plus a zero-padded one. The prelude (the
        // conversions it uses) is left out of the snapshot.
        let (src, launch) = Hip(Arch::Gfx942)
            .gemm("gemm_bf16", &gemm("bf16", 2, 40, 24, 20, true, 1.0))
            .unwrap();
        let at = src.find("typedef float smelt_f32x4").unwrap();
        insta::assert_snapshot!("hip_mfma_gemm_bf16", format!("{launch:?}\n{}", &src[at..]));
        let p = flat_program(MATMUL_BIAS_GELU);
        let pairs = fusable_pairs(&p);
        assert_eq!(pairs.len(), 1, "one GEMM + epilogue pair");
        let (g, sk, c_param) = &pairs[0];
        let (src, launch) = Hip(Arch::Gfx942)
            .gemm_fused("gemm_bias_gelu", g, sk, *c_param)
            .unwrap();
        // The prelude and format helpers are the same in every module.
        let at = src.find("// Kernel-IR kernel").unwrap();
        insta::assert_snapshot!(
            "hip_mfma_gemm_bias_gelu",
            format!("{launch:?}\n{}", &src[at..])
        );
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
    let p = flat_program(MATMUL_BIAS_GELU);
    let fused = fused_modules(&fusable_pairs(&p));
    assert_eq!(fused.len(), 1);
    let mut modules = vec![("snap".to_string(), src)];
    modules.extend(fused);
    let errs = compile_all(&modules, dir.path());
    assert!(errs.is_empty(), "{}", errs.join("\n\n"));
}

/// Raw little-endian bytes of a conformance input, for the dtypes the host
/// check feeds (`None` for others: the case is skipped).
fn tensor_bytes(t: &smelt_ir::interp::tensor::Tensor) -> Option<Vec<u8>> {
    use smelt_ir::DType;
    use smelt_ir::interp::tensor::Storage;
    Some(match (&t.data, t.dtype) {
        (Storage::F(v), DType::F32) => v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect(),
        (Storage::F(v), DType::F64) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (Storage::I(v), DType::I64) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        (Storage::I(v), DType::I32) => v.iter().flat_map(|x| (*x as i32).to_le_bytes()).collect(),
        (Storage::I(v), DType::I8) => v.iter().map(|x| *x as i8 as u8).collect(),
        (Storage::U(v), DType::U8) => v.iter().map(|x| *x as u8).collect(),
        (Storage::B(v), DType::Bool) => v.iter().map(|x| u8::from(*x)).collect(),
        // The IR's own encoding (the values are already rounded to the dtype).
        (Storage::F(_), DType::F16 | DType::BF16) => t.to_data().ok()?.raw()?.to_vec(),
        _ => return None,
    })
}

fn decode(dtype: &str, b: &[u8]) -> Option<Vec<f64>> {
    let w = |n: usize| b.chunks_exact(n);
    Some(match dtype {
        "f32" => w(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "f64" => w(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        "i64" => w(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "i32" => w(4)
            .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f64)
            .collect(),
        "bf16" => w(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16) as f64)
            .collect(),
        "f16" => w(2)
            .map(|c| f16_value(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        "i8" => b.iter().map(|x| *x as i8 as f64).collect(),
        "u8" | "bool" => b.iter().map(|x| *x as f64).collect(),
        _ => return None,
    })
}

/// The value of IEEE binary16 bits (exact in f64).
fn f16_value(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let (e, m) = (i32::from((h >> 10) & 0x1f), f64::from(h & 0x3ff));
    sign * match e {
        0 => m * 2f64.powi(-24),
        31 if m == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + m / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Attention whose two products are GEMM steps (MFMA on AMD, mma/wgmma
/// on NVIDIA): f16/bf16 with f32 scores, grouped-query heads stacked as
/// rows of one matrix per key head (4-D, and 3-D decoding one row through
/// a KV cache), masks added to the GEMM's scores, 3-D heads addressed in
/// place or, with several batches and rows, copied to [b, h, s, d] and
/// back.
const ATTENTIONS: &[&str] = &[
    r#"graph "attn_f16"(%q: f16[2,3,19,24], %k: f16[2,3,21,24], %v: f16[2,3,21,40]) {
  %y: f16[2,3,19,40] = Attention(%q, %k, %v)
  return %y
}
"#,
    r#"graph "attn_bf16_gqa_causal"(%q: bf16[1,6,17,16], %k: bf16[1,2,17,16], %v: bf16[1,2,17,16]) {
  %y: bf16[1,6,17,16] = Attention(%q, %k, %v) {is_causal=1}
  return %y
}
"#,
    r#"graph "attn_f16_3d_mask"(%q: f16[1,9,64], %k: f16[1,11,64], %v: f16[1,11,64], %m: f16[9,11]) {
  %y: f16[1,9,64] = Attention(%q, %k, %v, %m) {q_num_heads=4, kv_num_heads=4}
  return %y
}
"#,
    r#"graph "attn_f16_3d_gqa_decode"(%q: f16[3,1,64], %k: f16[3,1,32], %v: f16[3,1,32], %pk: f16[3,2,12,16], %pv: f16[3,2,12,16]) {
  %y: f16[3,1,64], %k2: f16[3,2,13,16], %v2: f16[3,2,13,16] = Attention(%q, %k, %v, _, %pk, %pv) {q_num_heads=4, kv_num_heads=2}
  return %y, %k2, %v2
}
"#,
    r#"graph "attn_bf16_3d_batched_gqa"(%q: bf16[2,7,48], %k: bf16[2,9,24], %v: bf16[2,9,24]) {
  %y: bf16[2,7,48] = Attention(%q, %k, %v) {q_num_heads=4, kv_num_heads=2}
  return %y
}
"#,
    r#"graph "attn_f32_gqa"(%q: f32[2,4,5,8], %k: f32[2,2,7,8], %v: f32[2,2,7,8]) {
  %y: f32[2,4,5,8] = Attention(%q, %k, %v) {scale=0.25}
  return %y
}
"#,
];

/// A program's printed HIP modules run on the host (the shim header in
/// tests/gpu/hip/host): flat kernels one thread at a time, MFMA GEMMs (the
/// builtins emulated) with each block's 256 threads as host threads. With
/// `fuse`, every fusable (GEMM, epilogue) pair runs as one fused GEMM.
/// Returns the outputs decoded to f64, or `None` when the program is out
/// of scope (host steps, dtypes the harness does not decode, a GEMM with
/// no MFMA kernel).
fn run_program(
    name: &str,
    p: &Program,
    inputs: &[Vec<u8>],
    work: &Path,
    fuse: bool,
) -> Option<Result<Vec<Vec<f64>>, String>> {
    use smelt_runtime::cpu::Place;
    let m = p.manifest();
    let hip = Hip(Arch::Gfx942);
    let flat = match hip.module(&p.kernels) {
        Ok(m) => m,
        Err(e) => return Some(Err(e.to_string())),
    };
    let dir = work.join(name);
    std::fs::create_dir_all(&dir).ok()?;
    // Each module in its own namespace: every module carries the prelude.
    let mut drv = String::from(
        "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <thread>\n#include <hip/hip_runtime.h>\n",
    );
    let mut modules = vec![flat];
    let mut body = String::new();
    // Buffers: the arena (one allocation, offsets as planned), weights
    // and inputs each their own.
    writeln_str(
        &mut body,
        &format!(
            "  uint8_t* arena = (uint8_t*)calloc({} + 64, 1);",
            m.arena_bytes
        ),
    );
    for (i, b) in m.buffers.iter().enumerate() {
        let data = match b.place {
            Place::Arena { offset } => {
                writeln_str(&mut body, &format!("  uint8_t* b{i} = arena + {offset};"));
                continue;
            }
            Place::Weight { offset } => p
                .weights()
                .get(offset as usize..(offset + b.bytes) as usize)?,
            Place::Input { index } => inputs.get(index)?.as_slice(),
        };
        if data.len() as u64 != b.bytes {
            return None;
        }
        std::fs::write(dir.join(format!("b{i}.bin")), data).ok()?;
        writeln_str(
            &mut body,
            &format!(
                "  uint8_t* b{i} = (uint8_t*)calloc({} + 64, 1); {{ FILE* f = fopen(\"b{i}.bin\", \"rb\"); fread(b{i}, 1, {}, f); fclose(f); }}",
                b.bytes, b.bytes
            ),
        );
    }
    let ptr = |buf: usize, ty: smelt_kernel::Ty| format!("({}*)b{buf}", storage_c(ty));
    let mut skip_next = false;
    let mut skip = 0usize;
    let dtype_ty = |d: &str| match d {
        "f32" => Some(smelt_kernel::Ty::F32),
        "f64" => Some(smelt_kernel::Ty::F64),
        "f16" => Some(smelt_kernel::Ty::F16),
        "bf16" => Some(smelt_kernel::Ty::BF16),
        _ => None,
    };
    let launch_gemm = |body: &mut String,
                       ns: &str,
                       kname: &str,
                       grid: [u32; 3],
                       args: &[String]| {
        let [gx, gy, gz] = grid;
        writeln_str(
            body,
            &format!(
                "  for (int64_t z = 0; z < {gz}; ++z) for (int64_t y = 0; y < {gy}; ++y) for (int64_t x = 0; x < {gx}; ++x) {{\n    std::thread ts[256];\n    for (int t = 0; t < 256; ++t) ts[t] = std::thread([=] {{\n      smelt_host_block = x; smelt_host_block_y = y; smelt_host_block_z = z; smelt_host_thread = t;\n      {ns}::{kname}({});\n    }});\n    for (auto& t : ts) t.join();\n  }}",
                args.join(", ")
            ),
        );
    };
    for (step, s) in m.steps.iter().enumerate() {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if skip > 0 {
            skip -= 1;
            continue;
        }
        // With `fuse`, Conv's im2col followed by its GEMM runs as one
        // implicit GEMM (with the GEMM's epilogue fused where there is
        // one), as `gpu::compile` does it; the printer must accept it.
        if fuse
            && let Step::Kernel { kernel, args, .. } = s
            && let Some(Step::Gemm(g)) = m.steps.get(step + 1)
            && let Some(loader) = p.kernels.get(*kernel)
            && loader.kernel.name.contains("im2col")
            && let Some(b_param) = args.iter().position(|&a| a == g.b)
        {
            let ty = dtype_ty(&g.dtype)?;
            let kname = format!("gemm{}", modules.len());
            let mut a = vec![ptr(g.a, ty), ptr(g.b, ty), ptr(g.c, dtype_ty(g.c_dtype())?)];
            a.extend(
                args.iter()
                    .zip(&loader.kernel.params)
                    .map(|(x, prm)| ptr(*x, prm.ty)),
            );
            let epi = fusable_at(p, step + 1);
            if let Some((_, sk, _)) = &epi {
                let Step::Kernel { args: ea, .. } = m.steps.get(step + 2)? else {
                    return None;
                };
                a.extend(
                    ea.iter()
                        .zip(&sk.kernel.params)
                        .map(|(x, prm)| ptr(*x, prm.ty)),
                );
            }
            let Some((src, launch)) = hip.gemm_implicit(
                &kname,
                g,
                loader,
                b_param,
                epi.as_ref().map(|(_, sk, c)| (sk, *c)),
            ) else {
                return Some(Err(format!("{name}: step {step}: no implicit GEMM")));
            };
            skip = if epi.is_some() { 2 } else { 1 };
            let ns = format!("m{}", modules.len());
            modules.push(src);
            launch_gemm(&mut body, &ns, &kname, launch.grid, &a);
            continue;
        }
        match s {
            Step::Kernel {
                kernel,
                args,
                parallel_extent,
                ..
            } => {
                let k = &p.kernels.get(*kernel)?.kernel;
                let ptrs: Vec<String> = args
                    .iter()
                    .zip(&k.params)
                    .map(|(a, prm)| ptr(*a, prm.ty))
                    .collect();
                let blocks = parallel_extent.div_ceil(256).max(1);
                writeln_str(
                    &mut body,
                    &format!(
                        "  smelt_host_threads = {};\n  for (int64_t blk = 0; blk < {blocks}; ++blk)\n    for (int64_t t = 0; t < 256; ++t) {{\n      smelt_host_block = blk; smelt_host_thread = t;\n      m0::{}({}, {parallel_extent});\n    }}",
                        blocks * 256,
                        k.name,
                        ptrs.join(", ")
                    ),
                );
            }
            Step::Gemm(g) => {
                let ty = dtype_ty(&g.dtype)?;
                let kname = format!("gemm{}", modules.len());
                let mut args = vec![ptr(g.a, ty), ptr(g.b, ty), ptr(g.c, dtype_ty(g.c_dtype())?)];
                let pair = if fuse { fusable_at(p, step) } else { None };
                let (src, launch) = match pair {
                    Some((_, sk, c_param)) => {
                        // The epilogue is the next step: its arguments follow.
                        let Step::Kernel { args: ea, .. } = m.steps.get(step + 1)? else {
                            return None;
                        };
                        args.extend(
                            ea.iter()
                                .zip(&sk.kernel.params)
                                .map(|(a, prm)| ptr(*a, prm.ty)),
                        );
                        skip_next = true;
                        hip.gemm_fused(&kname, g, &sk, c_param)?
                    }
                    None => hip.gemm(&kname, g)?,
                };
                let ns = format!("m{}", modules.len());
                modules.push(src);
                launch_gemm(&mut body, &ns, &kname, launch.grid, &args);
            }
            Step::Host { .. } => return None,
        }
    }
    for (i, o) in m.outputs.iter().enumerate() {
        let b = m.buffers.get(o.buffer)?;
        writeln_str(
            &mut body,
            &format!(
                "  {{ FILE* f = fopen(\"out{i}.bin\", \"wb\"); fwrite(b{}, 1, {}, f); fclose(f); }}",
                o.buffer, b.bytes
            ),
        );
    }
    for (i, text) in modules.iter().enumerate() {
        drv.push_str(&format!(
            "namespace m{i} {{\n{text}\n}}  // namespace m{i}\n"
        ));
    }
    drv.push_str("\nint main() {\n");
    drv.push_str(&body);
    drv.push_str("  return 0;\n}\n");
    std::fs::write(dir.join("driver.cpp"), &drv).ok()?;
    let shim = repo().join("tests/gpu/hip/host");
    let cc = std::process::Command::new("clang++-22")
        .current_dir(&dir)
        .args([
            "-std=c++17",
            "-O1",
            "-fwrapv",
            "-fbracket-depth=4096",
            "-pthread",
            "-w",
            "-I",
        ])
        .arg(&shim)
        .args(["driver.cpp", "-o", "driver"])
        .output()
        .ok()?;
    if !cc.status.success() {
        return Some(Err(format!(
            "{name}: host compile failed:\n{}",
            String::from_utf8_lossy(&cc.stderr)
        )));
    }
    let run = std::process::Command::new(dir.join("driver"))
        .current_dir(&dir)
        .output()
        .ok()?;
    if !run.status.success() {
        return Some(Err(format!("{name}: driver failed: {}", run.status)));
    }
    let mut outs = Vec::new();
    for (i, o) in m.outputs.iter().enumerate() {
        let b = m.buffers.get(o.buffer)?;
        outs.push(decode(
            &b.dtype,
            &std::fs::read(dir.join(format!("out{i}.bin"))).ok()?,
        )?);
    }
    Some(Ok(outs))
}

/// (rtol, atol) for an output of `dtype`. 32/64-bit: 1e-4, 1e-6. The
/// 16-bit GEMMs sum in f32 and round once to the storage type, while the
/// reference rounds the exact result once: the two differ by at most one
/// unit in the last place, 2^-10 (f16) or 2^-7 (bf16) relative, plus f32
/// summation error far below that. Fused epilogues round C once more
/// before their own step (a second half-ulp), which the atol covers where
/// the epilogue shrinks values (GELU of negative inputs).
fn tolerance(dtype: &str) -> (f64, f64) {
    match dtype {
        "f16" => (2e-3, 1e-4),
        "bf16" => (1e-2, 1e-3),
        _ => (1e-4, 1e-6),
    }
}

/// Compares outputs with expected values (tolerance by output dtype, see
/// `tolerance`; NaN matches NaN); returns how many values were checked,
/// the largest |got - want| / (atol + rtol |want|) seen, and how many
/// were equal.
fn compare(
    name: &str,
    got: &[Vec<f64>],
    want: &[Vec<f64>],
    dtypes: &[String],
) -> Result<(usize, f64, usize), String> {
    let (mut checked, mut worst, mut equal) = (0, 0.0f64, 0);
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        if got.len() != want.len() {
            return Err(format!(
                "{name}: output {i}: {} values, expected {}",
                got.len(),
                want.len()
            ));
        }
        let (rtol, atol) = tolerance(dtypes.get(i).map_or("", |d| d.as_str()));
        for (j, (x, y)) in got.iter().zip(want).enumerate() {
            let bound = atol + rtol * y.abs();
            let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= bound;
            if !ok {
                return Err(format!("{name}: output {i}[{j}] = {x}, expected {y}"));
            }
            if x.is_finite() && y.is_finite() {
                worst = worst.max((x - y).abs() / bound);
            }
            equal += usize::from(x == y);
            checked += 1;
        }
    }
    Ok((checked, worst, equal))
}

/// The dtypes of a program's outputs.
fn output_dtypes(p: &Program) -> Vec<String> {
    let m = p.manifest();
    m.outputs
        .iter()
        .map(|o| {
            m.buffers
                .get(o.buffer)
                .map_or(String::new(), |b| b.dtype.clone())
        })
        .collect()
}

/// Runs a conformance case's whole program from its printed HIP source on
/// the host and compares with the case's expected outputs. `None` when
/// the case is out of scope.
fn run_on_host(case: &Path, work: &Path, fuse: bool) -> Option<Result<usize, String>> {
    let g = smelt_frontend::import_file(&case.join("model.onnx")).ok()?;
    let p = Program::build_gpu(&g).ok()?;
    let set = case.join("test_data_set_0");
    let mut inputs = Vec::new();
    for i in 0..g.inputs.len() {
        let (_, t) =
            smelt_frontend::tensor_io::read_tensor(&set.join(format!("input_{i}.pb"))).ok()?;
        inputs.push(tensor_bytes(&t)?);
    }
    let name = case.file_name()?.to_string_lossy().into_owned();
    let got = match run_program(&name, &p, &inputs, work, fuse)? {
        Ok(g) => g,
        Err(e) => return Some(Err(e)),
    };
    let mut want = Vec::new();
    for i in 0..got.len() {
        let (_, t) =
            smelt_frontend::tensor_io::read_tensor(&set.join(format!("output_{i}.pb"))).ok()?;
        want.push(t.to_f64_vec()?);
    }
    Some(compare(&name, &got, &want, &output_dtypes(&p)).map(|(n, _, _)| n))
}

fn writeln_str(s: &mut String, line: &str) {
    s.push_str(line);
    s.push('\n');
}

#[test]
fn hip_kernels_run_on_the_host_and_match_the_reference() {
    let cases = [
        "test_erf",
        "test_tanh",
        "test_gelu_default_2",
        "test_gelu_tanh_2",
        "test_exp",
        "test_log",
        "test_sin",
        "test_cos",
        "test_tan",
        "test_atan",
        "test_asin",
        "test_acos",
        "test_sinh",
        "test_cosh",
        "test_asinh",
        "test_acosh",
        "test_atanh",
        "test_pow",
        "test_softmax_axis_1",
        "test_layer_normalization_2d_axis1",
        "test_cast_FLOAT_to_BFLOAT16",
        "test_cast_FLOAT_to_FLOAT8E4M3FN",
        "test_div_int8",
        "test_bitshift_right_uint8",
        "test_mod_mixed_sign_float32",
        "test_min_float32",
        "test_max_float32",
        "test_round",
        "test_sigmoid",
        "test_reciprocal",
    ];
    let dir = conformance_dir();
    let work = std::env::temp_dir().join(format!("smelt-hip-host-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let (mut ran, mut values, mut skipped, mut errs) = (0, 0, Vec::new(), Vec::new());
    for c in cases {
        match run_on_host(&dir.join(c), &work, false) {
            Some(Ok(n)) => {
                ran += 1;
                values += n;
            }
            Some(Err(e)) => errs.push(e),
            None => skipped.push(c),
        }
    }
    eprintln!("hip host run: {ran} cases, {values} values match; out of scope: {skipped:?}");
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert!(ran >= 20, "only {ran} cases ran");
}

/// MFMA GEMMs, plain and with their epilogue fused, run on the host with
/// the MFMA builtins emulated from AMD's documented lane layouts (the
/// shim): conformance GEMM/MatMul cases against their expected outputs,
/// and the `FUSABLE` graphs (fused) against the reference interpreter on
/// fixed inputs. A wrong lane layout in mfma.rs (or in the emulation)
/// would scramble rows of C and fail here.
#[test]
fn hip_mfma_gemms_run_on_the_host_and_match_the_reference() {
    let work = std::env::temp_dir().join(format!("smelt-hip-host-gemm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let dir = conformance_dir();
    let (mut ran, mut values, mut errs) = (0, 0, Vec::new());
    for c in [
        "test_matmul_2d",
        "test_matmul_3d",
        "test_matmul_4d",
        "test_gemm_default_matrix_bias",
        "test_gemm_transposeA",
        "test_gemm_transposeB",
        "test_gemm_alpha",
    ] {
        match run_on_host(&dir.join(c), &work, true) {
            Some(Ok(n)) => {
                ran += 1;
                values += n;
            }
            Some(Err(e)) => errs.push(e),
            None => errs.push(format!("{c}: out of scope")),
        }
    }
    // (graph, must fuse an epilogue, a plain 16-bit product).
    let graphs = FUSABLE
        .iter()
        .map(|t| (t, true, false))
        .chain(MATMULS_16.iter().map(|t| (t, false, true)))
        .chain(CONVS.iter().map(|t| (t, false, false)))
        .chain(ATTENTIONS.iter().map(|t| (t, false, false)));
    let mut worst: BTreeMap<String, f64> = BTreeMap::new();
    for (gi, (text, must_fuse, plain16)) in graphs.enumerate() {
        let g = smelt_ir::text::parse(text).unwrap();
        let p = Program::build_gpu(&g).unwrap();
        if must_fuse {
            assert!(!fusable_pairs(&p).is_empty(), "graph {gi}: nothing to fuse");
        }
        if CONVS.contains(text) {
            // run_program fails where the printer refuses an (im2col,
            // GEMM) pair: there must be one.
            assert!(
                p.kernels.iter().any(|k| k.kernel.name.contains("im2col")),
                "graph {gi}: no im2col"
            );
        }
        // Every product must be an MFMA GEMM step (not the kernel-IR
        // fallback), or this test would not exercise mfma.rs.
        let gemms: Vec<&Gemm> = p
            .manifest()
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Gemm(g) => Some(g),
                _ => None,
            })
            .collect();
        assert!(!gemms.is_empty(), "graph {gi}: no GEMM step");
        if ATTENTIONS.contains(text) {
            // Both products, with no loop-kernel product left behind.
            assert_eq!(gemms.len(), 2, "graph {gi}: attention products");
            assert!(
                !p.kernels.iter().any(|k| k.kernel.name.contains("attn_pv")),
                "graph {gi}: P.V as a loop kernel"
            );
            if gemms[0].dtype != "f32" {
                assert_eq!(gemms[0].c_dtype(), "f32", "graph {gi}: scores in f32");
            }
        }
        // Fixed inputs in [-1, 1] (no pattern that a transposed or
        // row-permuted product would reproduce).
        let (mut tensors, mut bytes) = (Vec::new(), Vec::new());
        for (ii, &v) in g.inputs.iter().enumerate() {
            let ty = &g.value(v).ty;
            let shape = ty.shape.as_static().unwrap();
            let n: usize = shape.iter().product();
            let data: Vec<f64> = (0..n)
                .map(|j| ((j * 7919 + ii * 104729) % 2003) as f64 / 1001.5 - 1.0)
                .collect();
            let t = smelt_ir::interp::tensor::Tensor::from_f64(ty.dtype, shape, data);
            bytes.push(tensor_bytes(&t).unwrap());
            tensors.push(t);
        }
        let want: Vec<Vec<f64>> = smelt_ir::interp::run(&g, tensors)
            .unwrap()
            .iter()
            .map(|t| t.to_f64_vec().unwrap())
            .collect();
        let name = format!("graph_{gi}_{}", gemms[0].dtype);
        let dtypes = output_dtypes(&p);
        match run_program(&name, &p, &bytes, &work, true) {
            Some(Ok(got)) => match compare(&name, &got, &want, &dtypes) {
                Ok((n, w, eq)) => {
                    ran += 1;
                    values += n;
                    let e = worst.entry(gemms[0].dtype.clone()).or_default();
                    *e = e.max(w);
                    // A plain 16-bit product rounds its f32 sum once to
                    // nearest even; the reference rounds the exact sum
                    // once. They differ only where the exact sum lies
                    // within the f32 summation error (~1e-6 relative) of a
                    // rounding boundary: nearly every value must be equal.
                    // (The tolerance alone would accept truncation.)
                    if plain16 && eq * 100 < n * 98 {
                        errs.push(format!("{name}: only {eq} of {n} values equal"));
                    }
                    if plain16 {
                        eprintln!("{name}: {eq} of {n} values equal the reference");
                    }
                }
                Err(e) => errs.push(e),
            },
            Some(Err(e)) => errs.push(e),
            None => errs.push(format!("{name}: out of scope")),
        }
    }
    eprintln!("hip host run: worst |got - want| / tolerance per GEMM dtype: {worst:?}");
    eprintln!("hip host run of MFMA GEMMs: {ran} programs, {values} values match");
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}
