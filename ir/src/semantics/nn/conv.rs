//! Convolution: Conv, ConvTranspose and the integer/quantized variants,
//! for any number of spatial dims. Kernels run one output channel plane at
//! a time (planes spread over threads), with a contiguous innermost loop
//! over the last spatial dim.

use super::matmul::quantize;
use super::window::{Geometry, box_indices, valid_range};
use super::{check_float, from_f64_any, num_data, par_rows, ty_dims};
use crate::interp::Tensor;
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::Conv | Op::ConvInteger | Op::QLinearConv => (infer_conv, k_conv),
        Op::ConvTranspose => (infer_conv_transpose, k_conv_transpose),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

/// Input indices of (X, W) for each conv flavour.
fn xw_index(op: Op) -> (usize, usize) {
    if op == Op::QLinearConv {
        (0, 3)
    } else {
        (0, 1)
    }
}

fn infer_conv(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let op = ctx.node.op;
    let (xi, wi) = xw_index(op);
    let (x, w) = (input(ins, xi)?, input(ins, wi)?);
    let dtype = match op {
        Op::Conv => {
            if x.ty.dtype != w.ty.dtype {
                op_bail!("Conv X is {} but W is {}", x.ty.dtype, w.ty.dtype);
            }
            x.ty.dtype
        }
        Op::ConvInteger => DType::I32,
        _ => input(ins, 7)?.ty.dtype,
    };
    let (Some(xd), Some(wd)) = (ty_dims(x), ty_dims(w)) else {
        return Ok(vec![TensorType::new(dtype, Shape::unknown())]);
    };
    if xd.len() < 3 || wd.len() != xd.len() {
        op_bail!(
            "{op} needs X of rank >= 3 and W of the same rank, found {} and {}",
            xd.len(),
            wd.len()
        );
    }
    let kernel: Option<Vec<usize>> = wd[2..]
        .iter()
        .map(|d| d.as_static().map(|k| k as usize))
        .collect();
    let mut out = vec![xd[0].clone(), wd[0].clone()];
    match (ctx.ints("kernel_shape")?, kernel) {
        (None, None) => out.extend(vec![Dim::Unknown; xd.len() - 2]),
        (_, k) => out.extend(Geometry::read(ctx, xd.len() - 2, k)?.out_dims(&xd[2..])?),
    }
    Ok(vec![TensorType::new(dtype, Shape(Some(out)))])
}

