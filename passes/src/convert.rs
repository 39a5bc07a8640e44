//! Graph <-> e-graph. Importing hash-conses the graph (identical nodes
//! become one class, which is common-subexpression elimination for free);
//! exporting walks the chosen node of each class from the outputs and
//! rebuilds a graph that keeps the original names wherever a class still
//! stands for an original value.

use crate::analysis::{TEGraph, TensorAnalysis};
use crate::lang::{AttrKey, TNode, is_random};
use egg::{Id, Language};
use smelt_ir::{Graph, Node, TensorType, ValueId};
use std::collections::{HashMap, HashSet};

/// What the e-graph does not hold: the graph's signature and its names.
#[derive(Debug, Clone)]
pub struct Imported {
    pub root: Id,
    pub name: String,
    /// Graph inputs in order: name and declared type.
    pub inputs: Vec<(String, TensorType)>,
    /// Graph output names and declared types in order.
    pub outputs: Vec<(String, TensorType)>,
    /// Original value names and node names, by the class first holding them.
    pub value_names: Vec<(Id, String)>,
    pub node_names: Vec<(Id, String)>,
    /// Bounds of symbolic dims, carried over unchanged.
    pub dim_bounds: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("value \"{0}\" is used before it is defined")]
    Undefined(String),
    #[error("node {0} has more than 255 outputs")]
    TooManyOutputs(String),
    #[error("class {0} has no node that can be exported")]
    NoNode(usize),
    #[error("exported graph is invalid: {0}")]
    Invalid(String),
}

/// Adds `g` to a fresh e-graph.
pub fn to_egraph(g: &Graph) -> Result<(TEGraph, Imported), ConvertError> {
    let mut eg = TEGraph::new(TensorAnalysis::default());
    let mut class: Vec<Option<Id>> = vec![None; g.values.len()];
    let mut value_names = Vec::new();
    let mut node_names = Vec::new();
    let mut inputs = Vec::new();
    for (i, &v) in g.inputs.iter().enumerate() {
        let id = eg.add(TNode::Input(i as u32));
        let val = g.value(v);
        eg[id].data.tys = vec![val.ty.clone()];
        class[v.index()] = Some(id);
        inputs.push((val.name.clone(), val.ty.clone()));
        value_names.push((id, val.name.clone()));
    }
    for (&v, d) in &g.consts {
        let ix = eg.analysis.add_const(d.clone());
        let id = eg.add(TNode::Const(ix));
        class[v.index()] = Some(id);
        value_names.push((id, g.value(v).name.clone()));
    }
    let absent = eg.add(TNode::Absent);
    for (ni, node) in g.nodes.iter().enumerate() {
        let key = if is_random(node.op) {
            AttrKey::unique(node.attrs.clone(), ni)
        } else {
            AttrKey::new(node.attrs.clone())
        };
        let mut args = vec![eg.add(TNode::Attrs(key))];
        for x in &node.inputs {
            args.push(match x {
                None => absent,
                Some(v) => class
                    .get(v.index())
                    .copied()
                    .flatten()
                    .ok_or_else(|| ConvertError::Undefined(g.value(*v).name.clone()))?,
            });
        }
        let nout = u8::try_from(node.outputs.len())
            .map_err(|_| ConvertError::TooManyOutputs(node.describe()))?;
        let op_id = eg.add(TNode::Op {
            op: node.op,
            nout: nout.max(1),
            args,
        });
        if !node.name.is_empty() {
            node_names.push((op_id, node.name.clone()));
        }
        for (k, out) in node.outputs.iter().enumerate() {
            let Some(v) = out else { continue };
            let id = if nout <= 1 {
                op_id
            } else {
                eg.add(TNode::Proj {
                    index: k as u32,
                    arg: [op_id],
                })
            };
            // The declared type may know more (symbolic names) than the rule.
            let declared = &g.value(*v).ty;
            let data = &mut eg[id].data;
            match data.tys.as_slice() {
                [t] => {
                    if let Ok(m) = smelt_ir::infer::merge(declared, t) {
                        data.tys = vec![m];
                    }
                }
                [] => data.tys = vec![declared.clone()],
                _ => {}
            }
            class[v.index()] = Some(id);
            value_names.push((id, g.value(*v).name.clone()));
        }
    }
    let mut outs = Vec::new();
    let mut outputs = Vec::new();
    for &o in &g.outputs {
        let id = class
            .get(o.index())
            .copied()
            .flatten()
            .ok_or_else(|| ConvertError::Undefined(g.value(o).name.clone()))?;
        outs.push(id);
        let v = g.value(o);
        outputs.push((v.name.clone(), v.ty.clone()));
    }
    let root = eg.add(TNode::Outputs(outs));
    eg.rebuild();
    Ok((
        eg,
        Imported {
            root,
            name: g.name.clone(),
            inputs,
            outputs,
            value_names,
            node_names,
            dim_bounds: g.dim_bounds.clone(),
        },
    ))
}

