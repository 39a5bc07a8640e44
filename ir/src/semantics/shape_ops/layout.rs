//! Ops that rearrange elements by position: Transpose, Concat, Split,
//! Expand, Tile, Slice, Pad, Trilu, DepthToSpace, SpaceToDepth,
//! CenterCropPad, ReverseSequence.

use super::super::util::{broadcast_concrete, broadcast_map, broadcast_shapes};
use super::super::{Ctx, OpResult, TypeInput, input, operand, unknown_dims};
use super::{
    InferOut, KernelOut, Pair, axis, cat_flat, checked_numel, checked_take, cints, for_each_index,
    has_in, kints, to_dim, tt, zero_of,
};
use crate::interp::Tensor;
use crate::interp::tensor::strides;
use crate::{Dim, Op, Shape, TensorType, op_bail};

pub(super) fn lookup(op: Op) -> Option<Pair> {
    use Op::*;
    Some(match op {
        Transpose => (infer_transpose, k_transpose),
        Concat => (infer_concat, k_concat),
        Split => (infer_split, k_split),
        Expand => (infer_expand, k_expand),
        Tile => (infer_tile, k_tile),
        Slice => (infer_slice, k_slice),
        Pad => (infer_pad, k_pad),
        Trilu => (super::super::elementwise::infer_same, k_trilu),
        DepthToSpace => (infer_d2s, k_d2s),
        SpaceToDepth => (infer_s2d, k_s2d),
        CenterCropPad => (infer_ccp, k_ccp),
        ReverseSequence => (super::super::elementwise::infer_same, k_revseq),
        _ => return None,
    })
}

/// Builds a gather map: for every output multi-index, the flat source index.
fn map_indices(
    out: &[usize],
    mut f: impl FnMut(&[usize]) -> OpResult<usize>,
) -> OpResult<Vec<usize>> {
    let mut v = Vec::with_capacity(checked_numel(out)?);
    let mut err = None;
    for_each_index(out, |idx| match f(idx) {
        Ok(i) => v.push(i),
        Err(e) => {
            if err.is_none() {
                err = Some(e)
            }
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(v),
    }
}

fn ravel(idx: &[usize], st: &[usize]) -> usize {
    idx.iter().zip(st).map(|(i, s)| i * s).sum()
}

fn perm_of(ctx: &Ctx, rank: usize) -> OpResult<Vec<usize>> {
    let p = match ctx.ints("perm")? {
        None => return Ok((0..rank).rev().collect()),
        Some(p) => p,
    };
    if p.len() != rank {
        op_bail!("Transpose: perm {p:?} does not match rank {rank}");
    }
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    for &a in &p {
        let a = axis(a, rank)?;
        if seen[a] {
            op_bail!("Transpose: perm {p:?} repeats an axis");
        }
        seen[a] = true;
        out.push(a);
    }
    Ok(out)
}

fn infer_transpose(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let Some(d) = x.ty.shape.dims() else {
        let r = ctx.ints("perm")?.map(|p| p.len());
        return Ok(vec![unknown_dims(x.ty.dtype, r)]);
    };
    let p = perm_of(ctx, d.len())?;
    Ok(vec![tt(
        x.ty.dtype,
        p.iter().map(|&a| d[a].clone()).collect(),
    )])
}

fn k_transpose(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let p = perm_of(ctx, x.rank())?;
    let out: Vec<usize> = p.iter().map(|&a| x.shape[a]).collect();
    let st = strides(&x.shape);
    let pst: Vec<usize> = p.iter().map(|&a| st[a]).collect();
    let map = map_indices(&out, |o| Ok(ravel(o, &pst)))?;
    Ok(vec![checked_take(x, out, &map)?])
}

/// The better of two dims describing the same extent.
fn pick_dim(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Static(_), _) => a.clone(),
        (_, Dim::Static(_)) => b.clone(),
        (Dim::Sym(_), _) => a.clone(),
        _ => b.clone(),
    }
}

