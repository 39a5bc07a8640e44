//! Matrix products: MatMul (numpy semantics), Gemm, the integer and
//! quantized variants, and Det.

use super::{check_float, fdata, from_f64_any, num_data, par_rows};
use crate::interp::Tensor;
use crate::semantics::util::{broadcast_concrete, broadcast_map, broadcast_shapes};
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::MatMul => (infer_matmul, k_matmul),
        Op::Gemm => (infer_gemm, k_gemm),
        Op::MatMulInteger => (infer_matmul_integer, k_matmul_integer),
        Op::QLinearMatMul => (infer_qlinear_matmul, k_qlinear_matmul),
        Op::Det => (infer_det, k_det),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

/// numpy.matmul's output shape: 1-D operands are promoted to matrices and
/// the promoted dim dropped again; batch dims broadcast.
pub(crate) fn matmul_shape(a: &Shape, b: &Shape) -> OpResult<Shape> {
    let (Some(a), Some(b)) = (a.dims(), b.dims()) else {
        return Ok(Shape::unknown());
    };
    if a.is_empty() || b.is_empty() {
        op_bail!("MatMul operands must have rank >= 1");
    }
    let a2: Vec<Dim> = if a.len() == 1 {
        vec![Dim::Static(1), a[0].clone()]
    } else {
        a.to_vec()
    };
    let b2: Vec<Dim> = if b.len() == 1 {
        vec![b[0].clone(), Dim::Static(1)]
    } else {
        b.to_vec()
    };
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Dim::Static(x), Dim::Static(y)) = (ka, kb)
        && x != y
    {
        op_bail!(
            "MatMul inner dimensions differ: {} vs {}",
            Shape(Some(a.to_vec())),
            Shape(Some(b.to_vec()))
        );
    }
    let batch = broadcast_shapes(
        &Shape(Some(a2[..a2.len() - 2].to_vec())),
        &Shape(Some(b2[..b2.len() - 2].to_vec())),
    )?;
    let mut out = batch.0.unwrap_or_default();
    if a.len() > 1 {
        out.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1].clone());
    }
    Ok(Shape(Some(out)))
}