/// Rebuilds a graph from the node chosen for each class by `choose`.
pub fn from_egraph(
    eg: &TEGraph,
    imp: &Imported,
    choose: impl Fn(Id) -> Option<TNode>,
) -> Result<Graph, ConvertError> {
    let mut g = Graph::new(imp.name.clone());
    g.dim_bounds = imp.dim_bounds.clone();
    let mut used: HashSet<String> = HashSet::new();
    let mut preferred: HashMap<Id, &str> = HashMap::new();
    for (id, n) in &imp.value_names {
        preferred.entry(eg.find(*id)).or_insert(n.as_str());
    }
    let mut node_name: HashMap<Id, &str> = HashMap::new();
    for (id, n) in &imp.node_names {
        node_name.entry(eg.find(*id)).or_insert(n.as_str());
    }
    // Output names are taken first so no inner value can claim them.
    for (n, _) in &imp.outputs {
        used.insert(n.clone());
    }
    let mut input_ids = Vec::new();
    for (n, ty) in &imp.inputs {
        used.insert(n.clone());
        input_ids.push(g.add_value(n.clone(), ty.clone()));
    }
    g.inputs = input_ids.clone();

    let mut b = Builder {
        eg,
        g,
        used,
        preferred,
        node_name,
        done: HashMap::new(),
        fresh: 0,
        input_ids,
    };
    let root = eg.find(imp.root);
    let Some(TNode::Outputs(outs)) = choose(root) else {
        return Err(ConvertError::NoNode(usize::from(root)));
    };
    let mut out_vals = Vec::new();
    for (k, c) in outs.iter().enumerate() {
        let (want_name, want_ty) = &imp.outputs[k.min(imp.outputs.len().saturating_sub(1))];
        let c = eg.find(*c);
        let v = b.emit(c, &choose, Some(want_name))?;
        let Some(v) = v else {
            return Err(ConvertError::NoNode(usize::from(c)));
        };
        // Keep the output's name: if the class ended up as an input, a
        // constant or another output, add an Identity to carry the name.
        let v = if b.g.value(v).name == *want_name {
            v
        } else {
            let ty = b.g.value(v).ty.clone();
            let ty = smelt_ir::infer::merge(want_ty, &ty).unwrap_or(ty);
            let o = b.g.add_value(want_name.clone(), ty);
            b.g.add_node(Node {
                op: smelt_ir::Op::Identity,
                name: String::new(),
                inputs: vec![Some(v)],
                outputs: vec![Some(o)],
                attrs: Default::default(),
            });
            o
        };
        out_vals.push(v);
    }
    b.g.outputs = out_vals;
    let g = b.g;
    smelt_ir::verify(&g).map_err(|e| ConvertError::Invalid(e.to_string()))?;
    Ok(g)
}

struct Builder<'a> {
    eg: &'a TEGraph,
    g: Graph,
    used: HashSet<String>,
    preferred: HashMap<Id, &'a str>,
    node_name: HashMap<Id, &'a str>,
    /// Values emitted per class; multi-output ops hold all their outputs.
    done: HashMap<Id, Vec<Option<ValueId>>>,
    fresh: usize,
    input_ids: Vec<ValueId>,
}