fn infer_concat(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let first = input(ins, 0)?;
    let dt = first.ty.dtype;
    let ranked: Vec<&[Dim]> = ins
        .iter()
        .flatten()
        .filter_map(|t| t.ty.shape.dims())
        .collect();
    let Some(r) = ranked.first().map(|d| d.len()) else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let a = axis(ctx.int("axis", 0)?, r)?;
    let all_ranked = ranked.len() == ins.iter().flatten().count();
    let mut out: Vec<Dim> = ranked[0].to_vec();
    let mut total = Some(0u64);
    for d in &ranked {
        if d.len() != r {
            op_bail!("Concat: inputs have ranks {r} and {}", d.len());
        }
        for i in 0..r {
            if i == a {
                total = total.and_then(|t| Some(t + d[i].as_static()?));
            } else {
                if let (Dim::Static(m), Dim::Static(n)) = (&out[i], &d[i])
                    && m != n
                {
                    op_bail!("Concat: dim {i} differs ({m} vs {n})");
                }
                out[i] = pick_dim(&out[i], &d[i]);
            }
        }
    }
    out[a] = match total {
        Some(t) if all_ranked => Dim::Static(t),
        _ if ranked.len() == 1 && all_ranked => out[a].clone(),
        _ => Dim::Unknown,
    };
    Ok(vec![tt(dt, out)])
}

fn k_concat(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let xs: Vec<&Tensor> = ins.iter().flatten().copied().collect();
    let Some(first) = xs.first() else {
        op_bail!("Concat needs at least one input");
    };
    let r = first.rank();
    let a = axis(ctx.int("axis", 0)?, r)?;
    let mut out = first.shape.clone();
    out[a] = 0;
    for x in &xs {
        if x.rank() != r || (0..r).any(|i| i != a && x.shape[i] != first.shape[i]) {
            op_bail!(
                "Concat: shapes {:?} and {:?} differ off axis {a}",
                first.shape,
                x.shape
            );
        }
        out[a] += x.shape[a];
    }
    let all = cat_flat(&xs)?;
    // Per output position along the axis: (input, offset into it, base).
    let mut owner = Vec::with_capacity(out[a]);
    let mut base = 0;
    for x in &xs {
        for j in 0..x.shape[a] {
            owner.push((strides(&x.shape), j, base));
        }
        base += x.numel();
    }
    let map = map_indices(&out, |o| {
        let (st, j, base) = &owner[o[a]];
        let mut f = *base;
        for (i, (&k, s)) in o.iter().zip(st).enumerate() {
            f += if i == a { j * s } else { k * s };
        }
        Ok(f)
    })?;
    Ok(vec![checked_take(&all, out, &map)?])
}

/// Chunk sizes of Split along a dim of size `d`.
fn split_sizes(
    ctx: &Ctx,
    d: Option<u64>,
    split: Option<Vec<i64>>,
    n_out: usize,
) -> OpResult<Vec<Option<u64>>> {
    if let Some(s) = split {
        if s.len() != n_out {
            op_bail!("Split: {} sizes for {n_out} outputs", s.len());
        }
        let v: Vec<u64> = s
            .iter()
            .map(|&x| to_dim(x, "Split size").map(|x| x as u64))
            .collect::<OpResult<_>>()?;
        if let Some(d) = d
            && v.iter().sum::<u64>() != d
        {
            op_bail!("Split: sizes {v:?} do not add up to {d}");
        }
        return Ok(v.into_iter().map(Some).collect());
    }
    let n = match ctx.attr("num_outputs") {
        Some(_) => ctx.int("num_outputs", 1)?,
        None => n_out as i64,
    };
    if n < 1 || n as usize != n_out {
        op_bail!("Split: num_outputs {n} but the node has {n_out} outputs");
    }
    let Some(d) = d else {
        return Ok(vec![None; n_out]);
    };
    let n = n as u64;
    let chunk = d.div_ceil(n);
    Ok((0..n)
        .map(|i| Some(chunk.min(d.saturating_sub(i * chunk))))
        .collect())
}

fn infer_split(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let n_out = ctx.node.outputs.len();
    let dt = x.ty.dtype;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None); n_out]);
    };
    let a = axis(ctx.int("axis", 0)?, d.len())?;
    let split = cints(ins, 1);
    let sizes = if has_in(ins, 1) && split.is_none() {
        vec![None; n_out]
    } else {
        split_sizes(ctx, d[a].as_static(), split, n_out)?
    };
    Ok(sizes
        .into_iter()
        .map(|s| {
            let mut o = d.to_vec();
            o[a] = s.map_or(Dim::Unknown, Dim::Static);
            tt(dt, o)
        })
        .collect())
}

