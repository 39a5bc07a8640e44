//! Extraction: choosing one e-node per e-class to rebuild a graph.
//!
//! Greedy extraction (egg's `Extractor`) picks, per class, the node with the
//! cheapest tree below it, so an operand shared by two consumers is counted
//! once per use; that can make it pick a rewrite that recomputes the shared
//! value. ILP extraction (egg's `LpExtractor` with CBC, the `ilp` feature)
//! minimises the cost of the DAG, where a shared node counts once. In
//! `ilp` mode both run and the graph the cost model says is cheaper wins,
//! so ILP can only help; the report says which one was used and both costs.

use crate::analysis::TEGraph;
use crate::convert::{self, ConvertError, Imported};
use crate::cost::RooflineCost;
use crate::lang::TNode;
use egg::{CostFunction, Extractor, Id, Language};
use serde::Serialize;
use smelt_ir::Graph;
use smelt_ir::target::Target;
use smelt_ir::{Op, TensorType};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Greedy,
    Ilp,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "greedy" => Ok(Mode::Greedy),
            "ilp" => Ok(Mode::Ilp),
            _ => Err(format!("unknown extraction `{s}`; use greedy or ilp")),
        }
    }
}

/// Whether this build can do ILP extraction (the `ilp` feature, CBC).
pub const ILP_AVAILABLE: bool = cfg!(feature = "ilp");

/// Seconds CBC may spend on one extraction before its best answer so far
/// is taken (egg's `LpExtractor` returns the incumbent at the limit).
pub const ILP_TIME_LIMIT: f64 = 10.0;

#[derive(Clone, Debug, Serialize)]
pub struct ExtractReport {
    /// "greedy" or "ilp": whose graph was kept.
    pub used: Mode,
    /// Cost (the target's roofline, each node counted once) of the greedy graph.
    pub greedy_cost: f64,
    /// Cost of the ILP graph, when ILP ran and produced one.
    pub ilp_cost: Option<f64>,
    pub ilp_seconds: Option<f64>,
    /// Why ILP did not run or did not produce a graph.
    pub note: Option<String>,
}

/// How much slower an op runs in a layout its target does not prefer:
/// a channels-first convolution on a channels-last target (and the other
/// way round), or a matmul reading a constant `[K, N]` weight on a target
/// that wants `[N, K]`. The factor stands for the layout conversion such a
/// kernel does internally; 1.5 is a modelling choice, not a measurement.
pub const LAYOUT_PENALTY: f64 = 1.5;

pub fn layout_factor(
    op: Op,
    const_weight: bool,
    ins: &[Option<&TensorType>],
    target: &Target,
) -> f64 {
    let nhwc = target.preferred_layout == "nhwc";
    let matrix_weight = ins.get(1).copied().flatten().and_then(|t| t.shape.rank()) == Some(2);
    let off = match op {
        Op::Conv | Op::FusedConv => nhwc,
        Op::ConvNhwc => !nhwc,
        Op::MatMul | Op::FusedMatMul => {
            target.prefers_transposed_weights && const_weight && matrix_weight
        }
        Op::MatMulNT => !target.prefers_transposed_weights,
        _ => false,
    };
    if off { LAYOUT_PENALTY } else { 1.0 }
}

/// The roofline cost with the target's layout preference.
pub struct TargetCost<'a> {
    pub eg: &'a TEGraph,
    pub target: &'a Target,
}

impl TargetCost<'_> {
    /// The node's own time, without its operands.
    pub fn own(&self, n: &TNode) -> f64 {
        let mut rc = RooflineCost {
            eg: self.eg,
            target: self.target,
        };
        let base = rc.cost(n, |_| 0.0);
        let TNode::Op { op, .. } = n else {
            return base;
        };
        let ins: Vec<Option<&TensorType>> = n
            .inputs()
            .iter()
            .map(|i| self.eg[*i].data.tys.first())
            .collect();
        let const_weight = n.inputs().get(1).is_some_and(|w| {
            self.eg[*w]
                .nodes
                .iter()
                .any(|x| matches!(x, TNode::Const(_)))
        });
        base * layout_factor(*op, const_weight, &ins, self.target)
    }
}

