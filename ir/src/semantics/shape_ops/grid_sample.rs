//! GridSample (opset 22, N-D): samples X [N, C, D1..Dr] at the normalized
//! coordinates of grid [N, O1..Or, r] (last axis in x, y, z order, i.e. the
//! innermost spatial dim first). Interpolation is separable: linear and
//! cubic take 2 or 4 taps per dim, and each tap index is resolved against
//! the padding mode independently per dim (zeros: out of range reads 0).

use super::super::{Ctx, TypeInput, input, operand};
use super::{InferOut, KernelOut, Pair, checked_numel, tt};
use crate::interp::Tensor;
use crate::interp::tensor::{Storage, strides};
use crate::{DClass, Dim, Op, op_bail};

pub(super) fn lookup(op: Op) -> Option<Pair> {
    match op {
        Op::GridSample => Some((infer_grid, k_grid)),
        _ => None,
    }
}

fn infer_grid(_: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?.ty;
    let g = input(ins, 1)?.ty;
    let (Some(xd), Some(gd)) = (x.shape.dims(), g.shape.dims()) else {
        return Ok(vec![super::super::unknown_dims(x.dtype, x.shape.rank())]);
    };
    if xd.len() < 3 || gd.len() != xd.len() {
        op_bail!(
            "GridSample needs X of rank >= 3 and grid of the same rank, found {} and {}",
            xd.len(),
            gd.len()
        );
    }
    let mut out: Vec<Dim> = vec![xd[0].clone(), xd[1].clone()];
    out.extend(gd[1..gd.len() - 1].iter().cloned());
    Ok(vec![tt(x.dtype, out)])
}

#[derive(Clone, Copy, PartialEq)]
enum Pad {
    Zeros,
    Border,
    Reflection,
}

/// Folds `x` back into [lo, hi] by reflecting at the borders repeatedly.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if rng <= 0.0 {
        return lo;
    }
    let (dx, from_lo) = if x < lo {
        (lo - x, true)
    } else if x > hi {
        (x - hi, false)
    } else {
        return x;
    };
    let n = (dx / rng).trunc();
    let r = dx - n * rng;
    let even = (n as i64) % 2 == 0;
    match (from_lo, even) {
        (true, true) | (false, false) => lo + r,
        _ => hi - r,
    }
}

