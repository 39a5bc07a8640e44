//! Writes at run-time indices (ScatterElements, ScatterND with one index
//! component): the output starts as a copy of the data, then `dma.scatter`
//! commands write (or combine) the update rows where the indices say. The
//! DMA applies a command's rows in order, so repeated indices follow ONNX's
//! in-order semantics as long as updates that may meet stay in one command
//! (ScatterND) or target disjoint lines (ScatterElements).

use super::Error;
use super::elementwise::int_dt;
use super::lower::{Lw, TRef, unsup};
use super::movement::{copy_flat, strides};
use super::program::Lane;
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::{Dt, SRed};

fn index_dt(op: Op, t: &TRef) -> Result<Dt, Error> {
    match t.gdt {
        DType::I32 => Ok(Dt::I32),
        DType::I64 => Ok(Dt::I64),
        d => Err(unsup(op, format!("indices of dtype {d}"))),
    }
}

/// The combining mode, and the dtype the DMA combines elements of `t` in
/// with the element count per graph element (a replacing scatter moves
/// storage words as they are).
fn mode(n: &Node, t: &TRef) -> Result<(SRed, Dt, u64), Error> {
    let red = match n.attr("reduction") {
        None => SRed::None,
        Some(Attr::String(s)) => match s.as_str() {
            "none" => SRed::None,
            "add" => SRed::Add,
            "mul" => SRed::Mul,
            "max" => SRed::Max,
            "min" => SRed::Min,
            r => return Err(unsup(n.op, format!("reduction `{r}`"))),
        },
        Some(_) => return Err(Error::Graph(format!("{}: bad reduction", n.describe()))),
    };
    if red == SRed::None {
        return Ok((red, t.dt, t.mult));
    }
    let dt = match t.gdt {
        DType::F32 | DType::F16 | DType::BF16 => t.dt,
        // u64 lives in i64 lanes: only the modular combinations are exact.
        DType::U64 if matches!(red, SRed::Max | SRed::Min) => {
            return Err(unsup(n.op, format!("reduction {} on u64", red.name())));
        }
        d if d.is_int() => int_dt(d).ok_or_else(|| unsup(n.op, format!("dtype {d}")))?,
        d => return Err(unsup(n.op, format!("reduction {} on {d}", red.name()))),
    };
    Ok((red, dt, 1))
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    match n.op {
        Op::ScatterElements => scatter_elements(lw, n),
        _ => scatter_nd(lw, n),
    }
}

/// out[.., idx[.., j, ..], ..] = upd[.., j, ..] along the axis: one
/// scatter of single elements per line of the other axes (lines write
/// disjoint parts of the output, so they are dealt over the tiles).
fn scatter_elements(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let ix = lw.input(n, 1)?;
    let upd = lw.input(n, 2)?;
    let y = lw.output(n, 0)?;
    let r = x.shape.len();
    if ix.shape.len() != r || upd.shape != ix.shape {
        return Err(Error::Graph(format!(
            "{}: indices and updates must have the data's rank and one shape",
            n.describe()
        )));
    }
    let a = match n.attr("axis") {
        Some(Attr::Int(a)) => *a,
        _ => 0,
    };
    let ax = if a < 0 { a + r as i64 } else { a };
    if ax < 0 || ax as usize >= r {
        return Err(Error::Graph(format!("axis {a} out of range for rank {r}")));
    }
    let ax = ax as usize;
    let idt = index_dt(n.op, &ix)?;
    let (red, dt, per) = mode(n, &x)?;
    lw.p.phase();
    copy_flat(&mut lw.p, &x, &y)?;
    let (ys, us) = (strides(&y.shape), strides(&ix.shape));
    let lines: usize = (0..r).filter(|&k| k != ax).map(|k| ix.shape[k]).product();
    if lines > 1 << 16 {
        return Err(unsup(n.op, format!("{lines} index lines (one DMA each)")));
    }
    let tiles = lw.p.tiles() as u64;
    lw.p.phase();
    let mut pos = vec![0usize; r];
    for line in 0..lines {
        let (mut yo, mut uo) = (0u64, 0u64);
        for k in 0..r {
            yo += pos[k] as u64 * ys[k] as u64;
            uo += pos[k] as u64 * us[k] as u64;
        }
        let q = lw.p.dma_q((line as u64 % tiles) as u16, Lane::Load);
        lw.p.dma_scatter(
            q,
            upd.at(uo),
            y.at(yo),
            ix.at(uo),
            dt,
            idt,
            red,
            ix.shape[ax] as u64,
            per,
            [us[ax] as u64 * per, ys[ax] as u64 * per, us[ax] as u64],
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

/// ScatterND with indices [..., 1]: each index names a slab of the data
/// along its first axis; one scatter of whole slabs, in index order.
/// (Indices with more components are linearized first by the expansion
/// in `expand::scatter`.)
fn scatter_nd(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let ix = lw.input(n, 1)?;
    let upd = lw.input(n, 2)?;
    let y = lw.output(n, 0)?;
    if ix.shape.last() != Some(&1) || x.shape.is_empty() {
        return Err(unsup(
            n.op,
            "indices of more than one component (not linearized)",
        ));
    }
    let idt = index_dt(n.op, &ix)?;
    let (red, dt, per) = mode(n, &x)?;
    let rows = ix.numel();
    let slab = x.shape[1..].iter().product::<usize>() as u64;
    if upd.numel() != rows * slab {
        return Err(Error::Graph(format!(
            "{}: updates do not match the indexed slabs",
            n.describe()
        )));
    }
    lw.p.phase();
    copy_flat(&mut lw.p, &x, &y)?;
    lw.p.phase();
    let q = lw.p.dma_q(0, Lane::Load);
    let cols = slab * per;
    lw.p.dma_scatter(
        q,
        upd.at(0),
        y.at(0),
        ix.at(0),
        dt,
        idt,
        red,
        rows,
        cols,
        [cols, cols, 1],
        x.shape[0] as u64,
    )
}