impl CostFunction<TNode> for TargetCost<'_> {
    type Cost = f64;
    fn cost<C>(&mut self, enode: &TNode, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let own = self.own(enode);
        enode.fold(own, |acc, c| acc + costs(c))
    }
}

pub fn greedy(eg: &TEGraph, imp: &Imported, target: &Target) -> Result<Graph, ConvertError> {
    let ex = Extractor::new(eg, TargetCost { eg, target });
    convert::from_egraph(eg, imp, |c| Some(ex.find_best_node(c).clone()))
}

/// Extracts with `mode`; in `ilp` mode the cheaper of the greedy and the
/// ILP graph (ties go to greedy, whose output is the established one).
pub fn extract(
    eg: &TEGraph,
    imp: &Imported,
    target: &Target,
    mode: Mode,
) -> Result<(Graph, ExtractReport), ConvertError> {
    let g = greedy(eg, imp, target)?;
    let greedy_cost = crate::manager::graph_cost(&g, target);
    let mut rep = ExtractReport {
        used: Mode::Greedy,
        greedy_cost,
        ilp_cost: None,
        ilp_seconds: None,
        note: None,
    };
    if mode == Mode::Greedy {
        return Ok((g, rep));
    }
    let t0 = std::time::Instant::now();
    let r = ilp(eg, imp, target);
    rep.ilp_seconds = Some(t0.elapsed().as_secs_f64());
    match r {
        Ok(ig) => {
            let c = crate::manager::graph_cost(&ig, target);
            rep.ilp_cost = Some(c);
            if c < greedy_cost {
                rep.used = Mode::Ilp;
                return Ok((ig, rep));
            }
        }
        Err(e) => rep.note = Some(e),
    }
    Ok((g, rep))
}

#[cfg(not(feature = "ilp"))]
fn ilp(_eg: &TEGraph, _imp: &Imported, _target: &Target) -> Result<Graph, String> {
    Err("ILP extraction is not built in (build smelt-passes with the `ilp` feature, which needs CBC: apt-get install coinor-libcbc-dev)".into())
}

#[cfg(feature = "ilp")]
fn ilp(eg: &TEGraph, imp: &Imported, target: &Target) -> Result<Graph, String> {
    use egg::{LpCostFunction, LpExtractor};
    use std::collections::HashMap;

    /// A node's own roofline time, without its children: the ILP adds the
    /// children through their own selected nodes, each once.
    struct Own<'a>(&'a Target);
    impl LpCostFunction<TNode, crate::analysis::TensorAnalysis> for Own<'_> {
        fn node_cost(&mut self, eg: &TEGraph, _class: Id, n: &TNode) -> f64 {
            // Impossible nodes (failed type rule) cost 1e30 in the greedy
            // model; CBC is numerically happier with a large finite one.
            // Microseconds keep the objective well above CBC's tolerances.
            (TargetCost { eg, target: self.0 }.own(n) * 1e6).min(1e9)
        }
    }
    let root = eg.find(imp.root);
    // egg's LpExtractor panics when the solver fails (infeasible model,
    // CBC error); that must become an error here, not a crash.
    let expr = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        LpExtractor::new(eg, Own(target)).solve_with_timeout(
            root,
            good_lp::coin_cbc,
            ILP_TIME_LIMIT,
        )
    }))
    .map_err(|_| "the ILP solver failed (see the message above); greedy result kept".to_string())?;
    // Map the extracted term back to classes: each term node, with its
    // children replaced by their classes, is a node of the e-graph.
    let mut class_of: Vec<Id> = Vec::with_capacity(expr.as_ref().len());
    let mut choice: HashMap<Id, TNode> = HashMap::new();
    for n in expr.as_ref() {
        let mut node = n.clone();
        for c in node.children_mut() {
            *c = *class_of
                .get(usize::from(*c))
                .ok_or("ILP term refers to a later node")?;
        }
        let cls = eg
            .lookup(node.clone())
            .ok_or("ILP term has a node that is not in the e-graph")?;
        class_of.push(cls);
        choice.insert(cls, node);
    }
    convert::from_egraph(eg, imp, |c| choice.get(&eg.find(c)).cloned()).map_err(|e| e.to_string())
}
