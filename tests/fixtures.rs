//! Whole-model fixtures (examples/*/make.py) run by `smelt run` match the
//! outputs that onnxruntime recorded when the fixtures were made.

use crate::common::{repo, smelt};

fn check(example: &str, rtol: f64, atol: f64) {
    let dir = repo().join("examples").join(example);
    let out = tempfile::tempdir().unwrap();
    let res = smelt(&[
        "run",
        dir.join("model.onnx").to_str().unwrap(),
        "--input",
        dir.join("input_0.pb").to_str().unwrap(),
        "--output-dir",
        out.path().to_str().unwrap(),
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (_, got) = smelt_frontend::tensor_io::read_tensor(&out.path().join("output_0.pb")).unwrap();
    let (_, want) = smelt_frontend::tensor_io::read_tensor(&dir.join("expected_0.pb")).unwrap();
    assert_eq!(got.shape, want.shape);
    assert_eq!(got.dtype, want.dtype);
    let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    let mut worst = 0.0f64;
    for (i, (g, w)) in g.iter().zip(&w).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= atol + rtol * w.abs(),
            "{example}: element {i}: onnxruntime {w}, smelt {g}"
        );
        worst = worst.max(err);
    }
    eprintln!("{example}: max abs error vs onnxruntime {worst:e}");
}

// f32 models: smelt accumulates in f64 and rounds per op, onnxruntime in f32
// with its own summation order; 1e-4 relative is a few f32 ulps per op
// through a dozen layers.
#[test]
fn resnet_mini_matches_onnxruntime() {
    check("resnet_mini", 1e-4, 1e-5);
}

#[test]
fn transformer_block_matches_onnxruntime() {
    check("transformer_block", 1e-4, 1e-5);
}
