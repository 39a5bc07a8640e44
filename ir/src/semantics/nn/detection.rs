//! Detection ops: NonMaxSuppression, RoiAlign and (2-D) DeformConv.

use super::{check_float, fdata};
use crate::interp::Tensor;
use crate::semantics::{Ctx, InferFn, KernelFn, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = match op {
        Op::NonMaxSuppression => (infer_nms, k_nms),
        Op::RoiAlign => (infer_roi_align, k_roi_align),
        Op::DeformConv => (infer_deform, k_deform),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn opt<'a>(ins: &[Option<&'a Tensor>], i: usize) -> Option<&'a Tensor> {
    ins.get(i).copied().flatten()
}

fn first_value(t: Option<&Tensor>) -> Option<f64> {
    t.and_then(|t| t.to_f64_vec())
        .and_then(|v| v.first().copied())
}

fn infer_nms(_: &Ctx, _: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    Ok(vec![TensorType::new(
        DType::I64,
        Shape(Some(vec![Dim::Unknown, Dim::Static(3)])),
    )])
}

/// A box as (y1, x1, y2, x2) with the corners put in order.
fn corners(b: &[f64], center: bool) -> [f64; 4] {
    if center {
        let (xc, yc, w, h) = (b[0], b[1], b[2], b[3]);
        [yc - h / 2.0, xc - w / 2.0, yc + h / 2.0, xc + w / 2.0]
    } else {
        [
            b[0].min(b[2]),
            b[1].min(b[3]),
            b[0].max(b[2]),
            b[1].max(b[3]),
        ]
    }
}

/// Whether two boxes overlap by more than `th` (intersection over union).
fn suppresses(a: &[f64; 4], b: &[f64; 4], th: f64) -> bool {
    let ih = a[2].min(b[2]) - a[0].max(b[0]);
    let iw = a[3].min(b[3]) - a[1].max(b[1]);
    if ih <= 0.0 || iw <= 0.0 {
        return false;
    }
    let inter = ih * iw;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    if area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > th
}

