//! Graph-level type inference: runs each op's type rule in program order and
//! merges the result with the types already declared on the values (a model
//! may declare more than smelt can infer, or the other way round).

use crate::interp::Tensor;
use crate::semantics::{self, Ctx, TypeInput};
use crate::{Dim, Graph, Shape, TensorType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {node}: {msg}")]
pub struct InferError {
    pub node: String,
    pub msg: String,
}

/// Combines a declared and an inferred type: known beats unknown; two known
/// static dims that disagree are an error.
pub fn merge(declared: &TensorType, inferred: &TensorType) -> Result<TensorType, String> {
    if declared.dtype != inferred.dtype {
        return Err(format!(
            "declared dtype {} but the op produces {}",
            declared.dtype, inferred.dtype
        ));
    }
    let shape = match (declared.shape.dims(), inferred.shape.dims()) {
        (None, _) => inferred.shape.clone(),
        (Some(_), None) => declared.shape.clone(),
        (Some(a), Some(b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "declared shape {} but the op produces {}",
                    declared.shape, inferred.shape
                ));
            }
            let mut dims = Vec::with_capacity(a.len());
            for (x, y) in a.iter().zip(b) {
                dims.push(match (x, y) {
                    (Dim::Static(m), Dim::Static(n)) if m != n => {
                        return Err(format!(
                            "declared shape {} but the op produces {}",
                            declared.shape, inferred.shape
                        ));
                    }
                    (Dim::Static(_), _) => x.clone(),
                    (_, Dim::Static(_)) => y.clone(),
                    (Dim::Sym(_), _) => x.clone(),
                    _ => y.clone(),
                });
            }
            Shape(Some(dims))
        }
    };
    Ok(TensorType::new(declared.dtype, shape))
}

/// Infers the output types of node `idx` from the current value types.
pub fn infer_node(
    g: &Graph,
    idx: usize,
    consts: &[Option<Tensor>],
) -> Result<Vec<TensorType>, InferError> {
    let node = &g.nodes[idx];
    let err = |msg: String| InferError {
        node: node.describe(),
        msg,
    };
    let imp = semantics::lookup(node.op).ok_or_else(|| {
        err(format!(
            "op {} (domain {}) is not supported",
            node.op,
            node.op.domain()
        ))
    })?;
    let ins: Vec<Option<TypeInput>> = node
        .inputs
        .iter()
        .map(|x| {
            x.map(|id| TypeInput {
                ty: &g.value(id).ty,
                value: consts.get(id.index()).and_then(Option::as_ref),
            })
        })
        .collect();
    (imp.infer)(&Ctx::new(node), &ins).map_err(|e| err(e.0))
}

/// Infers every node's outputs in order and stores the merged types.
pub fn infer_graph(g: &mut Graph) -> Result<(), InferError> {
    let mut consts: Vec<Option<Tensor>> = vec![None; g.values.len()];
    for (id, d) in &g.consts {
        // Only small constants matter for shapes; skip decoding weights.
        if d.numel() <= 1 << 16 {
            consts[id.index()] = Tensor::from_data(d).ok();
        }
    }
    for i in 0..g.nodes.len() {
        let tys = infer_node(g, i, &consts)?;
        let node = &g.nodes[i];
        let outs: Vec<_> = node.outputs.clone();
        let desc = node.describe();
        for (slot, ty) in outs.iter().zip(tys) {
            if let Some(id) = slot {
                let v = g.value_mut(*id);
                v.ty = merge(&v.ty, &ty).map_err(|msg| InferError {
                    node: desc.clone(),
                    msg: format!("output \"{}\": {msg}", v.name),
                })?;
            }
        }
    }
    Ok(())
}
