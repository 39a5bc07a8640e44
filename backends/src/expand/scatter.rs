//! Scatters as other scatters: ScatterND with multi-component indices as a
//! ScatterND of slabs at linearized indices, TensorScatter (a KV-cache
//! write) as a ScatterElements at indices made from the write positions.

use super::{Builder, Expansion};
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::ScatterND => Some(scatter_nd),
        Op::TensorScatter => Some(tensor_scatter),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

fn shape_const(b: &mut Builder, s: &[usize]) -> Result<ValueId, String> {
    b.const_i64(&[s.len()], s.iter().map(|&d| d as i64).collect())
}

/// indices [..., k] (k > 1) into a data tensor d0 × .. × d(r-1): each index
/// tuple names the slab at row Σ c_j·stride_j of the data viewed as
/// (d0·..·d(k-1)) × (the rest), with c_j made non-negative (c + d_j where
/// c < 0). A tuple with a component outside [-d_j, d_j) becomes a row
/// outside the view, so the scatter stops on it as ONNX requires.
fn scatter_nd(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(ix), Some(u)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let (Some(xs), Some(is)) = (b.shape(x), b.shape(ix)) else {
        return Ok(None);
    };
    let k = match is.last() {
        Some(&k) if k > 1 && k <= xs.len() => k,
        _ => return Ok(None),
    };
    let idt = b.dtype(ix);
    if !matches!(idt, DType::I32 | DType::I64) {
        return Ok(None);
    }
    let rows: usize = xs[..k].iter().product();
    let slab: usize = xs[k..].iter().product();
    let tuples: usize = is[..is.len() - 1].iter().product();
    let zero = b.scalar(idt, 0.0)?;
    let mut lin: Option<ValueId> = None;
    let mut bad: Option<ValueId> = None;
    let mut stride = 1usize;
    for j in (0..k).rev() {
        let d = xs[j] as f64;
        let at = b.const_i64(&[], vec![j as i64])?;
        let c = b.op(Op::Gather, &[ix, at], &[("axis", Attr::Int(-1))])?;
        let (lo, hi) = (b.scalar(idt, -d)?, b.scalar(idt, d)?);
        let under = b.op(Op::Less, &[c, lo], &[])?;
        let over = b.op(Op::GreaterOrEqual, &[c, hi], &[])?;
        let out = b.op(Op::Or, &[under, over], &[])?;
        bad = Some(match bad {
            None => out,
            Some(p) => b.op(Op::Or, &[p, out], &[])?,
        });
        let neg = b.op(Op::Less, &[c, zero], &[])?;
        let wrapped = b.op(Op::Add, &[c, hi], &[])?;
        let c = b.op(Op::Where, &[neg, wrapped, c], &[])?;
        let s = b.scalar(idt, stride as f64)?;
        let term = b.op(Op::Mul, &[c, s], &[])?;
        lin = Some(match lin {
            None => term,
            Some(p) => b.op(Op::Add, &[p, term], &[])?,
        });
        stride *= xs[j];
    }
    let (Some(lin), Some(bad)) = (lin, bad) else {
        return Ok(None);
    };
    // -rows - 1 is outside [-rows, rows).
    let outside = b.scalar(idt, -(rows as f64) - 1.0)?;
    let lin = b.op(Op::Where, &[bad, outside, lin], &[])?;
    let s = shape_const(b, &[tuples, 1])?;
    let lin = b.op(Op::Reshape, &[lin, s], &[])?;
    let s = shape_const(b, &[rows, slab])?;
    let x2 = b.op(Op::Reshape, &[x, s], &[])?;
    let s = shape_const(b, &[tuples, slab])?;
    let u2 = b.op(Op::Reshape, &[u, s], &[])?;
    let mut attrs = Vec::new();
    if let Some(r) = n.attr("reduction") {
        attrs.push(("reduction", r.clone()));
    }
    let y = b.op(Op::ScatterND, &[x2, lin, u2], &attrs)?;
    let s = shape_const(b, &xs)?;
    Ok(Some(vec![Some(b.op(Op::Reshape, &[y, s], &[])?)]))
}

/// present[b, .., (w[b] + s) (mod the cache length when circular), ..] =
/// update[b, .., s, ..] along the axis: ScatterElements with those
/// positions broadcast to the update's shape.
fn tensor_scatter(b: &mut Builder, n: &Node) -> Out {
    let (Some(past), Some(u)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(ps), Some(us)) = (b.shape(past), b.shape(u)) else {
        return Ok(None);
    };
    let r = ps.len();
    let a = match n.attr("axis") {
        Some(Attr::Int(a)) => *a,
        _ => -2,
    };
    let ax = if a < 0 { a + r as i64 } else { a };
    // The write position is per batch entry: the axis comes after it.
    if ax < 1 || ax as usize >= r || us.len() != r {
        return Ok(None);
    }
    let ax = ax as usize;
    let circular = matches!(n.attr("mode"), Some(Attr::String(m)) if m == "circular");
    let mut wshape = vec![1usize; r];
    wshape[0] = ps[0];
    let w = match Builder::input(n, 2) {
        Some(w) if b.dtype(w) == DType::I64 => {
            let s = shape_const(b, &wshape)?;
            b.op(Op::Reshape, &[w, s], &[])?
        }
        Some(_) => return Ok(None),
        None => b.const_i64(&wshape, vec![0; ps[0]])?,
    };
    let mut sshape = vec![1usize; r];
    sshape[ax] = us[ax];
    let steps = b.const_i64(&sshape, (0..us[ax] as i64).collect())?;
    let mut pos = b.op(Op::Add, &[w, steps], &[])?;
    if circular {
        let len = b.const_i64(&[], vec![ps[ax] as i64])?;
        pos = b.op(Op::Mod, &[pos, len], &[("fmod", Attr::Int(0))])?;
    }
    let s = shape_const(b, &us)?;
    let pos = b.op(Op::Expand, &[pos, s], &[])?;
    let y = b.op(
        Op::ScatterElements,
        &[past, pos, u],
        &[("axis", Attr::Int(ax as i64))],
    )?;
    Ok(Some(vec![Some(y)]))
}
