//! GridSample as arithmetic and gathers computed on the chip: the grid is a
//! run-time input, so source coordinates, taps and weights are computed
//! from it (Floor, Where, Clip, ...), each tap's index is resolved through
//! a constant table per spatial axis (border clamping, reflection and
//! zero padding are all a table: padding decides which source element, if
//! any, an integer coordinate reads), and the samples are GatherElements
//! on the flattened input, weighted and summed.

use super::{Builder, Expansion};
use smelt_ir::{Attr, DType, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::GridSample => Some(grid_sample),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;
type R = Result<ValueId, String>;

#[derive(Clone, Copy, PartialEq)]
enum Pad {
    Zeros,
    Border,
    Reflection,
}

/// How far (in whole elements) a tap index is clipped outside an axis
/// before its table lookup: every index that far out reads nothing
/// (zeros) or the same element as the clip bound would.
const MARGIN: i64 = 6;

/// TensorProto.INT32, BitCast's `to` for indices.
const ONNX_INT32: i64 = 6;

/// `x` reflected into `[lo, hi]` (ONNX GridSample's reflection padding).
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let span = hi - lo;
    if span <= 0.0 {
        return lo;
    }
    if (lo..=hi).contains(&x) {
        return x;
    }
    let (dist, from_lo) = if x < lo {
        (lo - x, true)
    } else {
        (x - hi, false)
    };
    let flips = (dist / span).floor();
    let rest = dist - flips * span;
    if from_lo == (flips as i64 % 2 == 0) {
        lo + rest
    } else {
        hi - rest
    }
}

struct Axis {
    len: usize,
    stride: usize,
    /// Coordinate range inside the input (pixel centers or edges).
    lo: f64,
    hi: f64,
}

