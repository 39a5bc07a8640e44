//! Pooling: MaxPool (with Indices), AveragePool, LpPool, the global pools
//! and MaxUnpool.

use super::window::{Geometry, box_indices};
use super::{check_float, fdata, num_data, ty_dims};
use crate::interp::Tensor;
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::MaxPool | Op::AveragePool | Op::LpPool => (infer_pool, k_pool),
        Op::GlobalAveragePool | Op::GlobalMaxPool | Op::GlobalLpPool => (infer_global, k_global),
        Op::MaxUnpool => (infer_unpool, k_unpool),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn infer_pool(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?;
    let Some(xd) = ty_dims(x) else {
        return Ok(vec![
            TensorType::new(x.ty.dtype, Shape::unknown()),
            TensorType::new(DType::I64, Shape::unknown()),
        ]);
    };
    if xd.len() < 3 {
        op_bail!("{} needs rank >= 3, found {}", ctx.node.op, xd.len());
    }
    let geo = Geometry::read(ctx, xd.len() - 2, None)?;
    let mut out = xd[..2].to_vec();
    out.extend(geo.out_dims(&xd[2..])?);
    let s = Shape(Some(out));
    Ok(vec![
        TensorType::new(x.ty.dtype, s.clone()),
        TensorType::new(DType::I64, s),
    ])
}

fn k_pool(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let op = ctx.node.op;
    let x = operand(ins, 0)?;
    // MaxPool is also defined for 8-bit integers (it only compares).
    let int8 = op == Op::MaxPool && matches!(x.dtype, DType::I8 | DType::U8);
    let widened;
    let v: &[f64] = if int8 {
        widened = num_data(x, "pool input")?;
        &widened
    } else {
        check_float("pool input", x.dtype)?;
        fdata(x, "pool input")?
    };
    if x.rank() < 3 {
        op_bail!("{op} needs rank >= 3, found {:?}", x.shape);
    }
    let sp = x.rank() - 2;
    let geo = Geometry::read(ctx, sp, None)?;
    let ins_sp = &x.shape[2..];
    let mut outs = Vec::with_capacity(sp);
    let mut pads = Vec::with_capacity(sp);
    for (i, &d) in ins_sp.iter().enumerate() {
        let (o, p) = geo.out_dim(i, d)?;
        outs.push(o);
        pads.push(p);
    }
    let include_pad = ctx.int("count_include_pad", 0)? != 0;
    let p = f64::from(ctx.int("p", 2)? as i32);
    let col_major = ctx.int("storage_order", 0)? != 0;
    let planes = x.shape[0] * x.shape[1];
    let in_plane: usize = ins_sp.iter().product();
    let kidx = box_indices(&geo.kernel);
    let opos = box_indices(&outs);
    let mut y = Vec::with_capacity(planes * opos.len());
    let mut idx = Vec::with_capacity(if op == Op::MaxPool { y.capacity() } else { 0 });
    // Column-major strides within a plane, for storage_order = 1.
    let mut cm = vec![1usize; sp];
    for j in 1..sp {
        cm[j] = cm[j - 1] * ins_sp[j - 1];
    }
    for pl in 0..planes {
        let xin = &v[pl * in_plane..][..in_plane];
        for o in &opos {
            let (mut acc, mut count, mut padded) = (0.0, 0usize, 0usize);
            let (mut best, mut best_at) = (f64::NEG_INFINITY, None);
            'k: for k in &kidx {
                let (mut flat, mut cflat, mut inside) = (0usize, 0usize, true);
                for j in 0..sp {
                    let ii = (o[j] * geo.strides[j] + k[j] * geo.dilations[j]) as i64 - pads[j].0;
                    if ii >= ins_sp[j] as i64 + pads[j].1 {
                        // Past the end padding: only ceil_mode windows reach here.
                        continue 'k;
                    }
                    if ii < 0 || ii >= ins_sp[j] as i64 {
                        inside = false;
                    } else {
                        flat = flat * ins_sp[j] + ii as usize;
                        cflat += ii as usize * cm[j];
                    }
                }
                padded += 1;
                if !inside {
                    continue;
                }
                let val = xin[flat];
                count += 1;
                match op {
                    Op::MaxPool => {
                        if val > best || best_at.is_none() {
                            best = val;
                            best_at = Some(if col_major { cflat } else { flat });
                        }
                    }
                    Op::AveragePool => acc += val,
                    _ => acc += val.abs().powf(p),
                }
            }
            y.push(match op {
                Op::MaxPool => {
                    idx.push((pl * in_plane + best_at.unwrap_or(0)) as i64);
                    best
                }
                Op::AveragePool => {
                    let n = if include_pad { padded } else { count };
                    if n == 0 { f64::NAN } else { acc / n as f64 }
                }
                _ => acc.powf(1.0 / p),
            });
        }
    }
    let mut shape = x.shape[..2].to_vec();
    shape.extend(outs);
    let mut res = vec![match x.dtype {
        DType::I8 if int8 => Tensor::from_i64(
            x.dtype,
            shape.clone(),
            y.iter().map(|&v| v as i64).collect(),
        ),
        DType::U8 if int8 => Tensor::from_u64(
            x.dtype,
            shape.clone(),
            y.iter().map(|&v| v as u64).collect(),
        ),
        _ => Tensor::from_f64(x.dtype, shape.clone(), y),
    }];
    if op == Op::MaxPool {
        res.push(Tensor::from_i64(DType::I64, shape, idx));
    }
    Ok(res)
}

