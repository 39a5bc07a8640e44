//! AffineGrid: the constant grid of the output size's normalized
//! homogeneous points (x, y, [z,] 1) times each batch's theta, as a
//! broadcast product summed over the homogeneous coordinate.

use super::steps::reshape;
use super::{Builder, Expansion};
use smelt_ir::{Attr, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::AffineGrid => Some(affine_grid),
        _ => None,
    }
}

fn affine_grid(b: &mut Builder, n: &Node) -> Result<Option<Vec<Option<ValueId>>>, String> {
    let (Some(theta), Some(sv)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let Some(size) = b.known(sv).and_then(|t| t.to_i64_vec()) else {
        return Ok(None);
    };
    let nd = size.len().saturating_sub(2);
    let batch = size.first().copied().unwrap_or(0).max(0) as usize;
    let d = b.dtype(theta);
    if !(nd == 2 || nd == 3)
        || b.shape(theta) != Some(vec![batch, nd, nd + 1])
        || size.iter().any(|&s| s < 1)
        || !d.is_float()
    {
        return Ok(None);
    }
    let align = matches!(n.attr("align_corners"), Some(Attr::Int(a)) if *a != 0);
    let coord = |i: usize, len: usize| {
        if align {
            if len == 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (len - 1) as f64
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / len as f64
        }
    };
    let sp: Vec<usize> = size[2..].iter().map(|&v| v as usize).collect();
    let points: usize = sp.iter().product();
    // Homogeneous points, fastest spatial dim first (x, y[, z], 1).
    let mut base = Vec::with_capacity(points * (nd + 1));
    for p in 0..points {
        let mut idx = vec![0; nd];
        let mut r = p;
        for j in (0..nd).rev() {
            idx[j] = r % sp[j];
            r /= sp[j];
        }
        for j in 0..nd {
            base.push(coord(idx[nd - 1 - j], sp[nd - 1 - j]));
        }
        base.push(1.0);
    }
    // [1, P, 1, nd+1] * [N, 1, nd, nd+1], summed over the last axis.
    let base = b.const_f(d, &[1, points, 1, nd + 1], base)?;
    let th = reshape(b, theta, &[batch, 1, nd, nd + 1])?;
    let prod = b.op(Op::Mul, &[base, th], &[])?;
    let axis = b.const_i64(&[1], vec![-1])?;
    let g = b.op(Op::ReduceSum, &[prod, axis], &[("keepdims", Attr::Int(0))])?;
    let mut shape = vec![batch];
    shape.extend(&sp);
    shape.push(nd);
    Ok(Some(vec![Some(reshape(b, g, &shape)?)]))
}
