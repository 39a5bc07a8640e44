//! Ops that select or pass data through once some input is known: Compress
//! with a constant condition (a Gather with constant indices), Dropout
//! outside training (or with ratio 0: the identity and an all-true mask),
//! ArrayFeatureExtractor (a Gather on the last axis) and Binarizer (a
//! comparison).

use super::{Builder, Expansion};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::Compress => Some(compress),
        Op::Dropout => Some(dropout),
        Op::ArrayFeatureExtractor => Some(array_feature_extractor),
        Op::Binarizer => Some(binarizer),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

fn int_attr(n: &Node, name: &str) -> Option<i64> {
    match n.attr(name) {
        Some(Attr::Int(v)) => Some(*v),
        _ => None,
    }
}

fn compress(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(c)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(cond), Some(shape)) = (b.known(c), b.shape(x)) else {
        return Ok(None);
    };
    let Some(cond) = cond.to_i64_vec() else {
        return Ok(None);
    };
    let (src, len, axis) = match int_attr(n, "axis") {
        Some(a) => {
            let r = shape.len() as i64;
            if a < -r || a >= r {
                return Err(format!("axis {a} is out of range for rank {r}"));
            }
            let a = a.rem_euclid(r.max(1)) as usize;
            (x, shape[a], a as i64)
        }
        None => {
            let flat = b.const_i64(&[1], vec![-1])?;
            let f = b.op(Op::Reshape, &[x, flat], &[])?;
            (f, shape.iter().product(), 0)
        }
    };
    // The condition may be shorter than the axis (the rest is dropped)
    // but not longer where it selects beyond it.
    let picked: Vec<i64> = cond
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v != 0)
        .map(|(i, _)| i as i64)
        .collect();
    if picked.iter().any(|&i| i as usize >= len) {
        return Err(format!(
            "the condition selects beyond the axis length {len}"
        ));
    }
    if picked.is_empty() {
        // An empty result has nothing to compute; targets keep their own
        // answer for empty tensors.
        return Ok(None);
    }
    let idx = b.const_i64(&[picked.len()], picked)?;
    let y = b.op(Op::Gather, &[src, idx], &[("axis", Attr::Int(axis))])?;
    Ok(Some(vec![Some(y)]))
}

fn dropout(b: &mut Builder, n: &Node) -> Out {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    let training = match Builder::input(n, 2) {
        None => false,
        Some(t) => match b.known(t).and_then(|t| t.to_i64_vec()) {
            Some(v) if v.len() == 1 => v[0] != 0,
            _ => return Ok(None),
        },
    };
    if training {
        // Random unless nothing is dropped.
        let ratio = match Builder::input(n, 1) {
            None => 0.5,
            Some(r) => match b.known(r).and_then(|t| t.to_f64_vec()) {
                Some(v) if v.len() == 1 => v[0],
                _ => return Ok(None),
            },
        };
        if ratio != 0.0 {
            return Ok(None);
        }
    }
    let mask = match n.outputs.get(1).copied().flatten() {
        None => None,
        Some(_) => {
            let Some(shape) = b.shape(x) else {
                return Ok(None);
            };
            let numel = shape.iter().product();
            Some(b.constant(&Tensor::from_bool(shape, vec![true; numel]))?)
        }
    };
    Ok(Some(vec![Some(x), mask]))
}

fn array_feature_extractor(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(i)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(xs), Some(is)) = (b.shape(x), b.shape(i)) else {
        return Ok(None);
    };
    if xs.is_empty() {
        return Ok(None);
    }
    let k: usize = is.iter().product();
    let flat = b.const_i64(&[1], vec![k as i64])?;
    let idx = b.op(Op::Reshape, &[i, flat], &[])?;
    let idx = b.cast(idx, DType::I64)?;
    let g = b.op(Op::Gather, &[x, idx], &[("axis", Attr::Int(-1))])?;
    let y = if xs.len() == 1 {
        let s = b.const_i64(&[2], vec![1, k as i64])?;
        b.op(Op::Reshape, &[g, s], &[])?
    } else {
        g
    };
    Ok(Some(vec![Some(y)]))
}

fn binarizer(b: &mut Builder, n: &Node) -> Out {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    let th = match n.attr("threshold") {
        Some(Attr::Float(t)) => *t as f64,
        _ => 0.0,
    };
    let d = b.dtype(x);
    let t = b.scalar(d, th)?;
    let gt = b.op(Op::Greater, &[x, t], &[])?;
    let y = b.cast(gt, d)?;
    Ok(Some(vec![Some(y)]))
}