/// Batched numpy matmul over f64 data; returns the output shape and values.
pub(crate) fn matmul_f64(
    a: &[f64],
    ashape: &[usize],
    b: &[f64],
    bshape: &[usize],
) -> OpResult<(Vec<usize>, Vec<f64>)> {
    if ashape.is_empty() || bshape.is_empty() {
        op_bail!("MatMul operands must have rank >= 1");
    }
    let a2: Vec<usize> = if ashape.len() == 1 {
        vec![1, ashape[0]]
    } else {
        ashape.to_vec()
    };
    let b2: Vec<usize> = if bshape.len() == 1 {
        vec![bshape[0], 1]
    } else {
        bshape.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        op_bail!("MatMul inner dimensions differ: {ashape:?} vs {bshape:?}");
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let batch = broadcast_concrete(ab, bb)?;
    let (amap, bmap) = (broadcast_map(&batch, ab), broadcast_map(&batch, bb));
    let nb = amap.len();
    let mut out = vec![0.0; nb * m * n];
    par_rows(&mut out, n, nb * m * k * n, |r, row| {
        let (bi, i) = (r / m.max(1), r % m.max(1));
        let arow = &a[amap[bi] * m * k + i * k..][..k];
        let bmat = &b[bmap[bi] * k * n..][..k * n];
        // i-k-j order: the inner loop runs over contiguous rows of B and out.
        for (kk, &av) in arow.iter().enumerate() {
            let brow = &bmat[kk * n..(kk + 1) * n];
            for (o, &bv) in row.iter_mut().zip(brow) {
                *o += av * bv;
            }
        }
    });
    let mut shape = batch;
    if ashape.len() > 1 {
        shape.push(m);
    }
    if bshape.len() > 1 {
        shape.push(n);
    }
    Ok((shape, out))
}

fn infer_matmul(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    if a.dtype != b.dtype {
        op_bail!(
            "{} operands have dtypes {} and {}",
            ctx.node.op,
            a.dtype,
            b.dtype
        );
    }
    Ok(vec![TensorType::new(
        a.dtype,
        matmul_shape(&a.shape, &b.shape)?,
    )])
}

fn k_matmul(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    if a.dtype != b.dtype {
        op_bail!("MatMul operands have dtypes {} and {}", a.dtype, b.dtype);
    }
    let (av, bv) = (num_data(a, "A")?, num_data(b, "B")?);
    let (shape, v) = matmul_f64(&av, &a.shape, &bv, &b.shape)?;
    Ok(vec![from_f64_any(a.dtype, shape, v)])
}

fn infer_gemm(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    let dim = |s: &Shape, i: usize| -> OpResult<Dim> {
        match s.dims() {
            None => Ok(Dim::Unknown),
            Some(d) if d.len() == 2 => Ok(d[i].clone()),
            Some(d) => op_bail!("Gemm operands must be 2-D, found rank {}", d.len()),
        }
    };
    let ta = ctx.int("transA", 0)? != 0;
    let tb = ctx.int("transB", 0)? != 0;
    let m = dim(&a.shape, usize::from(ta))?;
    let n = dim(&b.shape, usize::from(!tb))?;
    Ok(vec![TensorType::new(a.dtype, Shape(Some(vec![m, n])))])
}

/// A 2-D operand as a row-major (rows, cols) matrix, transposed if asked.
fn matrix(t: &Tensor, trans: bool, what: &str) -> OpResult<(usize, usize, Vec<f64>)> {
    if t.rank() != 2 {
        op_bail!("Gemm {what} must be 2-D, found shape {:?}", t.shape);
    }
    let (r, c) = (t.shape[0], t.shape[1]);
    let v = num_data(t, what)?;
    if !trans {
        return Ok((r, c, v));
    }
    let mut o = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            o[j * r + i] = v[i * c + j];
        }
    }
    Ok((c, r, o))
}

fn k_gemm(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let alpha = f64::from(ctx.float("alpha", 1.0)?);
    let beta = f64::from(ctx.float("beta", 1.0)?);
    let (m, k, av) = matrix(a, ctx.int("transA", 0)? != 0, "A")?;
    let (k2, n, bv) = matrix(b, ctx.int("transB", 0)? != 0, "B")?;
    if k != k2 {
        op_bail!("Gemm inner dimensions differ: {k} vs {k2}");
    }
    let (_, mut y) = matmul_f64(&av, &[m, k], &bv, &[k, n])?;
    for x in &mut y {
        *x *= alpha;
    }
    if let Some(Some(c)) = ins.get(2) {
        let out = [m, n];
        if broadcast_concrete(&c.shape, &out)? != out {
            op_bail!(
                "Gemm C of shape {:?} does not broadcast to {out:?}",
                c.shape
            );
        }
        let cv = num_data(c, "C")?;
        for (x, &i) in y.iter_mut().zip(&broadcast_map(&out, &c.shape)) {
            *x += beta * cv[i];
        }
    }
    Ok(vec![from_f64_any(a.dtype, vec![m, n], y)])
}

fn infer_matmul_integer(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 1)?.ty);
    Ok(vec![TensorType::new(
        DType::I32,
        matmul_shape(&a.shape, &b.shape)?,
    )])
}

/// Subtracts a zero point that is a scalar or one value per row (axis
/// `axis` of a 2-D+ tensor: rows for A, columns for B).
fn sub_zero_point(
    v: &mut [f64],
    shape: &[usize],
    zp: Option<&Tensor>,
    per_col: bool,
) -> OpResult<()> {
    let Some(zp) = zp else { return Ok(()) };
    let z = num_data(zp, "zero point")?;
    if z.len() == 1 {
        v.iter_mut().for_each(|x| *x -= z[0]);
        return Ok(());
    }
    let r = shape.len();
    if r < 2 {
        op_bail!("a per-axis zero point needs a matrix operand");
    }
    let (rows, cols) = (shape[r - 2], shape[r - 1]);
    let want = if per_col { cols } else { rows };
    if z.len() != want {
        op_bail!("zero point has {} values, expected 1 or {want}", z.len());
    }
    for (i, x) in v.iter_mut().enumerate() {
        let (row, col) = ((i / cols) % rows, i % cols);
        *x -= z[if per_col { col } else { row }];
    }
    Ok(())
}