impl Builder<'_> {
    fn name_for(&mut self, c: Id, want: Option<&str>) -> String {
        if let Some(w) = want
            && !self.g.values.iter().any(|v| v.name == w)
        {
            return w.to_string();
        }
        if let Some(p) = self.preferred.get(&c)
            && self.used.insert(p.to_string())
        {
            return p.to_string();
        }
        loop {
            self.fresh += 1;
            let n = format!("t{}", self.fresh);
            if self.used.insert(n.clone()) {
                return n;
            }
        }
    }

    /// Emits class `c` (after its operands, iteratively so deep graphs do
    /// not overflow the stack) and returns its value.
    fn emit(
        &mut self,
        c: Id,
        choose: &impl Fn(Id) -> Option<TNode>,
        want: Option<&str>,
    ) -> Result<Option<ValueId>, ConvertError> {
        let mut stack: Vec<(Id, bool)> = vec![(c, false)];
        while let Some((id, expanded)) = stack.pop() {
            if self.done.contains_key(&id) {
                continue;
            }
            let node = choose(id).ok_or(ConvertError::NoNode(usize::from(id)))?;
            if !expanded {
                stack.push((id, true));
                let kids: Vec<Id> = match &node {
                    TNode::Op { .. } => node.inputs().to_vec(),
                    TNode::Proj { arg, .. } => vec![arg[0]],
                    _ => vec![],
                };
                for k in kids.into_iter().rev() {
                    let k = self.eg.find(k);
                    if !self.done.contains_key(&k) {
                        stack.push((k, false));
                    }
                }
                continue;
            }
            let w = if id == c { want } else { None };
            let vals = self.build(id, &node, w)?;
            self.done.insert(id, vals);
        }
        Ok(self.done.get(&c).and_then(|v| v.first().copied().flatten()))
    }

    fn build(
        &mut self,
        id: Id,
        node: &TNode,
        want: Option<&str>,
    ) -> Result<Vec<Option<ValueId>>, ConvertError> {
        let eg = self.eg;
        let data = &eg[id].data;
        Ok(match node {
            TNode::Absent => vec![None],
            TNode::Input(i) => vec![self.input_ids.get(*i as usize).copied()],
            TNode::Const(ix) => {
                let d = eg
                    .analysis
                    .consts
                    .get(*ix as usize)
                    .ok_or(ConvertError::NoNode(usize::from(id)))?
                    .clone();
                let name = self.name_for(id, None);
                vec![Some(self.g.add_const(name, d))]
            }
            TNode::Proj { index, arg } => {
                let a = eg.find(arg[0]);
                let v = self
                    .done
                    .get(&a)
                    .and_then(|v| v.get(*index as usize).copied().flatten());
                vec![v]
            }
            TNode::Op { op, nout, args } => {
                let attrs = args
                    .first()
                    .and_then(|a| eg[*a].data.attrs.as_ref())
                    .ok_or(ConvertError::NoNode(usize::from(id)))?
                    .attrs()
                    .clone();
                let mut inputs = Vec::new();
                for a in node.inputs() {
                    let a = eg.find(*a);
                    let v = self.done.get(&a).and_then(|v| v.first().copied().flatten());
                    inputs.push(v);
                }
                let mut outputs = Vec::new();
                if *nout <= 1 {
                    let ty = data
                        .ty()
                        .cloned()
                        .ok_or(ConvertError::NoNode(usize::from(id)))?;
                    let name = self.name_for(id, want);
                    outputs.push(Some(self.g.add_value(name, ty)));
                } else {
                    for k in 0..*nout as usize {
                        let ty = data
                            .tys
                            .get(k)
                            .cloned()
                            .ok_or(ConvertError::NoNode(usize::from(id)))?;
                        // Name each output after the class projecting it.
                        let proj = eg.lookup(TNode::Proj {
                            index: k as u32,
                            arg: [id],
                        });
                        let name = match proj {
                            Some(p) => self.name_for(eg.find(p), None),
                            None => self.name_for(id, None),
                        };
                        outputs.push(Some(self.g.add_value(name, ty)));
                    }
                }
                self.g.add_node(Node {
                    op: *op,
                    name: self.node_name.get(&id).copied().unwrap_or("").to_string(),
                    inputs,
                    outputs: outputs.clone(),
                    attrs,
                });
                outputs
            }
            TNode::Attrs(_) | TNode::Outputs(_) => vec![None],
        })
    }
}

/// The chosen node of every class reachable from the root, as egg's
/// `RecExpr` (used by `explain` to show what was extracted).
pub fn node_count(eg: &TEGraph, root: Id, choose: impl Fn(Id) -> Option<TNode>) -> usize {
    let mut seen = HashSet::new();
    let mut stack = vec![eg.find(root)];
    let mut n = 0;
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        if let Some(node) = choose(c) {
            if matches!(node, TNode::Op { .. }) {
                n += 1;
            }
            for k in node.children() {
                stack.push(eg.find(*k));
            }
        }
    }
    n
}
