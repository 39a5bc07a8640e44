//! Ops that only change the shape (the data stays in order) and ops that
//! make tensors from scratch: Shape, Size, Reshape, Flatten, Squeeze,
//! Unsqueeze, Constant, ConstantOfShape, Range, EyeLike.

use super::super::{Ctx, TypeInput, input, operand, unknown_dims};
use super::{
    InferOut, KernelOut, Pair, axis, checked_numel, cints, dim_product, has_in, kints, sdims,
    to_dim, tt,
};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{Attr, DClass, DType, Dim, Op, Shape, TensorType, op_bail};

pub(super) fn lookup(op: Op) -> Option<Pair> {
    use Op::*;
    Some(match op {
        Shape => (infer_shape, k_shape),
        Size => (infer_size, k_size),
        Reshape => (infer_reshape, k_reshape),
        Flatten => (infer_flatten, k_flatten),
        Squeeze => (infer_squeeze, k_squeeze),
        Unsqueeze => (infer_unsqueeze, k_unsqueeze),
        Constant => (infer_constant, k_constant),
        ConstantOfShape => (infer_cos, k_cos),
        Range => (infer_range, k_range),
        EyeLike => (infer_eyelike, k_eyelike),
        _ => return None,
    })
}

/// Builds a numeric tensor of any dtype from f64 values (ints truncate,
/// bools are "non-zero").
pub(super) fn numeric_from_f64(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> OpResult<Tensor> {
    Ok(match dtype.class() {
        DClass::Float => Tensor::from_f64(dtype, shape, v),
        DClass::Signed => Tensor::from_i64(dtype, shape, v.iter().map(|&x| x as i64).collect()),
        DClass::Unsigned => Tensor::from_u64(dtype, shape, v.iter().map(|&x| x as u64).collect()),
        DClass::Bool => Tensor::from_bool(shape, v.iter().map(|&x| x != 0.0).collect()),
        _ => op_bail!("dtype {dtype} is not numeric"),
    })
}

use super::super::OpResult;

fn shape_range(ctx: &Ctx, rank: usize) -> OpResult<(usize, usize)> {
    let r = rank as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(ctx.int("start", 0)?);
    let end = match ctx.attr("end") {
        None => rank,
        Some(_) => clamp(ctx.int("end", r)?),
    };
    Ok((start, end.max(start)))
}

fn infer_shape(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    Ok(vec![match x.ty.shape.rank() {
        Some(r) => {
            let (s, e) = shape_range(ctx, r)?;
            tt(DType::I64, sdims(&[e - s]))
        }
        None => unknown_dims(DType::I64, Some(1)),
    }])
}

fn k_shape(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let (s, e) = shape_range(ctx, x.rank())?;
    let v: Vec<i64> = x.shape[s..e].iter().map(|&d| d as i64).collect();
    Ok(vec![Tensor::from_i64(DType::I64, vec![v.len()], v)])
}

fn infer_size(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    input(ins, 0)?;
    Ok(vec![tt(DType::I64, vec![])])
}

fn k_size(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    Ok(vec![Tensor::scalar_i64(operand(ins, 0)?.numel() as i64)])
}

/// Reshape's target dims with 0 (copy) resolved; -1 stays as `None`.
fn reshape_dims(
    target: &[i64],
    in_dims: Option<&[Dim]>,
    allowzero: bool,
) -> OpResult<Vec<Option<Dim>>> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer_seen = false;
    for (i, &v) in target.iter().enumerate() {
        out.push(match v {
            -1 => {
                if infer_seen {
                    op_bail!("Reshape: more than one -1 in the target shape");
                }
                infer_seen = true;
                None
            }
            0 if !allowzero => match in_dims {
                Some(d) => match d.get(i) {
                    Some(x) => Some(x.clone()),
                    None => op_bail!(
                        "Reshape: 0 at position {i} but the input has rank {}",
                        d.len()
                    ),
                },
                None => Some(Dim::Unknown),
            },
            v if v < 0 => op_bail!("Reshape: invalid target dim {v}"),
            v => Some(Dim::Static(v as u64)),
        });
    }
    if allowzero && infer_seen && target.contains(&0) {
        op_bail!("Reshape: allowzero with both 0 and -1 in the target shape");
    }
    Ok(out)
}

