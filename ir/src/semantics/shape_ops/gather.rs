//! Indexed reads and writes: Gather, GatherElements, GatherND,
//! ScatterElements, ScatterND, OneHot, Compress, NonZero.

use super::super::{Ctx, OpResult, TypeInput, input, operand, unknown_dims};
use super::{
    InferOut, KernelOut, Pair, axis, cat_flat, checked_numel, checked_take, for_each_index, tt,
    wrap_index,
};
use crate::interp::Tensor;
use crate::interp::tensor::{Storage, strides};
use crate::{DType, Dim, Op, TensorType, op_bail};

pub(super) fn lookup(op: Op) -> Option<Pair> {
    use Op::*;
    Some(match op {
        Gather => (infer_gather, k_gather),
        GatherElements => (infer_gather_elements, k_gather_elements),
        GatherND => (infer_gather_nd, k_gather_nd),
        ScatterElements => (infer_data, k_scatter_elements),
        ScatterND => (infer_data, k_scatter_nd),
        OneHot => (infer_onehot, k_onehot),
        Compress => (infer_compress, k_compress),
        NonZero => (infer_nonzero, k_nonzero),
        _ => return None,
    })
}

fn ints_of(t: &Tensor, what: &str) -> OpResult<Vec<i64>> {
    match t.to_i64_vec() {
        Some(v) => Ok(v),
        None => op_bail!("{what} must be integers, found {}", t.dtype),
    }
}

fn infer_gather(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let (x, i) = (input(ins, 0)?, input(ins, 1)?);
    let dt = x.ty.dtype;
    let (Some(d), Some(id)) = (x.ty.shape.dims(), i.ty.shape.dims()) else {
        let r =
            x.ty.shape
                .rank()
                .zip(i.ty.shape.rank())
                .map(|(a, b)| a + b - 1);
        return Ok(vec![unknown_dims(dt, r)]);
    };
    let a = axis(ctx.int("axis", 0)?, d.len())?;
    let mut out = d[..a].to_vec();
    out.extend_from_slice(id);
    out.extend_from_slice(&d[a + 1..]);
    Ok(vec![tt(dt, out)])
}

fn k_gather(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (x, it) = (operand(ins, 0)?, operand(ins, 1)?);
    let a = axis(ctx.int("axis", 0)?, x.rank())?;
    let idx = ints_of(it, "Gather indices")?;
    let n = x.shape[a];
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let idx = idx
        .iter()
        .map(|&i| wrap_index(i, n))
        .collect::<OpResult<Vec<_>>>()?;
    let mut shape = x.shape[..a].to_vec();
    shape.extend_from_slice(&it.shape);
    shape.extend_from_slice(&x.shape[a + 1..]);
    let mut map = Vec::with_capacity(checked_numel(&shape)?);
    for o in 0..outer {
        for &k in &idx {
            let base = (o * n + k) * inner;
            map.extend(base..base + inner);
        }
    }
    Ok(vec![checked_take(x, shape, &map)?])
}

fn infer_gather_elements(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let (x, i) = (input(ins, 0)?, input(ins, 1)?);
    Ok(vec![TensorType::new(x.ty.dtype, i.ty.shape.clone())])
}

