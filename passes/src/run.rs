//! The saturation driver: runs rule sets in stages under budgets and keeps
//! what `explain` reports (e-graph size per iteration, rules fired, why
//! each stage stopped). Stages run cheap canonical rules to saturation
//! first, then exploratory ones under their own budget; whatever happens,
//! the e-graph holds the input program, so extraction always has a result.

use crate::analysis::{TEGraph, TensorAnalysis};
use crate::lang::TNode;
use egg::{Rewrite, Runner, StopReason};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct Budget {
    pub iterations: usize,
    pub nodes: usize,
    pub seconds: f64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            iterations: 30,
            nodes: 200_000,
            seconds: 5.0,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IterStats {
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    /// Rule name -> times it newly applied in this iteration.
    pub applied: BTreeMap<String, usize>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    pub name: String,
    pub stop_reason: String,
    pub iterations: Vec<IterStats>,
    pub seconds: f64,
    pub final_nodes: usize,
    pub final_classes: usize,
}

impl StageReport {
    /// Total applications per rule over the stage.
    pub fn rules_fired(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for it in &self.iterations {
            for (r, n) in &it.applied {
                *m.entry(r.clone()).or_insert(0) += n;
            }
        }
        m
    }
}

pub fn describe_stop(r: &Option<StopReason>) -> String {
    match r {
        None => "not run".into(),
        Some(StopReason::Saturated) => "saturated".into(),
        Some(StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(StopReason::NodeLimit(n)) => format!("e-node limit ({n})"),
        Some(StopReason::TimeLimit(s)) => format!("time limit ({s} s)"),
        Some(StopReason::Other(s)) => s.clone(),
    }
}

/// Runs `rules` on `eg` under `budget`; returns the grown e-graph.
pub fn saturate(
    eg: TEGraph,
    name: &str,
    rules: &[Rewrite<TNode, TensorAnalysis>],
    budget: &Budget,
) -> (TEGraph, StageReport) {
    let start = Instant::now();
    let runner = Runner::default()
        .with_egraph(eg)
        .with_iter_limit(budget.iterations)
        .with_node_limit(budget.nodes)
        .with_time_limit(Duration::from_secs_f64(budget.seconds.max(0.0)))
        .run(rules);
    let iterations = runner
        .iterations
        .iter()
        .map(|it| IterStats {
            egraph_nodes: it.egraph_nodes,
            egraph_classes: it.egraph_classes,
            applied: it
                .applied
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            seconds: it.total_time,
        })
        .collect();
    let report = StageReport {
        name: name.to_string(),
        stop_reason: describe_stop(&runner.stop_reason),
        iterations,
        seconds: start.elapsed().as_secs_f64(),
        final_nodes: runner.egraph.total_number_of_nodes(),
        final_classes: runner.egraph.number_of_classes(),
    };
    let mut eg = runner.egraph;
    eg.rebuild();
    (eg, report)
}
