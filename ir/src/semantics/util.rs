//! Helpers shared by op families: broadcasting, axes, ONNX dtype numbers.

use super::{OpError, OpResult};
use crate::interp::tensor::strides;
use crate::{DType, Dim, Shape};

/// ONNX TensorProto.DataType numbers. Kept here (not in the frontend)
/// because attributes such as Cast's `to` carry them inside the IR.
pub const ONNX_DTYPES: &[(i64, DType)] = &[
    (1, DType::F32),
    (2, DType::U8),
    (3, DType::I8),
    (4, DType::U16),
    (5, DType::I16),
    (6, DType::I32),
    (7, DType::I64),
    (8, DType::String),
    (9, DType::Bool),
    (10, DType::F16),
    (11, DType::F64),
    (12, DType::U32),
    (13, DType::U64),
    (16, DType::BF16),
    (17, DType::F8E4M3FN),
    (18, DType::F8E4M3FNUZ),
    (19, DType::F8E5M2),
    (20, DType::F8E5M2FNUZ),
    (21, DType::U4),
    (22, DType::I4),
    (23, DType::F4E2M1),
    (24, DType::F8E8M0),
    (25, DType::U2),
    (26, DType::I2),
];

pub fn dtype_from_onnx(code: i64) -> Option<DType> {
    ONNX_DTYPES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| *d)
}

pub fn dtype_to_onnx(d: DType) -> Option<i64> {
    ONNX_DTYPES.iter().find(|(_, x)| *x == d).map(|(c, _)| *c)
}

/// Resolves a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(OpError(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// Multidirectional (numpy) broadcasting of two symbolic shapes.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> OpResult<Shape> {
    let (Some(a), Some(b)) = (a.dims(), b.dims()) else {
        return Ok(Shape::unknown());
    };
    let r = a.len().max(b.len());
    let one = Dim::Static(1);
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let x = if i + a.len() >= r {
            &a[i + a.len() - r]
        } else {
            &one
        };
        let y = if i + b.len() >= r {
            &b[i + b.len() - r]
        } else {
            &one
        };
        out.push(match (x, y) {
            (x, y) if x == y => x.clone(),
            (Dim::Static(1), y) => y.clone(),
            (x, Dim::Static(1)) => x.clone(),
            (Dim::Static(m), Dim::Static(n)) => {
                return Err(OpError(format!(
                    "shapes {} and {} do not broadcast (dim {m} vs {n})",
                    Shape(Some(a.to_vec())),
                    Shape(Some(b.to_vec()))
                )));
            }
            (Dim::Static(n), _) | (_, Dim::Static(n)) => Dim::Static(*n),
            _ => Dim::Unknown,
        });
    }
    Ok(Shape(Some(out)))
}

/// Broadcast of concrete shapes.
pub fn broadcast_concrete(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let s = broadcast_shapes(&Shape::from_static(a), &Shape::from_static(b))?;
    Ok(s.as_static()
        .expect("static inputs broadcast to a static shape"))
}

/// For every element of `out` (row-major), the flat index of the element of
/// an input of shape `inp` that broadcasting maps onto it.
pub fn broadcast_map(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let r = out.len();
    let off = r - inp.len();
    let in_strides = strides(inp);
    // Stride 0 along broadcast dims.
    let eff: Vec<usize> = (0..r)
        .map(|i| {
            if i < off || inp[i - off] == 1 {
                0
            } else {
                in_strides[i - off]
            }
        })
        .collect();
    let mut idx = vec![0usize; r];
    let mut res = Vec::with_capacity(n);
    let mut flat = 0usize;
    for _ in 0..n {
        res.push(flat);
        // Increment the multi-index, adjusting the flat input offset.
        for d in (0..r).rev() {
            idx[d] += 1;
            flat += eff[d];
            if idx[d] < out[d] {
                break;
            }
            flat -= eff[d] * idx[d];
            idx[d] = 0;
        }
    }
    res
}

/// Reads a constant input as a list of integers (shapes, axes, pads...).
pub fn const_ints(t: Option<&crate::interp::Tensor>) -> Option<Vec<i64>> {
    t.and_then(|t| t.to_i64_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast() {
        assert_eq!(
            broadcast_concrete(&[2, 1, 3], &[4, 1]).unwrap(),
            vec![2, 4, 3]
        );
        assert!(broadcast_concrete(&[2], &[3]).is_err());
        assert_eq!(broadcast_map(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_map(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_map(&[2, 3], &[]), vec![0; 6]);
        let sym = Shape(Some(vec![Dim::Sym("N".into()), Dim::Static(3)]));
        assert_eq!(
            broadcast_shapes(&sym, &Shape::from_static(&[3])).unwrap(),
            sym
        );
    }
}
