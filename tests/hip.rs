//! The HIP printer (AMD gfx90a / gfx942): every kernel the conformance
//! suite produces compiles for both architectures, MFMA GEMM kernels
//! compile, readable snapshots of a few kernels, and the printed kernels
//! run on the host (through a small shim header) with the numbers the
//! reference interpreter gives.

use crate::common::{conformance_dir, repo};
use smelt_backends::cpu::Program;
use smelt_backends::gpu::hip::{Hip, kernels_only, storage_c, toolchain};
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
        "i8" => b.iter().map(|x| *x as i8 as f64).collect(),
        "u8" | "bool" => b.iter().map(|x| *x as f64).collect(),
        _ => return None,
    })
}

/// Runs a conformance case's whole program (kernel steps only) from its
/// printed HIP source, compiled for the host with the shim header in
/// tests/gpu/hip/host, and compares with the case's expected outputs.
/// Returns `None` when the case is out of scope (GEMM or host steps,
/// dtypes the harness does not encode).
fn run_on_host(case: &Path, work: &Path) -> Option<Result<usize, String>> {
    use smelt_runtime::cpu::Place;
    let g = smelt_frontend::import_file(&case.join("model.onnx")).ok()?;
    let p = Program::build_with(&g, smelt_kernel::schedule::flat).ok()?;
    let m = p.manifest();
    let set = case.join("test_data_set_0");
    let mut inputs = Vec::new();
    for i in 0..g.inputs.len() {
        let (_, t) =
            smelt_frontend::tensor_io::read_tensor(&set.join(format!("input_{i}.pb"))).ok()?;
        inputs.push(tensor_bytes(&t)?);
    }
    let module = Hip(Arch::Gfx942)
        .module(&p.kernels)
        .map_err(|e| e.to_string());
    let module = match module {
        Ok(m) => m,
        Err(e) => return Some(Err(e)),
    };
    let name = case.file_name()?.to_string_lossy().into_owned();
    let dir = work.join(&name);
    std::fs::create_dir_all(&dir).ok()?;
    // Buffers: the arena (one allocation, offsets as planned), weights
    // and inputs each their own.
    let mut drv = String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n");
    drv.push_str(&module);
    drv.push_str("\nint main() {\n");
    writeln_str(
        &mut drv,
        &format!(
            "  uint8_t* arena = (uint8_t*)calloc({} + 64, 1);",
            m.arena_bytes
        ),
    );
    for (i, b) in m.buffers.iter().enumerate() {
        match b.place {
            Place::Arena { offset } => {
                writeln_str(&mut drv, &format!("  uint8_t* b{i} = arena + {offset};"))
            }
            Place::Weight { offset } => {
                let w = p
                    .weights()
                    .get(offset as usize..(offset + b.bytes) as usize)?;
                std::fs::write(dir.join(format!("b{i}.bin")), w).ok()?;
                writeln_str(
                    &mut drv,
                    &format!(
                        "  uint8_t* b{i} = (uint8_t*)calloc({} + 64, 1); {{ FILE* f = fopen(\"b{i}.bin\", \"rb\"); fread(b{i}, 1, {}, f); fclose(f); }}",
                        b.bytes, b.bytes
                    ),
                );
            }
            Place::Input { index } => {
                let data = inputs.get(index)?;
                if data.len() as u64 != b.bytes {
                    return None;
                }
                std::fs::write(dir.join(format!("b{i}.bin")), data).ok()?;
                writeln_str(
                    &mut drv,
                    &format!(
                        "  uint8_t* b{i} = (uint8_t*)calloc({} + 64, 1); {{ FILE* f = fopen(\"b{i}.bin\", \"rb\"); fread(b{i}, 1, {}, f); fclose(f); }}",
                        b.bytes, b.bytes
                    ),
                );
            }
        }
    }
    for s in &m.steps {
        let Step::Kernel {
            kernel,
            args,
            parallel_extent,
            ..
        } = s
        else {
            return None;
        };
        let k = &p.kernels.get(*kernel)?.kernel;
        let ptrs: Vec<String> = args
            .iter()
            .zip(&k.params)
            .map(|(a, prm)| {
                let c = storage_c(prm.ty);
                format!("({c}*)b{a}")
            })
            .collect();
        let blocks = parallel_extent.div_ceil(256).max(1);
        writeln_str(
            &mut drv,
            &format!(
                "  smelt_host_threads = {};\n  for (int64_t blk = 0; blk < {blocks}; ++blk)\n    for (int64_t t = 0; t < 256; ++t) {{\n      smelt_host_block = blk; smelt_host_thread = t;\n      {}({}, {parallel_extent});\n    }}",
                blocks * 256,
                k.name,
                ptrs.join(", ")
            ),
        );
    }
    for (i, o) in m.outputs.iter().enumerate() {
        let b = m.buffers.get(o.buffer)?;
        writeln_str(
            &mut drv,
            &format!(
                "  {{ FILE* f = fopen(\"out{i}.bin\", \"wb\"); fwrite(b{}, 1, {}, f); fclose(f); }}",
                o.buffer, b.bytes
            ),
        );
    }
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
    let mut checked = 0;
    for (i, o) in m.outputs.iter().enumerate() {
        let b = m.buffers.get(o.buffer)?;
        let got = decode(
            &b.dtype,
            &std::fs::read(dir.join(format!("out{i}.bin"))).ok()?,
        )?;
        let (_, want) =
            smelt_frontend::tensor_io::read_tensor(&set.join(format!("output_{i}.pb"))).ok()?;
        let want = want.to_f64_vec()?;
        if got.len() != want.len() {
            return Some(Err(format!(
                "{name}: output {i}: {} values, expected {}",
                got.len(),
                want.len()
            )));
        }
        for (j, (x, y)) in got.iter().zip(&want).enumerate() {
            let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-6 + 1e-4 * y.abs();
            if !ok {
                return Some(Err(format!("{name}: output {i}[{j}] = {x}, expected {y}")));
            }
            checked += 1;
        }
    }
    Some(Ok(checked))
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
    let work = std::env::temp_dir().join("smelt-hip-host");
    let _ = std::fs::remove_dir_all(&work);
    let (mut ran, mut values, mut skipped, mut errs) = (0, 0, Vec::new(), Vec::new());
    for c in cases {
        match run_on_host(&dir.join(c), &work) {
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
