//! The optimizer on whole benchmark-shaped models: BERT-base (12 layers,
//! hidden 768, 12 heads, sequence 128) must come out with every layer's
//! attention, layernorms, GELU and bias-adds fused. The model is built by
//! `examples/models/bert_base.py` once into `.cache/models/` (or found in
//! `$SMELT_MODELS_DIR`); without it and without `$SMELT_PYTHON` (set by
//! `make test`) the test fails with a message saying how to get it.

use super::common::repo;
use smelt_ir::interp;
use smelt_ir::target::Target;
use smelt_ir::{Graph, Op};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// `<models>/<name>/model.onnx`, generated with `args` when missing.
fn model(name: &str, args: &[&str]) -> PathBuf {
    if let Some(dir) = std::env::var_os("SMELT_MODELS_DIR") {
        let p = PathBuf::from(dir).join(name).join("model.onnx");
        if p.is_file() {
            return p;
        }
    }
    let dir = repo().join(".cache/models").join(name);
    let p = dir.join("model.onnx");
    if p.is_file() {
        return p;
    }
    let Some(py) = std::env::var_os("SMELT_PYTHON") else {
        panic!(
            "no {} and no SMELT_PYTHON to build it: run `make test`, or \
             `python examples/models/bert_base.py {} {}`, or set SMELT_MODELS_DIR",
            p.display(),
            args.join(" "),
            dir.display()
        );
    };
    let out = std::process::Command::new(py)
        .arg(repo().join("examples/models/bert_base.py"))
        .args(args)
        .arg(&dir)
        .output()
        .expect("SMELT_PYTHON runs");
    assert!(
        out.status.success() && p.is_file(),
        "bert_base.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    p
}

fn histogram(g: &Graph) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for n in &g.nodes {
        *h.entry(n.op.name().to_string()).or_insert(0) += 1;
    }
    h
}

fn count(g: &Graph, op: Op) -> usize {
    g.nodes.iter().filter(|n| n.op == op).count()
}

fn optimize(g: &Graph) -> (Graph, smelt_passes::Report) {
    let target = Target::builtin("cpu").expect("cpu is built in");
    smelt_passes::optimize(g, &target, &smelt_passes::Options::default())
        .expect("the default pipeline optimizes BERT")
}

#[test]
fn bert_base_is_fused_per_layer() {
    let path = model("bert_base", &[]);
    let g = smelt_frontend::onnx::import_file(&path).expect("BERT imports");
    let t0 = Instant::now();
    let (out, report) = optimize(&g);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "BERT-base: optimize {secs:.3} s (this build's profile), {} -> {} nodes",
        g.nodes.len(),
        out.nodes.len()
    );
    for p in &report.passes {
        println!("  pass {}: {:.3} s", p.pass, p.seconds);
        for st in &p.stages {
            println!(
                "    stage {}: stop: {}, e-graph {} nodes / {} classes",
                st.name, st.stop_reason, st.final_nodes, st.final_classes
            );
        }
    }
    println!("op histogram before: {:?}", histogram(&g));
    println!("op histogram after:  {:?}", histogram(&out));

    let layers = 12;
    assert_eq!(
        count(&out, Op::Attention),
        layers,
        "one attention op per layer"
    );
    assert_eq!(
        count(&out, Op::LayerNormalization),
        2 * layers,
        "two layernorms per layer"
    );
    assert_eq!(
        count(&out, Op::Softmax),
        0,
        "softmax lives inside attention"
    );
    let gelu = out
        .nodes
        .iter()
        .filter(|n| {
            n.op == Op::FusedMatMul
                && n.attrs.get("activation") == Some(&smelt_ir::Attr::String("Gelu".into()))
        })
        .count();
    assert_eq!(
        gelu, layers,
        "the FFN GELU is a FusedMatMul epilogue in every layer"
    );
    assert_eq!(
        count(&out, Op::Gelu) + count(&out, Op::Erf),
        0,
        "no standalone GELU left"
    );
    // Six linear layers per layer (Q, K, V, attention out, FFN in, FFN out),
    // each with its bias in the epilogue: no MatMul and no Add remains.
    assert_eq!(count(&out, Op::FusedMatMul), 6 * layers);
    let with_bias = out
        .nodes
        .iter()
        .filter(|n| n.op == Op::FusedMatMul && n.inputs.get(2).copied().flatten().is_some())
        .count();
    assert_eq!(with_bias, 6 * layers, "every linear layer carries its bias");
    assert_eq!(count(&out, Op::MatMul), 0);
    assert_eq!(
        count(&out, Op::Add),
        0,
        "bias and residual adds are all fused"
    );
    for op in [Op::ReduceMean, Op::Sqrt, Op::Pow, Op::Div, Op::Mul, Op::Sub] {
        assert_eq!(count(&out, op), 0, "{op} left after fusion");
    }
}

/// A 2-layer, 16-token BERT computes the same before and after the
/// default pipeline (the full model is too slow for the interpreter here).
#[test]
fn small_bert_optimized_computes_the_same() {
    let path = model("bert_l2_s16", &["--layers", "2", "--seq", "16"]);
    let g = smelt_frontend::onnx::import_file(&path).expect("BERT imports");
    let (out, _) = optimize(&g);
    assert_eq!(count(&out, Op::Attention), 2);
    assert_eq!(count(&out, Op::LayerNormalization), 4);
    // Hidden states from a fixed LCG in [-2, 2); the mask hides the last 2
    // of 16 keys with -10000 as the model script's does.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let x: Vec<f64> = (0..16 * 768)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f64 / (1u64 << 24) as f64) * 4.0 - 2.0
        })
        .collect();
    let mask: Vec<f64> = (0..16)
        .map(|i| if i >= 14 { -10000.0 } else { 0.0 })
        .collect();
    let ins = vec![
        interp::Tensor::from_f64(smelt_ir::DType::F32, vec![1, 16, 768], x),
        interp::Tensor::from_f64(smelt_ir::DType::F32, vec![1, 1, 1, 16], mask),
    ];
    let want = interp::run(&g, ins.clone()).expect("original runs");
    let got = interp::run(&out, ins).expect("optimized runs");
    let (a, b) = (want[0].to_f64_vec().unwrap(), got[0].to_f64_vec().unwrap());
    assert_eq!(want[0].shape, got[0].shape);
    // LayerNorm outputs are O(1); fused ops round once where the
    // decomposition rounds after each op, so allow f32-level drift.
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(worst <= 1e-3, "max abs difference {worst}");
}
