//! smelt's KV-cache ops for autoregressive decoding.
//!
//! `KvCacheAppend(cache?, new) {axis=2, max_len=0} -> cache'`: the cache with
//! `new` appended along `axis` (the sequence axis of a
//! `[batch, kv_heads, seq, head_dim]` cache). Without a cache (the prefill
//! step) the result is `new` itself. `max_len > 0` bounds the length along the
//! axis: a longer result is an error, not a silent reallocation, because a
//! compiled model sizes its cache buffers from that bound.

use super::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::interp::Tensor;
use crate::{Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    match op {
        Op::KvCacheAppend => Some(OpImpl {
            infer: infer_append,
            kernel: k_append,
        }),
        _ => None,
    }
}

fn cache_of<'x, 'a>(ins: &'x [Option<TypeInput<'a>>]) -> Option<&'x TypeInput<'a>> {
    ins.first().and_then(Option::as_ref)
}

fn bound(ctx: &Ctx) -> OpResult<Option<u64>> {
    let m = ctx.int("max_len", 0)?;
    if m < 0 {
        op_bail!("KvCacheAppend: max_len must be >= 0, got {m}");
    }
    Ok((m > 0).then_some(m as u64))
}

fn infer_append(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let new = input(ins, 1)?.ty;
    let max = bound(ctx)?;
    let Some(nd) = new.shape.dims() else {
        return Ok(vec![TensorType::new(new.dtype, Shape::unknown())]);
    };
    let a = super::util::norm_axis(ctx.int("axis", 2)?, nd.len())?;
    let mut dims = nd.to_vec();
    if let Some(cache) = cache_of(ins) {
        if cache.ty.dtype != new.dtype {
            op_bail!(
                "KvCacheAppend: cache is {} but the new entries are {}",
                cache.ty.dtype,
                new.dtype
            );
        }
        if let Some(cd) = cache.ty.shape.dims() {
            if cd.len() != nd.len() {
                op_bail!(
                    "KvCacheAppend: cache {} and new entries {} differ in rank",
                    cache.ty.shape,
                    new.shape
                );
            }
            for (i, (c, n)) in cd.iter().zip(nd).enumerate() {
                if i == a {
                    continue;
                }
                match (c, n) {
                    (Dim::Static(x), Dim::Static(y)) if x != y => op_bail!(
                        "KvCacheAppend: cache {} and new entries {} differ off axis {a}",
                        cache.ty.shape,
                        new.shape
                    ),
                    (Dim::Static(_), _) | (Dim::Sym(_), Dim::Unknown) => dims[i] = c.clone(),
                    _ => {}
                }
            }
            dims[a] = match (&cd[a], &nd[a]) {
                (Dim::Static(x), Dim::Static(y)) => Dim::Static(x + y),
                _ => Dim::Unknown,
            };
        } else {
            dims[a] = Dim::Unknown;
        }
    }
    if let (Some(m), Dim::Static(n)) = (max, &dims[a])
        && *n > m
    {
        op_bail!("KvCacheAppend: the cache would hold {n} positions, more than max_len {m}");
    }
    Ok(vec![TensorType::new(new.dtype, Shape(Some(dims)))])
}

fn k_append(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let new = operand(ins, 1)?;
    let r = new.rank();
    let a = super::util::norm_axis(ctx.int("axis", 2)?, r)?;
    let max = bound(ctx)?;
    let out = match ins.first().copied().flatten() {
        None => new.clone(),
        Some(cache) => {
            if cache.dtype != new.dtype {
                op_bail!(
                    "KvCacheAppend: cache is {} but the new entries are {}",
                    cache.dtype,
                    new.dtype
                );
            }
            if cache.rank() != r || (0..r).any(|i| i != a && cache.shape[i] != new.shape[i]) {
                op_bail!(
                    "KvCacheAppend: cache {:?} and new entries {:?} differ off axis {a}",
                    cache.shape,
                    new.shape
                );
            }
            append(cache, new, a)
        }
    };
    if let Some(m) = max {
        let n = out.shape[a] as u64;
        if n > m {
            op_bail!("KvCacheAppend: the cache would hold {n} positions, more than max_len {m}");
        }
    }
    Ok(vec![out])
}

/// Row-major concatenation of two tensors along `a`: each "outer" block
/// (the dims before `a`) is the cache's block followed by the new block.
fn append(cache: &Tensor, new: &Tensor, a: usize) -> Tensor {
    let outer: usize = cache.shape[..a].iter().product();
    let inner: usize = cache.shape[a + 1..].iter().product();
    let cb = cache.shape[a] * inner;
    let nb = new.shape[a] * inner;
    // Flat indices into the pair (cache elements first, then new ones).
    let off = cache.numel();
    let mut idx = Vec::with_capacity(outer * (cb + nb));
    for o in 0..outer {
        idx.extend(o * cb..(o + 1) * cb);
        idx.extend((o * nb..(o + 1) * nb).map(|i| off + i));
    }
    let mut shape = cache.shape.clone();
    shape[a] += new.shape[a];
    let both = concat_flat(cache, new);
    both.take(shape, &idx)
}

