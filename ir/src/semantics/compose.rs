//! Ops defined as compositions of other ops (smelt's fused and layout ops)
//! reuse those ops' own type rules and kernels through these helpers, so a
//! composite can never disagree with its parts.

use super::{Ctx, OpImpl, OpResult, TypeInput};
use crate::interp::Tensor;
use crate::{Attrs, Node, Op, TensorType, ValueId, op_bail};

pub(super) fn stand_in(op: Op, attrs: Attrs, nin: usize) -> Node {
    Node {
        op,
        name: String::new(),
        inputs: vec![Some(ValueId(0)); nin],
        outputs: vec![Some(ValueId(0))],
        attrs,
    }
}

pub(super) fn sem(op: Op) -> OpResult<OpImpl> {
    match super::lookup(op) {
        Some(i) => Ok(i),
        None => op_bail!("op {op} has no semantics"),
    }
}

pub(super) fn ty1(op: Op, attrs: Attrs, ins: &[Option<TypeInput>]) -> OpResult<TensorType> {
    let node = stand_in(op, attrs, ins.len());
    let mut v = (sem(op)?.infer)(&Ctx::new(&node), ins)?;
    match v.pop() {
        Some(t) if v.is_empty() => Ok(t),
        _ => op_bail!("{op}: expected one output type"),
    }
}

pub(super) fn run1(op: Op, attrs: Attrs, ins: &[Option<&Tensor>]) -> OpResult<Tensor> {
    let node = stand_in(op, attrs, ins.len());
    let mut v = (sem(op)?.kernel)(&Ctx::new(&node), ins)?;
    if v.is_empty() {
        op_bail!("{op}: kernel returned no output");
    }
    Ok(v.swap_remove(0))
}
