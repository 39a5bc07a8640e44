//! The Maia-style backend end to end: compiled programs follow the target
//! file (halving tile SRAM or HBM bandwidth changes tiling and simulated
//! time the expected way).

use crate::common::{conformance_dir, repo, smelt};
use std::path::Path;

const MATMUL: &str = r#"graph "g"(%x: f32[1024,1024], %w: f32[1024,1024]) {
  %y: f32[1024,1024] = MatMul(%x, %w)
  return %y
}
"#;

/// Compiles `graph` for the target file `target` and returns (matmul
/// commands, HBM bytes read, simulated cycles).
fn compile_and_time(dir: &Path, graph: &Path, target: &Path, tag: &str) -> (usize, u64, f64) {
    let smx = dir.join(format!("{tag}.smx"));
    let out = smelt(&[
        "compile",
        graph.to_str().unwrap(),
        "--target-file",
        target.to_str().unwrap(),
        "--passes",
        "none",
        "-o",
        smx.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dis = smelt(&["disasm", smx.to_str().unwrap()]);
    assert!(dis.status.success());
    let text = String::from_utf8_lossy(&dis.stdout);
    let matmuls = text.lines().filter(|l| l.contains(" matmul ")).count();
    let sim = smelt(&["simulate", smx.to_str().unwrap(), "--timing-only", "--json"]);
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    (
        matmuls,
        r["bytes"]["hbm_read"].as_u64().unwrap(),
        r["cycles"].as_f64().unwrap(),
    )
}

#[test]
fn halving_sram_or_hbm_bandwidth_changes_tiling_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(repo().join("targets/tiny-npu.toml")).unwrap();
    let graph = dir.path().join("g.smelt");
    std::fs::write(&graph, MATMUL).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let half_sram = base.replace("sram_bytes = 262144", "sram_bytes = 131072");
    let half_hbm = base.replace("bandwidth = 1.0e11 # hbm", "bandwidth = 5.0e10 # hbm");
    assert_ne!(half_sram, base);
    assert_ne!(half_hbm, base);
    let t0 = write("base.toml", base);
    let t1 = write("sram.toml", half_sram);
    let t2 = write("hbm.toml", half_hbm);
    let (mm0, hbm0, c0) = compile_and_time(dir.path(), &graph, &t0, "base");
    let (mm1, hbm1, c1) = compile_and_time(dir.path(), &graph, &t1, "sram");
    let (_, _, c2) = compile_and_time(dir.path(), &graph, &t2, "hbm");
    // Less SRAM: smaller tiles, so more matmul commands, more operand
    // re-reads from HBM, and a slower program.
    assert!(mm1 > mm0, "matmul commands: {mm1} with half SRAM vs {mm0}");
    assert!(
        hbm1 > hbm0,
        "HBM bytes read: {hbm1} with half SRAM vs {hbm0}"
    );
    assert!(c1 > c0, "cycles: {c1} with half SRAM vs {c0}");
    // Less HBM bandwidth: the same bytes take longer.
    assert!(c2 > c0, "cycles: {c2} with half HBM bandwidth vs {c0}");
}

/// `<models>/<name>/` built by examples/models/bert_base.py with `args`
/// when missing (as tests/models.rs does).
fn bert_dir(name: &str, args: &[&str]) -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("SMELT_MODELS_DIR") {
        let p = std::path::PathBuf::from(dir).join(name);
        if p.join("model.onnx").is_file() {
            return p;
        }
    }
    let dir = repo().join(".cache/models").join(name);
    if dir.join("model.onnx").is_file() {
        return dir;
    }
    let py = std::env::var_os("SMELT_PYTHON").unwrap_or_else(|| {
        panic!(
            "no {} and no SMELT_PYTHON to build it: run `make test` or set SMELT_MODELS_DIR",
            dir.display()
        )
    });
    let out = std::process::Command::new(py)
        .arg(repo().join("examples/models/bert_base.py"))
        .args(args)
        .arg(&dir)
        .output()
        .expect("SMELT_PYTHON runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn read(p: &Path) -> Vec<f64> {
    let (_, t) = smelt_frontend::tensor_io::read_tensor(p).unwrap();
    t.to_f64_vec().unwrap()
}

/// A 2-layer BERT (hidden 768, 12 heads, sequence 16) compiled for maia100
/// and run on the simulator computes what the interpreter computes, up to
/// the bf16 rounding of matmul operands.
#[test]
fn bert_small_on_maia100_matches_interpreter() {
    let dir = bert_dir("bert_l2_s16", &["--layers", "2", "--seq", "16"]);
    let tmp = tempfile::tempdir().unwrap();
    let smx = tmp.path().join("bert.smx");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let model = s(&dir.join("model.onnx"));
    let out = smelt(&["compile", &model, "--target", "maia100", "-o", &s(&smx)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inputs = [s(&dir.join("input_0.pb")), s(&dir.join("input_1.pb"))];
    let (sim_out, interp_out) = (tmp.path().join("sim"), tmp.path().join("interp"));
    for (prog, out_dir) in [(s(&smx), &sim_out), (model.clone(), &interp_out)] {
        let out = smelt(&[
            "run",
            &prog,
            "-i",
            &inputs[0],
            "-i",
            &inputs[1],
            "--output-dir",
            &s(out_dir),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let got = read(&sim_out.join("output_0.pb"));
    let want = read(&interp_out.join("output_0.pb"));
    assert_eq!(got.len(), 16 * 768);
    let max = want.iter().fold(0f64, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f64, |m, (g, w)| m.max((g - w).abs()));
    // bf16 keeps 8 significant bits (relative step 2^-8 = 0.4%); errors
    // through two layers stay well under 1% of the output's range.
    assert!(err < 0.01 * max, "max error {err} for outputs up to {max}");
}

/// Pad's four modes, compiled for maia100 (borders copied slab by slab
/// from the output itself), give the interpreter's values exactly.
#[test]
fn pad_modes_match_interpreter() {
    let tmp = tempfile::tempdir().unwrap();
    let x = smelt_ir::interp::Tensor::from_f64(
        smelt_ir::DType::F32,
        vec![3, 4],
        (0..12).map(|i| i as f64).collect(),
    );
    let input = tmp.path().join("x.pb");
    std::fs::write(
        &input,
        smelt_frontend::tensor_io::tensor_to_proto_bytes("x", &x).unwrap(),
    )
    .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    for mode in ["constant", "edge", "reflect", "wrap"] {
        // pads: begin (1, 2), end (2, 1).
        let graph = tmp.path().join(format!("{mode}.smelt"));
        std::fs::write(
            &graph,
            format!(
                r#"graph "p"(%x: f32[3,4]) {{
  %pads: i64[4] = const hex"0100000000000000020000000000000002000000000000000100000000000000"
  %y: f32[6,7] = Pad(%x, %pads) {{mode="{mode}"}}
  return %y
}}
"#
            ),
        )
        .unwrap();
        let smx = tmp.path().join(format!("{mode}.smx"));
        let out = smelt(&[
            "compile",
            &s(&graph),
            "--target",
            "maia100",
            "--passes",
            "none",
            "-o",
            &s(&smx),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (a, b) = (
            tmp.path().join(format!("{mode}.sim")),
            tmp.path().join(format!("{mode}.int")),
        );
        for (prog, dir) in [(s(&smx), &a), (s(&graph), &b)] {
            let out = smelt(&["run", &prog, "-i", &s(&input), "--output-dir", &s(dir)]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            read(&a.join("output_0.pb")),
            read(&b.join("output_0.pb")),
            "mode {mode}"
        );
    }
}

/// Conformance cases passing on maia100 (compiled, simulated) may only go
/// up from the floor in tests/conformance-floor-maia.txt.
#[test]
fn maia100_pass_count_stays_above_floor() {
    let dir = conformance_dir();
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = smelt(&[
        "conformance",
        dir.to_str().unwrap(),
        "--target",
        "maia100",
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
    let passed = report["passed"].as_u64().unwrap();
    let floor: u64 = std::fs::read_to_string(repo().join("tests/conformance-floor-maia.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eprintln!("maia100: {passed} pass (floor {floor})");
    assert!(
        passed >= floor,
        "maia100 conformance regressed: {passed} cases pass, floor is {floor}"
    );
}

/// A reduction over run-time axes has no static output shape until the
/// axes are known: `run --target maia100` compiles for the given value
/// (guarded) and matches the interpreter; other axes give other results.
#[test]
fn run_time_axes_are_specialized_on_their_value() {
    let tmp = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let graph = tmp.path().join("g.smelt");
    std::fs::write(
        &graph,
        r#"graph "reduce_axes"(%x: f32[2,3,4], %axes: i64[1]) {
  %y: f32[?,?,?] = ReduceSum(%x, %axes) {keepdims=1}
  return %y
}
"#,
    )
    .unwrap();
    let x = smelt_ir::interp::Tensor::from_f64(
        smelt_ir::DType::F32,
        vec![2, 3, 4],
        (0..24).map(|i| (i as f64) * 0.5 - 3.0).collect(),
    );
    let put = |name: &str, t: &smelt_ir::interp::Tensor| {
        let p = tmp.path().join(format!("{name}.pb"));
        std::fs::write(
            &p,
            smelt_frontend::tensor_io::tensor_to_proto_bytes(name, t).unwrap(),
        )
        .unwrap();
        p
    };
    let xin = put("x", &x);
    let mut results = Vec::new();
    for axis in [1i64, 2] {
        let axes = put(
            &format!("axes{axis}"),
            &smelt_ir::interp::Tensor::from_i64(smelt_ir::DType::I64, vec![1], vec![axis]),
        );
        let (sim, int) = (
            tmp.path().join(format!("sim{axis}")),
            tmp.path().join(format!("int{axis}")),
        );
        for (target, dir) in [("maia100", &sim), ("interp", &int)] {
            let out = smelt(&[
                "run",
                &s(&graph),
                "--target",
                target,
                "-i",
                &format!("x={}", s(&xin)),
                "-i",
                &format!("axes={}", s(&axes)),
                "--output-dir",
                &s(dir),
            ]);
            assert!(
                out.status.success(),
                "{target}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let got = read(&sim.join("output_0.pb"));
        let want = read(&int.join("output_0.pb"));
        assert_eq!(got.len(), if axis == 1 { 8 } else { 6 });
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{got:?} vs {want:?}"
            );
        }
        results.push(got);
    }
    assert_ne!(results[0], results[1]);
}
