//! Small building blocks the sequence and attention expansions share:
//! data movement with constant parameters, which maia lowers as strided DMA.

use super::Builder;
use smelt_ir::{Attr, Node, Op, ValueId};

pub type Out = Result<Option<Vec<Option<ValueId>>>, String>;

pub fn int_attr(n: &Node, name: &str, d: i64) -> i64 {
    match n.attr(name) {
        Some(Attr::Int(v)) => *v,
        _ => d,
    }
}

pub fn float_attr(n: &Node, name: &str) -> Option<f64> {
    match n.attr(name) {
        Some(Attr::Float(v)) => Some(*v as f64),
        _ => None,
    }
}

pub fn string_attr(n: &Node, name: &str, d: &str) -> String {
    match n.attr(name) {
        Some(Attr::String(v)) => v.clone(),
        _ => d.to_string(),
    }
}

/// `v[starts..ends]` on `axes` (unit steps).
pub fn slice(
    b: &mut Builder,
    v: ValueId,
    axes: &[i64],
    starts: &[i64],
    ends: &[i64],
) -> Result<ValueId, String> {
    let k = axes.len();
    let s = b.const_i64(&[k], starts.to_vec())?;
    let e = b.const_i64(&[k], ends.to_vec())?;
    let a = b.const_i64(&[k], axes.to_vec())?;
    b.op(Op::Slice, &[v, s, e, a], &[])
}

pub fn reshape(b: &mut Builder, v: ValueId, shape: &[usize]) -> Result<ValueId, String> {
    if b.shape(v).as_deref() == Some(shape) {
        return Ok(v);
    }
    let s = b.const_i64(&[shape.len()], shape.iter().map(|&d| d as i64).collect())?;
    b.op(Op::Reshape, &[v, s], &[])
}

pub fn transpose(b: &mut Builder, v: ValueId, perm: &[i64]) -> Result<ValueId, String> {
    if perm.iter().enumerate().all(|(i, &p)| p == i as i64) {
        return Ok(v);
    }
    b.op(Op::Transpose, &[v], &[("perm", Attr::Ints(perm.to_vec()))])
}

pub fn concat(b: &mut Builder, vs: &[ValueId], axis: i64) -> Result<ValueId, String> {
    if let [v] = vs {
        return Ok(*v);
    }
    b.op(Op::Concat, vs, &[("axis", Attr::Int(axis))])
}

/// Element `i` of `v` along `axis`, that axis removed.
pub fn pick(b: &mut Builder, v: ValueId, axis: usize, i: usize) -> Result<ValueId, String> {
    let shape = b.shape(v).ok_or("a static shape is needed")?;
    let s = slice(b, v, &[axis as i64], &[i as i64], &[i as i64 + 1])?;
    let mut out = shape;
    out.remove(axis);
    reshape(b, s, &out)
}

pub fn add(b: &mut Builder, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Add, &[x, y], &[])
}

pub fn sub(b: &mut Builder, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Sub, &[x, y], &[])
}

pub fn mul(b: &mut Builder, x: ValueId, y: ValueId) -> Result<ValueId, String> {
    b.op(Op::Mul, &[x, y], &[])
}

pub fn cast(b: &mut Builder, v: ValueId, to: smelt_ir::DType) -> Result<ValueId, String> {
    if b.dtype(v) == to {
        return Ok(v);
    }
    let code = smelt_ir::semantics::util::dtype_to_onnx(to)
        .ok_or_else(|| format!("{to} has no ONNX code"))?;
    b.op(Op::Cast, &[v], &[("to", Attr::Int(code))])
}