fn concat_flat(x: &Tensor, y: &Tensor) -> Tensor {
    use crate::interp::Storage as S;
    let data = match (&x.data, &y.data) {
        (S::F(p), S::F(q)) => S::F([p.as_slice(), q].concat()),
        (S::I(p), S::I(q)) => S::I([p.as_slice(), q].concat()),
        (S::U(p), S::U(q)) => S::U([p.as_slice(), q].concat()),
        (S::B(p), S::B(q)) => S::B([p.as_slice(), q].concat()),
        (S::S(p), S::S(q)) => S::S([p.as_slice(), q].concat()),
        // Same dtype was checked, so the storages agree.
        _ => x.data.clone(),
    };
    x.with_data(vec![x.numel() + y.numel()], data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Node};
    use std::collections::BTreeMap;

    fn node(max_len: i64) -> Node {
        let mut attrs = BTreeMap::new();
        attrs.insert("max_len".to_string(), crate::Attr::Int(max_len));
        Node {
            op: Op::KvCacheAppend,
            name: String::new(),
            inputs: vec![],
            outputs: vec![],
            attrs,
        }
    }

    fn f(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec())
    }

    #[test]
    fn appends_along_the_sequence_axis() {
        // cache [1,2,1,2] (two heads, one position), new [1,2,1,2]: each
        // head's rows are [old; new], worked out by hand.
        let cache = f(&[1, 2, 1, 2], &[1., 2., 3., 4.]);
        let new = f(&[1, 2, 1, 2], &[5., 6., 7., 8.]);
        let n = node(0);
        let out = k_append(&Ctx::new(&n), &[Some(&cache), Some(&new)]).unwrap();
        assert_eq!(out[0].shape, vec![1, 2, 2, 2]);
        assert_eq!(out[0].data, f(&[8], &[1., 2., 5., 6., 3., 4., 7., 8.]).data);
    }

    #[test]
    fn no_cache_is_the_new_entries() {
        let new = f(&[1, 1, 3, 1], &[1., 2., 3.]);
        let n = node(3);
        let out = k_append(&Ctx::new(&n), &[None, Some(&new)]).unwrap();
        assert_eq!(out[0], new);
    }

    #[test]
    fn bound_is_checked() {
        let cache = f(&[1, 1, 2, 1], &[1., 2.]);
        let new = f(&[1, 1, 1, 1], &[3.]);
        let n = node(2);
        let e = k_append(&Ctx::new(&n), &[Some(&cache), Some(&new)]).unwrap_err();
        assert!(e.0.contains("more than max_len 2"), "{}", e.0);
        let ty = |t: &Tensor| TensorType::of_static(t.dtype, &t.shape);
        let (tc, tn) = (ty(&cache), ty(&new));
        let ins = [
            Some(TypeInput {
                ty: &tc,
                value: None,
            }),
            Some(TypeInput {
                ty: &tn,
                value: None,
            }),
        ];
        assert!(infer_append(&Ctx::new(&n), &ins).is_err());
    }

    #[test]
    fn mismatched_heads_are_refused() {
        let cache = f(&[1, 2, 1, 1], &[1., 2.]);
        let new = f(&[1, 1, 1, 1], &[3.]);
        let n = node(0);
        let e = k_append(&Ctx::new(&n), &[Some(&cache), Some(&new)]).unwrap_err();
        assert!(e.0.contains("differ off axis 2"), "{}", e.0);
    }

    #[test]
    fn symbolic_past_gives_unknown_length() {
        let sym = |s: &str| Dim::Sym(s.into());
        let tc = TensorType::new(
            DType::F32,
            Shape(Some(vec![
                sym("batch"),
                Dim::Static(2),
                sym("past"),
                Dim::Static(4),
            ])),
        );
        let tn = TensorType::new(
            DType::F32,
            Shape(Some(vec![
                sym("batch"),
                Dim::Static(2),
                Dim::Static(1),
                Dim::Static(4),
            ])),
        );
        let ins = [
            Some(TypeInput {
                ty: &tc,
                value: None,
            }),
            Some(TypeInput {
                ty: &tn,
                value: None,
            }),
        ];
        let out = infer_append(&Ctx::new(&node(0)), &ins).unwrap();
        assert_eq!(out[0].shape.dims().unwrap()[2], Dim::Unknown);
        assert_eq!(out[0].shape.dims().unwrap()[0], sym("batch"));
    }
}