/// Greedy NMS per (batch, class): visit boxes by descending score (ties by
/// lower index first), keep one unless it overlaps a kept box too much.
fn k_nms(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let boxes = operand(ins, 0)?;
    let scores = operand(ins, 1)?;
    if boxes.rank() != 3 || boxes.shape[2] != 4 || scores.rank() != 3 {
        op_bail!("NonMaxSuppression needs boxes [B, N, 4] and scores [B, C, N]");
    }
    let (nb, nbox) = (boxes.shape[0], boxes.shape[1]);
    let nc = scores.shape[1];
    if scores.shape[0] != nb || scores.shape[2] != nbox {
        op_bail!(
            "scores shape {:?} does not fit boxes shape {:?}",
            scores.shape,
            boxes.shape
        );
    }
    let center = ctx.int("center_point_box", 0)? != 0;
    let max_out = first_value(opt(ins, 2)).unwrap_or(0.0).max(0.0) as usize;
    let iou = first_value(opt(ins, 3)).unwrap_or(0.0);
    let score_th = first_value(opt(ins, 4));
    let Some(bv) = boxes.to_f64_vec() else {
        op_bail!("boxes must be numeric");
    };
    let Some(sv) = scores.to_f64_vec() else {
        op_bail!("scores must be numeric");
    };
    let mut sel: Vec<i64> = Vec::new();
    for b in 0..nb {
        let bx: Vec<[f64; 4]> = (0..nbox)
            .map(|i| corners(&bv[(b * nbox + i) * 4..(b * nbox + i + 1) * 4], center))
            .collect();
        for c in 0..nc {
            let sc = &sv[(b * nc + c) * nbox..(b * nc + c + 1) * nbox];
            let mut cand: Vec<usize> = (0..nbox)
                .filter(|&i| score_th.is_none_or(|t| sc[i] > t))
                .collect();
            cand.sort_by(|&i, &j| sc[j].total_cmp(&sc[i]).then(i.cmp(&j)));
            let mut kept: Vec<usize> = Vec::new();
            for i in cand {
                if kept.len() >= max_out {
                    break;
                }
                if kept.iter().all(|&k| !suppresses(&bx[i], &bx[k], iou)) {
                    kept.push(i);
                    sel.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    let n = sel.len() / 3;
    Ok(vec![Tensor::from_i64(DType::I64, vec![n, 3], sel)])
}

fn infer_roi_align(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let rois = input(ins, 1)?.ty;
    let nr = rois
        .shape
        .dims()
        .and_then(|d| d.first().cloned())
        .unwrap_or(Dim::Unknown);
    let c = x
        .shape
        .dims()
        .and_then(|d| d.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    let oh = ctx.int("output_height", 1)?.max(0) as u64;
    let ow = ctx.int("output_width", 1)?.max(0) as u64;
    Ok(vec![TensorType::new(
        x.dtype,
        Shape(Some(vec![nr, c, Dim::Static(oh), Dim::Static(ow)])),
    )])
}

/// One bilinear sample: four (flat offset, weight) taps; no taps when the
/// point lies more than a pixel outside the map.
fn roi_taps(mut y: f64, mut x: f64, h: usize, w: usize) -> Option<[(usize, f64); 4]> {
    if y < -1.0 || y > h as f64 || x < -1.0 || x > w as f64 {
        return None;
    }
    y = y.max(0.0);
    x = x.max(0.0);
    let (mut yl, mut xl) = (y as usize, x as usize);
    let (yh, xh);
    if yl >= h - 1 {
        yl = h - 1;
        yh = yl;
        y = yl as f64;
    } else {
        yh = yl + 1;
    }
    if xl >= w - 1 {
        xl = w - 1;
        xh = xl;
        x = xl as f64;
    } else {
        xh = xl + 1;
    }
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    Some([
        (yl * w + xl, hy * hx),
        (yl * w + xh, hy * lx),
        (yh * w + xl, ly * hx),
        (yh * w + xh, ly * lx),
    ])
}

fn k_roi_align(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let rois = operand(ins, 1)?;
    let bi = operand(ins, 2)?;
    check_float("X", x.dtype)?;
    if x.rank() != 4 || rois.rank() != 2 || rois.shape[1] != 4 {
        op_bail!("RoiAlign needs X [N, C, H, W] and rois [R, 4]");
    }
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let nr = rois.shape[0];
    let Some(bidx) = bi.to_i64_vec() else {
        op_bail!("batch_indices must be integers");
    };
    if bidx.len() != nr {
        op_bail!("batch_indices has {} entries for {nr} rois", bidx.len());
    }
    let xv = fdata(x, "X")?;
    let Some(rv) = rois.to_f64_vec() else {
        op_bail!("rois must be numeric");
    };
    let oh = ctx.int("output_height", 1)?;
    let ow = ctx.int("output_width", 1)?;
    if oh <= 0 || ow <= 0 {
        op_bail!("output size must be positive");
    }
    let (oh, ow) = (oh as usize, ow as usize);
    let ratio = ctx.int("sampling_ratio", 0)?;
    let scale = ctx.float("spatial_scale", 1.0)? as f64;
    let half = match ctx
        .string("coordinate_transformation_mode", "half_pixel")?
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => op_bail!("unknown coordinate_transformation_mode `{m}`"),
    };
    let max_mode = match ctx.string("mode", "avg")?.as_str() {
        "avg" => false,
        "max" => true,
        m => op_bail!("unknown mode `{m}`"),
    };
    let mut out = vec![0.0; nr * c * oh * ow];
    if h == 0 || w == 0 {
        return Ok(vec![Tensor::from_f64(x.dtype, vec![nr, c, oh, ow], out)]);
    }
    let off = if half { 0.5 } else { 0.0 };
    for r in 0..nr {
        let b = bidx[r];
        if b < 0 || b as usize >= n {
            op_bail!("batch index {b} is out of range for {n} images");
        }
        let roi = &rv[r * 4..r * 4 + 4];
        let (x0, y0) = (roi[0] * scale - off, roi[1] * scale - off);
        let (x1, y1) = (roi[2] * scale - off, roi[3] * scale - off);
        let (mut rw, mut rh) = (x1 - x0, y1 - y0);
        if !half {
            // Malformed rois become at least 1x1.
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / oh as f64, rw / ow as f64);
        let gh = if ratio > 0 {
            ratio as usize
        } else {
            (rh / oh as f64).ceil().max(0.0) as usize
        };
        let gw = if ratio > 0 {
            ratio as usize
        } else {
            (rw / ow as f64).ceil().max(0.0) as usize
        };
        let count = (gh * gw).max(1) as f64;
        for ch in 0..c {
            let plane = &xv[(b as usize * c + ch) * h * w..(b as usize * c + ch + 1) * h * w];
            for ph in 0..oh {
                for pw in 0..ow {
                    let mut acc = 0.0;
                    let mut best: Option<f64> = None;
                    for iy in 0..gh {
                        let y = y0 + ph as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let xx = x0 + pw as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            let taps = roi_taps(y, xx, h, w);
                            if max_mode {
                                // Max of the weighted taps, as onnxruntime
                                // and the reference define it.
                                let v = match taps {
                                    Some(t) => t
                                        .iter()
                                        .map(|&(i, wt)| wt * plane[i])
                                        .fold(f64::NEG_INFINITY, f64::max),
                                    None => 0.0,
                                };
                                best = Some(best.map_or(v, |m: f64| m.max(v)));
                            } else if let Some(t) = taps {
                                acc += t.iter().map(|&(i, wt)| wt * plane[i]).sum::<f64>();
                            }
                        }
                    }
                    out[((r * c + ch) * oh + ph) * ow + pw] = if max_mode {
                        best.unwrap_or(0.0)
                    } else {
                        acc / count
                    };
                }
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, vec![nr, c, oh, ow], out)])
}

fn infer_deform(_: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    let w = input(ins, 1)?.ty;
    let off = input(ins, 2)?.ty;
    let mut dims = vec![
        x.shape
            .dims()
            .and_then(|d| d.first().cloned())
            .unwrap_or(Dim::Unknown),
        w.shape
            .dims()
            .and_then(|d| d.first().cloned())
            .unwrap_or(Dim::Unknown),
    ];
    match (off.shape.dims(), x.shape.rank()) {
        (Some(d), _) if d.len() >= 2 => dims.extend(d[2..].iter().cloned()),
        (_, Some(r)) if r >= 2 => dims.extend(std::iter::repeat_n(Dim::Unknown, r - 2)),
        _ => return Ok(vec![TensorType::new(x.dtype, Shape::unknown())]),
    }
    Ok(vec![TensorType::new(x.dtype, Shape(Some(dims)))])
}

/// Bilinear read with zero padding (each tap outside the map reads 0).
fn bilinear_zero(plane: &[f64], h: usize, w: usize, y: f64, x: f64) -> f64 {
    let (y0, x0) = (y.floor(), x.floor());
    let (ty, tx) = (y - y0, x - x0);
    let mut acc = 0.0;
    for (dy, wy) in [(0i64, 1.0 - ty), (1, ty)] {
        for (dx, wx) in [(0i64, 1.0 - tx), (1, tx)] {
            let (yy, xx) = (y0 as i64 + dy, x0 as i64 + dx);
            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                acc += wy * wx * plane[yy as usize * w + xx as usize];
            }
        }
    }
    acc
}

/// 2-D deformable convolution: each kernel tap samples X bilinearly at its
/// regular position plus a learned (dy, dx) offset, scaled by the mask.
fn k_deform(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    let w = operand(ins, 1)?;
    let off = operand(ins, 2)?;
    check_float("X", x.dtype)?;
    if x.rank() != 4 || w.rank() != 4 || off.rank() != 4 {
        op_bail!("DeformConv supports 2-D inputs only (X, W and offset of rank 4)");
    }
    let (n, ic, ih, iw) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (oc, icg) = (w.shape[0], w.shape[1]);
    let group = ctx.int("group", 1)?.max(1) as usize;
    let og = ctx.int("offset_group", 1)?.max(1) as usize;
    let ks = ctx
        .ints("kernel_shape")?
        .unwrap_or(vec![w.shape[2] as i64, w.shape[3] as i64]);
    let pads = ctx.ints("pads")?.unwrap_or(vec![0; 4]);
    let st = ctx.ints("strides")?.unwrap_or(vec![1, 1]);
    let dil = ctx.ints("dilations")?.unwrap_or(vec![1, 1]);
    if ks.len() != 2 || pads.len() != 4 || st.len() != 2 || dil.len() != 2 {
        op_bail!("DeformConv attributes must describe 2 spatial dims");
    }
    let (kh, kw) = (ks[0] as usize, ks[1] as usize);
    if ks[0] as usize != w.shape[2] || ks[1] as usize != w.shape[3] {
        op_bail!("kernel_shape {ks:?} does not match W shape {:?}", w.shape);
    }
    if ic != icg * group || oc % group != 0 || ic % og != 0 {
        op_bail!("channel counts do not fit group {group} / offset_group {og}");
    }
    let (oh, ow) = (off.shape[2], off.shape[3]);
    if off.shape[0] != n || off.shape[1] != og * kh * kw * 2 {
        op_bail!(
            "offset shape {:?} does not fit the kernel and offset_group",
            off.shape
        );
    }
    let xv = fdata(x, "X")?;
    let wv = fdata(w, "W")?;
    let ov = fdata(off, "offset")?;
    let bias = match opt(ins, 3) {
        Some(b) => fdata(b, "B")?.to_vec(),
        None => vec![0.0; oc],
    };
    if bias.len() != oc {
        op_bail!("B has {} entries for {oc} output channels", bias.len());
    }
    let mask = match opt(ins, 4) {
        Some(m) => {
            if m.shape != [n, og * kh * kw, oh, ow] {
                op_bail!("mask shape {:?} is wrong", m.shape);
            }
            fdata(m, "mask")?.to_vec()
        }
        None => vec![1.0; n * og * kh * kw * oh * ow],
    };
    let (ocg, icpo) = (oc / group, ic / og);
    let mut out = vec![0.0; n * oc * oh * ow];
    for b in 0..n {
        for o in 0..oc {
            let g = o / ocg;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bias[o];
                    for ci in 0..icg {
                        let c = g * icg + ci;
                        let ogi = c / icpo;
                        let plane = &xv[(b * ic + c) * ih * iw..(b * ic + c + 1) * ih * iw];
                        for a in 0..kh {
                            for e in 0..kw {
                                let k = (ogi * kh + a) * kw + e;
                                let oy =
                                    ov[((b * og * kh * kw * 2) + k * 2) * oh * ow + i * ow + j];
                                let ox =
                                    ov[((b * og * kh * kw * 2) + k * 2 + 1) * oh * ow + i * ow + j];
                                let m = mask[((b * og * kh * kw) + k) * oh * ow + i * ow + j];
                                let y =
                                    (i as i64 * st[0] - pads[0] + a as i64 * dil[0]) as f64 + oy;
                                let xx =
                                    (j as i64 * st[1] - pads[1] + e as i64 * dil[1]) as f64 + ox;
                                let v = bilinear_zero(plane, ih, iw, y, xx);
                                acc += v * m * wv[((o * icg + ci) * kh + a) * kw + e];
                            }
                        }
                    }
                    out[((b * oc + o) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    Ok(vec![Tensor::from_f64(x.dtype, vec![n, oc, oh, ow], out)])
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use crate::interp::Tensor;
    use crate::{Attr, DType, Op};

    #[test]
    fn nms_suppresses_overlaps() {
        // Boxes 0 and 1 overlap with IoU 0.9/1.1 = 0.82 > 0.5; box 2 is apart.
        let boxes = f32t(
            &[1, 3, 4],
            &[0., 0., 1., 1., 0., 0.1, 1., 1.1, 0., 10., 1., 11.],
        );
        let scores = f32t(&[1, 1, 3], &[0.9, 0.95, 0.3]);
        let max = Tensor::from_i64(DType::I64, vec![1], vec![3]);
        let iou = f32t(&[1], &[0.5]);
        let y = run(
            Op::NonMaxSuppression,
            &[],
            &[Some(&boxes), Some(&scores), Some(&max), Some(&iou)],
        )
        .unwrap();
        assert_eq!(y[0].to_i64_vec().unwrap(), vec![0, 0, 1, 0, 0, 2]);
    }

    #[test]
    fn roi_align_constant_map_and_deform_zero_offset() {
        // On a constant map every in-range average is the constant.
        let x = f32t(&[1, 1, 4, 4], &[2.0; 16]);
        let rois = f32t(&[1, 4], &[0., 0., 3., 3.]);
        let bi = Tensor::from_i64(DType::I64, vec![1], vec![0]);
        let y = run(
            Op::RoiAlign,
            &[
                ("output_height", Attr::Int(2)),
                ("output_width", Attr::Int(2)),
            ],
            &[Some(&x), Some(&rois), Some(&bi)],
        )
        .unwrap();
        assert_close(&y[0], &[2.0; 4]);
        // Zero offsets make DeformConv an ordinary convolution:
        // 2x2 ones kernel over arange(9).reshape(3,3) = [[8,12],[20,24]].
        let x = iota(&[1, 1, 3, 3]);
        let w = f32t(&[1, 1, 2, 2], &[1.0; 4]);
        let off = f32t(&[1, 8, 2, 2], &[0.0; 32]);
        let y = run(
            Op::DeformConv,
            &[("kernel_shape", Attr::Ints(vec![2, 2]))],
            &[Some(&x), Some(&w), Some(&off)],
        )
        .unwrap();
        assert_close(&y[0], &[8., 12., 20., 24.]);
    }
}
