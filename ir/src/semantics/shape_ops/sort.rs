//! Ops that order or accumulate along an axis: TopK, Unique, CumSum,
//! CumProd.

use super::super::{Ctx, OpResult, TypeInput, input, operand, unknown_dims};
use super::{InferOut, KernelOut, Pair, axis, checked_take, kints, tt};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{DType, Dim, Op, op_bail};
use std::cmp::Ordering;

pub(super) fn lookup(op: Op) -> Option<Pair> {
    use Op::*;
    Some(match op {
        TopK => (infer_topk, k_topk),
        Unique => (infer_unique, k_unique),
        CumSum | CumProd => (super::super::elementwise::infer_same, k_cum),
        _ => return None,
    })
}

/// Orders two elements of one storage; NaN sorts above every number (as
/// numpy's sort does).
fn cmp_at(s: &Storage, i: usize, j: usize) -> Ordering {
    match s {
        Storage::F(v) => {
            let (a, b) = (v[i], v[j]);
            match (a.is_nan(), b.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            }
        }
        Storage::I(v) => v[i].cmp(&v[j]),
        Storage::U(v) => v[i].cmp(&v[j]),
        Storage::B(v) => v[i].cmp(&v[j]),
        Storage::S(v) => v[i].cmp(&v[j]),
    }
}

fn topk_k(t: &Tensor) -> OpResult<usize> {
    match t.to_i64_vec().as_deref() {
        Some([k]) if *k >= 0 => Ok(*k as usize),
        _ => op_bail!("TopK: K must be a non-negative 1-element tensor"),
    }
}

fn infer_topk(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![
            unknown_dims(x.ty.dtype, None),
            unknown_dims(DType::I64, None),
        ]);
    };
    let a = axis(ctx.int("axis", -1)?, d.len())?;
    let mut out = d.to_vec();
    out[a] = match input(ins, 1)?.value {
        Some(k) => Dim::Static(topk_k(k)? as u64),
        None => Dim::Unknown,
    };
    Ok(vec![tt(x.ty.dtype, out.clone()), tt(DType::I64, out)])
}

fn k_topk(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let k = topk_k(operand(ins, 1)?)?;
    let a = axis(ctx.int("axis", -1)?, x.rank())?;
    let largest = ctx.int("largest", 1)? != 0;
    let n = x.shape[a];
    if k > n {
        op_bail!("TopK: K={k} exceeds dim {n}");
    }
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let mut shape = x.shape.clone();
    shape[a] = k;
    let mut map = vec![0usize; outer * k * inner];
    let mut idx = vec![0i64; outer * k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let mut order: Vec<usize> = (0..n).collect();
            // Stable sort keeps the lower index first among equal values.
            order.sort_by(|&p, &q| {
                let c = cmp_at(&x.data, at(p), at(q));
                if largest { c.reverse() } else { c }
            });
            for (r, &j) in order.iter().take(k).enumerate() {
                let dst = (o * k + r) * inner + i;
                map[dst] = at(j);
                idx[dst] = j as i64;
            }
        }
    }
    Ok(vec![
        checked_take(x, shape.clone(), &map)?,
        Tensor::from_i64(DType::I64, shape, idx),
    ])
}

fn unique_axis(ctx: &Ctx) -> OpResult<Option<i64>> {
    ctx.attr("axis").map(|_| ctx.int("axis", 0)).transpose()
}

fn infer_unique(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let y = match (unique_axis(ctx)?, x.ty.shape.dims()) {
        (None, _) => tt(x.ty.dtype, vec![Dim::Unknown]),
        (Some(a), Some(d)) => {
            let a = axis(a, d.len())?;
            let mut out = d.to_vec();
            out[a] = Dim::Unknown;
            tt(x.ty.dtype, out)
        }
        (Some(_), None) => unknown_dims(x.ty.dtype, None),
    };
    let mut outs = vec![y];
    for _ in 1..ctx.node.outputs.len().max(1) {
        outs.push(tt(DType::I64, vec![Dim::Unknown]));
    }
    Ok(outs)
}

