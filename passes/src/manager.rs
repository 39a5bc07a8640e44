//! The pass manager: a pass list from a string (`canon,fuse,layout`;
//! `default` is the standard pipeline), each pass run as staged saturation
//! followed by extraction with the target's cost model. Stages: the cheap
//! canonical rules first, to saturation under a small budget, then the
//! pass's own (exploratory) rules with the canonical ones under the main
//! budget. A stage that hits a limit leaves the e-graph as it is, which
//! still holds the input program, so extraction always has a result. It
//! times every pass, verifies the graph after each one, and can print the
//! IR after a named pass.

use crate::analysis::TEGraph;
use crate::convert::{self, ConvertError};
use crate::cost::RooflineCost;
use crate::extract::{self, ExtractReport, Mode};
use crate::rules;
use crate::run::{Budget, StageReport, saturate};
use serde::Serialize;
use smelt_ir::Graph;
use smelt_ir::target::Target;
use std::collections::BTreeMap;
use std::time::Instant;

/// Every pass name.
pub const PASSES: &[&str] = &["canon", "fuse", "layout", "tensat"];

/// The standard pipeline (`default`). Layout is not in it yet: it rewrites
/// plain `Conv`, which `fuse` has turned into `FusedConv` by then.
pub const DEFAULT: &[&str] = &["canon", "fuse", "tensat"];

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(
        "unknown pass `{0}`; passes: canon, fuse, layout, tensat, default (= canon,fuse,tensat), none"
    )]
    Unknown(String),
    #[error("{0}")]
    Convert(#[from] ConvertError),
    #[error("after pass {pass}: {msg}")]
    Verify { pass: String, msg: String },
}

