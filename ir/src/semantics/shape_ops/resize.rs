//! Resize: separable interpolation, one axis at a time in f64, rounded to
//! the input dtype once at the end (saturating, half-to-even for ints).

use super::super::{Ctx, OpResult, TypeInput, input, operand, unknown_dims};
use super::{InferOut, KernelOut, Pair, axis, checked_numel, has_in, tt};
use crate::interp::Tensor;
use crate::{DClass, DType, Dim, Op, op_bail};

pub(super) fn lookup(op: Op) -> Option<Pair> {
    match op {
        Op::Resize => Some((infer_resize, k_resize)),
        _ => None,
    }
}

/// Per-dim scale factor and output size for every dim of the input.
struct Plan {
    scales: Vec<f64>,
    sizes: Vec<usize>,
    axes: Vec<usize>,
}

fn resize_axes(ctx: &Ctx, rank: usize) -> OpResult<Vec<usize>> {
    match ctx.ints("axes")? {
        None => Ok((0..rank).collect()),
        Some(a) => a.iter().map(|&x| axis(x, rank)).collect(),
    }
}

fn plan(
    ctx: &Ctx,
    in_shape: &[usize],
    scales: Option<Vec<f64>>,
    sizes: Option<Vec<i64>>,
) -> OpResult<Plan> {
    let r = in_shape.len();
    let axes = resize_axes(ctx, r)?;
    let mut sc = vec![1.0; r];
    let mut sz = in_shape.to_vec();
    match (scales, sizes) {
        (_, Some(s)) if !s.is_empty() => {
            if s.len() != axes.len() {
                op_bail!("Resize: {} sizes for {} axes", s.len(), axes.len());
            }
            for (&a, &v) in axes.iter().zip(&s) {
                if v < 0 {
                    op_bail!("Resize: negative size {v}");
                }
                sz[a] = v as usize;
                sc[a] = v as f64 / in_shape[a] as f64;
            }
            let policy = ctx.string("keep_aspect_ratio_policy", "stretch")?;
            if policy != "stretch" {
                let it = axes.iter().map(|&a| sc[a]);
                let s = match policy.as_str() {
                    "not_larger" => it.fold(f64::INFINITY, f64::min),
                    "not_smaller" => it.fold(f64::NEG_INFINITY, f64::max),
                    p => op_bail!("Resize: unknown keep_aspect_ratio_policy {p}"),
                };
                for &a in &axes {
                    sc[a] = s;
                    sz[a] = (s * in_shape[a] as f64 + 0.5) as usize;
                }
            }
        }
        (Some(s), _) if !s.is_empty() => {
            if s.len() != axes.len() {
                op_bail!("Resize: {} scales for {} axes", s.len(), axes.len());
            }
            for (&a, &v) in axes.iter().zip(&s) {
                if v.is_nan() || v <= 0.0 || !v.is_finite() {
                    op_bail!("Resize: scale {v} must be positive");
                }
                sc[a] = v;
                sz[a] = (v * in_shape[a] as f64) as usize;
            }
        }
        _ => op_bail!("Resize needs scales or sizes"),
    }
    checked_numel(&sz)?;
    Ok(Plan {
        scales: sc,
        sizes: sz,
        axes,
    })
}

fn opt_floats(t: Option<&Tensor>) -> Option<Vec<f64>> {
    t.and_then(Tensor::to_f64_vec)
}

