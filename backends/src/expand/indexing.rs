//! Index-built ops as gathers, comparisons and constants: EyeLike (a
//! constant of the input's shape), CenterCropPad (Slice then Pad),
//! OneHot (indices compared with an iota), ReverseSequence
//! (GatherElements at run-time reversed positions) and GatherND (one flat
//! index per tuple, then Gather on the flattened leading axes).

use super::steps::int_attr;
use super::{Builder, Expansion};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, DClass, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::EyeLike => Some(eye_like),
        Op::CenterCropPad => Some(center_crop_pad),
        Op::OneHot => Some(one_hot),
        Op::ReverseSequence => Some(reverse_sequence),
        Op::GatherND => Some(gather_nd),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;
type R = Result<ValueId, String>;

fn ints_attr(n: &Node, k: &str) -> Option<Vec<i64>> {
    match n.attr(k) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn axis(a: i64, rank: usize) -> Option<usize> {
    let a = if a < 0 { a + rank as i64 } else { a };
    (0..rank as i64).contains(&a).then_some(a as usize)
}

fn i64s(b: &mut Builder, v: &[usize]) -> R {
    b.const_i64(&[v.len()], v.iter().map(|&d| d as i64).collect())
}

fn reshape(b: &mut Builder, v: ValueId, shape: &[usize]) -> R {
    let s = i64s(b, shape)?;
    b.op(Op::Reshape, &[v, s], &[])
}

/// A constant of `dtype` and `shape` from f64 values.
fn filled(dtype: DType, shape: &[usize], v: Vec<f64>) -> Option<Tensor> {
    Some(match dtype.class() {
        DClass::Float => Tensor::from_f64(dtype, shape.to_vec(), v),
        DClass::Signed => {
            Tensor::from_i64(dtype, shape.to_vec(), v.iter().map(|&x| x as i64).collect())
        }
        DClass::Unsigned => {
            Tensor::from_u64(dtype, shape.to_vec(), v.iter().map(|&x| x as u64).collect())
        }
        DClass::Bool => Tensor::from_bool(shape.to_vec(), v.iter().map(|&x| x != 0.0).collect()),
        _ => return None,
    })
}

fn eye_like(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(Some(y))) = (Builder::input(n, 0), n.outputs.first()) else {
        return Ok(None);
    };
    let Some(shape) = b.shape(x) else {
        return Ok(None);
    };
    let [rows, cols] = shape[..] else {
        return Ok(None);
    };
    let k = int_attr(n, "k", 0);
    let mut v = vec![0.0; rows * cols];
    for i in 0..rows as i64 {
        let j = i + k;
        if (0..cols as i64).contains(&j) {
            v[i as usize * cols + j as usize] = 1.0;
        }
    }
    let Some(t) = filled(b.dtype(*y), &shape, v) else {
        return Ok(None);
    };
    Ok(Some(vec![Some(b.constant(&t)?)]))
}

fn center_crop_pad(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(s)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(xs), Some(target)) = (b.shape(x), b.known(s).and_then(|t| t.to_i64_vec())) else {
        return Ok(None);
    };
    let r = xs.len();
    let axes: Vec<usize> = match ints_attr(n, "axes") {
        None => (0..r).collect(),
        Some(a) => match a.iter().map(|&a| axis(a, r)).collect::<Option<Vec<_>>>() {
            Some(a) => a,
            None => return Ok(None),
        },
    };
    if axes.len() != target.len() || target.iter().any(|&t| t < 0) {
        return Ok(None);
    }
    let (mut starts, mut ends, mut pads) = (vec![0i64; r], vec![0i64; r], vec![0i64; 2 * r]);
    for (a, t) in xs.iter().zip(ends.iter_mut()) {
        *t = *a as i64;
    }
    for (&a, &t) in axes.iter().zip(&target) {
        let len = xs[a] as i64;
        if t < len {
            // Crop: the extra element, if odd, comes off the end.
            starts[a] = (len - t) / 2;
            ends[a] = starts[a] + t;
        } else if t > len {
            // Pad: the extra element, if odd, goes at the end.
            pads[a] = (t - len) / 2;
            pads[r + a] = t - len - pads[a];
        }
    }
    let (st, en) = (b.const_i64(&[r], starts)?, b.const_i64(&[r], ends)?);
    let mut y = b.op(Op::Slice, &[x, st, en], &[])?;
    if pads.iter().any(|&p| p != 0) {
        let p = b.const_i64(&[2 * r], pads)?;
        y = b.op(Op::Pad, &[y, p], &[])?;
    }
    Ok(Some(vec![Some(y)]))
}

