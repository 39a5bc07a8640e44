//! The optimizer on the benchmark graphs (examples/models): the Tensat-style
//! parallel-branch merges on Inception, BatchNorm folding and conv epilogue
//! fusion on ResNet-50, and optimized graphs computing what the originals
//! do on the interpreter.
//!
//! The models live in `.cache/models/<name>/` (hundreds of MB, never
//! committed). A missing model is built with `$SMELT_PYTHON
//! examples/models/<name>.py`; `SMELT_MODELS_DIR` points at an existing
//! build instead.

use crate::common::repo;
use smelt_ir::interp::{self, Tensor};
use smelt_ir::target::Target;
use smelt_ir::{DClass, Graph, Op};
use std::path::PathBuf;
use std::process::Command;

fn model(name: &str) -> PathBuf {
    let dir = std::env::var_os("SMELT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/models"))
        .join(name);
    let file = dir.join("model.onnx");
    if file.is_file() {
        return file;
    }
    let Some(py) = std::env::var_os("SMELT_PYTHON") else {
        panic!(
            "no model at {}: build it with `python examples/models/{name}.py {}`, \
             set SMELT_PYTHON to a Python with onnx and numpy so the test builds it, \
             or set SMELT_MODELS_DIR to a folder of built models",
            file.display(),
            dir.display()
        );
    };
    let script = repo().join(format!("examples/models/{name}.py"));
    let st = Command::new(&py)
        .arg(&script)
        .arg(&dir)
        .status()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", py.to_string_lossy(), script.display()));
    assert!(
        st.success() && file.is_file(),
        "{} did not build {}",
        script.display(),
        file.display()
    );
    file
}

fn load(name: &str) -> Graph {
    let f = model(name);
    smelt_frontend::import_file(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
}

fn optimize(g: &Graph, target: &str) -> (Graph, smelt_passes::Report) {
    let target = Target::builtin(target).unwrap();
    smelt_passes::optimize(g, &target, &smelt_passes::Options::default())
        .unwrap_or_else(|e| panic!("optimizing {}: {e}", g.name))
}

fn count(g: &Graph, op: Op) -> usize {
    g.nodes.iter().filter(|n| n.op == op).count()
}

/// Deterministic pseudo-random float inputs in [-1, 1) (a fixed LCG).
fn random_inputs(g: &Graph) -> Vec<Tensor> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    g.inputs
        .iter()
        .map(|&i| {
            let ty = &g.value(i).ty;
            let shape = ty.shape.as_static().expect("benchmark inputs are static");
            assert_eq!(
                ty.dtype.class(),
                DClass::Float,
                "benchmark inputs are floats"
            );
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 40) as f64 / (1u64 << 24) as f64) * 2.0 - 1.0
                })
                .collect();
            Tensor::from_f64(ty.dtype, shape, data)
        })
        .collect()
}

/// Runs both graphs on one random input; results must agree to rtol 1e-4
/// (plus an absolute 1e-4 of the largest magnitude, for values near 0).
fn same_results(name: &str, a: &Graph, b: &Graph) {
    let ins = random_inputs(a);
    let want = interp::run(a, ins.clone()).unwrap_or_else(|e| panic!("{name} original: {e}"));
    let got = interp::run(b, ins).unwrap_or_else(|e| panic!("{name} optimized: {e}"));
    assert_eq!(want.len(), got.len());
    for (w, o) in want.iter().zip(&got) {
        assert_eq!(w.shape, o.shape, "{name}");
        let (w, o) = (w.to_f64_vec().unwrap(), o.to_f64_vec().unwrap());
        let scale = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        for (i, (x, y)) in w.iter().zip(&o).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * x.abs() + 1e-4 * scale,
                "{name}: output element {i}: {x} (original) vs {y} (optimized)"
            );
        }
    }
}

