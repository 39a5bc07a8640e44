//! CausalConvWithState as a depthwise Conv over [past_state ++ input]
//! along time; the present state is the last k-1 steps of that
//! concatenation. As in the reference, the conv result is rounded to the
//! dtype and SiLU is applied in f32.

use super::Builder;
use super::steps::{Out, cast, concat, mul, slice, string_attr};
use smelt_ir::{Attr, DType, Node, Op};

pub fn lookup(op: Op) -> Option<super::Expansion> {
    match op {
        Op::CausalConvWithState => Some(causal_conv),
        _ => None,
    }
}

fn causal_conv(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(w)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(xs), Some(ws)) = (b.shape(x), b.shape(w)) else {
        return Ok(None);
    };
    let dt = b.dtype(x);
    let (&[bs, c, l], &[wc, 1, k]) = (&xs[..], &ws[..]) else {
        return Ok(None);
    };
    if wc != c || k == 0 || !dt.is_float() {
        return Ok(None);
    }
    let silu = match string_attr(n, "activation", "none").as_str() {
        "none" => false,
        "silu" | "swish" => true,
        _ => return Ok(None),
    };
    let bias = Builder::input(n, 2);
    if let Some(bv) = bias
        && b.shape(bv).map(|s| s.iter().product::<usize>()) != Some(c)
    {
        return Ok(None);
    }
    let past = match Builder::input(n, 3) {
        Some(p) if b.shape(p) == Some(vec![bs, c, k - 1]) => Some(p),
        Some(_) => return Ok(None),
        None if k > 1 => {
            let z = vec![0.0; bs * c * (k - 1)];
            Some(b.const_f(dt, &[bs, c, k - 1], z)?)
        }
        None => None,
    };
    let padded = match past {
        Some(p) => concat(b, &[p, x], 2)?,
        None => x,
    };
    let mut ins = vec![Some(padded), Some(w)];
    if let Some(bv) = bias {
        ins.push(Some(super::steps::reshape(b, bv, &[c])?));
    }
    let conv = b.node(
        Op::Conv,
        &ins,
        &[
            ("group", Attr::Int(c as i64)),
            ("kernel_shape", Attr::Ints(vec![k as i64])),
        ],
    )?;
    let mut y = *conv.first().ok_or("Conv has no output")?;
    if silu {
        let f = cast(b, y, DType::F32)?;
        let s = b.op(Op::Sigmoid, &[f], &[])?;
        let m = mul(b, f, s)?;
        y = cast(b, m, dt)?;
    }
    let state = if k > 1 {
        let pl = (l + k - 1) as i64;
        slice(b, padded, &[2], &[pl - (k as i64 - 1)], &[pl])?
    } else {
        b.const_f(dt, &[bs, c, 0], Vec::new())?
    };
    Ok(Some(vec![Some(y), Some(state)]))
}
