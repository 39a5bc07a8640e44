//! The cpu target end to end: conformance with every op compiled, `.smc`
//! artifacts written by `compile` and run by `run` against onnxruntime's
//! recorded outputs, byte-identical artifacts, and corrupt artifacts
//! rejected with a clear error.

use crate::common::{conformance_dir, repo, smelt};
use std::path::Path;

/// Cases that pass on the cpu target with every op a compiled kernel (no
/// node on the reference implementation) may only go up from the floor.
#[test]
fn cpu_compiled_pass_count_stays_above_floor() {
    let dir = conformance_dir();
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = smelt(&[
        "conformance",
        dir.to_str().unwrap(),
        "--target",
        "cpu",
        "--json",
        json.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    let compiled = cases
        .iter()
        .filter(|c| c["status"] == "pass" && c.get("host_ops").is_none())
        .count() as u64;
    let passed = report["passed"].as_u64().unwrap();
    let floor: u64 = std::fs::read_to_string(repo().join("tests/conformance-floor-cpu.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("cpu: {passed} pass, {compiled} with every op compiled (floor {floor})");
    assert!(
        compiled >= floor,
        "cpu conformance regressed: {compiled} cases pass fully compiled, floor is {floor}"
    );
}

fn compile_smc(model: &Path, out: &Path) {
    let res = smelt(&[
        "compile",
        model.to_str().unwrap(),
        "--target",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// `compile -o x.smc` then `run x.smc` reproduces onnxruntime's recorded
/// outputs of the committed example models.
#[test]
fn smc_artifacts_match_onnxruntime() {
    for (example, rtol, atol) in [
        ("resnet_mini", 1e-4, 1e-4),
        ("transformer_block", 1e-4, 1e-4),
    ] {
        let dir = repo().join("examples").join(example);
        let tmp = tempfile::tempdir().unwrap();
        let smc = tmp.path().join("model.smc");
        compile_smc(&dir.join("model.onnx"), &smc);
        let res = smelt(&[
            "run",
            smc.to_str().unwrap(),
            "--input",
            dir.join("input_0.pb").to_str().unwrap(),
            "--output-dir",
            tmp.path().to_str().unwrap(),
        ]);
        assert!(
            res.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let (_, got) =
            smelt_frontend::tensor_io::read_tensor(&tmp.path().join("output_0.pb")).unwrap();
        let (_, want) = smelt_frontend::tensor_io::read_tensor(&dir.join("expected_0.pb")).unwrap();
        assert_eq!(got.shape, want.shape, "{example}");
        let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
        for (i, (g, w)) in g.iter().zip(&w).enumerate() {
            assert!(
                (g - w).abs() <= atol + rtol * w.abs(),
                "{example}: element {i}: onnxruntime {w}, smelt cpu {g}"
            );
        }
    }
}

#[test]
fn smc_artifacts_are_byte_identical_across_compiles() {
    let model = repo().join("examples/transformer_block/model.onnx");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.smc"), tmp.path().join("b.smc"));
    compile_smc(&model, &a);
    compile_smc(&model, &b);
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
}

/// A damaged artifact gets one line naming the file and the problem, exit
/// code 1, and no outputs.
#[test]
fn corrupt_smc_is_rejected_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good.smc");
    compile_smc(&repo().join("examples/resnet_mini/model.onnx"), &good);
    let bytes = std::fs::read(&good).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let mut version = bytes.clone();
    version[8] = 99;
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("truncated", bytes[..bytes.len() / 3].to_vec(), "checksum"),
        ("flipped", flipped, "checksum"),
        ("magic", b"NOTSMELT-------------".to_vec(), "bad magic"),
        ("version", version, "version 99"),
        ("empty", Vec::new(), "truncated"),
    ];
    for (name, data, want) in cases {
        let p = tmp.path().join(format!("{name}.smc"));
        std::fs::write(&p, data).unwrap();
        let out_dir = tmp.path().join(format!("out-{name}"));
        let res = smelt(&[
            "run",
            p.to_str().unwrap(),
            "--input",
            repo()
                .join("examples/resnet_mini/input_0.pb")
                .to_str()
                .unwrap(),
            "--output-dir",
            out_dir.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(err.contains(&format!("{name}.smc")), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!out_dir.exists(), "{name}: outputs written");
    }
}

#[test]
fn smc_is_refused_for_other_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let res = smelt(&[
        "compile",
        repo()
            .join("examples/resnet_mini/model.onnx")
            .to_str()
            .unwrap(),
        "--target",
        "sm_90a",
        "-o",
        tmp.path().join("x.smc").to_str().unwrap(),
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("cpu target"));
    assert!(!tmp.path().join("x.smc").exists());
}

/// Shapes that depend on an input's value (ReduceSum over run-time axes)
/// compile once that value is known; the artifact then refuses other
/// values instead of computing garbage.
#[test]
fn value_specialized_artifacts_guard_their_inputs() {
    use smelt_ir::interp::Tensor;
    let g = smelt_ir::text::parse(
        r#"graph "reduce_axes"(%x: f32[2,3,4], %axes: i64[1]) {
  %y: f32[?,?,?] = ReduceSum(%x, %axes) {keepdims=1}
  return %y
}"#,
    )
    .unwrap();
    let x = Tensor::from_f64(
        smelt_ir::DType::F32,
        vec![2, 3, 4],
        (0..24).map(f64::from).collect(),
    );
    let axes = |a: i64| Tensor::from_i64(smelt_ir::DType::I64, vec![1], vec![a]);
    assert!(
        smelt_backends::cpu::compile(&g).is_err(),
        "run-time axes leave the output shape unknown"
    );
    let (art, report) = smelt_backends::cpu::compile_for(&g, &[x.clone(), axes(1)]).unwrap();
    assert!(report.host_ops.is_empty(), "{:?}", report.host_ops);
    let loaded = smelt_backends::cpu::Loaded::new(art).unwrap();
    let out = loaded.run(&[x.clone(), axes(1)]).unwrap();
    let want = smelt_ir::interp::run(&g, vec![x.clone(), axes(1)]).unwrap();
    assert_eq!(out[0].shape, vec![2, 1, 4]);
    assert_eq!(out[0].to_f64_vec(), want[0].to_f64_vec());
    let err = loaded.run(&[x, axes(2)]).unwrap_err().to_string();
    assert!(err.contains("specialized"), "{err}");
}
