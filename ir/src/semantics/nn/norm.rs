//! Normalizations: Batch/Layer/RMS/Group/Instance normalization, LRN,
//! MeanVarianceNormalization, LpNormalization. Statistics are computed in
//! f64 (population variance, as ONNX specifies).

use super::{axis_split, check_float, fdata, ty_dims};
use crate::interp::Tensor;
use crate::semantics::elementwise::infer_same;
use crate::semantics::util::{broadcast_concrete, broadcast_map, dtype_from_onnx, norm_axis};
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::BatchNormalization => (infer_batch_norm, k_batch_norm),
        Op::LayerNormalization => (infer_layer_norm, k_layer_norm),
        Op::RMSNormalization => (infer_same, k_layer_norm),
        Op::GroupNormalization | Op::InstanceNormalization => (infer_same, k_group_norm),
        Op::LRN => (infer_same, k_lrn),
        Op::MeanVarianceNormalization => (infer_same, k_mvn),
        Op::LpNormalization => (infer_same, k_lp_norm),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn opt<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

fn floats_of(t: &Tensor, what: &str) -> OpResult<Vec<f64>> {
    check_float(what, t.dtype)?;
    Ok(fdata(t, what)?.to_vec())
}

/// A per-channel parameter with exactly `c` values.
fn per_channel(t: &Tensor, c: usize, what: &str) -> OpResult<Vec<f64>> {
    let v = floats_of(t, what)?;
    if v.len() != c {
        op_bail!("{what} has {} values, expected {c}", v.len());
    }
    Ok(v)
}

fn mean_var(it: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (mut n, mut s) = (0usize, 0.0);
    for x in it.clone() {
        n += 1;
        s += x;
    }
    let mean = s / n.max(1) as f64;
    let var = it.map(|x| (x - mean) * (x - mean)).sum::<f64>() / n.max(1) as f64;
    (mean, var)
}

fn infer_batch_norm(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let mut out = vec![x.clone()];
    if ctx.int("training_mode", 0)? != 0 {
        let m = input(ins, 3)?.ty.clone();
        out.push(m.clone());
        out.push(input(ins, 4).map_or(m, |v| v.ty.clone()));
    } else {
        out.push(input(ins, 3)?.ty.clone());
        out.push(input(ins, 4)?.ty.clone());
    }
    Ok(out)
}