fn opt<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

fn k_matmul_integer(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, b) = (operand(ins, 0)?, operand(ins, 1)?);
    let mut av = num_data(a, "A")?;
    let mut bv = num_data(b, "B")?;
    sub_zero_point(&mut av, &a.shape, opt(ins, 2), false)?;
    sub_zero_point(&mut bv, &b.shape, opt(ins, 3), true)?;
    let (shape, v) = matmul_f64(&av, &a.shape, &bv, &b.shape)?;
    Ok(vec![from_f64_any(DType::I32, shape, v)])
}

fn infer_qlinear_matmul(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (a, b) = (input(ins, 0)?.ty, input(ins, 3)?.ty);
    let yzp = input(ins, 7)?.ty;
    Ok(vec![TensorType::new(
        yzp.dtype,
        matmul_shape(&a.shape, &b.shape)?,
    )])
}

/// Saturating round-half-to-even into an integer dtype's range.
pub(crate) fn quantize(d: DType, x: f64) -> OpResult<f64> {
    let (lo, hi) = match d {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        DType::U16 => (0.0, 65535.0),
        DType::I16 => (-32768.0, 32767.0),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::U4 => (0.0, 15.0),
        DType::I4 => (-8.0, 7.0),
        _ => op_bail!("quantized output dtype {d} is not supported"),
    };
    Ok(x.round_ties_even().clamp(lo, hi))
}

/// Scales per row of A (`per_col` false) or per column of B, or scalar.
fn scale_at(s: &[f64], row: usize, col: usize, per_col: bool) -> f64 {
    if s.len() == 1 {
        s[0]
    } else if per_col {
        s[col.min(s.len() - 1)]
    } else {
        s[row.min(s.len() - 1)]
    }
}

fn k_qlinear_matmul(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (a, asc, b, bsc, ysc, yzp) = (
        operand(ins, 0)?,
        operand(ins, 1)?,
        operand(ins, 3)?,
        operand(ins, 4)?,
        operand(ins, 6)?,
        operand(ins, 7)?,
    );
    let mut av = num_data(a, "a")?;
    let mut bv = num_data(b, "b")?;
    sub_zero_point(&mut av, &a.shape, opt(ins, 2), false)?;
    sub_zero_point(&mut bv, &b.shape, opt(ins, 5), true)?;
    let (asv, bsv) = (num_data(asc, "a_scale")?, num_data(bsc, "b_scale")?);
    let (ys, yz) = (num_data(ysc, "y_scale")?, num_data(yzp, "y_zero_point")?);
    if ys.len() != 1 || yz.len() != 1 || asv.is_empty() || bsv.is_empty() {
        op_bail!("QLinearMatMul needs scalar y_scale and y_zero_point");
    }
    let (shape, v) = matmul_f64(&av, &a.shape, &bv, &b.shape)?;
    let n = if b.rank() > 1 {
        b.shape[b.rank() - 1]
    } else {
        1
    };
    let m = if a.rank() > 1 {
        a.shape[a.rank() - 2]
    } else {
        1
    };
    let mut out = Vec::with_capacity(v.len());
    for (i, x) in v.iter().enumerate() {
        let (row, col) = ((i / n) % m, i % n);
        let s = scale_at(&asv, row, col, false) * scale_at(&bsv, row, col, true) / ys[0];
        out.push(quantize(yzp.dtype, x * s + yz[0])?);
    }
    Ok(vec![from_f64_any(yzp.dtype, shape, out)])
}