/// On maia100, where launches cost as much as the small Inception-E convs,
/// the merges lower cost: after BatchNorm folding and Relu fusion, the
/// sibling 1x3/3x1 FusedConvs of each Inception-E branch are enlarged to
/// 3x3 and merged into one conv, and the Concat of the pair disappears.
#[test]
fn inception_parallel_branches_merge() {
    let g = load("inception");
    let (out, report) = optimize(&g, "maia100");
    for rule in [
        "merge-parallel-convs",
        "conv-enlarge-kernel",
        "concat-convs",
    ] {
        assert!(
            report.rules_fired.get(rule).is_some_and(|n| *n > 0),
            "{rule} did not fire: {:?}",
            report.rules_fired
        );
    }
    let tensat = report
        .passes
        .iter()
        .find(|p| p.pass == "tensat")
        .expect("tensat is in the default pipeline");
    assert!(
        tensat.cost_after < tensat.cost_before,
        "tensat pass: cost {} -> {}",
        tensat.cost_before,
        tensat.cost_after
    );
    let convs = |g: &Graph| count(g, Op::Conv) + count(g, Op::FusedConv);
    assert!(
        convs(&out) < convs(&g),
        "{} convs before, {} after",
        convs(&g),
        convs(&out)
    );
    assert!(report.cost_after < report.cost_before);
}

/// On the CPU target the enlarged 3x3 merge triples the FLOPs of
/// compute-bound convs, so it must not be chosen: no pass raises cost.
#[test]
fn inception_merge_only_where_it_lowers_cost() {
    let g = load("inception");
    let (_, report) = optimize(&g, "cpu");
    for p in &report.passes {
        assert!(p.cost_after <= p.cost_before, "{}: cost rose", p.pass);
    }
    assert!(report.cost_after <= report.cost_before);
}

#[test]
fn resnet50_batchnorm_folded_and_epilogues_fused() {
    let g = load("resnet50");
    let (out, _) = optimize(&g, "cpu");
    assert_eq!(count(&out, Op::BatchNormalization), 0);
    // No Relu is left reading a conv's own result: each went into the
    // conv's epilogue (the 16 after residual adds remain).
    // (The 4 projection-shortcut convs have no Relu and stay plain Convs
    // with the folded bias.)
    let producer = |v| out.nodes.iter().find(|n| n.outputs.contains(&Some(v)));
    let relu_after_conv = out.nodes.iter().filter(|n| {
        n.op == Op::Relu
            && n.inputs
                .first()
                .copied()
                .flatten()
                .and_then(producer)
                .is_some_and(|p| {
                    // Relu after a residual add stays: FusedConv applies
                    // its activation before the residual.
                    let residual = p.inputs.get(3).copied().flatten().is_some();
                    p.op == Op::Conv || (p.op == Op::FusedConv && !residual)
                })
    });
    assert_eq!(relu_after_conv.count(), 0, "a Relu still follows a conv");
    assert!(
        count(&out, Op::Conv) <= 4,
        "{} plain Convs",
        count(&out, Op::Conv)
    );
    // 53 convs: 49 are followed by Relu directly (the other Relus follow a
    // residual Add), and each has a bias once BatchNorm is folded into it.
    let fused_relu_bias = out
        .nodes
        .iter()
        .filter(|n| {
            n.op == Op::FusedConv
                && n.attrs.get("activation") == Some(&smelt_ir::Attr::String("Relu".into()))
                && n.inputs.get(2).copied().flatten().is_some()
        })
        .count();
    assert!(
        fused_relu_bias >= 33,
        "{fused_relu_bias} FusedConv with bias and Relu"
    );
}

#[test]
fn inception_optimized_computes_the_same() {
    let g = load("inception");
    let (out, _) = optimize(&g, "maia100");
    same_results("inception", &g, &out);
}

#[test]
fn nasnet_optimized_computes_the_same() {
    let g = load("nasnet");
    for target in ["cpu", "maia100"] {
        let (out, _) = optimize(&g, target);
        same_results("nasnet", &g, &out);
    }
}
