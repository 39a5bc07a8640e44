//! Einsum as data movement and one broadcast product: diagonals (a label
//! repeated in a term) become a Gather over the flattened pair of axes,
//! every operand is transposed and reshaped onto one label order (output
//! labels, then summed ones), multiplied, and summed over the trailing
//! summed labels. 16-bit floats are computed in f32 and rounded once, as
//! the reference accumulates.

use super::steps::{reshape, transpose};
use super::{Builder, Expansion};
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::Einsum => Some(einsum),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

/// Labels: letters, and ellipsis dims as 1000 + their right-aligned slot.
type Label = u32;

/// A term's labels with `...` expanded to `ell` dims (right-aligned
/// against `width`, the widest ellipsis).
fn labels(term: &str, ell: usize, width: usize) -> Option<Vec<Label>> {
    let mut out = Vec::new();
    let mut rest = term;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            out.extend((width - ell..width).map(|i| 1000 + i as Label));
            rest = r;
            continue;
        }
        let c = rest.chars().next()?;
        if !c.is_ascii_alphabetic() {
            return None;
        }
        out.push(c as Label);
        rest = &rest[1..];
    }
    Some(out)
}

fn explicit(term: &str) -> usize {
    term.replace("...", "").len()
}

fn einsum(b: &mut Builder, n: &Node) -> Out {
    let Some(Attr::String(eq)) = n.attr("equation") else {
        return Ok(None);
    };
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    let ins: Vec<ValueId> = match n.inputs.iter().copied().collect::<Option<Vec<_>>>() {
        Some(v) if v.len() == terms.len() => v,
        _ => return Ok(None),
    };
    let mut shapes = Vec::new();
    for &v in &ins {
        match b.shape(v) {
            Some(s) => shapes.push(s),
            None => return Ok(None),
        }
    }
    let ells: Vec<usize> = terms
        .iter()
        .zip(&shapes)
        .map(|(t, s)| s.len().saturating_sub(explicit(t)))
        .collect();
    let width = ells.iter().copied().max().unwrap_or(0);
    let mut per: Vec<Vec<Label>> = Vec::new();
    for ((t, s), &e) in terms.iter().zip(&shapes).zip(&ells) {
        match labels(t, e, width) {
            Some(l) if l.len() == s.len() => per.push(l),
            _ => return Ok(None),
        }
    }
    let out: Vec<Label> = match &rhs {
        Some(r) => match labels(r, width, width) {
            Some(l) => l,
            None => return Ok(None),
        },
        None => {
            // Implicit: the ellipsis, then the labels seen once, sorted.
            let mut once: Vec<Label> = per
                .iter()
                .flatten()
                .copied()
                .filter(|&l| l < 1000)
                .collect();
            once.sort_unstable();
            let mut single = Vec::new();
            for (i, &l) in once.iter().enumerate() {
                let dup = (i > 0 && once[i - 1] == l) || once.get(i + 1) == Some(&l);
                if !dup {
                    single.push(l);
                }
            }
            (0..width)
                .map(|i| 1000 + i as Label)
                .chain(single)
                .collect()
        }
    };
    let d = b.dtype(ins[0]);
    let work = match d {
        DType::F16 | DType::BF16 => DType::F32,
        _ => d,
    };
    // Every label's extent (a broadcast ellipsis dim of 1 gives way).
    let mut extent = std::collections::BTreeMap::new();
    for (l, s) in per.iter().zip(&shapes) {
        for (&lab, &dim) in l.iter().zip(s) {
            let e = extent.entry(lab).or_insert(dim);
            if *e == 1 {
                *e = dim;
            } else if dim != 1 && dim != *e {
                return Ok(None);
            }
        }
    }
    if out.iter().any(|l| !extent.contains_key(l)) {
        return Ok(None);
    }
    let mut all = out.clone();
    for l in per.iter().flatten() {
        if !all.contains(l) {
            all.push(*l);
        }
    }
    let mut prod: Option<ValueId> = None;
    for ((&v, labs), shape) in ins.iter().zip(&per).zip(&shapes) {
        let (mut v, mut labs, mut shape) = (b.cast(v, work)?, labs.clone(), shape.clone());
        // Diagonals: a repeated label's two axes moved last, flattened,
        // and every (n+1)-th element taken.
        while let Some((p, q)) = repeated(&labs) {
            let k = shape[p];
            if shape[q] != k {
                return Ok(None);
            }
            let mut perm: Vec<usize> = (0..labs.len()).filter(|&i| i != p && i != q).collect();
            perm.extend([p, q]);
            v = transpose(b, v, &perm.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
            let mut s: Vec<usize> = perm[..perm.len() - 2].iter().map(|&i| shape[i]).collect();
            s.push(k * k);
            v = reshape(b, v, &s)?;
            let idx = b.const_i64(&[k], (0..k as i64).map(|i| i * (k as i64 + 1)).collect())?;
            v = b.op(Op::Gather, &[v, idx], &[("axis", Attr::Int(-1))])?;
            let lab = labs[p];
            labs = perm[..perm.len() - 2].iter().map(|&i| labs[i]).collect();
            labs.push(lab);
            s.pop();
            s.push(k);
            shape = s;
        }
        // Onto `all`'s order, with size-1 axes for absent labels.
        let mut order: Vec<usize> = (0..labs.len()).collect();
        order.sort_by_key(|&i| all.iter().position(|l| *l == labs[i]));
        v = transpose(b, v, &order.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
        let full: Vec<usize> = all
            .iter()
            .map(|l| labs.iter().position(|x| x == l).map_or(1, |i| shape[i]))
            .collect();
        v = reshape(b, v, &full)?;
        prod = Some(match prod {
            None => v,
            Some(p) => b.op(Op::Mul, &[p, v], &[])?,
        });
    }
    let Some(mut y) = prod else {
        return Ok(None);
    };
    // A lone operand may still hold size-1 axes where the output broadcasts.
    let want: Vec<usize> = all.iter().map(|l| extent[l]).collect();
    if b.shape(y).as_deref() != Some(&want[..]) {
        let s = b.const_i64(&[want.len()], want.iter().map(|&d| d as i64).collect())?;
        y = b.op(Op::Expand, &[y, s], &[])?;
    }
    if all.len() > out.len() {
        let axes: Vec<i64> = (out.len()..all.len()).map(|i| i as i64).collect();
        let a = b.const_i64(&[axes.len()], axes)?;
        y = b.op(Op::ReduceSum, &[y, a], &[("keepdims", Attr::Int(0))])?;
    }
    Ok(Some(vec![Some(b.cast(y, d)?)]))
}

/// The first label appearing twice in a term: its two positions.
fn repeated(labs: &[Label]) -> Option<(usize, usize)> {
    for p in 0..labs.len() {
        if let Some(q) = (p + 1..labs.len()).find(|&q| labs[q] == labs[p]) {
            return Some((p, q));
        }
    }
    None
}