fn k_batch_norm(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = floats_of(x, "X")?;
    if x.rank() < 2 {
        op_bail!("BatchNormalization needs rank >= 2, found {:?}", x.shape);
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let plane: usize = x.shape[2..].iter().product();
    let scale = per_channel(operand(ins, 1)?, c, "scale")?;
    let bias = per_channel(operand(ins, 2)?, c, "B")?;
    let (mt, vt) = (operand(ins, 3)?, operand(ins, 4)?);
    let (mut mean, mut var) = (
        per_channel(mt, c, "input_mean")?,
        per_channel(vt, c, "input_var")?,
    );
    let eps = f64::from(ctx.float("epsilon", 1e-5)?);
    let training = ctx.int("training_mode", 0)? != 0;
    let (mut run_mean, mut run_var) = (mean.clone(), var.clone());
    if training {
        let mom = f64::from(ctx.float("momentum", 0.9)?);
        for ch in 0..c {
            let it = (0..n).flat_map(|b| xv[(b * c + ch) * plane..][..plane].iter().copied());
            let (m, v) = mean_var(it);
            run_mean[ch] = mean[ch] * mom + m * (1.0 - mom);
            run_var[ch] = var[ch] * mom + v * (1.0 - mom);
            mean[ch] = m;
            var[ch] = v;
        }
    }
    let mut y = xv;
    for (i, val) in y.iter_mut().enumerate() {
        let ch = (i / plane.max(1)) % c;
        *val = scale[ch] * (*val - mean[ch]) / (var[ch] + eps).sqrt() + bias[ch];
    }
    Ok(vec![
        Tensor::from_f64(x.dtype, x.shape.clone(), y),
        Tensor::from_f64(mt.dtype, mt.shape.clone(), run_mean),
        Tensor::from_f64(vt.dtype, vt.shape.clone(), run_var),
    ])
}

fn stash_dtype(ctx: &Ctx) -> OpResult<DType> {
    let code = ctx.int("stash_type", 1)?;
    match dtype_from_onnx(code) {
        Some(d) if super::is_nn_float(d) => Ok(d),
        _ => op_bail!("unsupported stash_type {code}"),
    }
}

fn infer_layer_norm(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?;
    let sd = stash_dtype(ctx)?;
    let stat = match ty_dims(x) {
        None => Shape::unknown(),
        Some(d) => {
            let a = norm_axis(ctx.int("axis", -1)?, d.len())?;
            let mut s = d[..a].to_vec();
            s.extend(vec![Dim::Static(1); d.len() - a]);
            Shape(Some(s))
        }
    };
    Ok(vec![
        x.ty.clone(),
        TensorType::new(sd, stat.clone()),
        TensorType::new(sd, stat),
    ])
}

/// Broadcasts an optional parameter onto `shape`; `None` if absent.
fn param_map(
    t: Option<&Tensor>,
    shape: &[usize],
    what: &str,
) -> OpResult<Option<(Vec<f64>, Vec<usize>)>> {
    let Some(t) = t else { return Ok(None) };
    let v = floats_of(t, what)?;
    if broadcast_concrete(&t.shape, shape)? != shape {
        op_bail!(
            "{what} of shape {:?} does not broadcast to {shape:?}",
            t.shape
        );
    }
    Ok(Some((v, broadcast_map(shape, &t.shape))))
}

/// LayerNormalization and RMSNormalization (which skips the mean).
fn k_layer_norm(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = floats_of(x, "X")?;
    let rms = ctx.node.op == Op::RMSNormalization;
    let a = norm_axis(ctx.int("axis", -1)?, x.rank())?;
    let eps = f64::from(ctx.float("epsilon", 1e-5)?);
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a..].iter().product();
    let scale = param_map(opt(ins, 1), &x.shape, "Scale")?;
    let bias = if rms {
        None
    } else {
        param_map(opt(ins, 2), &x.shape, "B")?
    };
    let mut y = vec![0.0; xv.len()];
    let (mut means, mut invs) = (Vec::with_capacity(outer), Vec::with_capacity(outer));
    for o in 0..outer {
        let row = &xv[o * inner..(o + 1) * inner];
        let (mean, var) = if rms {
            (
                0.0,
                row.iter().map(|v| v * v).sum::<f64>() / inner.max(1) as f64,
            )
        } else {
            mean_var(row.iter().copied())
        };
        let inv = 1.0 / (var + eps).sqrt();
        means.push(mean);
        invs.push(inv);
        for (j, &v) in row.iter().enumerate() {
            let i = o * inner + j;
            let mut r = (v - mean) * inv;
            if let Some((s, m)) = &scale {
                r *= s[m[i]];
            }
            if let Some((b, m)) = &bias {
                r += b[m[i]];
            }
            y[i] = r;
        }
    }
    let mut res = vec![Tensor::from_f64(x.dtype, x.shape.clone(), y)];
    if !rms {
        let sd = stash_dtype(ctx)?;
        let mut s = x.shape[..a].to_vec();
        s.extend(vec![1; x.rank() - a]);
        res.push(Tensor::from_f64(sd, s.clone(), means));
        res.push(Tensor::from_f64(sd, s, invs));
    }
    Ok(res)
}

/// GroupNormalization (num_groups groups of channels) and
/// InstanceNormalization (one group per channel); scale/bias per channel.
fn k_group_norm(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = floats_of(x, "X")?;
    if x.rank() < 2 {
        op_bail!("{} needs rank >= 2", ctx.node.op);
    }
    let (n, c) = (x.shape[0], x.shape[1]);
    let plane: usize = x.shape[2..].iter().product();
    let groups = if ctx.node.op == Op::GroupNormalization {
        let g = ctx.int("num_groups", 0)?;
        if g < 1 || c % g as usize != 0 {
            op_bail!("num_groups {g} does not divide {c} channels");
        }
        g as usize
    } else {
        c
    };
    let scale = per_channel(operand(ins, 1)?, c, "scale")?;
    let bias = per_channel(operand(ins, 2)?, c, "bias")?;
    let eps = f64::from(ctx.float("epsilon", 1e-5)?);
    let gsize = c / groups * plane;
    let mut y = xv.clone();
    for (gi, chunk) in y.chunks_mut(gsize.max(1)).enumerate().take(n * groups) {
        let (mean, var) = mean_var(chunk.iter().copied());
        let inv = 1.0 / (var + eps).sqrt();
        for (j, v) in chunk.iter_mut().enumerate() {
            let ch = (gi % groups) * (c / groups) + j / plane.max(1);
            *v = (*v - mean) * inv * scale[ch] + bias[ch];
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), y)])
}