fn k_split(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let n_out = ctx.node.outputs.len();
    let a = axis(ctx.int("axis", 0)?, x.rank())?;
    let sizes = split_sizes(ctx, Some(x.shape[a] as u64), kints(ins, 1)?, n_out)?;
    let st = strides(&x.shape);
    let mut start = 0;
    let mut outs = Vec::with_capacity(n_out);
    for s in sizes {
        let s = s.unwrap_or(0) as usize;
        let mut shape = x.shape.clone();
        shape[a] = s;
        let map = map_indices(&shape, |o| Ok(ravel(o, &st) + start * st[a]))?;
        outs.push(checked_take(x, shape, &map)?);
        start += s;
    }
    Ok(outs)
}

fn infer_expand(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(s) = cints(ins, 1) else {
        let n = input(ins, 1)?
            .ty
            .shape
            .dims()
            .and_then(|d| d.first()?.as_static());
        let r = x.ty.shape.rank().zip(n).map(|(r, n)| r.max(n as usize));
        return Ok(vec![unknown_dims(dt, r)]);
    };
    let s = s
        .iter()
        .map(|&v| to_dim(v, "Expand dim"))
        .collect::<OpResult<Vec<_>>>()?;
    Ok(vec![TensorType::new(
        dt,
        broadcast_shapes(&x.ty.shape, &Shape::from_static(&s))?,
    )])
}

fn k_expand(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(s) = kints(ins, 1)? else {
        op_bail!("Expand needs a shape input");
    };
    let s = s
        .iter()
        .map(|&v| to_dim(v, "Expand dim"))
        .collect::<OpResult<Vec<_>>>()?;
    let out = broadcast_concrete(&x.shape, &s)?;
    checked_numel(&out)?;
    let map = broadcast_map(&out, &x.shape);
    Ok(vec![checked_take(x, out, &map)?])
}

fn infer_tile(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let (Some(d), Some(r)) = (x.ty.shape.dims(), cints(ins, 1)) else {
        return Ok(vec![unknown_dims(dt, x.ty.shape.rank())]);
    };
    if r.len() != d.len() {
        op_bail!("Tile: {} repeats for rank {}", r.len(), d.len());
    }
    let mut out = Vec::with_capacity(d.len());
    for (x, &k) in d.iter().zip(&r) {
        let k = to_dim(k, "Tile repeat")? as u64;
        out.push(match x {
            Dim::Static(n) => Dim::Static(n * k),
            _ if k == 1 => x.clone(),
            _ if k == 0 => Dim::Static(0),
            _ => Dim::Unknown,
        });
    }
    Ok(vec![tt(dt, out)])
}

fn k_tile(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(r) = kints(ins, 1)? else {
        op_bail!("Tile needs a repeats input");
    };
    if r.len() != x.rank() {
        op_bail!("Tile: {} repeats for rank {}", r.len(), x.rank());
    }
    let mut out = Vec::with_capacity(r.len());
    for (&d, &k) in x.shape.iter().zip(&r) {
        out.push(d * to_dim(k, "Tile repeat")?);
    }
    let st = strides(&x.shape);
    let map = map_indices(&out, |o| {
        Ok(o.iter()
            .zip(&x.shape)
            .zip(&st)
            .map(|((i, d), s)| (i % d) * s)
            .sum())
    })?;
    Ok(vec![checked_take(x, out, &map)?])
}

/// One sliced axis: first element, step and resulting length.
#[derive(Clone, Copy, Debug)]
struct AxisSlice {
    start: i64,
    step: i64,
    len: usize,
}

fn slice_axis(start: i64, end: i64, step: i64, dim: usize) -> OpResult<AxisSlice> {
    if step == 0 {
        op_bail!("Slice: step is zero");
    }
    let (d, step128) = (dim as i128, step as i128);
    let adj = |v: i64| {
        let v = v as i128;
        if v < 0 { v + d } else { v }
    };
    let (s, e) = if step > 0 {
        (adj(start).clamp(0, d), adj(end).clamp(0, d))
    } else {
        (adj(start).clamp(0, d - 1), adj(end).clamp(-1, d - 1))
    };
    let span = e - s;
    let len = if (span > 0) == (step > 0) && span != 0 {
        (span.abs() + step128.abs() - 1) / step128.abs()
    } else {
        0
    };
    Ok(AxisSlice {
        start: s as i64,
        step,
        len: len as usize,
    })
}