fn one_hot(b: &mut Builder, n: &Node) -> Out {
    let (Some(ind), Some(dep), Some(vals)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let (Some(is), Some(depth)) = (b.shape(ind), b.known(dep).and_then(|t| t.to_f64_vec())) else {
        return Ok(None);
    };
    let [depth] = depth[..] else {
        return Ok(None);
    };
    // ONNX casts a float depth to an integer (truncating).
    let depth = depth.trunc();
    if !(1.0..=1e6).contains(&depth) {
        return Ok(None);
    }
    let depth = depth as usize;
    let Some(ax) = axis(int_attr(n, "axis", -1), is.len() + 1) else {
        return Ok(None);
    };
    let id = b.dtype(ind);
    // Indices as i64 or f64-valued floats of their own dtype, truncated
    // toward zero (ONNX reads float indices as integers).
    let mut idx = ind;
    if id.is_float() {
        let zero = b.scalar(id, 0.0)?;
        let neg = b.op(Op::Less, &[ind, zero], &[])?;
        let up = b.op(Op::Ceil, &[ind], &[])?;
        let down = b.op(Op::Floor, &[ind], &[])?;
        idx = b.op(Op::Where, &[neg, up, down], &[])?;
    } else if id != DType::I64 && id != DType::I32 {
        return Ok(None);
    }
    // Negative indices count from the end.
    let zero = b.scalar(id, 0.0)?;
    let d = b.scalar(id, depth as f64)?;
    let neg = b.op(Op::Less, &[idx, zero], &[])?;
    let wrapped = b.op(Op::Add, &[idx, d], &[])?;
    idx = b.op(Op::Where, &[neg, wrapped, idx], &[])?;
    // Indices with a unit axis at `ax`, compared with 0..depth along it.
    let mut ushape = is.clone();
    ushape.insert(ax, 1);
    let idx = reshape(b, idx, &ushape)?;
    let mut ishape = vec![1; is.len() + 1];
    ishape[ax] = depth;
    let iota = filled(id, &ishape, (0..depth).map(|i| i as f64).collect())
        .ok_or("OneHot: indices dtype")?;
    let iota = b.constant(&iota)?;
    let hot = b.op(Op::Equal, &[idx, iota], &[])?;
    let (i0, i1) = (b.const_i64(&[], vec![0])?, b.const_i64(&[], vec![1])?);
    let off = b.op(Op::Gather, &[vals, i0], &[("axis", Attr::Int(0))])?;
    let on = b.op(Op::Gather, &[vals, i1], &[("axis", Attr::Int(0))])?;
    Ok(Some(vec![Some(b.op(Op::Where, &[hot, on, off], &[])?)]))
}

fn reverse_sequence(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(lens)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let Some(xs) = b.shape(x) else {
        return Ok(None);
    };
    let r = xs.len();
    let (Some(ta), Some(ba)) = (
        axis(int_attr(n, "time_axis", 0), r),
        axis(int_attr(n, "batch_axis", 1), r),
    ) else {
        return Ok(None);
    };
    if ta == ba || b.dtype(lens) != DType::I64 {
        return Ok(None);
    }
    // t along the time axis, len along the batch axis, 1 elsewhere.
    let mut tshape = vec![1; r];
    tshape[ta] = xs[ta];
    let t = b.const_i64(&tshape, (0..xs[ta] as i64).collect())?;
    let mut lshape = vec![1; r];
    lshape[ba] = xs[ba];
    let len = reshape(b, lens, &lshape)?;
    // Position t reads len - 1 - t inside the sequence, t past its end.
    let inside = b.op(Op::Less, &[t, len], &[])?;
    let one = b.const_i64(&[], vec![1])?;
    let last = b.op(Op::Sub, &[len, one], &[])?;
    let rev = b.op(Op::Sub, &[last, t], &[])?;
    let src = b.op(Op::Where, &[inside, rev, t], &[])?;
    let full = i64s(b, &xs)?;
    let src = b.op(Op::Expand, &[src, full], &[])?;
    let y = b.op(
        Op::GatherElements,
        &[x, src],
        &[("axis", Attr::Int(ta as i64))],
    )?;
    Ok(Some(vec![Some(y)]))
}

fn gather_nd(b: &mut Builder, n: &Node) -> Out {
    let (Some(data), Some(ind)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(ds), Some(is)) = (b.shape(data), b.shape(ind)) else {
        return Ok(None);
    };
    if b.dtype(ind) != DType::I64 {
        return Ok(None);
    }
    let nb = int_attr(n, "batch_dims", 0).max(0) as usize;
    let Some(&k) = is.last() else {
        return Ok(None);
    };
    if nb + k > ds.len() || nb >= is.len() || is[..nb] != ds[..nb] {
        return Ok(None);
    }
    let batch: usize = ds[..nb].iter().product();
    let block = &ds[nb..nb + k];
    let rest = &ds[nb + k..];
    let cells: usize = block.iter().product();
    // Flat index over batch and block dims: batch·cells + Σ idx_j·stride_j,
    // negative idx_j counting from the end of dim j.
    let lead = &is[..is.len() - 1];
    let mut flat: Option<ValueId> = None;
    let mut stride = cells;
    for (j, &dim) in block.iter().enumerate() {
        stride /= dim.max(1);
        let pick = b.const_i64(&[], vec![j as i64])?;
        let ij = b.op(
            Op::Gather,
            &[ind, pick],
            &[("axis", Attr::Int(is.len() as i64 - 1))],
        )?;
        let zero = b.const_i64(&[], vec![0])?;
        let d = b.const_i64(&[], vec![dim as i64])?;
        let neg = b.op(Op::Less, &[ij, zero], &[])?;
        let w = b.op(Op::Add, &[ij, d], &[])?;
        let ij = b.op(Op::Where, &[neg, w, ij], &[])?;
        let term = if stride == 1 {
            ij
        } else {
            let s = b.const_i64(&[], vec![stride as i64])?;
            b.op(Op::Mul, &[ij, s], &[])?
        };
        flat = Some(match flat {
            None => term,
            Some(f) => b.op(Op::Add, &[f, term], &[])?,
        });
    }
    let mut flat = match flat {
        Some(f) => f,
        None => b.constant(&Tensor::from_i64(
            DType::I64,
            lead.to_vec(),
            vec![0; lead.iter().product()],
        ))?,
    };
    if nb > 0 {
        let mut bshape = ds[..nb].to_vec();
        bshape.resize(lead.len(), 1);
        let base = b.const_i64(
            &bshape,
            (0..batch as i64).map(|i| i * cells as i64).collect(),
        )?;
        flat = b.op(Op::Add, &[flat, base], &[])?;
    }
    let mut dshape = vec![batch * cells];
    dshape.extend_from_slice(rest);
    let d = reshape(b, data, &dshape)?;
    let y = b.op(Op::Gather, &[d, flat], &[("axis", Attr::Int(0))])?;
    Ok(Some(vec![Some(y)]))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{One, f32t, i64t};
    use smelt_ir::{Attr, Op};

    // Expected values: onnx.reference.ReferenceEvaluator (onnx 1.23.2,
    // opset 21) on the same nodes and inputs.

    fn iota(shape: &[usize]) -> smelt_ir::interp::Tensor {
        let n: usize = shape.iter().product();
        f32t(shape, &(0..n).map(|i| i as f64).collect::<Vec<_>>())
    }

    #[test]
    fn one_hot_wraps_negative_and_drops_out_of_range() {
        let mut t = One::new();
        let i = t.input("i", i64t(&[2, 2], &[1, -1, 5, 0]));
        let d = t.constant("d", &i64t(&[], &[3]));
        let v = t.input("v", f32t(&[2], &[2., 7.]));
        t.node(
            Op::OneHot,
            &[Some(i), Some(d), Some(v)],
            &[("axis", Attr::Int(1))],
        );
        let want = [2., 2., 7., 2., 2., 7., 2., 7., 2., 2., 2., 2.];
        t.check(&want, 0.0);
    }

    #[test]
    fn reverse_sequence_per_batch_length() {
        let mut t = One::new();
        let x = t.input("x", iota(&[3, 4]));
        let l = t.input("l", i64t(&[4], &[3, 1, 2, 0]));
        t.node(Op::ReverseSequence, &[Some(x), Some(l)], &[]);
        let want = [8., 1., 6., 3., 4., 5., 2., 7., 0., 9., 10., 11.];
        t.check(&want, 0.0);
    }

    #[test]
    fn gather_nd_with_a_batch_dim() {
        let mut t = One::new();
        let x = t.input("x", iota(&[2, 3, 2]));
        let i = t.input("i", i64t(&[2, 2, 1], &[2, -3, 1, 0]));
        t.node(
            Op::GatherND,
            &[Some(x), Some(i)],
            &[("batch_dims", Attr::Int(1))],
        );
        t.check(&[4., 5., 0., 1., 8., 9., 6., 7.], 0.0);
    }

    #[test]
    fn center_crop_pad_crops_and_pads() {
        let mut t = One::new();
        let x = t.input("x", iota(&[3, 4]));
        let s = t.constant("s", &i64t(&[2], &[2, 7]));
        t.node(Op::CenterCropPad, &[Some(x), Some(s)], &[]);
        let want = [0., 0., 1., 2., 3., 0., 0., 0., 4., 5., 6., 7., 0., 0.];
        t.check(&want, 0.0);
    }

    #[test]
    fn eye_like_above_the_diagonal() {
        let mut t = One::new();
        let x = t.input("x", iota(&[2, 3]));
        t.node(Op::EyeLike, &[Some(x)], &[("k", Attr::Int(1))]);
        t.check(&[0., 1., 0., 0., 0., 1.], 0.0);
    }
}