fn k_unique(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let sorted = ctx.int("sorted", 1)? != 0;
    // View the input as [outer, m, inner]: slices along the axis (or single
    // elements of the flattened tensor) are the things made unique.
    let (a, outer, m, inner) = match unique_axis(ctx)? {
        None => (None, 1, x.numel(), 1),
        Some(a) => {
            let a = axis(a, x.rank())?;
            let outer: usize = x.shape[..a].iter().product();
            let inner: usize = x.shape[a + 1..].iter().product();
            (Some(a), outer, x.shape[a], inner)
        }
    };
    let at = |o: usize, j: usize, i: usize| (o * m + j) * inner + i;
    let cmp_slices = |p: usize, q: usize| {
        for o in 0..outer {
            for i in 0..inner {
                let c = cmp_at(&x.data, at(o, p, i), at(o, q, i));
                if c != Ordering::Equal {
                    return c;
                }
            }
        }
        Ordering::Equal
    };
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&p, &q| cmp_slices(p, q));
    // Runs of equal slices; the stable sort puts each run's first
    // occurrence first.
    let mut groups: Vec<(usize, i64)> = Vec::new();
    let mut group_of = vec![0usize; m];
    for (r, &j) in order.iter().enumerate() {
        if r == 0 || cmp_slices(order[r - 1], j) != Ordering::Equal {
            groups.push((j, 0));
        }
        let g = groups.len() - 1;
        groups[g].1 += 1;
        group_of[j] = g;
    }
    // Position of each group in the output.
    let mut rank: Vec<usize> = (0..groups.len()).collect();
    if !sorted {
        rank.sort_by_key(|&g| groups[g].0);
    }
    let mut pos = vec![0usize; groups.len()];
    for (p, &g) in rank.iter().enumerate() {
        pos[g] = p;
    }
    let u = groups.len();
    let mut shape = match a {
        None => vec![u],
        Some(_) => x.shape.clone(),
    };
    if let Some(a) = a {
        shape[a] = u;
    }
    let mut map = Vec::with_capacity(outer * u * inner);
    for o in 0..outer {
        for &g in &rank {
            for i in 0..inner {
                map.push(at(o, groups[g].0, i));
            }
        }
    }
    let first: Vec<i64> = rank.iter().map(|&g| groups[g].0 as i64).collect();
    let inverse: Vec<i64> = group_of.iter().map(|&g| pos[g] as i64).collect();
    let counts: Vec<i64> = rank.iter().map(|&g| groups[g].1).collect();
    Ok(vec![
        checked_take(x, shape, &map)?,
        Tensor::from_i64(DType::I64, vec![u], first),
        Tensor::from_i64(DType::I64, vec![m], inverse),
        Tensor::from_i64(DType::I64, vec![u], counts),
    ])
}