fn infer_global(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?;
    let Some(xd) = ty_dims(x) else {
        return Ok(vec![TensorType::new(x.ty.dtype, Shape::unknown())]);
    };
    if xd.len() < 2 {
        op_bail!("{} needs rank >= 2", ctx.node.op);
    }
    let mut out = xd[..2].to_vec();
    out.extend(vec![Dim::Static(1); xd.len() - 2]);
    Ok(vec![TensorType::new(x.ty.dtype, Shape(Some(out)))])
}

fn k_global(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    check_float("pool input", x.dtype)?;
    let v = fdata(x, "pool input")?;
    if x.rank() < 2 {
        op_bail!("{} needs rank >= 2", ctx.node.op);
    }
    let plane: usize = x.shape[2..].iter().product();
    let p = f64::from(ctx.int("p", 2)? as i32);
    let y: Vec<f64> = v
        .chunks(plane.max(1))
        .take(x.shape[0] * x.shape[1])
        .map(|c| match ctx.node.op {
            Op::GlobalMaxPool => c.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Op::GlobalAveragePool => c.iter().sum::<f64>() / c.len() as f64,
            _ => c.iter().map(|x| x.abs().powf(p)).sum::<f64>().powf(1.0 / p),
        })
        .collect();
    let mut shape = x.shape[..2].to_vec();
    shape.extend(vec![1; x.rank() - 2]);
    Ok(vec![Tensor::from_f64(x.dtype, shape, y)])
}

/// MaxUnpool's default output spatial size for input size `n` along dim `i`.
fn unpool_dim(geo: &Geometry, i: usize, n: usize) -> i64 {
    (n as i64 - 1) * geo.strides[i] as i64 + geo.kernel[i] as i64 - geo.pads[i].0 - geo.pads[i].1
}

fn infer_unpool(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?;
    let rank = x.ty.shape.rank();
    if let Some(Some(s)) = ins.get(2) {
        if let Some(v) = s.value.and_then(|t| t.to_i64_vec()) {
            let dims = v.iter().map(|&d| Dim::Static(d.max(0) as u64)).collect();
            return Ok(vec![TensorType::new(x.ty.dtype, Shape(Some(dims)))]);
        }
        return Ok(vec![super::super::unknown_dims(x.ty.dtype, rank)]);
    }
    let Some(xd) = ty_dims(x) else {
        return Ok(vec![TensorType::new(x.ty.dtype, Shape::unknown())]);
    };
    if xd.len() < 3 {
        op_bail!("MaxUnpool needs rank >= 3");
    }
    let geo = Geometry::read(ctx, xd.len() - 2, None)?;
    let mut out = xd[..2].to_vec();
    for (i, d) in xd[2..].iter().enumerate() {
        out.push(match d {
            Dim::Static(n) => Dim::Static(unpool_dim(&geo, i, *n as usize).max(0) as u64),
            _ => Dim::Unknown,
        });
    }
    Ok(vec![TensorType::new(x.ty.dtype, Shape(Some(out)))])
}