/// Parses `canon,fuse` / `default` / `none` into pass names.
pub fn parse_passes(spec: &str) -> Result<Vec<String>, PassError> {
    let mut out = Vec::new();
    for p in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match p {
            "default" => out.extend(DEFAULT.iter().map(|s| s.to_string())),
            "none" => {}
            _ if PASSES.contains(&p) => out.push(p.to_string()),
            _ => return Err(PassError::Unknown(p.to_string())),
        }
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Options {
    pub passes: Vec<String>,
    /// Budget of each pass's exploratory stage.
    pub budget: Budget,
    /// Budget of the canonical stage that runs first in every pass.
    pub canon_budget: Budget,
    pub extract: Mode,
    /// Print the IR text after this pass (to `printed`).
    pub print_after: Option<String>,
    /// Verify after every pass (always on in debug builds and tests).
    pub verify: bool,
}

/// The canonical stage's budget: a slice of the main one. Canonical rules
/// only shrink or reorder the graph, so they saturate within a few
/// iterations; the limits only guard against a rule set that loops.
pub fn canon_budget(main: &Budget) -> Budget {
    Budget {
        iterations: main.iterations.min(10),
        nodes: main.nodes.min(50_000),
        seconds: main.seconds.min(0.5),
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            passes: DEFAULT.iter().map(|s| s.to_string()).collect(),
            budget: Budget::default(),
            canon_budget: canon_budget(&Budget::default()),
            extract: Mode::Greedy,
            print_after: None,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FusionGroup {
    /// The fused op ("FusedMatMul", "Gelu", ...).
    pub op: String,
    /// The ops it replaced, as named by the rules that fired.
    pub ops: Vec<String>,
    pub output: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub pass: String,
    pub seconds: f64,
    /// The saturation stages in order (canonical first), each with its
    /// stop reason.
    pub stages: Vec<StageReport>,
    pub extraction: ExtractReport,
    pub cost_before: f64,
    pub cost_after: f64,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    pub passes: Vec<PassReport>,
    pub cost_before: f64,
    pub cost_after: f64,
    pub rules_fired: BTreeMap<String, usize>,
    pub fusion_groups: Vec<FusionGroup>,
    pub seconds: f64,
    #[serde(skip)]
    pub printed: Option<String>,
}

/// Cost of a graph as it stands: the sum of its nodes' roofline times
/// (each node once), with the target's layout preference applied.
pub fn graph_cost(g: &Graph, target: &Target) -> f64 {
    let eg = TEGraph::default();
    let rc = RooflineCost { eg: &eg, target };
    g.nodes
        .iter()
        .map(|n| {
            let ins: Vec<_> = n.inputs.iter().map(|x| x.map(|v| &g.value(v).ty)).collect();
            let outs: Vec<_> = n
                .outputs
                .iter()
                .flatten()
                .map(|v| g.value(*v).ty.clone())
                .collect();
            let const_weight = n
                .inputs
                .get(1)
                .copied()
                .flatten()
                .is_some_and(|w| g.consts.contains_key(&w));
            rc.op_time(n.op, Some(&n.attrs), &ins, &outs)
                * extract::layout_factor(n.op, const_weight, &ins, target)
        })
        .sum()
}

/// The rules of each stage of `pass` for `target`: the canonical stage,
/// then the pass's own rules together with the canonical ones (their
/// rewrites keep creating canonical redexes, e.g. transposes that cancel).
fn stages(pass: &str, target: &Target) -> Option<Vec<(String, Vec<rules::Rule>)>> {
    let canon = rules::family("canon")?;
    if pass == "canon" {
        return Some(vec![("canon".into(), canon)]);
    }
    let mut own = if pass == "layout" {
        rules::layout::rules_for(target)
    } else {
        rules::family(pass)?
    };
    own.extend(rules::family("canon")?);
    Some(vec![("canon".into(), canon), (pass.to_string(), own)])
}

/// The decomposed ONNX form each recognized op replaces (its canonical
/// spelling; the rules also accept the listed variants, see rules/norm.rs
/// and rules/fusion.rs).
fn recognized_from(op: smelt_ir::Op) -> Option<&'static [&'static str]> {
    use smelt_ir::Op;
    Some(match op {
        Op::Attention => &["MatMul", "Div", "Add", "Softmax", "MatMul"],
        Op::LayerNormalization => &[
            "ReduceMean",
            "Sub",
            "Pow",
            "ReduceMean",
            "Add",
            "Sqrt",
            "Div",
            "Mul",
            "Add",
        ],
        Op::RMSNormalization => &["Pow", "ReduceMean", "Add", "Sqrt", "Div", "Mul"],
        Op::Softmax => &["ReduceMax", "Sub", "Exp", "ReduceSum", "Div"],
        Op::Gelu => &["Div", "Erf", "Add", "Mul", "Mul"],
        _ => return None,
    })
}

/// Which fused ops the final graph has and what each replaced: smelt's
/// fused ops, and ONNX ops the rules recognized (ones the input graph did
/// not already have under the same output name).
fn fusion_groups(original: &Graph, g: &Graph) -> Vec<FusionGroup> {
    use smelt_ir::{Attr, Op};
    let had: std::collections::HashSet<(Op, &str)> = original
        .nodes
        .iter()
        .flat_map(|n| {
            n.outputs
                .iter()
                .flatten()
                .map(move |o| (n.op, original.value(*o).name.as_str()))
        })
        .collect();
    let mut v = Vec::new();
    for n in &g.nodes {
        let act = |n: &smelt_ir::Node| match n.attrs.get("activation") {
            Some(Attr::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let given = |i: usize| n.inputs.get(i).copied().flatten().is_some();
        let ops: Vec<String> = match n.op {
            Op::FusedMatMul | Op::FusedConv => {
                let base = if n.op == Op::FusedMatMul {
                    "MatMul"
                } else {
                    "Conv"
                };
                let mut o = vec![base.to_string()];
                if n.op == Op::FusedMatMul && given(2) {
                    o.push("Add".into());
                }
                o.extend(act(n));
                if given(3) {
                    o.push("Add".into());
                }
                o
            }
            Op::FusedElementwise => match n.attrs.get("ops") {
                Some(Attr::Strings(s)) => s.clone(),
                _ => vec![],
            },
            op => match recognized_from(op) {
                Some(parts)
                    if !n
                        .outputs
                        .iter()
                        .flatten()
                        .any(|o| had.contains(&(op, g.value(*o).name.as_str()))) =>
                {
                    parts.iter().map(|s| s.to_string()).collect()
                }
                _ => continue,
            },
        };
        let output = n
            .outputs
            .first()
            .copied()
            .flatten()
            .map(|o| g.value(o).name.clone())
            .unwrap_or_default();
        v.push(FusionGroup {
            op: n.op.name().to_string(),
            ops,
            output,
        });
    }
    v
}

/// Runs the passes on `g` for `target`; returns the optimized graph and
/// what happened. If a pass's result does not verify, that is an error
/// (rules are meant to be sound; a silent fallback would hide a bug).
pub fn optimize(g: &Graph, target: &Target, opts: &Options) -> Result<(Graph, Report), PassError> {
    let start = Instant::now();
    let cost_before = graph_cost(g, target);
    let mut cur = g.clone();
    let mut reports = Vec::new();
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    let mut printed = None;
    for pass in &opts.passes {
        let t0 = Instant::now();
        let stage_rules = stages(pass, target).ok_or_else(|| PassError::Unknown(pass.clone()))?;
        let before = graph_cost(&cur, target);
        let nodes_before = cur.nodes.len();
        let (mut eg, imp) = convert::to_egraph(&cur)?;
        let mut stage_reports = Vec::new();
        for (i, (name, rs)) in stage_rules.iter().enumerate() {
            let budget = if i == 0 && stage_rules.len() > 1 {
                &opts.canon_budget
            } else {
                &opts.budget
            };
            let (next_eg, rep) = saturate(eg, name, rs, budget);
            eg = next_eg;
            stage_reports.push(rep);
        }
        let (next, extraction) = extract::extract(&eg, &imp, target, opts.extract)?;
        if opts.verify || cfg!(debug_assertions) {
            smelt_ir::verify(&next).map_err(|e| PassError::Verify {
                pass: pass.clone(),
                msg: e.to_string(),
            })?;
        }
        for st in &stage_reports {
            for (r, n) in st.rules_fired() {
                *fired.entry(r).or_insert(0) += n;
            }
        }
        let after = graph_cost(&next, target);
        // Extraction is greedy: never accept a graph the model says is slower.
        if after <= before {
            cur = next;
        }
        if opts.print_after.as_deref() == Some(pass.as_str()) {
            printed = Some(smelt_ir::text::print(&cur));
        }
        reports.push(PassReport {
            pass: pass.clone(),
            seconds: t0.elapsed().as_secs_f64(),
            stages: stage_reports,
            extraction,
            cost_before: before,
            cost_after: graph_cost(&cur, target),
            nodes_before,
            nodes_after: cur.nodes.len(),
        });
    }
    let report = Report {
        target: target.name.clone(),
        cost_before,
        cost_after: graph_cost(&cur, target),
        passes: reports,
        rules_fired: fired,
        fusion_groups: fusion_groups(g, &cur),
        seconds: start.elapsed().as_secs_f64(),
        printed,
    };
    Ok((cur, report))
}