fn infer_det(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let shape = match x.shape.dims() {
        None => Shape::unknown(),
        Some(d) if d.len() >= 2 => Shape(Some(d[..d.len() - 2].to_vec())),
        Some(d) => op_bail!("Det needs rank >= 2, found {}", d.len()),
    };
    Ok(vec![TensorType::new(x.dtype, shape)])
}

fn k_det(_: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    check_float("Det input", x.dtype)?;
    let v = fdata(x, "Det input")?;
    let r = x.rank();
    if r < 2 || x.shape[r - 1] != x.shape[r - 2] {
        op_bail!("Det needs square matrices, found shape {:?}", x.shape);
    }
    let n = x.shape[r - 1];
    let batch: usize = x.shape[..r - 2].iter().product();
    let mut out = Vec::with_capacity(batch);
    for bi in 0..batch {
        let mut m = v[bi * n * n..(bi + 1) * n * n].to_vec();
        // Gaussian elimination with partial pivoting.
        let mut det = 1.0;
        for c in 0..n {
            let p = (c..n)
                .max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs()))
                .unwrap_or(c);
            if m[p * n + c] == 0.0 {
                det = 0.0;
                break;
            }
            if p != c {
                for j in 0..n {
                    m.swap(p * n + j, c * n + j);
                }
                det = -det;
            }
            let piv = m[c * n + c];
            det *= piv;
            for i in c + 1..n {
                let f = m[i * n + c] / piv;
                for j in c..n {
                    m[i * n + j] -= f * m[c * n + j];
                }
            }
        }
        out.push(det);
    }
    Ok(vec![Tensor::from_f64(
        x.dtype,
        x.shape[..r - 2].to_vec(),
        out,
    )])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    #[test]
    fn matmul_batched_and_vectors() {
        // np.matmul(np.arange(12).reshape(2,2,3), np.arange(6).reshape(3,2))
        let y = run(
            Op::MatMul,
            &[],
            &[Some(&iota(&[2, 2, 3])), Some(&iota(&[3, 2]))],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![2, 2, 2]);
        assert_close(&y[0], &[10., 13., 28., 40., 46., 67., 64., 94.]);
        // np.matmul(np.arange(3), np.arange(6).reshape(3,2)) -> [10, 13]
        let y = run(Op::MatMul, &[], &[Some(&iota(&[3])), Some(&iota(&[3, 2]))]).unwrap();
        assert_eq!(y[0].shape, vec![2]);
        assert_close(&y[0], &[10., 13.]);
        // np.matmul(np.arange(3), np.arange(3)) -> 5 (0-d)
        let y = run(Op::MatMul, &[], &[Some(&iota(&[3])), Some(&iota(&[3]))]).unwrap();
        assert_eq!(y[0].shape, Vec::<usize>::new());
        assert_close(&y[0], &[5.]);
        assert!(run(Op::MatMul, &[], &[Some(&iota(&[2])), Some(&iota(&[3]))]).is_err());
    }

    #[test]
    fn gemm_trans_and_bias() {
        // a=np.arange(6).reshape(3,2); b=np.arange(6).reshape(3,2)
        // 0.5*a.T@b + 2*np.array([1,2]) -> [[12,17],[15,21.5]]
        let c = f32t(&[2], &[1., 2.]);
        let y = run(
            Op::Gemm,
            &[
                ("transA", Attr::Int(1)),
                ("alpha", Attr::Float(0.5)),
                ("beta", Attr::Float(2.0)),
            ],
            &[Some(&iota(&[3, 2])), Some(&iota(&[3, 2])), Some(&c)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![2, 2]);
        assert_close(&y[0], &[12., 17., 15., 21.5]);
    }

    #[test]
    fn det_values() {
        // np.linalg.det([[1,2],[3,4]]) = -2; det of iota(9) reshaped is 0
        let x = f32t(&[2, 2, 2], &[1., 2., 3., 4., 2., 0., 0., 3.]);
        let y = run(Op::Det, &[], &[Some(&x)]).unwrap();
        assert_close(&y[0], &[-2., 6.]);
    }
}
