//! Resize (and Upsample, which the importer turns into Resize) as separable
//! resampling: with the input shape and the roi/scales/sizes known at
//! compile time, each resampled axis is a weighted sum of gathers along
//! that axis with constant indices and weights. The taps come from the
//! interpreter's own plan (`resize_plan`), so every mode, coordinate
//! transformation, antialias filter and aspect-ratio policy is the
//! reference's.

use super::{Builder, Expansion};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::Ctx;
use smelt_ir::semantics::shape_ops::{Taps, resize_plan};
use smelt_ir::{Attr, Node, Op, ValueId};

pub fn lookup(op: Op) -> Option<Expansion> {
    match op {
        Op::Resize => Some(resize),
        _ => None,
    }
}

type Out = Result<Option<Vec<Option<ValueId>>>, String>;

/// The value of optional input `i`: `Ok(None)` when absent, `Err(())` when
/// present but not known at compile time.
fn known_input(b: &mut Builder, n: &Node, i: usize) -> Result<Option<Tensor>, ()> {
    match Builder::input(n, i) {
        None => Ok(None),
        Some(v) => b.known(v).map(Some).ok_or(()),
    }
}

fn resize(b: &mut Builder, n: &Node) -> Out {
    let Some(x) = Builder::input(n, 0) else {
        return Ok(None);
    };
    let Some(shape) = b.shape(x) else {
        return Ok(None);
    };
    let (Ok(roi), Ok(scales), Ok(sizes)) = (
        known_input(b, n, 1),
        known_input(b, n, 2),
        known_input(b, n, 3),
    ) else {
        return Ok(None);
    };
    let plan = resize_plan(
        &Ctx::new(n),
        &shape,
        roi.and_then(|t| t.to_f64_vec()),
        scales.and_then(|t| t.to_f64_vec()),
        sizes.and_then(|t| t.to_i64_vec()),
    )
    .map_err(|e| e.0)?;
    let d = b.dtype(x);
    let copies_only = plan.steps.iter().all(|(_, t)| is_copy(t));
    // Integer resampling rounds one f64 sum at the end; only pure index
    // selection (nearest) is exact in the integer dtype itself.
    if !d.is_float() && !copies_only {
        return Ok(None);
    }
    let mut cur = x;
    for (a, taps) in &plan.steps {
        cur = resample(b, cur, *a, taps, plan.extrapolation)?;
    }
    Ok(Some(vec![Some(cur)]))
}

/// Every output index takes one source element with weight one.
fn is_copy(taps: &Taps) -> bool {
    taps.iter()
        .all(|t| matches!(t.as_deref(), Some([(_, w)]) if *w == 1.0))
}

/// `x` resampled along axis `a` by `taps`.
fn resample(
    b: &mut Builder,
    x: ValueId,
    a: usize,
    taps: &Taps,
    extrapolation: f64,
) -> Result<ValueId, String> {
    let rank = b
        .shape(x)
        .ok_or("Resize: the input shape is not static")?
        .len();
    let d = b.dtype(x);
    let w_out = taps.len();
    let n_taps = taps.iter().flatten().map(Vec::len).max().unwrap_or(0);
    // Weights broadcast along `a`: [w_out, 1, ..., 1].
    let mut wshape = vec![w_out];
    wshape.resize(rank - a, 1);
    let mut acc: Option<ValueId> = None;
    for k in 0..n_taps {
        let tap = |y: usize| taps[y].as_ref().and_then(|t| t.get(k)).copied();
        let idx: Vec<i64> = (0..w_out)
            .map(|y| tap(y).map_or(0, |(i, _)| i as i64))
            .collect();
        let w: Vec<f64> = (0..w_out).map(|y| tap(y).map_or(0.0, |(_, w)| w)).collect();
        let idx = b.const_i64(&[w_out], idx)?;
        let g = b.op(Op::Gather, &[x, idx], &[("axis", Attr::Int(a as i64))])?;
        let term = if w.iter().all(|&w| w == 1.0) {
            g
        } else {
            let wc = b.const_f(d, &wshape, w)?;
            b.op(Op::Mul, &[g, wc], &[])?
        };
        acc = Some(match acc {
            None => term,
            Some(s) => b.op(Op::Add, &[s, term], &[])?,
        });
    }
    let mut out = match acc {
        Some(v) => v,
        // Every output is outside the crop box.
        None => {
            let idx = b.const_i64(&[w_out], vec![0; w_out])?;
            b.op(Op::Gather, &[x, idx], &[("axis", Attr::Int(a as i64))])?
        }
    };
    if taps.iter().any(Option::is_none) {
        let inside: Vec<bool> = taps.iter().map(Option::is_some).collect();
        let mask = b.constant(&Tensor::from_bool(wshape.clone(), inside))?;
        let e = b.scalar(d, extrapolation)?;
        out = b.op(Op::Where, &[mask, out, e], &[])?;
    }
    if b.dtype(out) != d {
        return Err(format!("Resize: resampled to {} from {d}", b.dtype(out)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{One, f32t, i64t, s};
    use smelt_ir::{Attr, Op};

    fn x4() -> smelt_ir::interp::Tensor {
        f32t(&[1, 1, 4, 4], &(1..=16).map(f64::from).collect::<Vec<_>>())
    }

    // Expected values: onnx.reference.ReferenceEvaluator on the same node
    // and x = arange(1, 17).reshape(1, 1, 4, 4) (onnx 1.23.2).

    #[test]
    fn cubic_antialias_downsample() {
        let mut t = One::new();
        let x = t.input("x", x4());
        let sc = t.constant("scales", &f32t(&[4], &[1., 1., 0.6, 0.6]));
        t.node(
            Op::Resize,
            &[Some(x), None, Some(sc)],
            &[("mode", s("cubic")), ("antialias", Attr::Int(1))],
        );
        // The reference computes with the f32 scale in f32 arithmetic: 1e-4.
        t.check(&[2.518_069_5, 4.285_886, 9.589_335, 11.357_152], 1e-4);
    }

    #[test]
    fn crop_and_resize_extrapolates() {
        let mut t = One::new();
        let x = t.input("x", x4());
        let roi = t.constant("roi", &f32t(&[8], &[0., 0., 0.4, 0.6, 1., 1., 1.2, 1.7]));
        let sz = t.constant("sizes", &i64t(&[4], &[1, 1, 3, 3]));
        t.node(
            Op::Resize,
            &[Some(x), Some(roi), None, Some(sz)],
            &[
                ("mode", s("linear")),
                ("coordinate_transformation_mode", s("tf_crop_and_resize")),
                ("extrapolation_value", Attr::Float(10.0)),
            ],
        );
        let want = [7.6, 10., 10., 12.4, 10., 10., 10., 10., 10.];
        t.check(&want, 1e-5);
    }

    #[test]
    fn nearest_ceil_one_axis() {
        let mut t = One::new();
        let x = t.input("x", x4());
        let sz = t.constant("sizes", &i64t(&[1], &[3]));
        t.node(
            Op::Resize,
            &[Some(x), None, None, Some(sz)],
            &[
                ("coordinate_transformation_mode", s("asymmetric")),
                ("nearest_mode", s("ceil")),
                ("axes", Attr::Ints(vec![3])),
            ],
        );
        let want = [1., 3., 4., 5., 7., 8., 9., 11., 12., 13., 15., 16.];
        t.check(&want, 0.0);
    }
}