/// (axis, start, end, step) per sliced axis, axes normalized.
fn slice_spec(
    rank: usize,
    starts: &[i64],
    ends: &[i64],
    axes: Option<Vec<i64>>,
    steps: Option<Vec<i64>>,
) -> OpResult<Vec<(usize, i64, i64, i64)>> {
    let n = starts.len();
    if ends.len() != n {
        op_bail!("Slice: {} starts but {} ends", n, ends.len());
    }
    let axes = axes.unwrap_or_else(|| (0..n as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; n]);
    if axes.len() != n || steps.len() != n {
        op_bail!("Slice: starts, ends, axes and steps differ in length");
    }
    let mut seen = vec![false; rank];
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let a = axis(axes[i], rank)?;
        if seen[a] {
            op_bail!("Slice: axis {a} repeated");
        }
        seen[a] = true;
        v.push((a, starts[i], ends[i], steps[i]));
    }
    Ok(v)
}

fn infer_slice(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let opt = |i: usize| -> Option<Option<Vec<i64>>> {
        if has_in(ins, i) {
            cints(ins, i).map(Some)
        } else {
            Some(None)
        }
    };
    let (Some(starts), Some(ends), Some(axes), Some(steps)) =
        (cints(ins, 1), cints(ins, 2), opt(3), opt(4))
    else {
        // Which axes change is unknown, but those of length... anything may.
        return Ok(vec![unknown_dims(dt, Some(d.len()))]);
    };
    let spec = slice_spec(d.len(), &starts, &ends, axes, steps)?;
    let mut out = d.to_vec();
    for (a, s, e, st) in spec {
        out[a] = match &d[a] {
            Dim::Static(n) => Dim::Static(slice_axis(s, e, st, *n as usize)?.len as u64),
            // The whole of a symbolic dim stays that dim.
            x if s == 0 && st == 1 && e >= i32::MAX as i64 => x.clone(),
            _ => Dim::Unknown,
        };
    }
    Ok(vec![tt(dt, out)])
}

fn k_slice(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let (Some(starts), Some(ends)) = (kints(ins, 1)?, kints(ins, 2)?) else {
        op_bail!("Slice needs starts and ends");
    };
    let spec = slice_spec(x.rank(), &starts, &ends, kints(ins, 3)?, kints(ins, 4)?)?;
    let mut ax: Vec<AxisSlice> = x
        .shape
        .iter()
        .map(|&d| AxisSlice {
            start: 0,
            step: 1,
            len: d,
        })
        .collect();
    for (a, s, e, st) in spec {
        ax[a] = slice_axis(s, e, st, x.shape[a])?;
    }
    let out: Vec<usize> = ax.iter().map(|s| s.len).collect();
    let st = strides(&x.shape);
    let map = map_indices(&out, |o| {
        let mut f = 0i64;
        for ((&i, s), &k) in o.iter().zip(&ax).zip(&st) {
            f += (s.start + i as i64 * s.step) * k as i64;
        }
        Ok(f as usize)
    })?;
    Ok(vec![checked_take(x, out, &map)?])
}

/// (begin, end) pad per axis of a rank-`r` tensor.
fn pad_widths(r: usize, pads: &[i64], axes: Option<Vec<i64>>) -> OpResult<Vec<(i64, i64)>> {
    let axes = axes.unwrap_or_else(|| (0..r as i64).collect());
    let n = axes.len();
    if pads.len() != 2 * n {
        op_bail!("Pad: {} pads for {n} axes", pads.len());
    }
    let mut w = vec![(0, 0); r];
    for (i, &a) in axes.iter().enumerate() {
        w[axis(a, r)?] = (pads[i], pads[n + i]);
    }
    Ok(w)
}