fn infer_resize(ctx: &Ctx, ins: &[Option<TypeInput>]) -> InferOut {
    let x = input(ins, 0)?;
    let dt = x.ty.dtype;
    let Some(d) = x.ty.shape.dims() else {
        return Ok(vec![unknown_dims(dt, None)]);
    };
    let val = |i: usize| ins.get(i).and_then(|t| t.as_ref()).and_then(|t| t.value);
    let known = |i: usize| !has_in(ins, i) || val(i).is_some();
    if let (Some(in_shape), true, true) = (x.ty.shape.as_static(), known(2), known(3)) {
        let sizes = val(3).and_then(Tensor::to_i64_vec);
        let p = plan(ctx, &in_shape, opt_floats(val(2)), sizes)?;
        let mut out: Vec<Dim> = d.to_vec();
        for &a in &p.axes {
            out[a] = Dim::Static(p.sizes[a] as u64);
        }
        return Ok(vec![tt(dt, out)]);
    }
    // Dims outside `axes` keep their size.
    let axes = resize_axes(ctx, d.len())?;
    let out = d
        .iter()
        .enumerate()
        .map(|(i, x)| {
            if axes.contains(&i) {
                Dim::Unknown
            } else {
                x.clone()
            }
        })
        .collect();
    Ok(vec![tt(dt, out)])
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

struct Opts {
    mode: Mode,
    coord: String,
    nearest: String,
    a: f64,
    exclude_outside: bool,
    antialias: bool,
    extrapolation: f64,
}

/// Interpolation weights around a source coordinate with fractional part
/// `ratio` (1.0 when the coordinate is an integer, as the ONNX reference
/// treats it).
fn coeffs(o: &Opts, ratio: f64, scale: f64) -> Vec<f64> {
    match o.mode {
        Mode::Nearest => {
            if ratio == 1.0 || ratio == 0.0 {
                return vec![0.0, 1.0];
            }
            let up = match o.nearest.as_str() {
                "round_prefer_ceil" => ratio >= 0.5,
                "floor" => false,
                "ceil" => true,
                _ => ratio > 0.5,
            };
            vec![f64::from(u8::from(!up)), f64::from(u8::from(up))]
        }
        Mode::Linear if o.antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let n = 2 - 2 * start;
            let c: Vec<f64> = (start..start + n)
                .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                .collect();
            normalize(c)
        }
        Mode::Linear => vec![1.0 - ratio, ratio],
        Mode::Cubic if o.antialias => {
            let s = scale.min(1.0);
            let a = o.a;
            let w = |x: f64| {
                let x = x.abs();
                if x <= 1.0 {
                    (a + 2.0) * x.powi(3) - (a + 3.0) * x * x + 1.0
                } else if x < 2.0 {
                    a * x.powi(3) - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / s).floor() as i64 + 1;
            let end = 2 - start;
            normalize((start..end).map(|i| w(s * (i as f64 - ratio))).collect())
        }
        Mode::Cubic => {
            let a = o.a;
            let (r, q) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
                ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
            ]
        }
    }
}

fn normalize(c: Vec<f64>) -> Vec<f64> {
    let s: f64 = c.iter().sum();
    if s == 0.0 {
        return c;
    }
    c.into_iter().map(|x| x / s).collect()
}

/// Source coordinate of output index `y` along one axis; `None` when it
/// falls outside the crop box (tf_crop_and_resize extrapolation).
fn source_coord(
    o: &Opts,
    y: f64,
    scale: f64,
    w_in: usize,
    w_out: usize,
    roi: (f64, f64),
) -> OpResult<Option<f64>> {
    let wi = w_in as f64;
    let wo = scale * wi;
    Ok(Some(match o.coord.as_str() {
        "align_corners" => {
            if wo == 1.0 {
                0.0
            } else {
                y * (wi - 1.0) / (wo - 1.0)
            }
        }
        "asymmetric" => y / scale,
        "tf_crop_and_resize" => {
            let x = if wo == 1.0 {
                (roi.1 - roi.0) * (wi - 1.0) / 2.0
            } else {
                y * (roi.1 - roi.0) * (wi - 1.0) / (wo - 1.0)
            } + roi.0 * (wi - 1.0);
            if x < 0.0 || x > wi - 1.0 {
                return Ok(None);
            }
            x
        }
        "pytorch_half_pixel" => {
            if wo == 1.0 {
                -0.5
            } else {
                (y + 0.5) / scale - 0.5
            }
        }
        "half_pixel" => (y + 0.5) / scale - 0.5,
        "half_pixel_symmetric" => {
            let adjustment = w_out as f64 / wo;
            let offset = wi / 2.0 * (1.0 - adjustment);
            offset + (y + 0.5) / scale - 0.5
        }
        m => op_bail!("Resize: unknown coordinate_transformation_mode {m}"),
    }))
}

/// The taps of one resampled axis: per output index, the (source index,
/// weight) pairs it sums (source indices clamped into the axis, zero
/// weights dropped), or `None` where the output is the extrapolation value
/// (outside tf_crop_and_resize's crop box).
pub type Taps = Vec<Option<Vec<(usize, f64)>>>;

/// How Resize computes its output: the axes it resamples, in order, each
/// with its taps; every other axis is copied.
pub struct ResizePlan {
    pub steps: Vec<(usize, Taps)>,
    pub out_shape: Vec<usize>,
    pub extrapolation: f64,
}

