//! Data movement as strided DMA between HBM buffers: transpose, slice,
//! concat, split, expand, tile, pad, gather with known indices (casts:
//! `cast.rs`). A copy of any rank becomes 2-D DMA commands (the innermost run
//! contiguous on both sides as columns, the longest other axis as rows),
//! spread over every tile's DMA engines; they need no semaphores, since
//! nothing in the phase depends on another command of it.

use super::Error;
use super::lower::{Lw, TRef, unsup};
use super::program::{Lane, Mem, Program};
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::Dt;

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as i64;
    }
    s
}

/// A strided view for a copy: element offset and per-axis strides, in
/// graph elements.
#[derive(Clone, Debug)]
pub struct View {
    pub off: i64,
    pub strides: Vec<i64>,
}

/// Copies `shape` elements from a strided view of `src` to one of `dst`.
/// Strides may be zero (broadcast) but not negative. With different
/// storage dtypes the DMA converts (float casts).
pub fn copy_nd(
    p: &mut Program,
    src: &TRef,
    sv: &View,
    dst: &TRef,
    dv: &View,
    shape: &[usize],
) -> Result<(), Error> {
    if shape.contains(&0) {
        return Ok(());
    }
    if sv.strides.iter().chain(&dv.strides).any(|&s| s < 0) || sv.off < 0 || dv.off < 0 {
        return Err(unsup("copy", "negative strides"));
    }
    if src.mult != dst.mult {
        return Err(unsup("copy", "between dtypes of different widths"));
    }
    let m = src.mult as i64;
    // (size, src stride, dst stride) in storage elements.
    let mut dims: Vec<(u64, i64, i64)> = shape
        .iter()
        .zip(sv.strides.iter().zip(&dv.strides))
        .map(|(&n, (&a, &b))| (n as u64, a * m, b * m))
        .collect();
    if m > 1 {
        dims.push((m as u64, 1, 1));
    }
    dims.retain(|d| d.0 != 1);
    let mut merged: Vec<(u64, i64, i64)> = Vec::new();
    for d in dims {
        if let Some(last) = merged.last_mut()
            && last.1 == d.1 * d.0 as i64
            && last.2 == d.2 * d.0 as i64
        {
            *last = (last.0 * d.0, d.1, d.2);
            continue;
        }
        merged.push(d);
    }
    let mut dims = merged;
    let cols = match dims.last() {
        Some(&(n, 1, 1)) => {
            dims.pop();
            n
        }
        _ => 1,
    };
    // Rows: the longest remaining axis (strides are free on both sides).
    let (rows, rs, rd) = match (0..dims.len()).max_by_key(|&i| (dims[i].0, i)) {
        Some(i) => dims.remove(i),
        None => (1, cols as i64, cols as i64),
    };
    let outer: u64 = dims.iter().map(|d| d.0).product();
    let limit = 1u64 << 22;
    if outer > limit {
        return Err(Error::TooLarge(format!(
            "a copy needs {outer} DMA commands (limit {limit})"
        )));
    }
    let tiles = p.tiles() as u64;
    let lanes = p.hw.tile.dma.engines.max(1) as u64;
    // Few long commands would leave most engines idle: cut the rows so that
    // every DMA engine of the chip gets a share.
    let engines = tiles * lanes;
    let pieces = if outer < engines {
        engines.div_ceil(outer).min(rows).max(1)
    } else {
        1
    };
    let per = rows.div_ceil(pieces);
    // A single long run is cut by columns instead.
    let cpieces = if outer < engines && rows == 1 {
        engines.div_ceil(outer).min(cols).max(1)
    } else {
        1
    };
    let cper = cols.div_ceil(cpieces);
    let mut idx = vec![0u64; dims.len()];
    let mut c = 0u64;
    for _ in 0..outer {
        let (mut so, mut dof) = (sv.off * m, dv.off * m);
        for (k, &(_, a, b)) in dims.iter().enumerate() {
            so += idx[k] as i64 * a;
            dof += idx[k] as i64 * b;
        }
        let mut r0 = 0u64;
        while r0 < rows {
            let nr = per.min(rows - r0);
            let mut c0 = 0u64;
            while c0 < cols {
                let nc = cper.min(cols - c0);
                let tile = (c % tiles) as u16;
                let lane = if (c / tiles).is_multiple_of(lanes) {
                    Lane::Load
                } else {
                    Lane::Store
                };
                c += 1;
                let q = p.dma_q(tile, lane);
                let s0 = so + r0 as i64 * rs + c0 as i64;
                let d0 = dof + r0 as i64 * rd + c0 as i64;
                p.dma(
                    q,
                    Mem::Hbm(src.buf, src.off + src.dt.bytes(s0 as u64)),
                    Mem::Hbm(dst.buf, dst.off + dst.dt.bytes(d0 as u64)),
                    src.dt,
                    dst.dt,
                    nr,
                    nc,
                    rs as u64,
                    rd as u64,
                )?;
                c0 += nc;
            }
            r0 += nr;
        }
        for k in (0..dims.len()).rev() {
            idx[k] += 1;
            if idx[k] < dims[k].0 {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(())
}

/// Copies a whole tensor (same element count) into another buffer.
pub fn copy_flat(p: &mut Program, src: &TRef, dst: &TRef) -> Result<(), Error> {
    let n = src.numel() as usize;
    let v = View {
        off: 0,
        strides: vec![1],
    };
    copy_nd(p, src, &v, dst, &v, &[n])
}

/// Copies `src` broadcast (numpy rules) to `dst`'s shape.
pub fn expand_into(p: &mut Program, src: &TRef, dst: &TRef) -> Result<(), Error> {
    let r = dst.shape.len();
    let st = strides(&src.shape);
    let off = r - src.shape.len().min(r);
    let mut s = vec![0i64; r];
    for (i, &d) in src.shape.iter().enumerate() {
        if i + off < r && d != 1 {
            s[i + off] = st[i];
        }
    }
    copy_nd(
        p,
        src,
        &View { off: 0, strides: s },
        dst,
        &View {
            off: 0,
            strides: strides(&dst.shape),
        },
        &dst.shape,
    )
}

fn ints(t: &Tensor) -> Option<Vec<i64>> {
    t.to_i64_vec()
}

fn axis(a: i64, r: usize) -> Result<usize, Error> {
    let x = if a < 0 { a + r as i64 } else { a };
    if x < 0 || x as usize >= r.max(1) {
        return Err(Error::Graph(format!("axis {a} out of range for rank {r}")));
    }
    Ok(x as usize)
}

fn attr_ints(n: &Node, name: &str) -> Option<Vec<i64>> {
    match n.attr(name) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn attr_int(n: &Node, name: &str, d: i64) -> i64 {
    match n.attr(name) {
        Some(Attr::Int(v)) => *v,
        _ => d,
    }
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    match n.op {
        Op::Reshape | Op::Flatten | Op::Squeeze | Op::Unsqueeze | Op::Identity => {
            let x = lw.input(n, 0)?;
            lw.alias(n, 0, &x)
        }
        Op::Transpose => {
            let x = lw.input(n, 0)?;
            let r = x.shape.len();
            let perm: Vec<usize> = match attr_ints(n, "perm") {
                Some(p) => p.iter().map(|&a| axis(a, r)).collect::<Result<_, _>>()?,
                None => (0..r).rev().collect(),
            };
            let y = lw.output(n, 0)?;
            let st = strides(&x.shape);
            let sv = View {
                off: 0,
                strides: perm.iter().map(|&a| st[a]).collect(),
            };
            lw.p.phase();
            copy_nd(&mut lw.p, &x, &sv, &y, &plain(&y), &y.shape.clone())
        }
        Op::Expand => {
            let x = lw.input(n, 0)?;
            let y = lw.output(n, 0)?;
            lw.p.phase();
            expand_into(&mut lw.p, &x, &y)
        }
        Op::Concat => {
            let y = lw.output(n, 0)?;
            let r = y.shape.len();
            let ax = axis(attr_int(n, "axis", 0), r)?;
            let ys = strides(&y.shape);
            lw.p.phase();
            let mut at = 0i64;
            for i in 0..n.inputs.len() {
                if !Lw::has_input(n, i) {
                    continue;
                }
                let x = lw.input(n, i)?;
                let dv = View {
                    off: at * ys[ax],
                    strides: ys.clone(),
                };
                copy_nd(&mut lw.p, &x, &plain(&x), &y, &dv, &x.shape.clone())?;
                at += x.shape.get(ax).copied().unwrap_or(0) as i64;
            }
            Ok(())
        }
        Op::Split => {
            let x = lw.input(n, 0)?;
            let r = x.shape.len();
            let ax = axis(attr_int(n, "axis", 0), r)?;
            let xs = strides(&x.shape);
            lw.p.phase();
            let mut at = 0i64;
            for i in 0..n.outputs.len() {
                let Some(v) = n.outputs[i] else { continue };
                let (shape, _) = lw.static_ty(v)?;
                let y = lw.output(n, i)?;
                let sv = View {
                    off: at * xs[ax],
                    strides: xs.clone(),
                };
                copy_nd(&mut lw.p, &x, &sv, &y, &plain(&y), &shape)?;
                at += shape[ax] as i64;
            }
            Ok(())
        }
        Op::Slice => slice(lw, n),
        Op::Gather => gather(lw, n),
        Op::GatherElements => gather_elements(lw, n),
        Op::BitCast => {
            // The same bytes under another dtype: a raw byte copy.
            let x = lw.input(n, 0)?;
            let y = lw.output(n, 0)?;
            let bytes = |t: &TRef| t.dt.bytes(t.numel() * t.mult);
            if bytes(&x) != bytes(&y) {
                return Err(unsup(n.op, "between dtypes of different widths"));
            }
            let raw = |t: &TRef| TRef {
                dt: Dt::I8,
                mult: 1,
                gdt: DType::I8,
                shape: vec![bytes(t) as usize],
                ..t.clone()
            };
            lw.p.phase();
            copy_flat(&mut lw.p, &raw(&x), &raw(&y))
        }
        Op::Tile => {
            let x = lw.input(n, 0)?;
            let reps = lw
                .known_input(n, 1)
                .and_then(|t| ints(&t))
                .ok_or_else(|| unsup(n.op, "repeats not known at compile time"))?;
            let y = lw.output(n, 0)?;
            // y viewed as [r0, d0, r1, d1, ...]: the copies repeat x with
            // stride 0 along each r axis.
            let xs = strides(&x.shape);
            let ysh = &y.shape;
            let mut shape = Vec::new();
            let (mut s, mut d) = (Vec::new(), Vec::new());
            let yst = strides(ysh);
            for (i, &di) in x.shape.iter().enumerate() {
                let ri = reps.get(i).copied().unwrap_or(1).max(0) as usize;
                shape.extend([ri, di]);
                s.extend([0, xs[i]]);
                d.extend([yst[i] * di as i64, yst[i]]);
            }
            lw.p.phase();
            copy_nd(
                &mut lw.p,
                &x,
                &View { off: 0, strides: s },
                &y,
                &View { off: 0, strides: d },
                &shape,
            )
        }
        Op::DepthToSpace | Op::SpaceToDepth => depth_space(lw, n),
        Op::Pad => pad(lw, n),
        Op::Trilu => trilu(lw, n),
        _ => Err(unsup(n.op, "")),
    }
}

pub fn plain(t: &TRef) -> View {
    View {
        off: 0,
        strides: strides(&t.shape),
    }
}

/// Zeros, then each row's kept run of columns copied (any dtype).
fn trilu(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    if r < 2 {
        return Err(Error::Graph(format!("{}: rank below 2", n.describe())));
    }
    let upper = attr_int(n, "upper", 1) != 0;
    let k = if Lw::has_input(n, 1) {
        match lw
            .known_input(n, 1)
            .and_then(|t| ints(&t))
            .and_then(|v| v.first().copied())
        {
            Some(k) => k,
            None => return super::elementwise::trilu_runtime_k(lw, n, &x, upper),
        }
    } else {
        0
    };
    let y = lw.output(n, 0)?;
    fill(lw, &y, 0.0)?;
    let (rows, cols) = (x.shape[r - 2] as i64, x.shape[r - 1] as i64);
    let batch: usize = x.shape[..r - 2].iter().product();
    lw.p.phase();
    for i in 0..rows {
        let (a, b) = if upper {
            ((i + k).clamp(0, cols), cols)
        } else {
            (0, (i + k + 1).clamp(0, cols))
        };
        if b <= a {
            continue;
        }
        let v = View {
            off: i * cols + a,
            strides: vec![rows * cols, 1],
        };
        copy_nd(&mut lw.p, &x, &v, &y, &v, &[batch, (b - a) as usize])?;
    }
    Ok(())
}

fn slice(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let r = x.shape.len();
    let get = |lw: &mut Lw, i: usize| -> Result<Option<Vec<i64>>, Error> {
        if !Lw::has_input(n, i) {
            return Ok(None);
        }
        lw.known_input(n, i)
            .and_then(|t| ints(&t))
            .map(Some)
            .ok_or_else(|| unsup(n.op, "starts/ends/axes/steps not known at compile time"))
    };
    let starts = get(lw, 1)?.unwrap_or_default();
    // The output's static shape already says how many elements each axis keeps.
    let axes = get(lw, 3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get(lw, 4)?.unwrap_or_else(|| vec![1; starts.len()]);
    let y = lw.output(n, 0)?;
    let xs = strides(&x.shape);
    let mut off = 0i64;
    let mut st = xs.clone();
    for (k, &a) in axes.iter().enumerate() {
        let a = axis(a, r)?;
        let d = x.shape[a] as i64;
        let step = steps.get(k).copied().unwrap_or(1);
        if step <= 0 {
            return Err(unsup(n.op, "negative steps"));
        }
        let mut s = starts.get(k).copied().unwrap_or(0);
        if s < 0 {
            s += d;
        }
        s = s.clamp(0, d);
        off += s * xs[a];
        st[a] = xs[a] * step;
    }
    lw.p.phase();
    copy_nd(
        &mut lw.p,
        &x,
        &View { off, strides: st },
        &y,
        &plain(&y),
        &y.shape.clone(),
    )
}

/// The command-stream dtype of an index tensor.
fn index_dt(t: &TRef) -> Option<Dt> {
    match t.gdt {
        DType::I32 => Some(Dt::I32),
        DType::I64 => Some(Dt::I64),
        _ => None,
    }
}

/// Gather with indices known only at run time: per outer index, one
/// indirect DMA whose rows are the `inner` runs the indices select.
fn gather_runtime(lw: &mut Lw, n: &Node, x: &TRef) -> Result<(), Error> {
    let ix = lw.input(n, 1)?;
    let idt = index_dt(&ix).ok_or_else(|| unsup(n.op, format!("indices of dtype {}", ix.gdt)))?;
    let r = x.shape.len();
    let ax = axis(attr_int(n, "axis", 0), r)?;
    let y = lw.output(n, 0)?;
    let d = x.shape[ax] as u64;
    let m = ix.numel();
    let outer: u64 = x.shape[..ax].iter().product::<usize>() as u64;
    let inner = x.shape[ax + 1..].iter().product::<usize>() as u64 * x.mult;
    let tiles = lw.p.tiles() as u64;
    lw.p.phase();
    for o in 0..outer {
        let q = lw.p.dma_q((o % tiles) as u16, Lane::Load);
        lw.p.dma_gather(
            q,
            Mem::Hbm(x.buf, x.off + x.dt.bytes(o * d * inner)),
            Mem::Hbm(y.buf, y.off + y.dt.bytes(o * m * inner)),
            ix.at(0),
            x.dt,
            idt,
            m,
            inner,
            [inner, inner, 1],
            d,
        )?;
    }
    Ok(())
}

/// GatherElements: y[.., j, ..] = x[.., idx[.., j, ..], ..] along the
/// axis. One indirect DMA of single elements per position of the other
/// axes; rows run along the axis.
pub fn gather_elements(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let ix = lw.input(n, 1)?;
    let r = x.shape.len();
    if ix.shape.len() != r {
        return Err(Error::Graph(format!(
            "{}: index rank differs",
            n.describe()
        )));
    }
    let ax = axis(attr_int(n, "axis", 0), r)?;
    let y = lw.output(n, 0)?;
    gather_elements_into(lw, n.op, &x, &ix, &y, ax)
}

/// GatherElements of `x` by `ix` (same rank, y shaped like ix) along `ax`.
pub fn gather_elements_into(
    lw: &mut Lw,
    op: Op,
    x: &TRef,
    ix: &TRef,
    y: &TRef,
    ax: usize,
) -> Result<(), Error> {
    let idt = index_dt(ix).ok_or_else(|| unsup(op, format!("indices of dtype {}", ix.gdt)))?;
    let r = x.shape.len();
    let (xs, ys) = (strides(&x.shape), strides(&ix.shape));
    let lines: usize = ix
        .shape
        .iter()
        .enumerate()
        .filter(|&(k, _)| k != ax)
        .map(|(_, &d)| d)
        .product();
    if lines > 1 << 16 {
        return Err(unsup(op, format!("{lines} index lines (one DMA each)")));
    }
    let tiles = lw.p.tiles() as u64;
    let mult = x.mult;
    lw.p.phase();
    let mut pos = vec![0usize; r];
    for line in 0..lines {
        let (mut xo, mut yo) = (0i64, 0i64);
        for k in 0..r {
            xo += pos[k] as i64 * xs[k];
            yo += pos[k] as i64 * ys[k];
        }
        let q = lw.p.dma_q((line as u64 % tiles) as u16, Lane::Load);
        lw.p.dma_gather(
            q,
            x.at(xo as u64),
            y.at(yo as u64),
            ix.at(yo as u64),
            x.dt,
            idt,
            ix.shape[ax] as u64,
            mult,
            [xs[ax] as u64 * mult, ys[ax] as u64 * mult, ys[ax] as u64],
            x.shape[ax] as u64,
        )?;
        // Next position over the axes other than `ax` (last fastest).
        for k in (0..r).rev() {
            if k == ax {
                continue;
            }
            pos[k] += 1;
            if pos[k] < ix.shape[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    Ok(())
}

fn gather(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let Some(idx) = lw.known_input(n, 1).and_then(|t| ints(&t)) else {
        return gather_runtime(lw, n, &x);
    };
    let r = x.shape.len();
    let ax = axis(attr_int(n, "axis", 0), r)?;
    let y = lw.output(n, 0)?;
    let d = x.shape[ax] as i64;
    let xs = strides(&x.shape);
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..].iter().product();
    lw.p.phase();
    // y viewed as [outer, len(idx), inner]; one copy per index.
    for (j, &i) in idx.iter().enumerate() {
        let i = if i < 0 { i + d } else { i };
        if i < 0 || i >= d {
            return Err(Error::Graph(format!("Gather index {i} out of range {d}")));
        }
        let sv = View {
            off: i * xs[ax],
            strides: vec![xs[ax] * d, 1],
        };
        let dv = View {
            off: (j * inner) as i64,
            strides: vec![(idx.len() * inner) as i64, 1],
        };
        copy_nd(&mut lw.p, &x, &sv, &y, &dv, &[outer, inner])?;
    }
    Ok(())
}

fn depth_space(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let y = lw.output(n, 0)?;
    if x.shape.len() != 4 {
        return Err(unsup(n.op, "rank other than 4"));
    }
    let b = attr_int(n, "blocksize", 1).max(1) as usize;
    let crd = matches!(n.attr("mode"), Some(Attr::String(m)) if m == "CRD");
    // Both ops are a reshape, a 6-D transpose and a reshape: copy from x's
    // 6-D view in the order of y's 6-D view.
    let (shape6, src_strides) = if n.op == Op::DepthToSpace {
        let [nn, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let oc = c / (b * b);
        // y[n, oc, h, b1, w, b2]
        let xs = strides(&x.shape);
        let ch = |c_of: i64| c_of * xs[1];
        let (s_oc, s_b1, s_b2) = if crd {
            (ch((b * b) as i64), ch(b as i64), ch(1))
        } else {
            (ch(1), ch((b * oc) as i64), ch(oc as i64))
        };
        (
            vec![nn, oc, h, b, w, b],
            vec![xs[0], s_oc, xs[2], s_b1, xs[3], s_b2],
        )
    } else {
        let [nn, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let (oh, ow) = (h / b, w / b);
        // y[n, b1, b2, c, oh, ow] (DCR order) from x[n, c, oh*b+b1, ow*b+b2]
        let xs = strides(&x.shape);
        if crd {
            // y[n, c, b1, b2, oh, ow]
            (
                vec![nn, c, b, b, oh, ow],
                vec![xs[0], xs[1], xs[2], 1, xs[2] * b as i64, b as i64],
            )
        } else {
            (
                vec![nn, b, b, c, oh, ow],
                vec![xs[0], xs[2], 1, xs[1], xs[2] * b as i64, b as i64],
            )
        }
    };
    lw.p.phase();
    copy_nd(
        &mut lw.p,
        &x,
        &View {
            off: 0,
            strides: src_strides,
        },
        &y,
        &View {
            off: 0,
            strides: strides(&shape6),
        },
        &shape6,
    )
}

fn pad(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let mode = match n.attr("mode") {
        Some(Attr::String(m)) => m.clone(),
        _ => "constant".into(),
    };
    if !matches!(mode.as_str(), "constant" | "edge" | "reflect" | "wrap") {
        return Err(unsup(n.op, format!("mode {mode}")));
    }
    let pads = lw
        .known_input(n, 1)
        .and_then(|t| ints(&t))
        .ok_or_else(|| unsup(n.op, "pads not known at compile time"))?;
    let r = x.shape.len();
    // With `axes`, pads holds begins then ends of those axes only.
    let pads = if Lw::has_input(n, 3) {
        let axes = lw
            .known_input(n, 3)
            .and_then(|t| ints(&t))
            .ok_or_else(|| unsup(n.op, "axes not known at compile time"))?;
        if pads.len() != 2 * axes.len() {
            return Err(Error::Graph(format!(
                "{}: {} pads for {} axes",
                n.describe(),
                pads.len(),
                axes.len()
            )));
        }
        let mut full = vec![0i64; 2 * r];
        for (k, &a) in axes.iter().enumerate() {
            let a = axis(a, r)?;
            full[a] = pads[k];
            full[a + r] = pads[k + axes.len()];
        }
        full
    } else {
        pads
    };
    if pads.len() != 2 * r || pads.iter().any(|&q| q < 0) {
        return Err(unsup(n.op, "negative pads"));
    }
    let y = lw.output(n, 0)?;
    if mode == "constant" {
        // The value: known (a fill) or a run-time scalar copied with stride 0.
        match (Lw::has_input(n, 2), lw.known_input(n, 2)) {
            (false, _) => fill(lw, &y, 0.0)?,
            (true, Some(t)) => {
                let v = t.to_f64_vec().and_then(|v| v.first().copied());
                fill(lw, &y, v.ok_or_else(|| unsup(n.op, "pad value"))?)?;
            }
            (true, None) => {
                let v = lw.input(n, 2)?;
                lw.p.phase();
                let zero = View {
                    off: 0,
                    strides: vec![0; r],
                };
                copy_nd(&mut lw.p, &v, &zero, &y, &plain(&y), &y.shape.clone())?;
            }
        }
    }
    let ys = strides(&y.shape);
    let off: i64 = (0..r).map(|i| pads[i] * ys[i]).sum();
    lw.p.phase();
    copy_nd(
        &mut lw.p,
        &x,
        &plain(&x),
        &y,
        &View {
            off,
            strides: ys.clone(),
        },
        &x.shape.clone(),
    )?;
    if mode == "constant" {
        return Ok(());
    }
    // Edge, reflect, wrap: one axis at a time, each border slab copied from
    // a slab of y itself (the interior of later axes, all of earlier ones).
    for a in 0..r {
        let (pb, pe, d) = (pads[a], pads[r + a], x.shape[a] as i64);
        if pb + pe == 0 {
            continue;
        }
        if d == 0 || (mode == "reflect" && (pb >= d || pe >= d)) {
            return Err(unsup(n.op, "pads beyond the reflected extent"));
        }
        let mut shape = Vec::with_capacity(r);
        let mut base = 0i64;
        for i in 0..r {
            if i < a {
                shape.push(y.shape[i]);
            } else if i == a {
                shape.push(1);
            } else {
                shape.push(x.shape[i]);
                base += pads[i] * ys[i];
            }
        }
        lw.p.phase();
        let slab = |lw: &mut Lw, dst: i64, src: i64| -> Result<(), Error> {
            let sv = View {
                off: base + src * ys[a],
                strides: ys.clone(),
            };
            let dv = View {
                off: base + dst * ys[a],
                strides: ys.clone(),
            };
            copy_nd(&mut lw.p, &y, &sv, &y, &dv, &shape)
        };
        for j in 1..=pb {
            let src = match mode.as_str() {
                "edge" => pb,
                "reflect" => pb + j,
                _ => pb + (d - j % d) % d,
            };
            slab(lw, pb - j, src)?;
        }
        for j in 0..pe {
            let src = match mode.as_str() {
                "edge" => pb + d - 1,
                "reflect" => pb + d - 2 - j,
                _ => pb + j % d,
            };
            slab(lw, pb + d + j, src)?;
        }
    }
    Ok(())
}

/// Fills a tensor with one value: a constant run in HBM copied with
/// stride 0. Values of non-float dtypes are written in their own encoding.
pub fn fill(lw: &mut Lw, y: &TRef, value: f64) -> Result<(), Error> {
    let numel = y.numel() as usize;
    let chunk = numel.clamp(1, 1 << 16);
    let t = match y.gdt {
        d if d.is_float() => Tensor::from_f64(d, vec![chunk], vec![value; chunk]),
        d if d.is_int() => Tensor::from_i64(d, vec![chunk], vec![value as i64; chunk]),
        DType::Bool => Tensor::from_bool(vec![chunk], vec![value != 0.0; chunk]),
        d => return Err(unsup("Pad", format!("dtype {d}"))),
    };
    let c = lw.weight(&format!("fill.{}", lw.p.bufs.len()), &t)?;
    lw.p.phase();
    let full = numel / chunk;
    copy_nd(
        &mut lw.p,
        &c,
        &View {
            off: 0,
            strides: vec![0, 1],
        },
        y,
        &View {
            off: 0,
            strides: vec![chunk as i64, 1],
        },
        &[full, chunk],
    )?;
    let rest = numel - full * chunk;
    if rest > 0 {
        copy_nd(
            &mut lw.p,
            &c,
            &View {
                off: 0,
                strides: vec![1],
            },
            y,
            &View {
                off: (full * chunk) as i64,
                strides: vec![1],
            },
            &[rest],
        )?;
    }
    Ok(())
}