fn infer_pad(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let axes = cints(ins, 3);
    let (Some(p), true) = (cints(ins, 1), axes.is_some() || !has_in(ins, 3)) else {
        return Ok(vec![unknown_dims(dt, Some(d.len()))]);
    };
    let w = pad_widths(d.len(), &p, axes)?;
    let out = d
        .iter()
        .zip(&w)
        .map(|(x, &(b, e))| match x {
            Dim::Static(n) => Dim::Static((*n as i64 + b + e).max(0) as u64),
            _ if b == 0 && e == 0 => x.clone(),
            _ => Dim::Unknown,
        })
        .collect();
    Ok(vec![tt(dt, out)])
}

fn k_pad(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(p) = kints(ins, 1)? else {
        op_bail!("Pad needs a pads input");
    };
    let w = pad_widths(x.rank(), &p, kints(ins, 3)?)?;
    let mode = ctx.string("mode", "constant")?;
    let fill = match ins.get(2) {
        Some(Some(v)) if v.numel() > 0 => v.take(vec![1], &[0]),
        _ => zero_of(x.dtype)?,
    };
    let all = cat_flat(&[x, &fill])?;
    let fill_at = x.numel();
    let mut out = Vec::with_capacity(x.rank());
    for (&d, &(b, e)) in x.shape.iter().zip(&w) {
        let n = d as i64 + b + e;
        if n < 0 {
            op_bail!("Pad: pads {b},{e} remove more than the dim {d}");
        }
        if n > 0 && d == 0 && mode != "constant" {
            op_bail!("Pad: mode {mode} cannot pad an empty dim");
        }
        out.push(n as usize);
    }
    let st = strides(&x.shape);
    let map = map_indices(&out, |o| {
        let mut f = 0;
        for (i, &oi) in o.iter().enumerate() {
            let d = x.shape[i] as i64;
            let j = oi as i64 - w[i].0;
            let j = if (0..d).contains(&j) {
                j
            } else {
                match mode.as_str() {
                    "constant" => return Ok(fill_at),
                    "edge" => j.clamp(0, d - 1),
                    "wrap" => j.rem_euclid(d),
                    "reflect" => {
                        if d == 1 {
                            0
                        } else {
                            let period = 2 * (d - 1);
                            let m = j.rem_euclid(period);
                            if m < d { m } else { period - m }
                        }
                    }
                    m => op_bail!("Pad: unknown mode {m}"),
                }
            };
            f += j as usize * st[i];
        }
        Ok(f)
    })?;
    Ok(vec![checked_take(&all, out, &map)?])
}

fn k_trilu(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let r = x.rank();
    if r < 2 {
        op_bail!("Trilu: input must have rank >= 2");
    }
    let k = kints(ins, 1)?.and_then(|v| v.first().copied()).unwrap_or(0);
    let upper = ctx.int("upper", 1)? != 0;
    let all = cat_flat(&[x, &zero_of(x.dtype)?])?;
    let zero = x.numel();
    let mut i = 0;
    let map = map_indices(&x.shape, |o| {
        let (row, col) = (o[r - 2] as i64, o[r - 1] as i64);
        let keep = if upper {
            col - row >= k
        } else {
            col - row <= k
        };
        i += 1;
        Ok(if keep { i - 1 } else { zero })
    })?;
    Ok(vec![checked_take(&all, x.shape.clone(), &map)?])
}

fn block(ctx: &Ctx) -> OpResult<usize> {
    let b = ctx.int("blocksize", 0)?;
    if b < 1 {
        op_bail!("blocksize must be positive, found {b}");
    }
    Ok(b as usize)
}

fn nchw<'a>(t: &'a TypeInput) -> Option<&'a [Dim]> {
    t.ty.shape.dims().filter(|d| d.len() == 4)
}

fn dim_div(d: &Dim, k: u64) -> Dim {
    d.as_static().map_or(Dim::Unknown, |n| Dim::Static(n / k))
}

fn dim_mul(d: &Dim, k: u64) -> Dim {
    d.as_static().map_or(Dim::Unknown, |n| Dim::Static(n * k))
}

fn infer_d2s(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let b = block(ctx)? as u64;
    let Some(d) = nchw(x) else {
        return Ok(vec![unknown_dims(x.ty.dtype, Some(4))]);
    };
    Ok(vec![tt(
        x.ty.dtype,
        vec![
            d[0].clone(),
            dim_div(&d[1], b * b),
            dim_mul(&d[2], b),
            dim_mul(&d[3], b),
        ],
    )])
}

