//! Local response normalization as its arithmetic: the squares summed over
//! a window of channels (shifted slices of the zero-padded squares), then
//! x / (bias + alpha/size · sum)^beta.

use super::steps::{float_attr, slice};
use super::{Builder, Expansion};
use smelt_ir::{Attr, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::LRN => Some(lrn),
        _ => None,
    }
}

fn lrn(b: &mut Builder, n: &Node) -> Result<Option<Vec<Option<ValueId>>>, String> {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    let (Some(shape), Some(Attr::Int(size))) = (b.shape(x), n.attr("size")) else {
        return Ok(None);
    };
    let size = *size;
    let d = b.dtype(x);
    if shape.len() < 2 || size < 1 || !d.is_float() {
        return Ok(None);
    }
    let c = shape[1] as i64;
    // Window over channels [ch - floor((size-1)/2), ch + ceil((size-1)/2)].
    let (before, after) = ((size - 1) / 2, (size - 1) - (size - 1) / 2);
    let sq = b.op(Op::Mul, &[x, x], &[])?;
    let mut pads = vec![0i64; 2 * shape.len()];
    pads[1] = before;
    pads[shape.len() + 1] = after;
    let padded = if before + after > 0 {
        let p = b.const_i64(&[pads.len()], pads)?;
        b.op(Op::Pad, &[sq, p], &[])?
    } else {
        sq
    };
    let mut sum = slice(b, padded, &[1], &[0], &[c])?;
    for j in 1..size {
        let s = slice(b, padded, &[1], &[j], &[j + c])?;
        sum = b.op(Op::Add, &[sum, s], &[])?;
    }
    let k = b.scalar(d, float_attr(n, "alpha").unwrap_or(1e-4) / size as f64)?;
    let bias = b.scalar(d, float_attr(n, "bias").unwrap_or(1.0))?;
    let beta = b.scalar(d, float_attr(n, "beta").unwrap_or(0.75))?;
    let scaled = b.op(Op::Mul, &[sum, k], &[])?;
    let base = b.op(Op::Add, &[scaled, bias], &[])?;
    let den = b.op(Op::Pow, &[base, beta], &[])?;
    Ok(Some(vec![Some(b.op(Op::Div, &[x, den], &[])?)]))
}