/// Keys' cubic convolution weights (alpha = -0.75) for taps at -1, 0, 1, 2
/// around a fractional offset `t` in [0, 1).
fn cubic_weights(t: f64) -> [f64; 4] {
    let a = -0.75;
    let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

fn k_grid(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let grid = operand(ins, 1)?;
    if x.dtype.class() != DClass::Float
        && !matches!(x.dtype.class(), DClass::Signed | DClass::Unsigned)
    {
        op_bail!("GridSample needs numeric X, found {}", x.dtype);
    }
    let r = x.rank();
    if r < 3 || grid.rank() != r {
        op_bail!("GridSample needs X of rank >= 3 and grid of the same rank");
    }
    let sp = r - 2;
    if grid.shape[0] != x.shape[0] || grid.shape[r - 1] != sp {
        op_bail!(
            "grid shape {:?} does not fit X shape {:?}",
            grid.shape,
            x.shape
        );
    }
    let align = ctx.int("align_corners", 0)? != 0;
    let mode = ctx.string("mode", "linear")?;
    let pad = match ctx.string("padding_mode", "zeros")?.as_str() {
        "zeros" => Pad::Zeros,
        "border" => Pad::Border,
        "reflection" => Pad::Reflection,
        p => op_bail!("unknown padding_mode `{p}`"),
    };
    // Older spellings of the modes are accepted as the same thing.
    let taps: usize = match mode.as_str() {
        "nearest" => 1,
        "linear" | "bilinear" => 2,
        "cubic" | "bicubic" => 4,
        m => op_bail!("unknown mode `{m}`"),
    };
    let xv = match x.to_f64_vec() {
        Some(v) => v,
        None => op_bail!("GridSample needs numeric X"),
    };
    let gv = match &grid.data {
        Storage::F(v) => v,
        _ => op_bail!("grid must be a float tensor, found {}", grid.dtype),
    };
    let (n, c) = (x.shape[0], x.shape[1]);
    let dims = &x.shape[2..];
    let xs = strides(dims);
    let plane: usize = dims.iter().product();
    let odims = &grid.shape[1..r - 1];
    let opts: usize = odims.iter().product();
    let mut oshape = vec![n, c];
    oshape.extend_from_slice(odims);
    let total = checked_numel(&oshape)?;
    let mut out = vec![0.0; total];
    // Sampling borders: pixel centres span [-0.5, d-0.5] unless corners
    // are aligned, when they span [0, d-1].
    let borders: Vec<(f64, f64)> = dims
        .iter()
        .map(|&d| {
            if align {
                (0.0, d as f64 - 1.0)
            } else {
                (-0.5, d as f64 - 0.5)
            }
        })
        .collect();
    // Resolves an integer tap index along dim k; None reads as 0.
    let resolve = |i: i64, k: usize| -> Option<usize> {
        let d = dims[k] as i64;
        let j = match pad {
            Pad::Zeros => i,
            Pad::Border => i.clamp(0, d - 1),
            Pad::Reflection => reflect(i as f64, borders[k].0, borders[k].1).trunc() as i64,
        };
        (j >= 0 && j < d).then_some(j as usize)
    };
    let n_taps = taps.pow(sp as u32);
    for b in 0..n {
        for p in 0..opts {
            let g = &gv[(b * opts + p) * sp..(b * opts + p + 1) * sp];
            // Per spatial dim: the tap indices and weights.
            let mut idx: Vec<Vec<i64>> = Vec::with_capacity(sp);
            let mut wts: Vec<Vec<f64>> = Vec::with_capacity(sp);
            for k in 0..sp {
                let nrm = g[sp - 1 - k];
                let len = dims[k] as f64;
                let mut v = if align {
                    (nrm + 1.0) / 2.0 * (len - 1.0)
                } else {
                    ((nrm + 1.0) * len - 1.0) / 2.0
                };
                // The reference keeps coordinates in f32.
                v = v as f32 as f64;
                if taps == 1 {
                    v = v.round_ties_even();
                }
                let (lo, hi) = borders[k];
                if v < lo || v > hi {
                    match pad {
                        Pad::Border => v = v.clamp(0.0, len - 1.0),
                        Pad::Reflection => v = reflect(v, lo, hi),
                        Pad::Zeros => {}
                    }
                }
                match taps {
                    1 => {
                        idx.push(vec![v.trunc() as i64]);
                        wts.push(vec![1.0]);
                    }
                    2 => {
                        let f = v.floor();
                        let t = v - f;
                        idx.push(vec![f as i64, f as i64 + 1]);
                        wts.push(vec![1.0 - t, t]);
                    }
                    _ => {
                        let f = v.floor();
                        let fi = f as i64;
                        idx.push(vec![fi - 1, fi, fi + 1, fi + 2]);
                        wts.push(cubic_weights(v - f).to_vec());
                    }
                }
            }
            for ch in 0..c {
                let base = (b * c + ch) * plane;
                let mut acc = 0.0;
                for t in 0..n_taps {
                    let mut rest = t;
                    let mut off = Some(0usize);
                    let mut w = 1.0;
                    for k in (0..sp).rev() {
                        let which = rest % taps;
                        rest /= taps;
                        w *= wts[k][which];
                        off = match (off, resolve(idx[k][which], k)) {
                            (Some(o), Some(j)) => Some(o + j * xs[k]),
                            _ => None,
                        };
                    }
                    if let Some(o) = off {
                        acc += w * xv[base + o];
                    }
                }
                out[(b * c + ch) * opts + p] = acc;
            }
        }
    }
    let y = match x.dtype.class() {
        DClass::Float => Tensor::from_f64(x.dtype, oshape, out),
        DClass::Unsigned => Tensor::from_u64(
            x.dtype,
            oshape,
            out.iter().map(|v| v.round().max(0.0) as u64).collect(),
        ),
        _ => Tensor::from_i64(
            x.dtype,
            oshape,
            out.iter().map(|v| v.round() as i64).collect(),
        ),
    };
    Ok(vec![y])
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    #[test]
    fn bilinear_identity_and_padding() {
        // 1x1x2x2 image; grid points at the four pixel centres (align_corners
        // = 0: normalized ±0.5) reproduce it; (-1,-1) with zeros padding is
        // the corner average 0.25*x[0,0] = 0.25 (only one tap in range).
        let x = f32t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let g = f32t(
            &[1, 1, 5, 2],
            &[-0.5, -0.5, 0.5, -0.5, -0.5, 0.5, 0.5, 0.5, -1., -1.],
        );
        let y = [run(Op::GridSample, &[], &[Some(&x), Some(&g)])];
        assert_eq!(y[0].shape, vec![1, 1, 1, 5]);
        assert_eq!(fvals(&y[0]), vec![1., 2., 3., 4., 0.25]);
        // Border padding clamps to the corner pixel instead.
        let y = [run(
            Op::GridSample,
            &[("padding_mode", Attr::String("border".into()))],
            &[Some(&x), Some(&g)],
        )];
        assert_eq!(fvals(&y[0]), vec![1., 2., 3., 4., 1.]);
        // Nearest with align_corners: (0.2, 0.9) -> col round(0.6)=1, row round(0.95)=1.
        let g = f32t(&[1, 1, 1, 2], &[0.2, 0.9]);
        let y = [run(
            Op::GridSample,
            &[
                ("mode", Attr::String("nearest".into())),
                ("align_corners", Attr::Int(1)),
            ],
            &[Some(&x), Some(&g)],
        )];
        assert_eq!(fvals(&y[0]), vec![4.]);
    }

    #[test]
    fn reflect_folds() {
        assert_eq!(super::reflect(-1.0, -0.5, 3.5), 0.0);
        assert_eq!(super::reflect(4.0, -0.5, 3.5), 3.0);
        assert_eq!(super::reflect(9.0, 0.0, 4.0), 1.0);
        // Cubic weights sum to one (partition of unity).
        let w = super::cubic_weights(0.3);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