fn k_d2s(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let b = block(ctx)?;
    let &[n, c, h, w] = &x.shape[..] else {
        op_bail!("DepthToSpace: input must be 4-D");
    };
    if c % (b * b) != 0 {
        op_bail!(
            "DepthToSpace: channels {c} not divisible by blocksize² {}",
            b * b
        );
    }
    let crd = ctx.string("mode", "DCR")? == "CRD";
    let c2 = c / (b * b);
    let out = vec![n, c2, h * b, w * b];
    let st = strides(&x.shape);
    let map = map_indices(&out, |o| {
        let (i, j) = (o[2] % b, o[3] % b);
        let ch = if crd {
            o[1] * b * b + i * b + j
        } else {
            (i * b + j) * c2 + o[1]
        };
        Ok(o[0] * st[0] + ch * st[1] + (o[2] / b) * st[2] + o[3] / b)
    })?;
    Ok(vec![checked_take(x, out, &map)?])
}

fn infer_s2d(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let b = block(ctx)? as u64;
    let Some(d) = nchw(x) else {
        return Ok(vec![unknown_dims(x.ty.dtype, Some(4))]);
    };
    Ok(vec![tt(
        x.ty.dtype,
        vec![
            d[0].clone(),
            dim_mul(&d[1], b * b),
            dim_div(&d[2], b),
            dim_div(&d[3], b),
        ],
    )])
}

fn k_s2d(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let b = block(ctx)?;
    let &[n, c, h, w] = &x.shape[..] else {
        op_bail!("SpaceToDepth: input must be 4-D");
    };
    if h % b != 0 || w % b != 0 {
        op_bail!("SpaceToDepth: {h}x{w} not divisible by blocksize {b}");
    }
    let crd = ctx.string("mode", "DCR")? == "CRD";
    let out = vec![n, c * b * b, h / b, w / b];
    let st = strides(&x.shape);
    let map = map_indices(&out, |o| {
        let (blk, ch) = if crd {
            (o[1] % (b * b), o[1] / (b * b))
        } else {
            (o[1] / c, o[1] % c)
        };
        let (i, j) = (blk / b, blk % b);
        Ok(o[0] * st[0] + ch * st[1] + (o[2] * b + i) * st[2] + o[3] * b + j)
    })?;
    Ok(vec![checked_take(x, out, &map)?])
}

fn ccp_axes(ctx: &Ctx, rank: usize, n: usize) -> OpResult<Vec<usize>> {
    let axes = ctx
        .ints("axes")?
        .unwrap_or_else(|| (0..rank as i64).collect());
    if axes.len() != n {
        op_bail!("CenterCropPad: {n} sizes for {} axes", axes.len());
    }
    axes.iter().map(|&a| axis(a, rank)).collect()
}

fn infer_ccp(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let Some(s) = cints(ins, 1) else {
        return Ok(vec![unknown_dims(dt, Some(d.len()))]);
    };
    let mut out = d.to_vec();
    for (a, &v) in ccp_axes(ctx, d.len(), s.len())?.iter().zip(&s) {
        out[*a] = Dim::Static(to_dim(v, "CenterCropPad size")? as u64);
    }
    Ok(vec![tt(dt, out)])
}

fn k_ccp(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(s) = kints(ins, 1)? else {
        op_bail!("CenterCropPad needs a shape input");
    };
    let mut out = x.shape.clone();
    for (a, &v) in ccp_axes(ctx, x.rank(), s.len())?.iter().zip(&s) {
        out[*a] = to_dim(v, "CenterCropPad size")?;
    }
    // Source offset per axis: crop starts at floor((in-out)/2), pad puts
    // the input at floor((out-in)/2).
    let off: Vec<i64> = x
        .shape
        .iter()
        .zip(&out)
        .map(|(&i, &o)| (i as i64 - o as i64).div_euclid(2) + i64::from(i < o && (o - i) % 2 == 1))
        .collect();
    let all = cat_flat(&[x, &zero_of(x.dtype)?])?;
    let st = strides(&x.shape);
    let map = map_indices(&out, |o| {
        let mut f = 0;
        for (i, &oi) in o.iter().enumerate() {
            let j = oi as i64 + off[i];
            if !(0..x.shape[i] as i64).contains(&j) {
                return Ok(x.numel());
            }
            f += j as usize * st[i];
        }
        Ok(f)
    })?;
    Ok(vec![checked_take(&all, out, &map)?])
}

