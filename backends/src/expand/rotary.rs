//! RotaryEmbedding as slices, products and a concat: each pair (x1, x2) of
//! the rotated part of a head becomes (c·x1 − s·x2, s·x1 + c·x2) with the
//! cos/sin rows picked by position (a run-time Gather) or given per token.

use super::Builder;
use super::steps::{Out, add, concat, int_attr, mul, reshape, slice, sub};
use smelt_ir::{Attr, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<super::Expansion> {
    match op {
        Op::RotaryEmbedding => Some(rotary),
        _ => None,
    }
}

fn rotary(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(cos), Some(sin)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let pos = Builder::input(n, 3);
    let (Some(xs), Some(cs)) = (b.shape(x), b.shape(cos)) else {
        return Ok(None);
    };
    if !b.dtype(x).is_float() || b.shape(sin).as_ref() != Some(&cs) {
        return Ok(None);
    }
    // The working form: [b, h, s, d] for 4-D input, [b, s, h, d] for 3-D;
    // `cshape` is how cos/sin rows broadcast over it.
    let (bs, sq, d, work, cshape): (usize, usize, usize, Vec<usize>, Vec<usize>) = match xs[..] {
        [bb, _, s, d] => (bb, s, d, xs.clone(), vec![bb, 1, s]),
        [bb, s, hd] => {
            let nh = int_attr(n, "num_heads", 0);
            if nh < 1 || hd % nh as usize != 0 {
                return Ok(None);
            }
            let h = nh as usize;
            (bb, s, hd / h, vec![bb, s, h, hd / h], vec![bb, s, 1])
        }
        _ => return Ok(None),
    };
    let rd = match int_attr(n, "rotary_embedding_dim", 0) {
        0 => d,
        r if r > 0 && r as usize <= d && r % 2 == 0 => r as usize,
        _ => return Ok(None),
    };
    let half = rd / 2;
    if cs.last() != Some(&half) {
        return Ok(None);
    }
    let rows = |b: &mut Builder, t: ValueId| -> Result<Option<ValueId>, String> {
        let r = match pos {
            Some(p) => {
                if cs.len() != 2 || b.shape(p) != Some(vec![bs, sq]) {
                    return Ok(None);
                }
                b.op(Op::Gather, &[t, p], &[("axis", Attr::Int(0))])?
            }
            None => {
                if cs != [bs, sq, half] {
                    return Ok(None);
                }
                t
            }
        };
        let mut shape = cshape.clone();
        shape.push(half);
        Ok(Some(reshape(b, r, &shape)?))
    };
    let (Some(c), Some(s)) = (rows(b, cos)?, rows(b, sin)?) else {
        return Ok(None);
    };
    let xw = reshape(b, x, &work)?;
    let last = work.len() as i64 - 1;
    let (rot, pass) = if rd == d {
        (xw, None)
    } else {
        let r = slice(b, xw, &[last], &[0], &[rd as i64])?;
        let p = slice(b, xw, &[last], &[rd as i64], &[d as i64])?;
        (r, Some(p))
    };
    let interleaved = int_attr(n, "interleaved", 0) != 0;
    let mut pairs = work.clone();
    pairs.pop();
    let (x1, x2) = if interleaved {
        // [.., half, 2]: the pair members are the two columns.
        let mut sh = pairs.clone();
        sh.extend([half, 2]);
        let r = reshape(b, rot, &sh)?;
        let a = slice(b, r, &[last + 1], &[0], &[1])?;
        let bb = slice(b, r, &[last + 1], &[1], &[2])?;
        let mut flat = pairs.clone();
        flat.push(half);
        (reshape(b, a, &flat)?, reshape(b, bb, &flat)?)
    } else {
        let h = half as i64;
        (
            slice(b, rot, &[last], &[0], &[h])?,
            slice(b, rot, &[last], &[h], &[2 * h])?,
        )
    };
    let (cx1, sx2) = (mul(b, c, x1)?, mul(b, s, x2)?);
    let y1 = sub(b, cx1, sx2)?;
    let (sx1, cx2) = (mul(b, s, x1)?, mul(b, c, x2)?);
    let y2 = add(b, sx1, cx2)?;
    let rotated = if interleaved {
        let mut sh = pairs.clone();
        sh.extend([half, 1]);
        let (a, bb) = (reshape(b, y1, &sh)?, reshape(b, y2, &sh)?);
        let z = concat(b, &[a, bb], last + 1)?;
        let mut flat = pairs.clone();
        flat.push(rd);
        reshape(b, z, &flat)?
    } else {
        concat(b, &[y1, y2], last)?
    };
    let y = match pass {
        Some(p) => concat(b, &[rotated, p], last)?,
        None => rotated,
    };
    Ok(Some(vec![Some(reshape(b, y, &xs)?)]))
}
