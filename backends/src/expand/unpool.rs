//! Ops that write values at computed positions: MaxUnpool (each value to
//! its recorded flat index) and Col2Im (each column entry added into its
//! image position). Both become a ScatterElements into zeros — with the
//! Col2Im positions computed here from the constant geometry, and summed
//! in the op's own order (kernel offset, then block).

use super::steps::reshape;
use super::{Builder, Expansion};
use smelt_ir::{Attr, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::MaxUnpool => Some(max_unpool),
        Op::Col2Im => Some(col2im),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

fn ints(n: &Node, name: &str, len: usize, d: i64) -> Vec<i64> {
    match n.attr(name) {
        Some(Attr::Ints(v)) => v.clone(),
        _ => vec![d; len],
    }
}

fn zeros(b: &mut Builder, like: ValueId, shape: &[usize]) -> Result<ValueId, String> {
    let d = b.dtype(like);
    b.const_f(d, shape, vec![0.0; shape.iter().product()])
}

fn max_unpool(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(i)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(xs), Some(Some(y))) = (b.shape(x), n.outputs.first()) else {
        return Ok(None);
    };
    let Some(out) = b.shape(*y) else {
        return Ok(None);
    };
    if xs.len() < 3 || b.shape(i).as_ref() != Some(&xs) || !b.dtype(x).is_float() {
        return Ok(None);
    }
    // The indices address the shape the pooling geometry implies; a
    // larger output_shape holds that block at its origin.
    let s = xs.len() - 2;
    let (k, st, p) = (
        ints(n, "kernel_shape", s, 1),
        ints(n, "strides", s, 1),
        ints(n, "pads", 2 * s, 0),
    );
    if k.len() != s || st.len() != s || p.len() != 2 * s {
        return Ok(None);
    }
    let mut block = xs[..2].to_vec();
    for d in 0..s {
        let v = (xs[d + 2] as i64 - 1) * st[d] + k[d] - p[d] - p[s + d];
        if v < 1 {
            return Ok(None);
        }
        block.push(v as usize);
    }
    if out.len() != block.len() || out.iter().zip(&block).any(|(o, b)| o < b) {
        return Ok(None);
    }
    let numel: usize = xs.iter().product();
    let total: usize = block.iter().product();
    let xf = reshape(b, x, &[numel])?;
    let idx = reshape(b, i, &[numel])?;
    let idx = b.cast(idx, smelt_ir::DType::I64)?;
    let z = zeros(b, x, &[total])?;
    let flat = b.op(
        Op::ScatterElements,
        &[z, idx, xf],
        &[("axis", Attr::Int(0))],
    )?;
    let mut v = reshape(b, flat, &block)?;
    if out != block {
        let mut pads = vec![0i64; block.len()];
        pads.extend(out.iter().zip(&block).map(|(o, b)| (o - b) as i64));
        let pads = b.const_i64(&[pads.len()], pads)?;
        v = b.op(Op::Pad, &[v, pads], &[])?;
    }
    Ok(Some(vec![Some(v)]))
}

fn col2im(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(iv), Some(bv)) = (
        Builder::input(n, 0),
        Builder::input(n, 1),
        Builder::input(n, 2),
    ) else {
        return Ok(None);
    };
    let (Some(xs), Some(img), Some(blk)) = (b.shape(x), b.known(iv), b.known(bv)) else {
        return Ok(None);
    };
    let (Some(img), Some(blk)) = (img.to_i64_vec(), blk.to_i64_vec()) else {
        return Ok(None);
    };
    let s = img.len();
    if xs.len() != 3 || blk.len() != s || !b.dtype(x).is_float() {
        return Ok(None);
    }
    let (dil, st, pads) = (
        ints(n, "dilations", s, 1),
        ints(n, "strides", s, 1),
        ints(n, "pads", 2 * s, 0),
    );
    if dil.len() != s || st.len() != s || pads.len() != 2 * s {
        return Ok(None);
    }
    let k: i64 = blk.iter().product();
    let (batch, ck, l) = (xs[0], xs[1], xs[2]);
    if k <= 0 || ck % k as usize != 0 {
        return Ok(None);
    }
    let c = ck / k as usize;
    let mut blocks = Vec::with_capacity(s);
    for d in 0..s {
        let nb = (img[d] + pads[d] + pads[s + d] - (dil[d] * (blk[d] - 1) + 1)) / st[d] + 1;
        if nb < 1 {
            return Ok(None);
        }
        blocks.push(nb as usize);
    }
    if blocks.iter().product::<usize>() != l {
        return Ok(None);
    }
    // For entry (kernel offset, block) of a channel's rows: its image
    // position, or none when it falls in the padding.
    let (mut src, mut dst) = (Vec::new(), Vec::new());
    let unflat = |mut i: usize, dims: &[usize]| -> Vec<usize> {
        let mut v = vec![0; dims.len()];
        for d in (0..dims.len()).rev() {
            v[d] = i % dims[d];
            i /= dims[d];
        }
        v
    };
    let kdims: Vec<usize> = blk.iter().map(|&v| v as usize).collect();
    for kk in 0..k as usize {
        let ko = unflat(kk, &kdims);
        for li in 0..l {
            let bo = unflat(li, &blocks);
            let mut flat = 0i64;
            let mut inside = true;
            for d in 0..s {
                let p = bo[d] as i64 * st[d] - pads[d] + ko[d] as i64 * dil[d];
                if p < 0 || p >= img[d] {
                    inside = false;
                    break;
                }
                flat = flat * img[d] + p;
            }
            if inside {
                src.push((kk * l + li) as i64);
                dst.push(flat);
            }
        }
    }
    if src.is_empty() {
        return Ok(None);
    }
    let plane: i64 = img.iter().product();
    let v = src.len();
    let rows = batch * c;
    let xr = reshape(b, x, &[rows, k as usize * l])?;
    let si = b.const_i64(&[v], src)?;
    let picked = b.op(Op::Gather, &[xr, si], &[("axis", Attr::Int(1))])?;
    let di: Vec<i64> = (0..rows).flat_map(|_| dst.iter().copied()).collect();
    let di = b.const_i64(&[rows, v], di)?;
    let z = zeros(b, x, &[rows, plane as usize])?;
    let sum = b.op(
        Op::ScatterElements,
        &[z, di, picked],
        &[
            ("axis", Attr::Int(1)),
            ("reduction", Attr::String("add".into())),
        ],
    )?;
    let mut shape = vec![batch, c];
    shape.extend(img.iter().map(|&d| d as usize));
    Ok(Some(vec![Some(reshape(b, sum, &shape)?)]))
}