fn infer_reshape(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(target) = cints(ins, 1) else {
        let len = input(ins, 1)?
            .ty
            .shape
            .dims()
            .and_then(|d| d.first()?.as_static());
        return Ok(vec![unknown_dims(dt, len.map(|n| n as usize))]);
    };
    let allowzero = ctx.int("allowzero", 0)? != 0;
    let dims = reshape_dims(&target, x.ty.shape.dims(), allowzero)?;
    let known: Vec<Dim> = dims.iter().flatten().cloned().collect();
    let total = x.ty.shape.dims().map_or(Dim::Unknown, dim_product);
    let rest = dim_product(&known);
    let fill = match (total, rest) {
        (Dim::Static(t), Dim::Static(r)) if r != 0 => {
            if t % r != 0 {
                op_bail!("Reshape: cannot infer -1: {t} elements into parts of {r}");
            }
            Dim::Static(t / r)
        }
        _ => Dim::Unknown,
    };
    let out = dims
        .into_iter()
        .map(|d| d.unwrap_or_else(|| fill.clone()))
        .collect();
    Ok(vec![tt(dt, out)])
}

fn k_reshape(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(target) = kints(ins, 1)? else {
        op_bail!("Reshape needs a shape input");
    };
    let allowzero = ctx.int("allowzero", 0)? != 0;
    let in_dims = sdims(&x.shape);
    let dims = reshape_dims(&target, Some(&in_dims), allowzero)?;
    let known: usize = dims
        .iter()
        .flatten()
        .map(|d| d.as_static().unwrap_or(0) as usize)
        .product();
    let n = x.numel();
    let mut out = Vec::with_capacity(dims.len());
    for d in dims {
        out.push(match d {
            Some(d) => d.as_static().unwrap_or(0) as usize,
            None => {
                if known == 0 || n % known != 0 {
                    op_bail!("Reshape: cannot infer -1 for {n} elements into {target:?}");
                }
                n / known
            }
        });
    }
    if checked_numel(&out)? != n {
        op_bail!("Reshape: cannot reshape {:?} into {out:?}", x.shape);
    }
    Ok(vec![Tensor {
        shape: out,
        ..x.clone()
    }])
}

fn flatten_axis(ctx: &Ctx, rank: usize) -> OpResult<usize> {
    let a = ctx.int("axis", 1)?;
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    if !(0..=r).contains(&a) {
        op_bail!("Flatten: axis {a} out of range for rank {rank}");
    }
    Ok(a as usize)
}

fn infer_flatten(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(x.ty.dtype, Some(2))]);
    };
    let a = flatten_axis(ctx, d.len())?;
    Ok(vec![tt(
        x.ty.dtype,
        vec![dim_product(&d[..a]), dim_product(&d[a..])],
    )])
}

fn k_flatten(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let a = flatten_axis(ctx, x.rank())?;
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a..].iter().product();
    Ok(vec![Tensor {
        shape: vec![outer, inner],
        ..x.clone()
    }])
}

/// Sorted, de-duplicated axes normalized against `rank`.
fn norm_axes(axes: &[i64], rank: usize) -> OpResult<Vec<usize>> {
    let mut v = axes
        .iter()
        .map(|&a| axis(a, rank))
        .collect::<OpResult<Vec<_>>>()?;
    v.sort_unstable();
    let n = v.len();
    v.dedup();
    if v.len() != n {
        op_bail!("repeated axis in {axes:?}");
    }
    Ok(v)
}

fn infer_squeeze(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    if !has_in(ins, 1) {
        if d.iter().any(|x| x.as_static().is_none()) {
            return Ok(vec![unknown_dims(dt, None)]);
        }
        let out = d.iter().filter(|x| x.as_static() != Some(1)).cloned();
        return Ok(vec![tt(dt, out.collect())]);
    }
    let Some(axes) = cints(ins, 1) else {
        let n = input(ins, 1)?
            .ty
            .shape
            .dims()
            .and_then(|s| s.first()?.as_static());
        return Ok(vec![unknown_dims(
            dt,
            n.and_then(|n| d.len().checked_sub(n as usize)),
        )]);
    };
    let axes = norm_axes(&axes, d.len())?;
    let mut out = Vec::new();
    for (i, x) in d.iter().enumerate() {
        if axes.contains(&i) {
            if matches!(x, Dim::Static(n) if *n != 1) {
                op_bail!("Squeeze: dim {i} is {x}, not 1");
            }
        } else {
            out.push(x.clone());
        }
    }
    Ok(vec![tt(dt, out)])
}