fn axis_taps(o: &Opts, w_in: usize, w_out: usize, scale: f64, roi: (f64, f64)) -> OpResult<Taps> {
    let mut taps: Taps = Vec::with_capacity(w_out);
    for y in 0..w_out {
        let Some(x) = source_coord(o, y as f64, scale, w_in, w_out, roi)? else {
            taps.push(None);
            continue;
        };
        if w_in == 0 {
            op_bail!("Resize: cannot resize an empty dim to {w_out}");
        }
        let fl = x.floor();
        let ratio = if x == fl { 1.0 } else { x - fl };
        let mut c = coeffs(o, ratio, scale);
        let n = c.len() as i64;
        let pad = (n + 1) / 2;
        let xp = x + pad as f64;
        let p = xp.floor();
        let frac = xp - p;
        let off = if n % 2 == 0 {
            if frac == 0.0 { -(n / 2) } else { -(n / 2) + 1 }
        } else {
            let base = -((n - 1) / 2);
            if frac <= 0.5 { base } else { base + 1 }
        };
        let start = p as i64 + off - pad;
        let idx: Vec<i64> = (start..start + n).collect();
        if o.exclude_outside {
            for (k, &i) in idx.iter().enumerate() {
                if i < 0 || i >= w_in as i64 {
                    c[k] = 0.0;
                }
            }
            c = normalize(c);
        }
        taps.push(Some(
            idx.iter()
                .zip(&c)
                .filter(|&(_, &w)| w != 0.0)
                .map(|(&i, &w)| (i.clamp(0, w_in as i64 - 1) as usize, w))
                .collect(),
        ));
    }
    Ok(taps)
}

/// Applies one axis' taps to `data` (shape `shape`, resampled along `a`).
fn apply_taps(
    data: &[f64],
    shape: &mut [usize],
    a: usize,
    taps: &Taps,
    extrapolation: f64,
) -> Vec<f64> {
    let (w_in, w_out) = (shape[a], taps.len());
    let outer: usize = shape[..a].iter().product();
    let inner: usize = shape[a + 1..].iter().product();
    let mut out = vec![0.0; outer * w_out * inner];
    for ob in 0..outer {
        for (y, t) in taps.iter().enumerate() {
            for i in 0..inner {
                out[(ob * w_out + y) * inner + i] = match t {
                    None => extrapolation,
                    Some(t) => t
                        .iter()
                        .map(|&(j, w)| w * data[(ob * w_in + j) * inner + i])
                        .sum(),
                };
            }
        }
    }
    shape[a] = w_out;
    out
}

/// The plan of a Resize node (`ctx`) on an input of shape `in_shape`,
/// given the values of its roi, scales and sizes inputs.
pub fn resize_plan(
    ctx: &Ctx,
    in_shape: &[usize],
    roi: Option<Vec<f64>>,
    scales: Option<Vec<f64>>,
    sizes: Option<Vec<i64>>,
) -> OpResult<ResizePlan> {
    let p = plan(ctx, in_shape, scales, sizes)?;
    let mode = match ctx.string("mode", "nearest")?.as_str() {
        "nearest" => Mode::Nearest,
        "linear" => Mode::Linear,
        "cubic" => Mode::Cubic,
        m => op_bail!("Resize: unknown mode {m}"),
    };
    let o = Opts {
        mode,
        coord: ctx.string("coordinate_transformation_mode", "half_pixel")?,
        nearest: ctx.string("nearest_mode", "round_prefer_floor")?,
        a: ctx.float("cubic_coeff_a", -0.75)? as f64,
        exclude_outside: ctx.int("exclude_outside", 0)? != 0,
        antialias: ctx.int("antialias", 0)? != 0 && mode != Mode::Nearest,
        extrapolation: ctx.float("extrapolation_value", 0.0)? as f64,
    };
    let r = in_shape.len();
    // ROI as (start, end) per dim, in normalized coordinates.
    let mut rois = vec![(0.0, 1.0); r];
    if let Some(v) = roi.filter(|v| !v.is_empty()) {
        let n = p.axes.len();
        if v.len() != 2 * n {
            op_bail!("Resize: roi has {} values for {n} axes", v.len());
        }
        for (k, &a) in p.axes.iter().enumerate() {
            rois[a] = (v[k], v[n + k]);
        }
    }
    let mut steps = Vec::new();
    for &a in &p.axes {
        let trivial_roi = (rois[a].0).abs() < 1e-9 && (rois[a].1 - 1.0).abs() < 1e-9;
        if (p.scales[a] - 1.0).abs() < 1e-9 && p.sizes[a] == in_shape[a] && trivial_roi {
            continue;
        }
        let taps = axis_taps(&o, in_shape[a], p.sizes[a], p.scales[a], rois[a])?;
        steps.push((a, taps));
    }
    Ok(ResizePlan {
        steps,
        out_shape: p.sizes,
        extrapolation: o.extrapolation,
    })
}

