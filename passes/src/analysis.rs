//! The e-class analysis: the tensor type of each class (from the IR type
//! rules) and, for small tensors, its constant value. A class whose value is
//! known gets a `Const` node, so constant folding happens during saturation
//! by running the op's reference kernel.

use crate::lang::{AttrKey, TNode, is_random};
use egg::{Analysis, DidMerge, EGraph, Id};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::{self, Ctx, TypeInput};
use smelt_ir::{Node, TensorData, TensorType, ValueId};
use std::sync::Arc;

/// Tensors with at most this many elements are decoded and folded; larger
/// ones (weights) are never decoded, which keeps the analysis cheap.
pub const FOLD_LIMIT: usize = 4096;

pub type TEGraph = EGraph<TNode, TensorAnalysis>;

#[derive(Debug, Clone, Default)]
pub struct ClassData {
    /// One type per op output; empty for attribute, absent and root classes,
    /// and for op classes whose type rule failed.
    pub tys: Vec<TensorType>,
    /// The value, when known and small.
    pub value: Option<Arc<Tensor>>,
    /// The attributes, for `Attrs` classes.
    pub attrs: Option<AttrKey>,
}

impl ClassData {
    /// The type of a single-output class.
    pub fn ty(&self) -> Option<&TensorType> {
        match self.tys.as_slice() {
            [t] => Some(t),
            _ => None,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct TensorAnalysis {
    /// Constants by `TNode::Const` index: graph constants and folded values.
    pub consts: Vec<TensorData>,
    /// Classes that got a folded `Const`, so folding happens once per class.
    pub folded: usize,
}

impl TensorAnalysis {
    pub fn add_const(&mut self, d: TensorData) -> u32 {
        self.consts.push(d);
        (self.consts.len() - 1) as u32
    }
}

/// A node standing in for an e-node when calling IR type rules and kernels,
/// which look only at attributes and at how many inputs and outputs there are.
pub fn stand_in_node(op: smelt_ir::Op, attrs: &AttrKey, ninputs: usize, nout: usize) -> Node {
    Node {
        op,
        name: String::new(),
        inputs: vec![Some(ValueId(0)); ninputs],
        outputs: vec![Some(ValueId(0)); nout],
        attrs: attrs.attrs().clone(),
    }
}

fn make_op(eg: &TEGraph, op: smelt_ir::Op, nout: usize, args: &[Id]) -> ClassData {
    let Some(attrs) = args.first().and_then(|a| eg[*a].data.attrs.clone()) else {
        return ClassData::default();
    };
    let Some(imp) = semantics::lookup(op) else {
        return ClassData::default();
    };
    let ins = &args[1..];
    let mut node = stand_in_node(op, &attrs, ins.len(), nout);
    // Absent inputs must look absent to the type rule.
    for (slot, id) in node.inputs.iter_mut().zip(ins) {
        if eg[*id].nodes.iter().any(|n| matches!(n, TNode::Absent)) {
            *slot = None;
        }
    }
    let mut tys_in: Vec<Option<(&TensorType, Option<&Tensor>)>> = Vec::with_capacity(ins.len());
    for (slot, id) in node.inputs.iter().zip(ins) {
        if slot.is_none() {
            tys_in.push(None);
            continue;
        }
        let d = &eg[*id].data;
        match d.ty() {
            Some(t) => tys_in.push(Some((t, d.value.as_deref()))),
            None => return ClassData::default(),
        }
    }
    let type_ins: Vec<Option<TypeInput>> = tys_in
        .iter()
        .map(|x| x.map(|(ty, value)| TypeInput { ty, value }))
        .collect();
    let ctx = Ctx::new(&node);
    let Ok(mut tys) = (imp.infer)(&ctx, &type_ins) else {
        return ClassData::default();
    };
    // Some rules type every optional output; keep those the node has.
    if tys.len() < nout {
        return ClassData::default();
    }
    tys.truncate(nout);
    let mut value = None;
    let foldable = nout == 1
        && !is_random(op)
        && tys_in.iter().all(|x| x.is_none_or(|(_, v)| v.is_some()))
        && tys[0]
            .shape
            .as_static()
            .and_then(|s| smelt_ir::shape::checked_numel(&s))
            .is_some_and(|n| n <= FOLD_LIMIT);
    if foldable {
        let vals: Vec<Option<&Tensor>> = tys_in.iter().map(|x| x.and_then(|(_, v)| v)).collect();
        if let Ok(mut out) = (imp.kernel)(&ctx, &vals)
            && let Some(t) = out.drain(..).next()
            && tys[0].shape.admits(&t.shape)
            && t.dtype == tys[0].dtype
        {
            value = Some(Arc::new(t));
        }
    }
    ClassData {
        tys,
        value,
        attrs: None,
    }
}

impl Analysis<TNode> for TensorAnalysis {
    type Data = ClassData;

    fn make(eg: &mut TEGraph, enode: &TNode, _id: Id) -> ClassData {
        match enode {
            TNode::Op { op, nout, args } => make_op(eg, *op, *nout as usize, args),
            TNode::Attrs(a) => ClassData {
                attrs: Some(a.clone()),
                ..Default::default()
            },
            TNode::Const(i) => match eg.analysis.consts.get(*i as usize) {
                Some(d) => ClassData {
                    tys: vec![d.ty()],
                    value: if d.numel() <= FOLD_LIMIT {
                        Tensor::from_data(d).ok().map(Arc::new)
                    } else {
                        None
                    },
                    attrs: None,
                },
                None => ClassData::default(),
            },
            TNode::Proj { index, arg } => {
                let d = &eg[arg[0]].data;
                ClassData {
                    tys: d.tys.get(*index as usize).cloned().into_iter().collect(),
                    ..Default::default()
                }
            }
            // Input types are set by the converter, which knows the graph.
            TNode::Input(_) | TNode::Absent | TNode::Outputs(_) => ClassData::default(),
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        let mut changed_a = false;
        let mut changed_b = false;
        if a.tys.is_empty() && !b.tys.is_empty() {
            a.tys = b.tys;
            changed_a = true;
        } else if a.tys.len() == b.tys.len() {
            // Keep the more precise of two compatible types (a sound rule
            // never unions classes of different types).
            for (x, y) in a.tys.iter_mut().zip(&b.tys) {
                if let Ok(m) = smelt_ir::infer::merge(x, y) {
                    if &m != x {
                        *x = m.clone();
                        changed_a = true;
                    }
                    if &m != y {
                        changed_b = true;
                    }
                }
            }
        } else if !a.tys.is_empty() {
            changed_b = true;
        }
        match (&a.value, b.value) {
            (None, Some(v)) => {
                a.value = Some(v);
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            _ => {}
        }
        if a.attrs.is_none() && b.attrs.is_some() {
            a.attrs = b.attrs;
            changed_a = true;
        }
        DidMerge(changed_a, changed_b)
    }

    fn modify(eg: &mut TEGraph, id: Id) {
        let Some(v) = eg[id].data.value.clone() else {
            return;
        };
        if eg[id].nodes.iter().any(|n| matches!(n, TNode::Const(_))) {
            return;
        }
        let Ok(data) = v.to_data() else {
            return;
        };
        let ix = eg.analysis.add_const(data);
        eg.analysis.folded += 1;
        let c = eg.add(TNode::Const(ix));
        eg.union(id, c);
    }
}