fn k_cum(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let op = ctx.node.op;
    let a = match kints(ins, 1)?.as_deref() {
        Some([a]) => axis(*a, x.rank())?,
        _ => op_bail!("{op}: axis must be a 1-element tensor"),
    };
    let exclusive = ctx.int("exclusive", 0)? != 0;
    let reverse = ctx.int("reverse", 0)? != 0;
    let prod = op == Op::CumProd;
    let n = x.shape[a];
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    // Visits each line along the axis in scan order.
    let scan = |f: &mut dyn FnMut(usize, bool)| {
        for o in 0..outer {
            for i in 0..inner {
                for s in 0..n {
                    let j = if reverse { n - 1 - s } else { s };
                    f((o * n + j) * inner + i, s == 0);
                }
            }
        }
    };
    macro_rules! cum {
        ($v:expr, $zero:expr, $one:expr, $add:expr, $mul:expr) => {{
            let mut out = $v.clone();
            let mut acc = $zero;
            let id = if prod { $one } else { $zero };
            scan(&mut |k, first| {
                if first {
                    acc = id;
                }
                let next = if prod {
                    $mul(acc, $v[k])
                } else {
                    $add(acc, $v[k])
                };
                out[k] = if exclusive { acc } else { next };
                acc = next;
            });
            out
        }};
    }
    let (dt, sh) = (x.dtype, x.shape.clone());
    Ok(vec![match &x.data {
        Storage::F(v) => Tensor::from_f64(
            dt,
            sh,
            cum!(v, 0.0, 1.0, |a: f64, b: f64| a + b, |a: f64, b: f64| a * b),
        ),
        Storage::I(v) => Tensor::from_i64(
            dt,
            sh,
            cum!(v, 0i64, 1i64, i64::wrapping_add, i64::wrapping_mul),
        ),
        Storage::U(v) => Tensor::from_u64(
            dt,
            sh,
            cum!(v, 0u64, 1u64, u64::wrapping_add, u64::wrapping_mul),
        ),
        _ => op_bail!("{op} is not defined for {}", x.dtype),
    }])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    #[test]
    fn topk() {
        let x = f32t(&[2, 4], &[3., 1., 3., 2., 0., 5., 5., 1.]);
        let k = i64t(&[1], &[2]);
        let o = run_n(Op::TopK, &[], &[Some(&x), Some(&k)], 2);
        // largest two per row, ties to the lower index
        assert_eq!(fvals(&o[0]), vec![3., 3., 5., 5.]);
        assert_eq!(ivals(&o[1]), vec![0, 2, 1, 2]);
        let o = run_n(
            Op::TopK,
            &[("largest", Attr::Int(0)), ("axis", Attr::Int(0))],
            &[Some(&x), Some(&i64t(&[1], &[1]))],
            2,
        );
        assert_eq!(fvals(&o[0]), vec![0., 1., 3., 1.]);
        assert_eq!(ivals(&o[1]), vec![1, 0, 0, 1]);
    }

    #[test]
    fn unique() {
        // np.unique([2,1,1,3,4,3], return_index, return_inverse, return_counts)
        let x = f32t(&[6], &[2., 1., 1., 3., 4., 3.]);
        let o = run_n(Op::Unique, &[], &[Some(&x)], 4);
        assert_eq!(fvals(&o[0]), vec![1., 2., 3., 4.]);
        assert_eq!(ivals(&o[1]), vec![1, 0, 3, 4]);
        assert_eq!(ivals(&o[2]), vec![1, 0, 0, 2, 3, 2]);
        assert_eq!(ivals(&o[3]), vec![2, 1, 2, 1]);
        let o = run_n(Op::Unique, &[("sorted", Attr::Int(0))], &[Some(&x)], 4);
        assert_eq!(fvals(&o[0]), vec![2., 1., 3., 4.]);
        assert_eq!(ivals(&o[2]), vec![0, 1, 1, 2, 3, 2]);
        // np.unique([[1,0,0],[1,0,0],[2,3,4]], axis=0) -> [[1,0,0],[2,3,4]]
        let x = f32t(&[3, 3], &[1., 0., 0., 1., 0., 0., 2., 3., 4.]);
        let o = run_n(Op::Unique, &[("axis", Attr::Int(0))], &[Some(&x)], 4);
        assert_eq!(o[0].shape, vec![2, 3]);
        assert_eq!(ivals(&o[3]), vec![2, 1]);
    }

    #[test]
    fn cumsum() {
        let x = f32t(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let a = i64t(&[], &[1]);
        // np.cumsum(x, axis=1)
        let y = run(Op::CumSum, &[], &[Some(&x), Some(&a)]);
        assert_eq!(fvals(&y), vec![1., 3., 6., 4., 9., 15.]);
        // exclusive + reverse along axis 1: [5, 3, 0, 11, 6, 0]
        let y = run(
            Op::CumSum,
            &[("exclusive", Attr::Int(1)), ("reverse", Attr::Int(1))],
            &[Some(&x), Some(&a)],
        );
        assert_eq!(fvals(&y), vec![5., 3., 0., 11., 6., 0.]);
        // np.cumprod(x, axis=0)
        let y = run(Op::CumProd, &[], &[Some(&x), Some(&i64t(&[], &[0]))]);
        assert_eq!(fvals(&y), vec![1., 2., 3., 4., 10., 18.]);
    }
}