/// Source/destination flat positions of an element-wise indexed op: for
/// every element of `ind_shape`, the position in `data_shape` with the axis
/// coordinate replaced by the index value.
fn element_positions(
    data_shape: &[usize],
    ind_shape: &[usize],
    idx: &[i64],
    a: usize,
) -> OpResult<Vec<usize>> {
    if data_shape.len() != ind_shape.len() {
        op_bail!(
            "data rank {} but indices rank {}",
            data_shape.len(),
            ind_shape.len()
        );
    }
    let st = strides(data_shape);
    let mut v = Vec::with_capacity(idx.len());
    let mut err = None;
    let mut k = 0;
    for_each_index(ind_shape, |o| {
        let r = (|| {
            let mut f = 0;
            for (d, &c) in o.iter().enumerate() {
                let c = if d == a {
                    wrap_index(idx[k], data_shape[d])?
                } else if c >= data_shape[d] {
                    op_bail!("indices shape {ind_shape:?} exceeds data shape {data_shape:?}")
                } else {
                    c
                };
                f += c * st[d];
            }
            Ok(f)
        })();
        k += 1;
        match r {
            Ok(f) => v.push(f),
            Err(e) => err = err.take().or(Some(e)),
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(v),
    }
}

fn k_gather_elements(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (x, it) = (operand(ins, 0)?, operand(ins, 1)?);
    let a = axis(ctx.int("axis", 0)?, x.rank())?;
    let idx = ints_of(it, "GatherElements indices")?;
    let map = element_positions(&x.shape, &it.shape, &idx, a)?;
    Ok(vec![checked_take(x, it.shape.clone(), &map)?])
}

fn infer_gather_nd(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let (x, i) = (input(ins, 0)?, input(ins, 1)?);
    let dt = x.ty.dtype;
    let b = ctx.int("batch_dims", 0)?.max(0) as usize;
    let (Some(d), Some(id)) = (x.ty.shape.dims(), i.ty.shape.dims()) else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let Some(k) = id.last().and_then(Dim::as_static) else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let k = k as usize;
    if b + k > d.len() {
        op_bail!(
            "GatherND: batch_dims {b} + index depth {k} exceed data rank {}",
            d.len()
        );
    }
    let mut out = id[..id.len() - 1].to_vec();
    out.extend_from_slice(&d[b + k..]);
    Ok(vec![tt(dt, out)])
}

/// For each index tuple of an ND op: the flat offset in data of the slice
/// it selects, and the slice size. Shared by GatherND and ScatterND.
fn nd_offsets(data: &[usize], ind: &Tensor, b: usize) -> OpResult<(Vec<usize>, usize)> {
    let r = ind.rank();
    if r == 0 {
        op_bail!("ND indices must have rank >= 1");
    }
    let k = ind.shape[r - 1];
    if b + k > data.len() || b >= r {
        op_bail!(
            "ND op: batch_dims {b} and index depth {k} do not fit data rank {}",
            data.len()
        );
    }
    if data[..b] != ind.shape[..b] {
        op_bail!(
            "ND op: batch dims of data {data:?} and indices {:?} differ",
            ind.shape
        );
    }
    let idx = ints_of(ind, "ND indices")?;
    let st = strides(data);
    let inner: usize = data[b + k..].iter().product();
    let tuples: usize = ind.shape[..r - 1].iter().product();
    // Tuples per batch entry, to find which batch a tuple belongs to.
    let per_batch: usize = ind.shape[b..r - 1].iter().product();
    let bst = strides(&data[..b]);
    let mut offs = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let batch = t.checked_div(per_batch).unwrap_or(0);
        let mut f = 0;
        let mut rem = batch;
        for (d, s) in bst.iter().enumerate() {
            f += (rem / s) * st[d];
            rem %= s;
        }
        for j in 0..k {
            f += wrap_index(idx[t * k + j], data[b + j])? * st[b + j];
        }
        offs.push(f);
    }
    Ok((offs, inner))
}

fn k_gather_nd(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (x, it) = (operand(ins, 0)?, operand(ins, 1)?);
    let b = ctx.int("batch_dims", 0)?.max(0) as usize;
    let (offs, inner) = nd_offsets(&x.shape, it, b)?;
    let k = it.shape[it.rank() - 1];
    let mut shape = it.shape[..it.rank() - 1].to_vec();
    shape.extend_from_slice(&x.shape[b + k..]);
    let map: Vec<usize> = offs.iter().flat_map(|&o| o..o + inner).collect();
    Ok(vec![checked_take(x, shape, &map)?])
}

fn infer_data(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    Ok(vec![input(ins, 0)?.ty.clone()])
}

/// Writes `updates[src]` into a copy of `data` at `dst` for each pair, in
/// order, combining with the old value per `reduction`.
fn scatter(
    data: &Tensor,
    updates: &Tensor,
    pairs: &[(usize, usize)],
    reduction: &str,
) -> OpResult<Tensor> {
    let (n, m) = (data.numel(), updates.numel());
    if let Some(&(d, s)) = pairs.iter().find(|&&(d, s)| d >= n || s >= m) {
        op_bail!("scatter position {d} <- {s} out of range");
    }
    if reduction == "none" {
        let all = cat_flat(&[data, updates])?;
        let mut map: Vec<usize> = (0..n).collect();
        for &(d, s) in pairs {
            map[d] = n + s;
        }
        return checked_take(&all, data.shape.clone(), &map);
    }
    macro_rules! reduce {
        ($x:expr, $u:expr, $add:expr, $mul:expr, $max:expr, $min:expr) => {{
            let mut v = $x.clone();
            let f = match reduction {
                "add" => $add,
                "mul" => $mul,
                "max" => $max,
                "min" => $min,
                r => op_bail!("unknown reduction {r}"),
            };
            for &(d, s) in pairs {
                v[d] = f(v[d], $u[s]);
            }
            v
        }};
    }
    let (dt, sh) = (data.dtype, data.shape.clone());
    Ok(match (&data.data, &updates.data) {
        (Storage::F(x), Storage::F(u)) => Tensor::from_f64(
            dt,
            sh,
            reduce!(x, u, |a, b| a + b, |a, b| a * b, f64::max, f64::min),
        ),
        (Storage::I(x), Storage::I(u)) => Tensor::from_i64(
            dt,
            sh,
            reduce!(
                x,
                u,
                i64::wrapping_add,
                i64::wrapping_mul,
                i64::max,
                i64::min
            ),
        ),
        (Storage::U(x), Storage::U(u)) => Tensor::from_u64(
            dt,
            sh,
            reduce!(
                x,
                u,
                u64::wrapping_add,
                u64::wrapping_mul,
                u64::max,
                u64::min
            ),
        ),
        (Storage::B(x), Storage::B(u)) => Tensor::from_bool(
            sh,
            reduce!(x, u, |a, b| a | b, |a, b| a & b, |a, b| a | b, |a, b| a & b),
        ),
        _ => op_bail!("reduction {reduction} is not defined for {}", data.dtype),
    })
}

fn k_scatter_elements(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (x, it, u) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    if it.shape != u.shape {
        op_bail!(
            "indices {:?} and updates {:?} differ in shape",
            it.shape,
            u.shape
        );
    }
    let a = axis(ctx.int("axis", 0)?, x.rank())?;
    let idx = ints_of(it, "scatter indices")?;
    let dst = element_positions(&x.shape, &it.shape, &idx, a)?;
    let pairs: Vec<(usize, usize)> = dst.into_iter().enumerate().map(|(s, d)| (d, s)).collect();
    let red = ctx.string("reduction", "none")?;
    Ok(vec![scatter(x, u, &pairs, &red)?])
}

fn k_scatter_nd(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (x, it, u) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    let (offs, inner) = nd_offsets(&x.shape, it, 0)?;
    let k = it.shape[it.rank() - 1];
    let mut want = it.shape[..it.rank() - 1].to_vec();
    want.extend_from_slice(&x.shape[k..]);
    if u.shape != want {
        op_bail!("ScatterND: updates shape {:?}, expected {want:?}", u.shape);
    }
    let mut pairs = Vec::with_capacity(u.numel());
    for (t, &o) in offs.iter().enumerate() {
        for i in 0..inner {
            pairs.push((o + i, t * inner + i));
        }
    }
    let red = ctx.string("reduction", "none")?;
    Ok(vec![scatter(x, u, &pairs, &red)?])
}

fn onehot_depth(t: &Tensor) -> OpResult<usize> {
    match t.to_f64_vec().as_deref() {
        Some([d]) if *d >= 1.0 && d.is_finite() => Ok(*d as usize),
        _ => op_bail!("OneHot: depth must be a positive scalar"),
    }
}

fn infer_onehot(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let (i, v) = (input(ins, 0)?, input(ins, 2)?);
    let dt = v.ty.dtype;
    let Some(id) = i.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let depth = match input(ins, 1)?.value {
        Some(t) => Dim::Static(onehot_depth(t)? as u64),
        None => Dim::Unknown,
    };
    let a = axis(ctx.int("axis", -1)?, id.len() + 1)?;
    let mut out = id.to_vec();
    out.insert(a, depth);
    Ok(vec![tt(dt, out)])
}

fn k_onehot(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (it, dt, v) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    let depth = onehot_depth(dt)?;
    if v.numel() != 2 {
        op_bail!("OneHot: values must have 2 elements");
    }
    let idx = match it.to_f64_vec() {
        Some(x) => x,
        None => op_bail!("OneHot: indices must be numeric"),
    };
    let a = axis(ctx.int("axis", -1)?, it.rank() + 1)?;
    let mut shape = it.shape.clone();
    shape.insert(a, depth);
    let outer: usize = it.shape[..a].iter().product();
    let inner: usize = it.shape[a..].iter().product();
    let mut map = Vec::with_capacity(checked_numel(&shape)?);
    for o in 0..outer {
        for j in 0..depth {
            for i in 0..inner {
                let mut k = idx[o * inner + i] as i64;
                if k < 0 {
                    k += depth as i64;
                }
                map.push(usize::from(k == j as i64));
            }
        }
    }
    Ok(vec![checked_take(v, shape, &map)?])
}

fn truthy(t: &Tensor) -> OpResult<Vec<bool>> {
    Ok(match &t.data {
        Storage::F(v) => v.iter().map(|&x| x != 0.0).collect(),
        Storage::I(v) => v.iter().map(|&x| x != 0).collect(),
        Storage::U(v) => v.iter().map(|&x| x != 0).collect(),
        Storage::B(v) => v.clone(),
        Storage::S(v) => v.iter().map(|s| !s.is_empty()).collect(),
    })
}

fn infer_compress(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let count = match input(ins, 1)?.value {
        Some(c) => Some(truthy(c)?),
        None => None,
    };
    let Some(a) = ctx.attr("axis").map(|_| ctx.int("axis", 0)).transpose()? else {
        let n = count.map_or(Dim::Unknown, |c| {
            Dim::Static(c.iter().filter(|&&b| b).count() as u64)
        });
        return Ok(vec![tt(dt, vec![n])]);
    };
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let a = axis(a, d.len())?;
    let mut out = d.to_vec();
    out[a] = match (count, d[a].as_static()) {
        (Some(c), Some(n)) => Dim::Static(c.iter().take(n as usize).filter(|&&b| b).count() as u64),
        _ => Dim::Unknown,
    };
    Ok(vec![tt(dt, out)])
}

fn k_compress(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (x, c) = (operand(ins, 0)?, operand(ins, 1)?);
    let cond = truthy(c)?;
    let Some(a) = ctx.attr("axis").map(|_| ctx.int("axis", 0)).transpose()? else {
        if cond.len() > x.numel() {
            op_bail!("Compress: condition longer than the input");
        }
        let map: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
        return Ok(vec![checked_take(x, vec![map.len()], &map)?]);
    };
    let a = axis(a, x.rank())?;
    if cond.len() > x.shape[a] {
        op_bail!("Compress: condition longer than dim {a}");
    }
    let keep: Vec<usize> = (0..cond.len()).filter(|&i| cond[i]).collect();
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let mut shape = x.shape.clone();
    shape[a] = keep.len();
    let mut map = Vec::with_capacity(checked_numel(&shape)?);
    for o in 0..outer {
        for &k in &keep {
            let base = (o * x.shape[a] + k) * inner;
            map.extend(base..base + inner);
        }
    }
    Ok(vec![checked_take(x, shape, &map)?])
}

fn infer_nonzero(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let r =
        x.ty.shape
            .rank()
            .map_or(Dim::Unknown, |r| Dim::Static(r as u64));
    Ok(vec![tt(DType::I64, vec![r, Dim::Unknown])])
}

fn k_nonzero(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let nz = truthy(x)?;
    let r = x.rank();
    let mut coords: Vec<Vec<i64>> = vec![Vec::new(); r];
    let mut k = 0;
    let mut count = 0;
    for_each_index(&x.shape, |o| {
        if nz[k] {
            for (d, &c) in o.iter().enumerate() {
                coords[d].push(c as i64);
            }
            count += 1;
        }
        k += 1;
    });
    // A scalar has one (empty) coordinate tuple when non-zero.
    if r == 0 && nz.first() == Some(&true) {
        count = 1;
    }
    let v: Vec<i64> = coords.into_iter().flatten().collect();
    Ok(vec![Tensor::from_i64(DType::I64, vec![r, count], v)])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    #[test]
    fn gathers() {
        let x = arange(&[3, 2]);
        // np.take(x, [[0, 2], [-1, 1]], axis=0).ravel()
        let i = i64t(&[2, 2], &[0, 2, -1, 1]);
        let y = run(Op::Gather, &[], &[Some(&x), Some(&i)]);
        assert_eq!(y.shape, vec![2, 2, 2]);
        assert_eq!(fvals(&y), vec![0., 1., 4., 5., 4., 5., 2., 3.]);
        // np.take_along_axis(x, [[1, 0], [0, 0], [1, 1]], axis=1).ravel()
        let i = i64t(&[3, 2], &[1, 0, 0, 0, 1, 1]);
        let y = run(
            Op::GatherElements,
            &[("axis", Attr::Int(1))],
            &[Some(&x), Some(&i)],
        );
        assert_eq!(fvals(&y), vec![1., 0., 2., 2., 5., 5.]);
        // ONNX GatherND example 5 (batch_dims=1): data [[[0,1],[2,3]],[[4,5],[6,7]]],
        // indices [[1],[0]] -> [[2,3],[4,5]]
        let d = arange(&[2, 2, 2]);
        let i = i64t(&[2, 1], &[1, 0]);
        let y = run(
            Op::GatherND,
            &[("batch_dims", Attr::Int(1))],
            &[Some(&d), Some(&i)],
        );
        assert_eq!(fvals(&y), vec![2., 3., 4., 5.]);
        let s = strt(&[3], &["a", "b", "c"]);
        let y = run(Op::Gather, &[], &[Some(&s), Some(&i64t(&[1], &[2]))]);
        assert_eq!(y.data, strt(&[1], &["c"]).data);
    }

    #[test]
    fn scatters() {
        // ONNX ScatterElements example with reduction=add on duplicates:
        // data [[1,2,3,4,5]], indices [[1,1]], updates [[1.1,2.1]] -> [[1, 5.2, 3, 4, 5]]
        let d = f32t(&[1, 5], &[1., 2., 3., 4., 5.]);
        let i = i64t(&[1, 2], &[1, 1]);
        let u = f32t(&[1, 2], &[1.1, 2.1]);
        let y = run(
            Op::ScatterElements,
            &[
                ("axis", Attr::Int(1)),
                ("reduction", Attr::String("add".into())),
            ],
            &[Some(&d), Some(&i), Some(&u)],
        );
        assert_eq!(fvals(&y), fvals(&f32t(&[5], &[1., 5.2, 3., 4., 5.])));
        // ScatterND: data arange(8), indices [[4],[3],[1],[7]], updates [9,10,11,12]
        // -> [0, 11, 2, 10, 9, 5, 6, 12]
        let y = run(
            Op::ScatterND,
            &[],
            &[
                Some(&arange(&[8])),
                Some(&i64t(&[4, 1], &[4, 3, 1, 7])),
                Some(&f32t(&[4], &[9., 10., 11., 12.])),
            ],
        );
        assert_eq!(fvals(&y), vec![0., 11., 2., 10., 9., 5., 6., 12.]);
    }

    #[test]
    fn onehot_compress_nonzero() {
        // one-hot of [1, -1] with depth 3, values [0, 5], axis -1
        let y = run(
            Op::OneHot,
            &[],
            &[
                Some(&i64t(&[2], &[1, -1])),
                Some(&f32t(&[], &[3.])),
                Some(&f32t(&[2], &[0., 5.])),
            ],
        );
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(fvals(&y), vec![0., 5., 0., 0., 0., 5.]);
        let x = arange(&[3, 2]);
        let c = crate::interp::Tensor::from_bool(vec![2], vec![false, true]);
        // np.compress([False, True], x, axis=1).ravel()
        let y = run(
            Op::Compress,
            &[("axis", Attr::Int(1))],
            &[Some(&x), Some(&c)],
        );
        assert_eq!(fvals(&y), vec![1., 3., 5.]);
        // np.array(np.nonzero([[1, 0], [1, 1]]))
        let z = run(Op::NonZero, &[], &[Some(&f32t(&[2, 2], &[1., 0., 1., 1.]))]);
        assert_eq!(z.shape, vec![2, 3]);
        assert_eq!(ivals(&z), vec![0, 1, 1, 0, 0, 1]);
    }
}