fn k_squeeze(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let shape = match kints(ins, 1)? {
        None => x.shape.iter().copied().filter(|&d| d != 1).collect(),
        Some(axes) => {
            let axes = norm_axes(&axes, x.rank())?;
            let mut out = Vec::new();
            for (i, &d) in x.shape.iter().enumerate() {
                if axes.contains(&i) {
                    if d != 1 {
                        op_bail!("Squeeze: dim {i} is {d}, not 1");
                    }
                } else {
                    out.push(d);
                }
            }
            out
        }
    };
    Ok(vec![Tensor { shape, ..x.clone() }])
}

fn unsqueeze_dims<D: Clone>(d: &[D], axes: &[i64], one: D) -> OpResult<Vec<D>> {
    let r = d.len() + axes.len();
    let axes = norm_axes(axes, r)?;
    let mut src = d.iter();
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        if axes.contains(&i) {
            out.push(one.clone());
        } else if let Some(x) = src.next() {
            out.push(x.clone());
        }
    }
    Ok(out)
}

fn infer_unsqueeze(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let d = x.ty.shape.dims();
    let Some(axes) = cints(ins, 1) else {
        let n = input(ins, 1)?
            .ty
            .shape
            .dims()
            .and_then(|s| s.first()?.as_static());
        let r = d.zip(n).map(|(d, n)| d.len() + n as usize);
        return Ok(vec![unknown_dims(dt, r)]);
    };
    let Some(d) = d else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    Ok(vec![tt(dt, unsqueeze_dims(d, &axes, Dim::Static(1))?)])
}

fn k_unsqueeze(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(axes) = kints(ins, 1)? else {
        op_bail!("Unsqueeze needs an axes input");
    };
    let shape = unsqueeze_dims(&x.shape, &axes, 1)?;
    Ok(vec![Tensor { shape, ..x.clone() }])
}

fn constant_value(ctx: &Ctx) -> OpResult<Tensor> {
    let strs = |v: Vec<String>, shape: Vec<usize>| Tensor {
        dtype: DType::String,
        shape,
        data: Storage::S(v),
    };
    for (name, a) in &ctx.node.attrs {
        let t = match (name.as_str(), a) {
            ("value", Attr::Tensor(d)) => {
                Tensor::from_data(d).map_err(|e| format!("Constant: {e}"))?
            }
            ("value_float", Attr::Float(f)) => Tensor::scalar_f32(*f),
            ("value_floats", Attr::Floats(v)) => Tensor::from_f64(
                DType::F32,
                vec![v.len()],
                v.iter().map(|&x| x as f64).collect(),
            ),
            ("value_int", Attr::Int(i)) => Tensor::scalar_i64(*i),
            ("value_ints", Attr::Ints(v)) => Tensor::from_i64(DType::I64, vec![v.len()], v.clone()),
            ("value_string", Attr::String(s)) => strs(vec![s.clone()], vec![]),
            ("value_strings", Attr::Strings(v)) => strs(v.clone(), vec![v.len()]),
            ("sparse_value", _) => op_bail!("Constant: sparse_value is not supported"),
            _ => continue,
        };
        return Ok(t);
    }
    op_bail!("Constant: no value attribute")
}

fn infer_constant(ctx: &Ctx, _: &[Option<TypeInput>]) -> InferOut {
    let t = constant_value(ctx)?;
    Ok(vec![TensorType::of_static(t.dtype, &t.shape)])
}

fn k_constant(ctx: &Ctx, _: &[Option<&Tensor>]) -> KernelOut {
    Ok(vec![constant_value(ctx)?])
}

fn cos_value(ctx: &Ctx) -> OpResult<Tensor> {
    match ctx.attr("value") {
        None => Ok(Tensor::from_f64(DType::F32, vec![1], vec![0.0])),
        Some(Attr::Tensor(d)) => {
            let t = Tensor::from_data(d).map_err(|e| format!("ConstantOfShape: {e}"))?;
            if t.numel() != 1 {
                op_bail!(
                    "ConstantOfShape: value must have one element, has {}",
                    t.numel()
                );
            }
            Ok(t)
        }
        Some(a) => op_bail!(
            "ConstantOfShape: value should be a tensor, found {}",
            a.kind()
        ),
    }
}