fn grid_sample(b: &mut Builder, n: &Node) -> Out {
    let (Some(x), Some(grid)) = (Builder::input(n, 0), Builder::input(n, 1)) else {
        return Ok(None);
    };
    let (Some(xs), Some(gs)) = (b.shape(x), b.shape(grid)) else {
        return Ok(None);
    };
    let d = b.dtype(x);
    if d != DType::F32 || b.dtype(grid) != DType::F32 {
        return Ok(None);
    }
    let r = xs.len();
    if r < 3 || gs.len() != r || gs[0] != xs[0] || gs[r - 1] != r - 2 {
        return Ok(None);
    }
    let sp = r - 2;
    let align = matches!(n.attr("align_corners"), Some(Attr::Int(a)) if *a != 0);
    let str_attr = |k: &str, dflt: &str| match n.attr(k) {
        Some(Attr::String(s)) => s.clone(),
        _ => dflt.to_string(),
    };
    let pad = match str_attr("padding_mode", "zeros").as_str() {
        "zeros" => Pad::Zeros,
        "border" => Pad::Border,
        "reflection" => Pad::Reflection,
        _ => return Ok(None),
    };
    let taps: usize = match str_attr("mode", "linear").as_str() {
        "nearest" => 1,
        "linear" | "bilinear" => 2,
        "cubic" | "bicubic" => 4,
        _ => return Ok(None),
    };
    let (nb, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let plane: usize = dims.iter().product();
    let q: usize = gs[1..r - 1].iter().product();
    let mut stride = plane;
    let axes: Vec<Axis> = dims
        .iter()
        .map(|&len| {
            stride /= len.max(1);
            let (lo, hi) = if align {
                (0.0, len as f64 - 1.0)
            } else {
                (-0.5, len as f64 - 0.5)
            };
            Axis {
                len,
                stride,
                lo,
                hi,
            }
        })
        .collect();
    if plane == 0 || q == 0 || c == 0 {
        return Ok(None);
    }
    // The grid as [N, Q, sp]; its last axis lists x (innermost) first.
    let g = reshape(b, grid, &[nb, q, sp])?;
    // Per spatial axis: per tap, the flat offset it adds and its weight.
    let mut per_axis: Vec<Vec<(ValueId, ValueId)>> = Vec::with_capacity(sp);
    for (k, ax) in axes.iter().enumerate() {
        let pick = b.const_i64(&[], vec![(sp - 1 - k) as i64])?;
        let gk = b.op(Op::Gather, &[g, pick], &[("axis", Attr::Int(2))])?;
        per_axis.push(axis_taps(b, gk, ax, pad, align, taps)?);
    }
    // X as [N, C, P]; every tap gathers [N, C, Q] at its offsets.
    let xf = reshape(b, x, &[nb, c, plane])?;
    let mut acc: Option<ValueId> = None;
    let total = taps.pow(sp as u32);
    for t in 0..total {
        let mut rest = t;
        let mut off: Option<ValueId> = None;
        let mut w: Option<ValueId> = None;
        for tk in per_axis.iter().rev() {
            let (o, wt) = tk[rest % taps];
            rest /= taps;
            off = Some(match off {
                None => o,
                Some(s) => b.op(Op::Add, &[s, o], &[])?,
            });
            w = Some(match w {
                None => wt,
                Some(s) => b.op(Op::Mul, &[s, wt], &[])?,
            });
        }
        let (Some(off), Some(w)) = (off, w) else {
            return Ok(None);
        };
        let off = reshape(b, off, &[nb, 1, q])?;
        let shape = b.const_i64(&[3], vec![nb as i64, c as i64, q as i64])?;
        let idx = b.op(Op::Expand, &[off, shape], &[])?;
        let s = b.op(Op::GatherElements, &[xf, idx], &[("axis", Attr::Int(2))])?;
        let w = reshape(b, w, &[nb, 1, q])?;
        let term = b.op(Op::Mul, &[s, w], &[])?;
        acc = Some(match acc {
            None => term,
            Some(a) => b.op(Op::Add, &[a, term], &[])?,
        });
    }
    let Some(acc) = acc else {
        return Ok(None);
    };
    let mut out = vec![nb, c];
    out.extend_from_slice(&gs[1..r - 1]);
    Ok(Some(vec![Some(reshape(b, acc, &out)?)]))
}

fn reshape(b: &mut Builder, v: ValueId, shape: &[usize]) -> R {
    let s = b.const_i64(&[shape.len()], shape.iter().map(|&d| d as i64).collect())?;
    b.op(Op::Reshape, &[v, s], &[])
}

fn scalar(b: &mut Builder, x: f64) -> R {
    b.scalar(DType::F32, x)
}

fn bin(b: &mut Builder, op: Op, a: ValueId, c: ValueId) -> R {
    b.op(op, &[a, c], &[])
}

/// `v` with `f(v)` where `v` is outside `[lo, hi]`.
fn outside(b: &mut Builder, v: ValueId, lo: f64, hi: f64) -> R {
    let (l, h) = (scalar(b, lo)?, scalar(b, hi)?);
    let below = bin(b, Op::Less, v, l)?;
    let above = bin(b, Op::Greater, v, h)?;
    bin(b, Op::Or, below, above)
}

/// `x - 2·floor(x/2)` of an integer-valued `x`: 1 where odd.
fn odd(b: &mut Builder, x: ValueId) -> R {
    let half = scalar(b, 0.5)?;
    let h = bin(b, Op::Mul, x, half)?;
    let f = b.op(Op::Floor, &[h], &[])?;
    let two = scalar(b, 2.0)?;
    let f2 = bin(b, Op::Mul, f, two)?;
    bin(b, Op::Sub, x, f2)
}

/// Rounds half to even, as the reference's nearest mode does.
fn round_even(b: &mut Builder, v: ValueId) -> R {
    let f = b.op(Op::Floor, &[v], &[])?;
    let frac = bin(b, Op::Sub, v, f)?;
    let half = scalar(b, 0.5)?;
    let one = scalar(b, 1.0)?;
    let up = bin(b, Op::Add, f, one)?;
    let o = odd(b, f)?;
    let tie = bin(b, Op::Add, f, o)?;
    let gt = bin(b, Op::Greater, frac, half)?;
    let lt = bin(b, Op::Less, frac, half)?;
    let mid = b.op(Op::Where, &[lt, f, tie], &[])?;
    b.op(Op::Where, &[gt, up, mid], &[])
}

/// Reflection of `v` into `[lo, hi]` where it is outside.
fn reflect_on_chip(b: &mut Builder, v: ValueId, lo: f64, hi: f64) -> R {
    let span = hi - lo;
    if span <= 0.0 {
        let l = scalar(b, lo)?;
        let zero = scalar(b, 0.0)?;
        let z = bin(b, Op::Mul, v, zero)?;
        return bin(b, Op::Add, z, l);
    }
    let (l, h) = (scalar(b, lo)?, scalar(b, hi)?);
    let below = bin(b, Op::Less, v, l)?;
    let dl = bin(b, Op::Sub, l, v)?;
    let dh = bin(b, Op::Sub, v, h)?;
    let dist = b.op(Op::Where, &[below, dl, dh], &[])?;
    let sp = scalar(b, span)?;
    let ratio = bin(b, Op::Div, dist, sp)?;
    let flips = b.op(Op::Floor, &[ratio], &[])?;
    let fs = bin(b, Op::Mul, flips, sp)?;
    let rest = bin(b, Op::Sub, dist, fs)?;
    let o = odd(b, flips)?;
    let zero = scalar(b, 0.0)?;
    let even = bin(b, Op::Equal, o, zero)?;
    let from_lo_side = bin(b, Op::Equal, below, even)?;
    let a = bin(b, Op::Add, l, rest)?;
    let c = bin(b, Op::Sub, h, rest)?;
    let refl = b.op(Op::Where, &[from_lo_side, a, c], &[])?;
    let out = outside(b, v, lo, hi)?;
    b.op(Op::Where, &[out, refl, v], &[])
}

/// A small non-negative integer-valued f32 tensor as i32 indices, without
/// a float-to-int conversion: adding 2^23 puts the integer in the low
/// mantissa bits (exactly, below 2^23), which a bit cast reads back.
fn to_index(b: &mut Builder, e: ValueId) -> R {
    let magic = scalar(b, 8_388_608.0)?;
    let m = bin(b, Op::Add, e, magic)?;
    let bits = b.op(Op::BitCast, &[m], &[("to", Attr::Int(ONNX_INT32))])?;
    // 0x4B000000: the bits of 2^23.
    let base = b.constant(&smelt_ir::interp::Tensor::from_i64(
        DType::I32,
        vec![],
        vec![0x4B00_0000],
    ))?;
    bin(b, Op::Sub, bits, base)
}

/// Cubic convolution weights (A = -0.75) of the four taps around a
/// coordinate with fractional part `t`.
fn cubic(b: &mut Builder, t: ValueId) -> Result<Vec<ValueId>, String> {
    let a = -0.75;
    let one = scalar(b, 1.0)?;
    let two = scalar(b, 2.0)?;
    // far(x) = ((a·x − 5a)·x + 8a)·x − 4a, near(x) = ((a+2)·x − (a+3))·x² + 1
    let far = |b: &mut Builder, x: ValueId| -> R {
        let (ca, c5, c8, c4) = (
            scalar(b, a)?,
            scalar(b, 5.0 * a)?,
            scalar(b, 8.0 * a)?,
            scalar(b, 4.0 * a)?,
        );
        let p = bin(b, Op::Mul, x, ca)?;
        let p = bin(b, Op::Sub, p, c5)?;
        let p = bin(b, Op::Mul, p, x)?;
        let p = bin(b, Op::Add, p, c8)?;
        let p = bin(b, Op::Mul, p, x)?;
        bin(b, Op::Sub, p, c4)
    };
    let near = |b: &mut Builder, x: ValueId| -> R {
        let (c2, c3, one) = (scalar(b, a + 2.0)?, scalar(b, a + 3.0)?, scalar(b, 1.0)?);
        let p = bin(b, Op::Mul, x, c2)?;
        let p = bin(b, Op::Sub, p, c3)?;
        let p = bin(b, Op::Mul, p, x)?;
        let p = bin(b, Op::Mul, p, x)?;
        bin(b, Op::Add, p, one)
    };
    let t1 = bin(b, Op::Add, t, one)?;
    let u = bin(b, Op::Sub, one, t)?;
    let u2 = bin(b, Op::Sub, two, t)?;
    Ok(vec![far(b, t1)?, near(b, t)?, near(b, u)?, far(b, u2)?])
}

/// The taps of one spatial axis: per tap, the flat offset it contributes
/// (i64, [N, Q]) and its weight (f32, [N, Q], zero for a tap that reads
/// padding).
fn axis_taps(
    b: &mut Builder,
    g: ValueId,
    ax: &Axis,
    pad: Pad,
    align: bool,
    taps: usize,
) -> Result<Vec<(ValueId, ValueId)>, String> {
    let len = ax.len as f64;
    // Normalized [-1, 1] to a pixel coordinate: g·a + c.
    let (a, c) = if align {
        ((len - 1.0) / 2.0, (len - 1.0) / 2.0)
    } else {
        (len / 2.0, (len - 1.0) / 2.0)
    };
    let (ca, cc) = (scalar(b, a)?, scalar(b, c)?);
    let mut v = bin(b, Op::Mul, g, ca)?;
    v = bin(b, Op::Add, v, cc)?;
    if taps == 1 {
        v = round_even(b, v)?;
    }
    v = match pad {
        Pad::Zeros => v,
        Pad::Border => {
            let out = outside(b, v, ax.lo, ax.hi)?;
            let (l, h) = (scalar(b, 0.0)?, scalar(b, len - 1.0)?);
            let cl = b.op(Op::Clip, &[v, l, h], &[])?;
            b.op(Op::Where, &[out, cl, v], &[])?
        }
        Pad::Reflection => reflect_on_chip(b, v, ax.lo, ax.hi)?,
    };
    let f = b.op(Op::Floor, &[v], &[])?;
    let weights: Vec<ValueId> = match taps {
        1 => vec![scalar(b, 1.0)?],
        2 => {
            let t = bin(b, Op::Sub, v, f)?;
            let one = scalar(b, 1.0)?;
            vec![bin(b, Op::Sub, one, t)?, t]
        }
        _ => {
            let t = bin(b, Op::Sub, v, f)?;
            cubic(b, t)?
        }
    };
    let first: i64 = if taps == 4 { -1 } else { 0 };
    // Clip the base so every tap index falls in the table's range.
    let lo_i = -MARGIN;
    let hi_i = ax.len as i64 + MARGIN;
    let (l, h) = (scalar(b, lo_i as f64)?, scalar(b, hi_i as f64)?);
    let fc = b.op(Op::Clip, &[f, l, h], &[])?;
    // Table entry e is integer coordinate lo_i - 1 + e (room for the
    // cubic tap before the base).
    let entries = (hi_i - lo_i + 4) as usize;
    let coord = |e: usize| lo_i - 1 + e as i64;
    let dlen = ax.len as i64;
    let resolve = |i: i64| -> Option<i64> {
        let j = match pad {
            Pad::Zeros => i,
            Pad::Border => i.clamp(0, dlen - 1),
            Pad::Reflection => reflect(i as f64, ax.lo, ax.hi).trunc() as i64,
        };
        (0..dlen).contains(&j).then_some(j)
    };
    let offs: Vec<i64> = (0..entries)
        .map(|e| resolve(coord(e)).map_or(0, |j| j * ax.stride as i64))
        .collect();
    let valid: Vec<f64> = (0..entries)
        .map(|e| f64::from(u8::from(resolve(coord(e)).is_some())))
        .collect();
    let offs = b.const_i64(&[entries], offs)?;
    let valid = b.const_f(DType::F32, &[entries], valid)?;
    let mut out = Vec::with_capacity(taps);
    for (j, w) in weights.into_iter().enumerate() {
        // Entry of coordinate base + first + j.
        let shift = scalar(b, (first + j as i64 - lo_i + 1) as f64)?;
        let e = bin(b, Op::Add, fc, shift)?;
        let e = to_index(b, e)?;
        let o = b.op(Op::Gather, &[offs, e], &[("axis", Attr::Int(0))])?;
        let ok = b.op(Op::Gather, &[valid, e], &[("axis", Attr::Int(0))])?;
        let w = bin(b, Op::Mul, w, ok)?;
        out.push((o, w));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{One, f32t, s};
    use smelt_ir::{Attr, Op};

    // Expected values: onnx.reference.ReferenceEvaluator (onnx 1.23.2,
    // opset 22) on x = arange(12).reshape(1, 1, 3, 4) and this grid.
    const GRID: [f64; 12] = [
        -1.3, -0.9, 0.25, 0.6, 1.4, 1.2, -0.1, 0.05, 0.8, -1.7, 2.6, 0.3,
    ];

    fn check(attrs: &[(&str, Attr)], want: &[f64], tol: f64) {
        let mut t = One::new();
        let x = t.input(
            "x",
            f32t(&[1, 1, 3, 4], &(0..12).map(f64::from).collect::<Vec<_>>()),
        );
        let g = t.input("grid", f32t(&[1, 2, 3, 2], &GRID));
        t.node(Op::GridSample, &[Some(x), Some(g)], attrs);
        t.check(want, tol);
    }

    #[test]
    fn bicubic_reflection() {
        let want = [
            -0.607_249_26,
            9.699_001,
            11.248_254,
            5.775_554_7,
            4.883_874_4,
            6.415_38,
        ];
        check(
            &[("mode", s("cubic")), ("padding_mode", s("reflection"))],
            &want,
            1e-4,
        );
    }

    #[test]
    fn nearest_border_align_corners() {
        let attrs = [
            ("mode", s("nearest")),
            ("padding_mode", s("border")),
            ("align_corners", Attr::Int(1)),
        ];
        check(&attrs, &[0., 10., 11., 5., 3., 7.], 0.0);
    }

    #[test]
    fn bilinear_zeros() {
        check(&[("mode", s("linear"))], &[0., 9.6, 0., 5.6, 0., 0.], 1e-5);
    }
}