/// Direct N-d convolution in f64. `bias` has one value per output channel.
fn conv_f64(
    x: &[f64],
    xs: &[usize],
    w: &[f64],
    ws: &[usize],
    bias: Option<&[f64]>,
    geo: &Geometry,
    group: usize,
) -> OpResult<(Vec<usize>, Vec<f64>)> {
    if xs.len() < 3 || ws.len() != xs.len() {
        op_bail!("Conv needs X of rank >= 3 and W of the same rank, found {xs:?} and {ws:?}");
    }
    let (n, c, m, cg) = (xs[0], xs[1], ws[0], ws[1]);
    let sp = xs.len() - 2;
    if group == 0 || c != cg * group || m % group != 0 {
        op_bail!("Conv channels do not fit group {group}: X {xs:?}, W {ws:?}");
    }
    if geo.kernel != ws[2..] {
        op_bail!(
            "kernel_shape {:?} differs from W's {:?}",
            geo.kernel,
            &ws[2..]
        );
    }
    if let Some(b) = bias
        && b.len() != m
    {
        op_bail!("Conv bias has {} values for {m} output channels", b.len());
    }
    let ins = &xs[2..];
    let mut outs = Vec::with_capacity(sp);
    let mut pb = Vec::with_capacity(sp);
    for (i, &d) in ins.iter().enumerate() {
        let (o, p) = geo.out_dim(i, d)?;
        outs.push(o);
        pb.push(p.0);
    }
    let (in_plane, out_plane) = (
        ins.iter().product::<usize>(),
        outs.iter().product::<usize>(),
    );
    let ksize: usize = geo.kernel.iter().product();
    let kidx = box_indices(&geo.kernel);
    let outer = box_indices(&outs[..sp - 1]);
    let (iw, ow, s_last, d_last) = (
        ins[sp - 1],
        outs[sp - 1],
        geo.strides[sp - 1],
        geo.dilations[sp - 1],
    );
    let mg = m / group;
    let mut out = vec![0.0; n * m * out_plane];
    let work = n * m * cg * ksize * out_plane;
    par_rows(&mut out, out_plane, work, |r, plane| {
        let (ni, oc) = (r / m, r % m);
        let g = oc / mg;
        if let Some(b) = bias {
            plane.fill(b[oc]);
        }
        for ic in 0..cg {
            let xin = &x[(ni * c + g * cg + ic) * in_plane..][..in_plane];
            let wk = &w[(oc * cg + ic) * ksize..][..ksize];
            for (kv, &wv) in kidx.iter().zip(wk) {
                let off = (kv[sp - 1] * d_last) as i64 - pb[sp - 1];
                let (lo, hi) = valid_range(ow, iw, s_last, off);
                if lo >= hi {
                    continue;
                }
                'rows: for (oi, opos) in outer.iter().enumerate() {
                    let mut iflat = 0usize;
                    for j in 0..sp - 1 {
                        let ii =
                            (opos[j] * geo.strides[j] + kv[j] * geo.dilations[j]) as i64 - pb[j];
                        if ii < 0 || ii >= ins[j] as i64 {
                            continue 'rows;
                        }
                        iflat = iflat * ins[j] + ii as usize;
                    }
                    let row = &mut plane[oi * ow + lo..oi * ow + hi];
                    let irow = &xin[iflat * iw..][..iw];
                    let start = (lo as i64 * s_last as i64 + off) as usize;
                    if s_last == 1 {
                        for (o, &xv) in row.iter_mut().zip(&irow[start..start + (hi - lo)]) {
                            *o += wv * xv;
                        }
                    } else {
                        for (o, &xv) in row.iter_mut().zip(irow[start..].iter().step_by(s_last)) {
                            *o += wv * xv;
                        }
                    }
                }
            }
        }
    });
    let mut shape = vec![n, m];
    shape.extend(outs);
    Ok((shape, out))
}

fn opt<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

/// A zero point or scale: a scalar, or one value per channel `ch`.
fn per_channel(v: &[f64], ch: usize) -> f64 {
    if v.len() == 1 {
        v[0]
    } else {
        v[ch.min(v.len().saturating_sub(1))]
    }
}

fn k_conv(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let op = ctx.node.op;
    let (xi, wi) = xw_index(op);
    let (x, w) = (operand(ins, xi)?, operand(ins, wi)?);
    let mut xv = num_data(x, "X")?;
    let mut wv = num_data(w, "W")?;
    if x.rank() < 3 || w.rank() != x.rank() {
        op_bail!(
            "{op} needs X of rank >= 3 and W of the same rank, found {:?} and {:?}",
            x.shape,
            w.shape
        );
    }
    let geo = Geometry::read(ctx, x.rank() - 2, Some(w.shape[2..].to_vec()))?;
    let group = ctx.int("group", 1)?;
    if group < 1 {
        op_bail!("group must be >= 1, found {group}");
    }
    let m = w.shape[0];
    let wplane = w.numel() / m.max(1);
    // Zero points (integer flavours): X's is a scalar, W's is per output channel.
    let (xzp, wzp) = match op {
        Op::ConvInteger => (opt(ins, 2), opt(ins, 3)),
        Op::QLinearConv => (opt(ins, 2), opt(ins, 5)),
        _ => (None, None),
    };
    if let Some(z) = xzp {
        let z = num_data(z, "x_zero_point")?;
        if z.len() != 1 {
            op_bail!("x_zero_point must be a scalar");
        }
        xv.iter_mut().for_each(|v| *v -= z[0]);
    }
    if let Some(z) = wzp {
        let z = num_data(z, "w_zero_point")?;
        if z.is_empty() {
            op_bail!("w_zero_point is empty");
        }
        for (i, v) in wv.iter_mut().enumerate() {
            *v -= per_channel(&z, i / wplane.max(1));
        }
    }
    let bias = match op {
        Op::Conv => opt(ins, 2),
        Op::QLinearConv => opt(ins, 8),
        _ => None,
    }
    .map(|b| num_data(b, "B"))
    .transpose()?;
    if op == Op::Conv {
        check_float("Conv X", x.dtype)?;
    }
    let (shape, mut y) = conv_f64(
        &xv,
        &x.shape,
        &wv,
        &w.shape,
        bias.as_deref(),
        &geo,
        group as usize,
    )?;
    match op {
        Op::Conv => Ok(vec![Tensor::from_f64(x.dtype, shape, y)]),
        Op::ConvInteger => Ok(vec![from_f64_any(DType::I32, shape, y)]),
        _ => {
            let xs = num_data(operand(ins, 1)?, "x_scale")?;
            let wsc = num_data(operand(ins, 4)?, "w_scale")?;
            let ys = num_data(operand(ins, 6)?, "y_scale")?;
            let yzp = operand(ins, 7)?;
            let yz = num_data(yzp, "y_zero_point")?;
            if xs.len() != 1 || ys.len() != 1 || yz.len() != 1 || wsc.is_empty() {
                op_bail!("QLinearConv needs scalar x_scale, y_scale, y_zero_point");
            }
            let plane: usize = shape[2..].iter().product();
            for (i, v) in y.iter_mut().enumerate() {
                let oc = (i / plane.max(1)) % m.max(1);
                *v = quantize(
                    yzp.dtype,
                    *v * xs[0] * per_channel(&wsc, oc) / ys[0] + yz[0],
                )?;
            }
            Ok(vec![from_f64_any(yzp.dtype, shape, y)])
        }
    }
}