fn infer_cos(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let dt = cos_value(ctx)?.dtype;
    if let Some(s) = cints(ins, 0) {
        let d = s
            .iter()
            .map(|&v| to_dim(v, "ConstantOfShape dim"))
            .collect::<OpResult<Vec<_>>>()?;
        return Ok(vec![tt(dt, sdims(&d))]);
    }
    let n = input(ins, 0)?
        .ty
        .shape
        .dims()
        .and_then(|s| s.first()?.as_static());
    Ok(vec![unknown_dims(dt, n.map(|n| n as usize))])
}

fn k_cos(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let v = cos_value(ctx)?;
    let Some(s) = kints(ins, 0)? else {
        op_bail!("ConstantOfShape needs a shape input");
    };
    let shape = s
        .iter()
        .map(|&v| to_dim(v, "ConstantOfShape dim"))
        .collect::<OpResult<Vec<_>>>()?;
    let n = checked_numel(&shape)?;
    Ok(vec![v.take(shape, &vec![0; n])])
}

/// Element count of Range; `None` if a scalar is missing.
fn range_len(start: &Tensor, limit: &Tensor, delta: &Tensor) -> OpResult<usize> {
    for t in [start, limit, delta] {
        if t.numel() != 1 {
            op_bail!("Range: inputs must be scalars");
        }
    }
    let n = match (&start.data, &limit.data, &delta.data) {
        (Storage::I(s), Storage::I(l), Storage::I(d)) => {
            let (s, l, d) = (s[0] as i128, l[0] as i128, d[0] as i128);
            if d == 0 {
                op_bail!("Range: delta is zero");
            }
            let span = l - s;
            // Ceiling division that works for both signs of delta.
            let q = span / d + i128::from(span % d != 0 && ((span < 0) == (d < 0)));
            q.max(0) as f64
        }
        _ => {
            let f = |t: &Tensor| {
                t.to_f64_vec()
                    .map(|v| v[0])
                    .ok_or("Range: non-numeric input")
            };
            let (s, l, d) = (f(start)?, f(limit)?, f(delta)?);
            if d == 0.0 {
                op_bail!("Range: delta is zero");
            }
            ((l - s) / d).ceil().max(0.0)
        }
    };
    if !n.is_finite() || n > (1u64 << 40) as f64 {
        op_bail!("Range: too many elements ({n})");
    }
    Ok(n as usize)
}

fn infer_range(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let dt = input(ins, 0)?.ty.dtype;
    let vals: Vec<Option<&Tensor>> = (0..3)
        .map(|i| ins.get(i).and_then(|x| x.as_ref()).and_then(|x| x.value))
        .collect();
    if let [Some(s), Some(l), Some(d)] = vals[..] {
        return Ok(vec![tt(dt, sdims(&[range_len(s, l, d)?]))]);
    }
    Ok(vec![unknown_dims(dt, Some(1))])
}

fn k_range(_: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let (s, l, d) = (operand(ins, 0)?, operand(ins, 1)?, operand(ins, 2)?);
    let n = range_len(s, l, d)?;
    let dt = s.dtype;
    Ok(vec![match (&s.data, &d.data) {
        (Storage::I(s), Storage::I(d)) => Tensor::from_i64(
            dt,
            vec![n],
            (0..n as i64)
                .map(|i| s[0].wrapping_add(i.wrapping_mul(d[0])))
                .collect(),
        ),
        _ => {
            let (s0, d0) = (
                s.to_f64_vec().ok_or("Range: non-numeric")?[0],
                d.to_f64_vec().ok_or("Range: non-numeric")?[0],
            );
            numeric_from_f64(dt, vec![n], (0..n).map(|i| s0 + i as f64 * d0).collect())?
        }
    }])
}

fn infer_eyelike(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = ctx.dtype("dtype")?.unwrap_or(x.ty.dtype);
    if let Some(r) = x.ty.shape.rank()
        && r != 2
    {
        op_bail!("EyeLike: input must be 2-D, has rank {r}");
    }
    Ok(vec![TensorType::new(
        dt,
        Shape(x.ty.shape.0.clone().or(Some(vec![Dim::Unknown; 2]))),
    )])
}

