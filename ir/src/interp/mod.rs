//! The reference interpreter: runs any graph on the CPU, one node at a time,
//! with the kernels of `semantics`. It is the oracle for every backend.

pub mod minifloat;
pub mod tensor;

pub use tensor::{Storage, Tensor};

use crate::semantics::{self, Ctx};
use crate::{Dim, Graph, TensorType};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpError {
    #[error("graph expects {expected} inputs but {given} were given")]
    InputCount { expected: usize, given: usize },
    #[error("input \"{name}\": expected {expected}, got {got}")]
    InputType {
        name: String,
        expected: String,
        got: String,
    },
    #[error("input \"{name}\": dimension {dim} is {got}, above its bound {bound}")]
    AboveBound {
        name: String,
        dim: String,
        got: usize,
        bound: u64,
    },
    #[error("input \"{name}\": dimension {dim} is {got} here but {prev} elsewhere")]
    SymbolMismatch {
        name: String,
        dim: String,
        got: usize,
        prev: usize,
    },
    #[error("node {node}: op {op} (domain {domain}) is not supported by the interpreter")]
    Unsupported {
        node: String,
        op: String,
        domain: String,
    },
    #[error("node {node}: {msg}")]
    Kernel { node: String, msg: String },
    #[error("node {node}: value \"{value}\" is used before it is computed")]
    NotComputed { node: String, value: String },
    #[error("constant \"{name}\": {msg}")]
    Const { name: String, msg: String },
}

fn check_type(
    name: &str,
    ty: &TensorType,
    t: &Tensor,
    syms: &mut HashMap<String, usize>,
) -> Result<(), InterpError> {
    let bad = || InterpError::InputType {
        name: name.to_string(),
        expected: ty.to_string(),
        got: format!("{}{:?}", t.dtype, t.shape).replace(' ', ""),
    };
    if ty.dtype != t.dtype || !ty.shape.admits(&t.shape) {
        return Err(bad());
    }
    if let Some(dims) = ty.shape.dims() {
        for (d, &n) in dims.iter().zip(&t.shape) {
            if let Dim::Sym(s) = d {
                let prev = *syms.entry(s.clone()).or_insert(n);
                if prev != n {
                    return Err(InterpError::SymbolMismatch {
                        name: name.to_string(),
                        dim: s.clone(),
                        got: n,
                        prev,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Runs `g` on `inputs` (in graph-input order) and returns the graph outputs.
/// Every produced value is checked against its declared type, so a wrong type
/// rule or kernel shows up as an error here rather than as silent garbage.
pub fn run(g: &Graph, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InterpError> {
    if inputs.len() != g.inputs.len() {
        return Err(InterpError::InputCount {
            expected: g.inputs.len(),
            given: inputs.len(),
        });
    }
    let mut env: Vec<Option<Tensor>> = vec![None; g.values.len()];
    let mut syms = HashMap::new();
    for (&id, t) in g.inputs.iter().zip(inputs) {
        let v = g.value(id);
        check_type(&v.name, &v.ty, &t, &mut syms)?;
        if let Some(dims) = v.ty.shape.dims() {
            for (d, &n) in dims.iter().zip(&t.shape) {
                if let Dim::Sym(s) = d
                    && let Some(&bound) = g.dim_bounds.get(s)
                    && n as u64 > bound
                {
                    return Err(InterpError::AboveBound {
                        name: v.name.clone(),
                        dim: s.clone(),
                        got: n,
                        bound,
                    });
                }
            }
        }
        env[id.index()] = Some(t);
    }
    for (&id, data) in &g.consts {
        let t = Tensor::from_data(data).map_err(|e| InterpError::Const {
            name: g.value(id).name.clone(),
            msg: e.to_string(),
        })?;
        env[id.index()] = Some(t);
    }
    // Free each value after its last use so that large models fit.
    let mut last_use = vec![usize::MAX; g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for x in n.inputs.iter().flatten() {
            last_use[x.index()] = i;
        }
    }
    for o in &g.outputs {
        last_use[o.index()] = usize::MAX;
    }
    for (i, node) in g.nodes.iter().enumerate() {
        let imp = semantics::lookup(node.op).ok_or_else(|| InterpError::Unsupported {
            node: node.describe(),
            op: node.op.name().to_string(),
            domain: node.op.domain().to_string(),
        })?;
        let mut args = Vec::with_capacity(node.inputs.len());
        for x in &node.inputs {
            args.push(match x {
                None => None,
                Some(id) => {
                    Some(
                        env[id.index()]
                            .as_ref()
                            .ok_or_else(|| InterpError::NotComputed {
                                node: node.describe(),
                                value: g.value(*id).name.clone(),
                            })?,
                    )
                }
            });
        }
        let outs = (imp.kernel)(&Ctx::new(node), &args).map_err(|e| InterpError::Kernel {
            node: node.describe(),
            msg: e.0,
        })?;
        let wanted = node
            .outputs
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |p| p + 1);
        if outs.len() < wanted {
            return Err(InterpError::Kernel {
                node: node.describe(),
                msg: format!("kernel produced {} outputs, {wanted} wanted", outs.len()),
            });
        }
        for (slot, t) in node.outputs.iter().zip(outs) {
            if let Some(id) = slot {
                let v = g.value(*id);
                check_type(&v.name, &v.ty, &t, &mut syms).map_err(|e| InterpError::Kernel {
                    node: node.describe(),
                    msg: format!("output {e}"),
                })?;
                env[id.index()] = Some(t);
            }
        }
        for x in node.inputs.iter().flatten() {
            if last_use[x.index()] == i && !g.consts.contains_key(x) {
                env[x.index()] = None;
            }
        }
    }
    g.outputs
        .iter()
        .map(|o| {
            env[o.index()]
                .clone()
                .ok_or_else(|| InterpError::NotComputed {
                    node: "(graph outputs)".into(),
                    value: g.value(*o).name.clone(),
                })
        })
        .collect()
}
