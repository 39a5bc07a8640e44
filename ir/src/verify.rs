//! The verifier: every value defined exactly once and before its uses (so the
//! graph is acyclic), no dangling references, unique names, constants that
//! match their types, and node types that agree with the op's type rule.

use crate::infer::{infer_node, merge};
use crate::interp::Tensor;
use crate::{Graph, ValueId};
use petgraph::algo::toposort;
use petgraph::graph::DiGraph;
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("value id %{0} does not exist")]
    Dangling(u32),
    #[error("value \"{0}\" is defined more than once")]
    Redefined(String),
    #[error("value \"{value}\" used by node {node} is never defined")]
    Undefined { value: String, node: String },
    #[error("graph output \"{0}\" is never defined")]
    UndefinedOutput(String),
    #[error("the graph has a cycle through node {0}")]
    Cycle(String),
    #[error("value \"{value}\" is used by node {node} before it is defined")]
    UseBeforeDef { value: String, node: String },
    #[error("two values are named \"{0}\"")]
    DuplicateName(String),
    #[error("constant \"{name}\" holds {actual} but is typed {declared}")]
    ConstType {
        name: String,
        declared: String,
        actual: String,
    },
    #[error("{0}")]
    Type(String),
}

pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let n = g.values.len();
    let check = |id: ValueId| {
        if id.index() < n {
            Ok(())
        } else {
            Err(VerifyError::Dangling(id.0))
        }
    };
    let mut names = HashSet::new();
    for v in &g.values {
        if !names.insert(v.name.as_str()) {
            return Err(VerifyError::DuplicateName(v.name.clone()));
        }
    }
    // Where each value is defined: None = not yet, Some(usize::MAX) = input or const.
    let mut def: Vec<Option<usize>> = vec![None; n];
    let outer = usize::MAX;
    for &id in g.inputs.iter().chain(g.consts.keys()) {
        check(id)?;
        if def[id.index()].replace(outer).is_some() {
            return Err(VerifyError::Redefined(g.value(id).name.clone()));
        }
    }
    for (i, node) in g.nodes.iter().enumerate() {
        for &id in node.outputs.iter().flatten() {
            check(id)?;
            if def[id.index()].replace(i).is_some() {
                return Err(VerifyError::Redefined(g.value(id).name.clone()));
            }
        }
    }
    // Dependency graph between nodes, for a cycle check that names a node.
    let mut dg = DiGraph::<usize, ()>::with_capacity(g.nodes.len(), 0);
    let ix: Vec<_> = (0..g.nodes.len()).map(|i| dg.add_node(i)).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        for &id in node.inputs.iter().flatten() {
            check(id)?;
            match def[id.index()] {
                None => {
                    return Err(VerifyError::Undefined {
                        value: g.value(id).name.clone(),
                        node: node.describe(),
                    });
                }
                Some(d) if d != outer => {
                    dg.add_edge(ix[d], ix[i], ());
                }
                _ => {}
            }
        }
    }
    if let Err(c) = toposort(&dg, None) {
        return Err(VerifyError::Cycle(g.nodes[dg[c.node_id()]].describe()));
    }
    for (i, node) in g.nodes.iter().enumerate() {
        for &id in node.inputs.iter().flatten() {
            if let Some(d) = def[id.index()]
                && d != outer
                && d >= i
            {
                return Err(VerifyError::UseBeforeDef {
                    value: g.value(id).name.clone(),
                    node: node.describe(),
                });
            }
        }
    }
    for &o in &g.outputs {
        check(o)?;
        if def[o.index()].is_none() {
            return Err(VerifyError::UndefinedOutput(g.value(o).name.clone()));
        }
    }
    let mut consts: Vec<Option<Tensor>> = vec![None; n];
    for (&id, d) in &g.consts {
        let v = g.value(id);
        if v.ty != d.ty() {
            return Err(VerifyError::ConstType {
                name: v.name.clone(),
                declared: v.ty.to_string(),
                actual: d.ty().to_string(),
            });
        }
        if d.numel() <= 1 << 16 {
            consts[id.index()] = Tensor::from_data(d).ok();
        }
    }
    for i in 0..g.nodes.len() {
        let node = &g.nodes[i];
        let tys = infer_node(g, i, &consts).map_err(|e| VerifyError::Type(e.to_string()))?;
        for (slot, ty) in node.outputs.iter().zip(&tys) {
            if let Some(id) = slot {
                let v = g.value(*id);
                merge(&v.ty, ty).map_err(|m| {
                    VerifyError::Type(format!(
                        "node {}: output \"{}\": {m}",
                        node.describe(),
                        v.name
                    ))
                })?;
            }
        }
    }
    Ok(())
}