fn k_lrn(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = floats_of(x, "X")?;
    if x.rank() < 2 {
        op_bail!("LRN needs rank >= 2");
    }
    let size = ctx.int("size", 0)?;
    if size < 1 {
        op_bail!("LRN needs size >= 1, found {size}");
    }
    let (alpha, beta, bias) = (
        f64::from(ctx.float("alpha", 1e-4)?),
        f64::from(ctx.float("beta", 0.75)?),
        f64::from(ctx.float("bias", 1.0)?),
    );
    let (outer, c, plane) = axis_split(&x.shape, 1);
    // Window over channels [ch - floor((size-1)/2), ch + ceil((size-1)/2)].
    let (before, after) = ((size - 1) / 2, (size - 1) - (size - 1) / 2);
    let mut y = vec![0.0; xv.len()];
    for o in 0..outer {
        for ch in 0..c {
            let lo = (ch as i64 - before).max(0) as usize;
            let hi = ((ch as i64 + after) as usize).min(c - 1);
            for p in 0..plane {
                let sq: f64 = (lo..=hi).map(|k| xv[(o * c + k) * plane + p].powi(2)).sum();
                let i = (o * c + ch) * plane + p;
                y[i] = xv[i] / (bias + alpha / size as f64 * sq).powf(beta);
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), y)])
}

fn k_mvn(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = floats_of(x, "X")?;
    let r = x.rank();
    let axes = ctx.ints("axes")?.unwrap_or_else(|| vec![0, 2, 3]);
    let mut red = vec![false; r];
    for a in axes {
        red[norm_axis(a, r)?] = true;
    }
    // Group elements by their coordinates on the kept axes.
    let kept: Vec<usize> = (0..r).filter(|&i| !red[i]).collect();
    let st = crate::interp::tensor::strides(&x.shape);
    let key = |i: usize| -> usize {
        kept.iter()
            .fold(0, |k, &d| k * x.shape[d] + (i / st[d]) % x.shape[d])
    };
    let ngroups: usize = kept.iter().map(|&d| x.shape[d]).product();
    let (mut sum, mut sq, mut cnt) = (
        vec![0.0; ngroups],
        vec![0.0; ngroups],
        vec![0usize; ngroups],
    );
    for (i, &v) in xv.iter().enumerate() {
        let k = key(i);
        sum[k] += v;
        sq[k] += v * v;
        cnt[k] += 1;
    }
    let y = xv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let k = key(i);
            let n = cnt[k] as f64;
            let mean = sum[k] / n;
            let std = (sq[k] / n - mean * mean).max(0.0).sqrt();
            (v - mean) / (std + 1e-9)
        })
        .collect();
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), y)])
}

fn k_lp_norm(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let xv = floats_of(x, "input")?;
    let a = norm_axis(ctx.int("axis", -1)?, x.rank())?;
    let p = ctx.int("p", 2)?;
    if p != 1 && p != 2 {
        op_bail!("LpNormalization supports p = 1 or 2, found {p}");
    }
    let (outer, len, inner) = axis_split(&x.shape, a);
    let mut y = vec![0.0; xv.len()];
    for o in 0..outer {
        for j in 0..inner {
            let at = |i: usize| (o * len + i) * inner + j;
            let norm = if p == 1 {
                (0..len).map(|i| xv[at(i)].abs()).sum::<f64>()
            } else {
                (0..len).map(|i| xv[at(i)].powi(2)).sum::<f64>().sqrt()
            };
            for i in 0..len {
                y[at(i)] = if norm == 0.0 { 0.0 } else { xv[at(i)] / norm };
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, x.shape.clone(), y)])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::Op;

    #[test]
    fn layer_and_batch_norm() {
        // x=np.array([[1.,2,3],[4,4,4]]); m=x.mean(-1); v=x.var(-1)
        // (x-m)/sqrt(v+1e-5) -> row0 [-1.2247357, 0, 1.2247357], row1 zeros
        let x = f32t(&[2, 3], &[1., 2., 3., 4., 4., 4.]);
        let s = f32t(&[3], &[1., 1., 1.]);
        let y = run(Op::LayerNormalization, &[], &[Some(&x), Some(&s)]).unwrap();
        assert_close(&y[0], &[-1.2247357, 0., 1.2247357, 0., 0., 0.]);
        assert_eq!(y[1].shape, vec![2, 1]);
        assert_close(&y[1], &[2., 4.]);
        // 1/np.sqrt(2/3+1e-5), 1/np.sqrt(1e-5)
        assert_close(&y[2], &[1.2247357, 316.22775]);
        // BatchNorm inference on NCHW x=[[[[1,2]],[[3,4]]]]: scale [1,2],
        // B [0,1], mean [1,3], var [1,4], eps 0: ch0 (x-1)/1, ch1 2*(x-3)/2+1
        let x = f32t(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        let p = |v: &[f64]| f32t(&[2], v);
        let (sc, b, m, v) = (p(&[1., 2.]), p(&[0., 1.]), p(&[1., 3.]), p(&[1., 4.]));
        let y = run(
            Op::BatchNormalization,
            &[("epsilon", crate::Attr::Float(0.0))],
            &[Some(&x), Some(&sc), Some(&b), Some(&m), Some(&v)],
        )
        .unwrap();
        assert_close(&y[0], &[0., 1., 1., 2.]);
    }
}
