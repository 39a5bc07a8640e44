//! CumSum and CumProd as log-many shifted adds (products): after the step
//! with shift s every element combines the 2s inputs ending at it
//! (Hillis–Steele). Exact for integers; for f32 the association differs
//! from a running sum only within rounding. Narrow floats, whose expected
//! data rounds after each running step, decline. An axis known only at
//! run time scans along every axis and selects the one asked for.

use super::Builder;
use super::steps::{Out, concat, int_attr, slice};
use smelt_ir::{DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<super::Expansion> {
    match op {
        Op::CumSum | Op::CumProd => Some(scan),
        _ => None,
    }
}

/// `y` moved by `s` along `axis` (towards higher indices, or lower when
/// `reverse`), the vacated places holding `fill`.
fn shift(
    b: &mut Builder,
    y: ValueId,
    shape: &[usize],
    axis: usize,
    s: usize,
    reverse: bool,
    fill: f64,
) -> Result<ValueId, String> {
    let l = shape[axis] as i64;
    let mut fs = shape.to_vec();
    fs[axis] = s;
    let count = fs.iter().product();
    let dt = b.dtype(y);
    let f = if dt.is_float() {
        b.const_f(dt, &fs, vec![fill; count])?
    } else {
        b.constant(&smelt_ir::interp::Tensor::from_i64(
            dt,
            fs,
            vec![fill as i64; count],
        ))?
    };
    let a = axis as i64;
    let s = s as i64;
    if reverse {
        let part = slice(b, y, &[a], &[s], &[l])?;
        concat(b, &[part, f], a)
    } else {
        let part = slice(b, y, &[a], &[0], &[l - s])?;
        concat(b, &[f, part], a)
    }
}

fn along(
    b: &mut Builder,
    x: ValueId,
    shape: &[usize],
    axis: usize,
    op: Op,
    exclusive: bool,
    reverse: bool,
) -> Result<ValueId, String> {
    let l = shape[axis];
    let unit = if op == Op::CumSum { 0.0 } else { 1.0 };
    if l == 0 {
        return Ok(x);
    }
    let mut y = if exclusive {
        shift(b, x, shape, axis, 1, reverse, unit)?
    } else {
        x
    };
    let mut s = 1;
    while s < l {
        let m = shift(b, y, shape, axis, s, reverse, unit)?;
        let bin = if op == Op::CumSum { Op::Add } else { Op::Mul };
        y = b.op(bin, &[y, m], &[])?;
        s *= 2;
    }
    Ok(y)
}

fn scan(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(ax)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let Some(shape) = b.shape(x) else {
        return Ok(None);
    };
    let dt = b.dtype(x);
    let ok = dt == DType::F32 || (dt.is_int() && dt.bits() >= 8);
    if !ok || shape.is_empty() {
        return Ok(None);
    }
    let r = shape.len();
    let exclusive = int_attr(n, "exclusive", 0) != 0;
    let reverse = int_attr(n, "reverse", 0) != 0;
    let known = b
        .known(ax)
        .and_then(|t| t.to_i64_vec())
        .and_then(|v| v.first().copied());
    let axes: Vec<usize> = match known {
        Some(a) => {
            let a = if a < 0 { a + r as i64 } else { a };
            if a < 0 || a >= r as i64 {
                return Err(format!("axis {a} is out of range for rank {r}"));
            }
            vec![a as usize]
        }
        // Any valid axis of a 1-D input is 0.
        None if r == 1 => vec![0],
        None => (0..r).collect(),
    };
    let mut res: Option<ValueId> = None;
    for &a in axes.iter().rev() {
        let y = along(b, x, &shape, a, n.op, exclusive, reverse)?;
        res = Some(match res {
            None => y,
            Some(other) => {
                // axis == a or axis == a - rank selects this scan.
                let adt = b.dtype(ax);
                let k1 = b.scalar(adt, a as f64)?;
                let k2 = b.scalar(adt, a as f64 - r as f64)?;
                let e1 = b.op(Op::Equal, &[ax, k1], &[])?;
                let e2 = b.op(Op::Equal, &[ax, k2], &[])?;
                let c = b.op(Op::Or, &[e1, e2], &[])?;
                b.op(Op::Where, &[c, y, other], &[])?
            }
        });
    }
    Ok(Some(vec![res]))
}