fn k_eyelike(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let dt = ctx.dtype("dtype")?.unwrap_or(x.dtype);
    let &[r, c] = &x.shape[..] else {
        op_bail!("EyeLike: input must be 2-D, has rank {}", x.rank());
    };
    let k = ctx.int("k", 0)?;
    let mut v = vec![0.0; r * c];
    for i in 0..r {
        let j = i as i64 + k;
        if (0..c as i64).contains(&j) {
            v[i * c + j as usize] = 1.0;
        }
    }
    Ok(vec![numeric_from_f64(dt, vec![r, c], v)?])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    #[test]
    fn shape_and_size() {
        let x = arange(&[2, 3, 4]);
        // np.array(x.shape)[1:] -> [3, 4]
        let s = run(Op::Shape, &[("start", Attr::Int(-2))], &[Some(&x)]);
        assert_eq!(ivals(&s), vec![3, 4]);
        let s = run(
            Op::Shape,
            &[("start", Attr::Int(0)), ("end", Attr::Int(-1))],
            &[Some(&x)],
        );
        assert_eq!(ivals(&s), vec![2, 3]);
        let s = run(Op::Shape, &[("start", Attr::Int(10))], &[Some(&x)]);
        assert_eq!(s.shape, vec![0]);
        let n = run(Op::Size, &[], &[Some(&x)]);
        assert_eq!(ivals(&n), vec![24]);
    }

    #[test]
    fn reshape() {
        let x = arange(&[2, 3, 4]);
        // x.reshape(2, 12) using 0 = copy, -1 = infer
        let y = run(Op::Reshape, &[], &[Some(&x), Some(&i64t(&[2], &[0, -1]))]);
        assert_eq!(y.shape, vec![2, 12]);
        let e = i64t(&[2], &[0, 4]);
        let y = run(
            Op::Reshape,
            &[("allowzero", Attr::Int(1))],
            &[Some(&arange(&[0, 3])), Some(&e)],
        );
        assert_eq!(y.shape, vec![0, 4]);
    }

    #[test]
    fn flatten_squeeze_unsqueeze() {
        let x = arange(&[2, 3, 4]);
        let y = run(Op::Flatten, &[("axis", Attr::Int(-1))], &[Some(&x)]);
        assert_eq!(y.shape, vec![6, 4]);
        let y = run(Op::Flatten, &[("axis", Attr::Int(0))], &[Some(&x)]);
        assert_eq!(y.shape, vec![1, 24]);
        let x1 = arange(&[1, 3, 1]);
        let y = run(Op::Squeeze, &[], &[Some(&x1)]);
        assert_eq!(y.shape, vec![3]);
        let y = run(Op::Squeeze, &[], &[Some(&x1), Some(&i64t(&[1], &[-1]))]);
        assert_eq!(y.shape, vec![1, 3]);
        // np.expand_dims(np.zeros((3,4,5)), (2, 4, 5)).shape == (3, 4, 1, 5, 1, 1)
        let y = run(
            Op::Unsqueeze,
            &[],
            &[Some(&arange(&[3, 4, 5])), Some(&i64t(&[3], &[2, 4, 5]))],
        );
        assert_eq!(y.shape, vec![3, 4, 1, 5, 1, 1]);
    }

    #[test]
    fn range_and_cos_and_eye() {
        // np.arange(10, 4, -3) -> [10, 7]
        let r = run(
            Op::Range,
            &[],
            &[
                Some(&crate::interp::Tensor::scalar_i64(10)),
                Some(&crate::interp::Tensor::scalar_i64(4)),
                Some(&crate::interp::Tensor::scalar_i64(-3)),
            ],
        );
        assert_eq!(ivals(&r), vec![10, 7]);
        // np.arange(1, 2.1, 0.5, dtype=np.float32) -> [1.0, 1.5, 2.0]
        let r = run(
            Op::Range,
            &[],
            &[
                Some(&f32t(&[], &[1.0])),
                Some(&f32t(&[], &[2.1])),
                Some(&f32t(&[], &[0.5])),
            ],
        );
        assert_eq!(fvals(&r), vec![1.0, 1.5, 2.0]);
        let c = run(Op::ConstantOfShape, &[], &[Some(&i64t(&[2], &[2, 3]))]);
        assert_eq!(c.shape, vec![2, 3]);
        assert_eq!(fvals(&c), vec![0.0; 6]);
        // np.eye(3, 4, k=1)
        let e = run(
            Op::EyeLike,
            &[("k", Attr::Int(1))],
            &[Some(&arange(&[3, 4]))],
        );
        assert_eq!(
            fvals(&e),
            vec![0., 1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.]
        );
    }
}