/// ConvTranspose output sizes and begin pads from the attributes.
fn transpose_geometry(
    ctx: &Ctx,
    geo: &Geometry,
    ins: &[Option<usize>],
) -> OpResult<(Vec<Option<usize>>, Vec<i64>)> {
    let sp = ins.len();
    let out_pad = match ctx.ints("output_padding")? {
        None => vec![0; sp],
        Some(v) if v.len() == sp => v,
        Some(v) => op_bail!("`output_padding` has {} values, expected {sp}", v.len()),
    };
    let out_shape = ctx.ints("output_shape")?;
    let out_shape = match out_shape {
        Some(v) if v.len() >= sp => Some(v[v.len() - sp..].to_vec()),
        Some(v) => op_bail!("`output_shape` has {} values, expected {sp}", v.len()),
        None => None,
    };
    let same = matches!(geo.auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER");
    let mut outs = Vec::with_capacity(sp);
    let mut pb = Vec::with_capacity(sp);
    for i in 0..sp {
        let s = geo.strides[i] as i64;
        let Some(n) = ins[i] else {
            outs.push(out_shape.as_ref().map(|o| o[i] as usize));
            pb.push(0);
            continue;
        };
        let full = s * (n as i64 - 1) + out_pad[i] + geo.span(i);
        let target = match &out_shape {
            Some(o) => Some(o[i]),
            None if same => Some(n as i64 * s),
            None => None,
        };
        match target {
            Some(t) => {
                let total = full - t;
                let b = if geo.auto_pad == "SAME_UPPER" {
                    total.div_euclid(2)
                } else {
                    total - total.div_euclid(2)
                };
                if t < 0 {
                    op_bail!("negative ConvTranspose output size {t}");
                }
                outs.push(Some(t as usize));
                pb.push(b);
            }
            None => {
                let (b, e) = geo.pads[i];
                let o = full - b - e;
                if o < 0 {
                    op_bail!("ConvTranspose output size {o} is negative");
                }
                outs.push(Some(o as usize));
                pb.push(b);
            }
        }
    }
    Ok((outs, pb))
}

fn infer_conv_transpose(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let (x, w) = (input(ins, 0)?, input(ins, 1)?);
    let (Some(xd), Some(wd)) = (ty_dims(x), ty_dims(w)) else {
        return Ok(vec![TensorType::new(x.ty.dtype, Shape::unknown())]);
    };
    if xd.len() < 3 || wd.len() != xd.len() {
        op_bail!("ConvTranspose needs X of rank >= 3 and W of the same rank");
    }
    let group = ctx.int("group", 1)? as u64;
    let m = match &wd[1] {
        Dim::Static(k) => Dim::Static(k * group),
        _ => Dim::Unknown,
    };
    let kernel: Option<Vec<usize>> = wd[2..]
        .iter()
        .map(|d| d.as_static().map(|k| k as usize))
        .collect();
    let mut out = vec![xd[0].clone(), m];
    if kernel.is_none() && ctx.ints("kernel_shape")?.is_none() {
        out.extend(vec![Dim::Unknown; xd.len() - 2]);
    } else {
        let geo = Geometry::read(ctx, xd.len() - 2, kernel)?;
        let ins: Vec<Option<usize>> = xd[2..]
            .iter()
            .map(|d| d.as_static().map(|k| k as usize))
            .collect();
        let (outs, _) = transpose_geometry(ctx, &geo, &ins)?;
        out.extend(
            outs.into_iter()
                .map(|o| o.map_or(Dim::Unknown, |o| Dim::Static(o as u64))),
        );
    }
    Ok(vec![TensorType::new(x.ty.dtype, Shape(Some(out)))])
}

fn k_conv_transpose(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let (x, w) = (operand(ins, 0)?, operand(ins, 1)?);
    check_float("ConvTranspose X", x.dtype)?;
    let (xv, wv) = (num_data(x, "X")?, num_data(w, "W")?);
    let (xs, ws) = (&x.shape, &w.shape);
    if xs.len() < 3 || ws.len() != xs.len() {
        op_bail!(
            "ConvTranspose needs X of rank >= 3 and W of the same rank, found {xs:?} and {ws:?}"
        );
    }
    let sp = xs.len() - 2;
    let geo = Geometry::read(ctx, sp, Some(ws[2..].to_vec()))?;
    if geo.kernel != ws[2..] {
        op_bail!(
            "kernel_shape {:?} differs from W's {:?}",
            geo.kernel,
            &ws[2..]
        );
    }
    let group = ctx.int("group", 1)?;
    let (n, c, mg) = (xs[0], xs[1], ws[1]);
    if group < 1 || ws[0] != c || c % group as usize != 0 {
        op_bail!("ConvTranspose channels do not fit group {group}: X {xs:?}, W {ws:?}");
    }
    let group = group as usize;
    let (m, cg) = (mg * group, c / group);
    let ins_sp = &xs[2..];
    let known: Vec<Option<usize>> = ins_sp.iter().map(|&d| Some(d)).collect();
    let (outs, pb) = transpose_geometry(ctx, &geo, &known)?;
    let outs: Vec<usize> = outs.into_iter().map(|o| o.unwrap_or(0)).collect();
    let bias = opt(ins, 2).map(|b| num_data(b, "B")).transpose()?;
    if let Some(b) = &bias
        && b.len() != m
    {
        op_bail!(
            "ConvTranspose bias has {} values for {m} output channels",
            b.len()
        );
    }
    let (in_plane, out_plane) = (
        ins_sp.iter().product::<usize>(),
        outs.iter().product::<usize>(),
    );
    let ksize: usize = geo.kernel.iter().product();
    let kidx = box_indices(&geo.kernel);
    let inner = box_indices(&ins_sp[..sp - 1]);
    let (iw, ow, s_last, d_last) = (
        ins_sp[sp - 1],
        outs[sp - 1],
        geo.strides[sp - 1],
        geo.dilations[sp - 1],
    );
    let mut out = vec![0.0; n * m * out_plane];
    let work = n * m * cg * ksize * in_plane;
    par_rows(&mut out, out_plane, work, |r, plane| {
        let (ni, oc) = (r / m, r % m);
        let (g, ocl) = (oc / mg, oc % mg);
        if let Some(b) = &bias {
            plane.fill(b[oc]);
        }
        for icl in 0..cg {
            let ic = g * cg + icl;
            let xin = &xv[(ni * c + ic) * in_plane..][..in_plane];
            let wk = &wv[(ic * mg + ocl) * ksize..][..ksize];
            for (kv, &wgt) in kidx.iter().zip(wk) {
                // Each input x scatters to output x*s + k*d - pad.
                let off = (kv[sp - 1] * d_last) as i64 - pb[sp - 1];
                let (lo, hi) = valid_range(iw, ow, s_last, off);
                if lo >= hi {
                    continue;
                }
                'rows: for (ii, ipos) in inner.iter().enumerate() {
                    let mut oflat = 0usize;
                    for j in 0..sp - 1 {
                        let o =
                            (ipos[j] * geo.strides[j] + kv[j] * geo.dilations[j]) as i64 - pb[j];
                        if o < 0 || o >= outs[j] as i64 {
                            continue 'rows;
                        }
                        oflat = oflat * outs[j] + o as usize;
                    }
                    let xrow = &xin[ii * iw + lo..ii * iw + hi];
                    let orow = &mut plane[oflat * ow..][..ow];
                    let start = (lo as i64 * s_last as i64 + off) as usize;
                    for (t, &xval) in xrow.iter().enumerate() {
                        orow[start + t * s_last] += wgt * xval;
                    }
                }
            }
        }
    });
    let mut shape = vec![n, m];
    shape.extend(outs);
    Ok(vec![Tensor::from_f64(x.dtype, shape, out)])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::{Attr, Op};

    #[test]
    fn conv_basic_padded_strided() {
        // x = np.arange(25).reshape(1,1,5,5); w = np.ones((1,1,3,3))
        // 3x3 box sums with pads=1, strides=2 (onnx test_conv_with_strides_padding):
        let x = iota(&[1, 1, 5, 5]);
        let w = f32t(&[1, 1, 3, 3], &[1.0; 9]);
        let y = run(
            Op::Conv,
            &[
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ("strides", Attr::Ints(vec![2, 2])),
            ],
            &[Some(&x), Some(&w)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![1, 1, 3, 3]);
        assert_close(&y[0], &[12., 27., 24., 63., 108., 81., 72., 117., 84.]);
        // No padding: [[54,63,72],[99,108,117],[144,153,162]]
        let y = run(Op::Conv, &[], &[Some(&x), Some(&w)]).unwrap();
        assert_close(&y[0], &[54., 63., 72., 99., 108., 117., 144., 153., 162.]);
    }

    #[test]
    fn conv_groups_bias_same() {
        // Depthwise 1-D, SAME_UPPER, kernel [1,2]:
        // x=[[0,1,2],[3,4,5]]; ch0: w=[1,2] -> [2,5,2]; ch1: w=[1,1] -> [7,9,5]; bias [1,-1]
        let x = iota(&[1, 2, 3]);
        let w = f32t(&[2, 1, 2], &[1., 2., 1., 1.]);
        let b = f32t(&[2], &[1., -1.]);
        let y = run(
            Op::Conv,
            &[
                ("group", Attr::Int(2)),
                ("auto_pad", Attr::String("SAME_UPPER".into())),
            ],
            &[Some(&x), Some(&w), Some(&b)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![1, 2, 3]);
        assert_close(&y[0], &[3., 6., 3., 6., 8., 4.]);
    }

    #[test]
    fn conv_transpose_basic() {
        // onnx test_convtranspose_1d: x=[[[0,1,2]]], w=[[[1,1,1],[1,1,1]]] -> 2 channels of [0,1,3,3,2]
        let x = iota(&[1, 1, 3]);
        let w = f32t(&[1, 2, 3], &[1.0; 6]);
        let y = run(Op::ConvTranspose, &[], &[Some(&x), Some(&w)]).unwrap();
        assert_eq!(y[0].shape, vec![1, 2, 5]);
        assert_close(&y[0], &[0., 1., 3., 3., 2., 0., 1., 3., 3., 2.]);
        // strides 2: x[i] lands on 2i..2i+2, so [0,0,1,1,3,2,2] per channel.
        let y = run(
            Op::ConvTranspose,
            &[("strides", Attr::Ints(vec![2]))],
            &[Some(&x), Some(&w)],
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![1, 2, 7]);
        assert_close(
            &y[0],
            &[0., 0., 1., 1., 3., 2., 2., 0., 0., 1., 1., 3., 2., 2.],
        );
    }
}