fn k_resize(ctx: &Ctx, ins: &[Option<&Tensor>]) -> KernelOut {
    let x = operand(ins, 0)?;
    let Some(data) = x.to_f64_vec() else {
        op_bail!("Resize: input must be numeric");
    };
    let get = |i: usize| ins.get(i).copied().flatten();
    let p = resize_plan(
        ctx,
        &x.shape,
        opt_floats(get(1)),
        opt_floats(get(2)),
        get(3).and_then(Tensor::to_i64_vec),
    )?;
    let mut shape = x.shape.clone();
    let mut cur = data;
    for (a, taps) in &p.steps {
        cur = apply_taps(&cur, &mut shape, *a, taps, p.extrapolation);
    }
    Ok(vec![cast_back(x.dtype, shape, cur)?])
}

/// Rounds f64 results to `dt` the way the reference's saturating cast does.
fn cast_back(dt: DType, shape: Vec<usize>, v: Vec<f64>) -> OpResult<Tensor> {
    Ok(match dt.class() {
        DClass::Float => Tensor::from_f64(dt, shape, v),
        DClass::Signed => {
            let (lo, hi) = int_range(dt);
            Tensor::from_i64(
                dt,
                shape,
                v.iter()
                    .map(|&x| x.round_ties_even().clamp(lo, hi) as i64)
                    .collect(),
            )
        }
        DClass::Unsigned => {
            let (_, hi) = int_range(dt);
            Tensor::from_u64(
                dt,
                shape,
                v.iter()
                    .map(|&x| x.round_ties_even().clamp(0.0, hi) as u64)
                    .collect(),
            )
        }
        _ => op_bail!("Resize is not defined for {dt}"),
    })
}

fn int_range(dt: DType) -> (f64, f64) {
    let b = dt.bits() as i32;
    match dt.class() {
        DClass::Signed => (-(2f64.powi(b - 1)), 2f64.powi(b - 1) - 1.0),
        _ => (0.0, 2f64.powi(b) - 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::{Attr, Op};

    fn resize(attrs: &[(&str, Attr)], x: &crate::interp::Tensor, scales: &[f64]) -> Vec<f64> {
        let s = f32t(&[scales.len()], scales);
        fvals(&run(Op::Resize, attrs, &[Some(x), None, Some(&s)]))
    }

    #[test]
    fn nearest_and_linear() {
        let x = f32t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        // ONNX test_resize_upsample_scales_nearest, first row:
        // [[1,1,1,2,2,2],[1,1,1,2,2,2],[3,3,3,4,4,4],...] for scales [1,1,2,3]
        let y = resize(&[], &x, &[1., 1., 2., 3.]);
        assert_eq!(&y[..6], &[1., 1., 1., 2., 2., 2.]);
        assert_eq!(&y[12..18], &[3., 3., 3., 4., 4., 4.]);
        // ONNX test_resize_upsample_scales_linear (half_pixel), first row:
        // [1, 1.25, 1.75, 2]
        let y = resize(
            &[("mode", Attr::String("linear".into()))],
            &x,
            &[1., 1., 2., 2.],
        );
        assert_eq!(&y[..4], &[1., 1.25, 1.75, 2.]);
        // align_corners first row: [1, 4/3, 5/3, 2]
        let y = resize(
            &[
                ("mode", Attr::String("linear".into())),
                (
                    "coordinate_transformation_mode",
                    Attr::String("align_corners".into()),
                ),
            ],
            &x,
            &[1., 1., 2., 2.],
        );
        let want = fvals(&f32t(&[4], &[1., 4. / 3., 5. / 3., 2.]));
        assert_eq!(&y[..4], &want[..]);
    }

    #[test]
    fn cubic_downsample() {
        // ONNX test_resize_downsample_scales_cubic: 4x4 arange(1..17), scales
        // 0.8 -> 3x3, expected first row [1.47119141, 2.78125, 4.08251953]
        let x = f32t(&[1, 1, 4, 4], &(1..=16).map(f64::from).collect::<Vec<_>>());
        let y = resize(
            &[("mode", Attr::String("cubic".into()))],
            &x,
            &[1., 1., 0.8, 0.8],
        );
        for (a, b) in y[..3].iter().zip([1.471_191_41, 2.781_25, 4.082_519_53]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
