//! End-to-end checks of the optimizer on small graphs in IR text form.

use crate::manager::{Options, optimize, parse_passes};
use smelt_ir::interp::{self, Tensor};
use smelt_ir::target::Target;
use smelt_ir::{DType, Op};

fn opt(text: &str, passes: &str) -> smelt_ir::Graph {
    let g = smelt_ir::text::parse(text).unwrap();
    let opts = Options {
        passes: parse_passes(passes).unwrap(),
        ..Options::default()
    };
    let (g2, _) = optimize(&g, &Target::builtin("cpu").unwrap(), &opts).unwrap();
    smelt_ir::verify(&g2).unwrap();
    g2
}

#[test]
fn mul_by_one_disappears() {
    let g = opt(
        "graph \"g\"(%x: f32[2,3]) {\n  %one: f32[] = const hex\"0000803f\"\n  %y: f32[2,3] = Mul(%x, %one)\n  return %y\n}\n",
        "canon",
    );
    // Only the Identity that keeps the output's name remains.
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].op, Op::Identity);
    assert_eq!(g.value(g.outputs[0]).name, "y");
}

#[test]
fn matmul_bias_relu_fuses_and_computes_the_same() {
    let text = "graph \"g\"(%x: f32[2,2], %w: f32[2,2], %b: f32[2]) {\n  %m: f32[2,2] = MatMul(%x, %w)\n  %a: f32[2,2] = Add(%m, %b)\n  %y: f32[2,2] = Relu(%a)\n  return %y\n}\n";
    let g0 = smelt_ir::text::parse(text).unwrap();
    let g = opt(text, "default");
    assert_eq!(g.nodes.len(), 1, "{}", smelt_ir::text::print(&g));
    assert_eq!(g.nodes[0].op, Op::FusedMatMul);
    let x = Tensor::from_f64(DType::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let w = Tensor::from_f64(DType::F32, vec![2, 2], vec![1.0, 0.0, 0.0, -1.0]);
    let b = Tensor::from_f64(DType::F32, vec![2], vec![1.0, 1.0]);
    let want = interp::run(&g0, vec![x.clone(), w.clone(), b.clone()]).unwrap();
    let got = interp::run(&g, vec![x, w, b]).unwrap();
    assert_eq!(want, got);
    // [[1,2],[3,4]]·[[1,0],[0,-1]] + 1 = [[2,-1],[4,-3]]; relu = [[2,0],[4,0]].
    assert_eq!(got[0].to_f64_vec().unwrap(), vec![2.0, 0.0, 4.0, 0.0]);
}

#[test]
fn constants_fold() {
    let g = opt(
        "graph \"g\"(%x: f32[2]) {\n  %a: f32[2] = const hex\"0000803f00000040\"\n  %b: f32[2] = Add(%a, %a)\n  %y: f32[2] = Mul(%x, %b)\n  return %y\n}\n",
        "canon",
    );
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].op, Op::Mul);
    let c = g.nodes[0].inputs[1].unwrap();
    let t = Tensor::from_data(&g.consts[&c]).unwrap();
    // 1+1, 2+2.
    assert_eq!(t.to_f64_vec().unwrap(), vec![2.0, 4.0]);
}

#[test]
fn unknown_pass_is_an_error() {
    assert!(parse_passes("canon,bogus").is_err());
    assert_eq!(
        parse_passes("default").unwrap(),
        vec!["canon", "fuse", "tensat"]
    );
}

#[test]
fn every_stage_is_reported_with_its_stop_reason() {
    let text = "graph \"g\"(%x: f32[2,2], %w: f32[2,2]) {\n  %m: f32[2,2] = MatMul(%x, %w)\n  %y: f32[2,2] = Relu(%m)\n  return %y\n}\n";
    let g = smelt_ir::text::parse(text).unwrap();
    let mut opts = Options {
        passes: parse_passes("canon,fuse").unwrap(),
        ..Options::default()
    };
    // One iteration for the exploratory stage: it stops on the limit, and
    // the graph found so far is still returned.
    opts.budget.iterations = 1;
    let (out, r) = optimize(&g, &Target::builtin("cpu").unwrap(), &opts).unwrap();
    smelt_ir::verify(&out).unwrap();
    let canon: Vec<_> = r.passes[0].stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(canon, ["canon"]);
    let fuse: Vec<_> = r.passes[1].stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(fuse, ["canon", "fuse"]);
    assert_eq!(r.passes[0].stages[0].stop_reason, "saturated");
    assert_eq!(r.passes[1].stages[1].stop_reason, "iteration limit (1)");
}

#[cfg(feature = "ilp")]
#[test]
fn ilp_keeps_a_shared_matmul_once() {
    use crate::extract::Mode;
    // Symbolic batch (costed as 64 rows): the 2048x2048 MatMul dominates,
    // so computing it once (ILP) beats fusing it into both users (greedy).
    let text = "graph \"g\"(%x: f32[N,2048], %w: f32[2048,2048]) {\n  %m: f32[N,2048] = MatMul(%x, %w)\n  %a: f32[N,2048] = Relu(%m)\n  %b: f32[N,2048] = Sigmoid(%m)\n  %y: f32[N,2048] = Add(%a, %b)\n  return %y\n}\n";
    let g = smelt_ir::text::parse(text).unwrap();
    let count = |mode| {
        let opts = Options {
            passes: parse_passes("fuse").unwrap(),
            extract: mode,
            ..Options::default()
        };
        let (out, r) = optimize(&g, &Target::builtin("cpu").unwrap(), &opts).unwrap();
        smelt_ir::verify(&out).unwrap();
        let mm = out
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::MatMul | Op::FusedMatMul))
            .count();
        (mm, r)
    };
    // Greedy's graph (two fused MatMuls) costs more than the input, so the
    // manager keeps the input; the report still shows what greedy cost.
    let (greedy, rg) = count(Mode::Greedy);
    let (ilp, r) = count(Mode::Ilp);
    assert_eq!(greedy, 1);
    assert!(rg.passes[0].extraction.greedy_cost > rg.passes[0].cost_before);
    assert_eq!(ilp, 1);
    let x = &r.passes[0].extraction;
    assert_eq!(x.used, Mode::Ilp);
    assert!(x.ilp_cost.unwrap() < x.greedy_cost);
}