fn k_revseq(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(lens) = kints(ins, 1)? else {
        op_bail!("ReverseSequence needs sequence_lens");
    };
    let r = x.rank();
    let ba = axis(ctx.int("batch_axis", 1)?, r)?;
    let ta = axis(ctx.int("time_axis", 0)?, r)?;
    if lens.len() != x.shape[ba] {
        op_bail!(
            "ReverseSequence: {} lengths for batch {}",
            lens.len(),
            x.shape[ba]
        );
    }
    let st = strides(&x.shape);
    let map = map_indices(&x.shape, |o| {
        let l = lens[o[ba]].clamp(0, x.shape[ta] as i64) as usize;
        let t = o[ta];
        let src_t = if t < l { l - 1 - t } else { t };
        Ok(ravel(o, &st) - t * st[ta] + src_t * st[ta])
    })?;
    Ok(vec![checked_take(x, x.shape.clone(), &map)?])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    #[test]
    fn transpose_concat_split() {
        let x = arange(&[2, 3]);
        // np.arange(6).reshape(2,3).T.ravel()
        let y = run(Op::Transpose, &[], &[Some(&x)]);
        assert_eq!(fvals(&y), vec![0., 3., 1., 4., 2., 5.]);
        // np.concatenate([a, a], axis=1).ravel()
        let c = run(
            Op::Concat,
            &[("axis", Attr::Int(-1))],
            &[Some(&x), Some(&x)],
        );
        assert_eq!(c.shape, vec![2, 6]);
        assert_eq!(
            fvals(&c),
            vec![0., 1., 2., 0., 1., 2., 3., 4., 5., 3., 4., 5.]
        );
        // np.array_split(np.arange(7), [3, 6]) with num_outputs=3 -> sizes 3,3,1
        let s = run_n(
            Op::Split,
            &[("num_outputs", Attr::Int(3))],
            &[Some(&arange(&[7]))],
            3,
        );
        assert_eq!(fvals(&s[2]), vec![6.]);
        assert_eq!(fvals(&s[1]), vec![3., 4., 5.]);
        let s = run_n(
            Op::Split,
            &[("axis", Attr::Int(1))],
            &[Some(&x), Some(&i64t(&[2], &[1, 2]))],
            2,
        );
        assert_eq!(fvals(&s[1]), vec![1., 2., 4., 5.]);
    }

    #[test]
    fn slice() {
        let x = arange(&[3, 4]);
        // x[::-1, 1:1000:2].ravel() -> [9, 11, 5, 7, 1, 3]
        let y = run(
            Op::Slice,
            &[],
            &[
                Some(&x),
                Some(&i64t(&[2], &[-1, 1])),
                Some(&i64t(&[2], &[i64::MIN, 1000])),
                Some(&i64t(&[2], &[0, 1])),
                Some(&i64t(&[2], &[-1, 2])),
            ],
        );
        assert_eq!(y.shape, vec![3, 2]);
        assert_eq!(fvals(&y), vec![9., 11., 5., 7., 1., 3.]);
        // x[:, 5:10] is empty
        let y = run(
            Op::Slice,
            &[],
            &[
                Some(&x),
                Some(&i64t(&[1], &[5])),
                Some(&i64t(&[1], &[10])),
                Some(&i64t(&[1], &[1])),
            ],
        );
        assert_eq!(y.shape, vec![3, 0]);
    }

    #[test]
    fn expand_tile_pad() {
        let x = f32t(&[3, 1], &[1., 2., 3.]);
        let y = run(Op::Expand, &[], &[Some(&x), Some(&i64t(&[3], &[2, 1, 2]))]);
        assert_eq!(y.shape, vec![2, 3, 2]);
        let t = run(Op::Tile, &[], &[Some(&x), Some(&i64t(&[2], &[2, 2]))]);
        // np.tile([[1],[2],[3]], (2,2)).ravel()
        assert_eq!(
            fvals(&t),
            vec![1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]
        );
        let v = f32t(&[4], &[1., 2., 3., 4.]);
        let pads = i64t(&[2], &[3, 2]);
        for (mode, want) in [
            // np.pad([1,2,3,4], (3,2), mode='reflect')
            ("reflect", vec![4., 3., 2., 1., 2., 3., 4., 3., 2.]),
            // np.pad([1,2,3,4], (3,2), mode='edge')
            ("edge", vec![1., 1., 1., 1., 2., 3., 4., 4., 4.]),
            // np.pad([1,2,3,4], (3,2), mode='wrap')
            ("wrap", vec![2., 3., 4., 1., 2., 3., 4., 1., 2.]),
        ] {
            let y = run(
                Op::Pad,
                &[("mode", Attr::String(mode.into()))],
                &[Some(&v), Some(&pads)],
            );
            assert_eq!(fvals(&y), want, "{mode}");
        }
        let cv = f32t(&[], &[9.]);
        let y = run(
            Op::Pad,
            &[],
            &[Some(&v), Some(&i64t(&[2], &[1, -2])), Some(&cv)],
        );
        assert_eq!(fvals(&y), vec![9., 1., 2.]);
    }

    #[test]
    fn trilu_d2s_ccp_revseq() {
        let x = arange(&[3, 3]);
        // np.triu(x, 1).ravel()
        let y = run(Op::Trilu, &[], &[Some(&x), Some(&i64t(&[], &[1]))]);
        assert_eq!(fvals(&y), vec![0., 1., 2., 0., 0., 5., 0., 0., 0.]);
        // np.tril(x, -1).ravel()
        let y = run(
            Op::Trilu,
            &[("upper", Attr::Int(0))],
            &[Some(&x), Some(&i64t(&[], &[-1]))],
        );
        assert_eq!(fvals(&y), vec![0., 0., 0., 3., 0., 0., 6., 7., 0.]);
        // DCR: x.reshape(1,2,2,2,1,1).transpose(0,3,4,1,5,2).reshape(1,2,2,2)
        let x = arange(&[1, 8, 1, 1]);
        let y = run(
            Op::DepthToSpace,
            &[("blocksize", Attr::Int(2))],
            &[Some(&x)],
        );
        assert_eq!(y.shape, vec![1, 2, 2, 2]);
        assert_eq!(fvals(&y), vec![0., 2., 4., 6., 1., 3., 5., 7.]);
        let back = run(
            Op::SpaceToDepth,
            &[("blocksize", Attr::Int(2))],
            &[Some(&y)],
        );
        assert_eq!(fvals(&back), fvals(&x));
        // CRD: SpaceToDepth inverts DepthToSpace in the same mode
        let crd = [
            ("blocksize", Attr::Int(2)),
            ("mode", Attr::String("CRD".into())),
        ];
        let y = run(Op::DepthToSpace, &crd, &[Some(&x)]);
        // x.reshape(1,2,2,2,1,1).transpose(0,1,4,2,5,3).reshape(1,2,2,2)
        assert_eq!(fvals(&y), vec![0., 1., 2., 3., 4., 5., 6., 7.]);
        let back = run(Op::SpaceToDepth, &crd, &[Some(&y)]);
        assert_eq!(fvals(&back), fvals(&x));
        // CenterCropPad of arange(5) to 3 -> [1,2,3]; to 8 -> pad 1 before, 2 after
        let v = arange(&[5]);
        let y = run(Op::CenterCropPad, &[], &[Some(&v), Some(&i64t(&[1], &[3]))]);
        assert_eq!(fvals(&y), vec![1., 2., 3.]);
        let y = run(Op::CenterCropPad, &[], &[Some(&v), Some(&i64t(&[1], &[8]))]);
        assert_eq!(fvals(&y), vec![0., 0., 1., 2., 3., 4., 0., 0.]);
        // time-major [T=3, B=2], lens [2, 3]
        let x = arange(&[3, 2]);
        let y = run(
            Op::ReverseSequence,
            &[],
            &[Some(&x), Some(&i64t(&[2], &[2, 3]))],
        );
        assert_eq!(fvals(&y), vec![2., 5., 0., 3., 4., 1.]);
    }
}
