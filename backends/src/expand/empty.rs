//! Reductions over an empty extent: the output holds only the reduction's
//! identity (0 for sums, -inf for a max, ...), fixed by shapes alone, so it
//! is a constant — the op's own reference kernel, run on the empty input at
//! compile time, gives it.

use super::{Builder, Expansion};
use smelt_ir::interp::Tensor;
use smelt_ir::{Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::ReduceSum
        | Op::ReduceMean
        | Op::ReduceMax
        | Op::ReduceMin
        | Op::ReduceProd
        | Op::ReduceL1
        | Op::ReduceL2
        | Op::ReduceSumSquare
        | Op::ReduceLogSum
        | Op::ReduceLogSumExp => Some(fold_empty),
        _ => None,
    }
}

/// Whether some input of `n` is a tensor without elements.
pub fn has_empty_input(b: &Builder, n: &Node) -> bool {
    n.inputs
        .iter()
        .flatten()
        .any(|&v| b.shape(v).is_some_and(|s| s.contains(&0)))
}

fn fold_empty(b: &mut Builder, n: &Node) -> Result<Option<Vec<Option<ValueId>>>, String> {
    if !has_empty_input(b, n) {
        return Ok(None);
    }
    let mut ins = Vec::new();
    for v in &n.inputs {
        ins.push(match v {
            None => None,
            Some(v) => match (b.known(*v), b.shape(*v)) {
                (Some(t), _) => Some(t),
                (None, Some(s)) if s.contains(&0) => {
                    Some(Tensor::from_f64(b.dtype(*v), s, Vec::new()))
                }
                _ => return Ok(None),
            },
        });
    }
    let imp =
        smelt_ir::semantics::lookup(n.op).ok_or_else(|| format!("{} has no semantics", n.op))?;
    let refs: Vec<Option<&Tensor>> = ins.iter().map(|t| t.as_ref()).collect();
    let outs = (imp.kernel)(&smelt_ir::semantics::Ctx::new(n), &refs).map_err(|e| e.0)?;
    let mut vals = Vec::new();
    for t in &outs {
        vals.push(Some(b.constant(t)?));
    }
    Ok(Some(vals))
}
