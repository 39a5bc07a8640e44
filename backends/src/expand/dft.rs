//! DFT as the linear map it is: along the transformed axis each output
//! (real, imaginary) is a fixed combination of the input's, so the map is
//! built here in f64 — each basis signal transformed by the op's own
//! definition (`dft_signal`: zero padding or truncation to the DFT length,
//! the Hermitian rebuild of a one-sided inverse, the 1/n) — and applied
//! on the chip as one broadcast product summed over the input axis
//! (exact f32 arithmetic; 16-bit signals are computed in f32 and rounded
//! once).

use super::steps::{int_attr, reshape, transpose};
use super::{Builder, Expansion};
use smelt_ir::semantics::reduce::dft_signal;
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::DFT => Some(dft),
        _ => None,
    }
}

/// Products above this many elements are left to a target's own DFT (the
/// broadcast product is materialized).
const MAX_PRODUCT: usize = 1 << 24;

fn scalar(b: &mut Builder, n: &Node, i: usize) -> Option<Option<i64>> {
    match Builder::input(n, i) {
        None => Some(None),
        Some(v) => match b.known(v)?.to_i64_vec()?.as_slice() {
            [x] => Some(Some(*x)),
            _ => None,
        },
    }
}

fn dft(b: &mut Builder, n: &Node) -> Result<Option<Vec<Option<ValueId>>>, String> {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    let Some(xs) = b.shape(x) else {
        return Ok(None);
    };
    let r = xs.len();
    let d = b.dtype(x);
    if r < 2 || !matches!(xs[r - 1], 1 | 2) || !d.is_float() {
        return Ok(None);
    }
    let c = xs[r - 1];
    let inverse = int_attr(n, "inverse", 0) != 0;
    let onesided = int_attr(n, "onesided", 0) != 0;
    let (Some(len_in), Some(axis_in)) = (scalar(b, n, 1), scalar(b, n, 2)) else {
        return Ok(None);
    };
    let axis = axis_in.unwrap_or(-2);
    if axis < -(r as i64) || axis >= r as i64 {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    let axis = axis.rem_euclid(r as i64) as usize;
    if axis == r - 1 {
        return Err("the axis is the complex dim; it must be a signal dim".into());
    }
    let m = xs[axis];
    let len = match len_in {
        Some(l) if l > 0 => l as usize,
        Some(l) => return Err(format!("DFT length {l} must be positive")),
        None if inverse && onesided => 2 * m.saturating_sub(1),
        None => m,
    };
    if len == 0 {
        return Ok(None);
    }
    let (bins, co) = match (inverse, onesided) {
        (false, true) => (len / 2 + 1, 2),
        (true, true) => (len, 1),
        _ => (len, 2),
    };
    let others: Vec<usize> = (0..r - 1).filter(|&i| i != axis).collect();
    let p: usize = others.iter().map(|&i| xs[i]).product();
    if p * bins * co * m * c > MAX_PRODUCT {
        return Ok(None);
    }
    // The map's column for input element (t, part): the transform of the
    // basis signal with a one there.
    let (rows, cols) = (bins * co, m * c);
    let mut map = vec![0.0; rows * cols];
    for t in 0..m {
        for part in 0..c {
            let (mut re, mut im) = (vec![0.0; m], vec![0.0; m]);
            if part == 0 {
                re[t] = 1.0;
            } else {
                im[t] = 1.0;
            }
            let (fr, fi) = dft_signal(&re, &im, len, bins, inverse, onesided);
            for k in 0..bins {
                map[(k * co) * cols + t * c + part] = fr[k];
                if co == 2 {
                    map[(k * co + 1) * cols + t * c + part] = fi[k];
                }
            }
        }
    }
    let work = match d {
        DType::F16 | DType::BF16 => DType::F32,
        _ => d,
    };
    let mut perm: Vec<i64> = others.iter().map(|&i| i as i64).collect();
    perm.extend([axis as i64, (r - 1) as i64]);
    let xw = b.cast(x, work)?;
    let xt = transpose(b, xw, &perm)?;
    let xf = reshape(b, xt, &[p, 1, cols])?;
    let mc = b.const_f(work, &[1, rows, cols], map)?;
    let prod = b.op(Op::Mul, &[xf, mc], &[])?;
    let ax = b.const_i64(&[1], vec![2])?;
    let y = b.op(Op::ReduceSum, &[prod, ax], &[("keepdims", Attr::Int(0))])?;
    let mut shape: Vec<usize> = others.iter().map(|&i| xs[i]).collect();
    shape.extend([bins, co]);
    let y = reshape(b, y, &shape)?;
    // Back to the input's axis order: others keep theirs, the bins go to
    // `axis`, the complex dim stays last.
    let back: Vec<i64> = (0..r)
        .map(|i| {
            if i == axis {
                (r - 2) as i64
            } else if i == r - 1 {
                (r - 1) as i64
            } else {
                others.iter().position(|&o| o == i).unwrap_or(0) as i64
            }
        })
        .collect();
    let y = transpose(b, y, &back)?;
    Ok(Some(vec![Some(b.cast(y, d)?)]))
}