fn k_unpool(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (x, ix) = (operand(ins, 0)?, operand(ins, 1)?);
    let v = fdata(x, "X")?;
    let idx = ix.to_i64_vec().unwrap_or_default();
    if x.rank() < 3 || idx.len() != v.len() {
        op_bail!("MaxUnpool needs rank >= 3 and one index per element");
    }
    // Indices address the shape the pooling geometry implies; a larger
    // `output_shape` holds that block at its origin, zeros elsewhere.
    let geo = Geometry::read(ctx, x.rank() - 2, None)?;
    let mut inferred = x.shape[..2].to_vec();
    for (i, &d) in x.shape[2..].iter().enumerate() {
        inferred.push(unpool_dim(&geo, i, d).max(0) as usize);
    }
    let n: usize = inferred.iter().product();
    let mut block = vec![0.0; n];
    for (&i, &val) in idx.iter().zip(v) {
        if i < 0 || i as usize >= n {
            op_bail!("MaxUnpool index {i} is out of range for output {inferred:?}");
        }
        block[i as usize] = val;
    }
    let Some(shape_in) = ins.get(2).copied().flatten() else {
        return Ok(vec![Tensor::from_f64(x.dtype, inferred, block)]);
    };
    let shape: Vec<usize> = shape_in
        .to_i64_vec()
        .unwrap_or_default()
        .iter()
        .map(|&d| d.max(0) as usize)
        .collect();
    if shape.len() != inferred.len() || shape.iter().zip(&inferred).any(|(o, b)| o < b) {
        op_bail!("MaxUnpool output_shape {shape:?} is smaller than the unpooled {inferred:?}");
    }
    let ostr = crate::interp::tensor::strides(&shape);
    let istr = crate::interp::tensor::strides(&inferred);
    let mut out = vec![0.0; shape.iter().product()];
    for (flat, &val) in block.iter().enumerate() {
        let mut o = 0;
        for (d, (&is, &os)) in istr.iter().zip(&ostr).enumerate() {
            o += (flat / is) % inferred[d] * os;
        }
        out[o] = val;
    }
    Ok(vec![Tensor::from_f64(x.dtype, shape, out)])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    #[test]
    fn pools_2d() {
        // x = np.arange(16).reshape(1,1,4,4); 2x2 windows, stride 2
        let x = iota(&[1, 1, 4, 4]);
        let k = ("kernel_shape", Attr::Ints(vec![2, 2]));
        let s = ("strides", Attr::Ints(vec![2, 2]));
        let y = run(Op::MaxPool, &[k.clone(), s.clone()], &[Some(&x)]).unwrap();
        assert_close(&y[0], &[5., 7., 13., 15.]);
        assert_close(&y[1], &[5., 7., 13., 15.]);
        let y = run(Op::AveragePool, &[k.clone(), s.clone()], &[Some(&x)]).unwrap();
        assert_close(&y[0], &[2.5, 4.5, 10.5, 12.5]);
        // 3x3, stride 2, pads 1, with and without count_include_pad; values
        // from onnx.reference.ReferenceEvaluator on the same node.
        let k3 = ("kernel_shape", Attr::Ints(vec![3, 3]));
        let p = ("pads", Attr::Ints(vec![1, 1, 1, 1]));
        let y = run(
            Op::AveragePool,
            &[k3.clone(), s.clone(), p.clone()],
            &[Some(&x)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![1, 1, 2, 2]);
        assert_close(&y[0], &[2.5, 4., 8.5, 10.]);
        let cip = ("count_include_pad", Attr::Int(1));
        let y = run(Op::AveragePool, &[k3, s.clone(), p, cip], &[Some(&x)]).unwrap();
        assert_close(&y[0], &[1.1111112, 2.6666667, 5.6666665, 10.]);
        // ceil_mode: 4 wide, kernel 3, stride 2 -> ceil(1/2)+1 = 2 windows.
        let y = run(
            Op::MaxPool,
            &[
                ("kernel_shape", Attr::Ints(vec![3, 3])),
                s,
                ("ceil_mode", Attr::Int(1)),
            ],
            &[Some(&x)],
        )
        .unwrap();
        assert_close(&y[0], &[10., 11., 14., 15.]);
        let y = run(Op::GlobalAveragePool, &[], &[Some(&x)]).unwrap();
        assert_eq!(y[0].shape, vec![1, 1, 1, 1]);
        assert_close(&y[0], &[7.5]);
    }
}
