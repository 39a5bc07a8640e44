//! Convolutions and pools. A convolution pads its input in HBM, gathers
//! every output position's receptive field with one strided-DMA copy
//! (im2col, converted to the tensor unit's dtype on the way) and runs a
//! matmul W [OC, C·K] · colᵀ per image and group, whose output is already
//! NCHW; bias, activation and residual ride in the matmul epilogue. Pools
//! gather windows the same way and reduce rows on the vector unit.

use super::Error;
use super::elementwise;
use super::lower::{Lw, TRef, unsup};
use super::matmul::{self, Epi, Job, Spec};
use super::movement::{self, View, strides};
use super::rows;
use smelt_ir::interp::Tensor;
use smelt_ir::{Attr, DType, Node, Op};
use smelt_runtime::maia::{VOp, VSrc};

fn ints(n: &Node, k: &str) -> Option<Vec<i64>> {
    match n.attr(k) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn sattr(n: &Node, k: &str, d: &str) -> String {
    match n.attr(k) {
        Some(Attr::String(s)) => s.clone(),
        _ => d.to_string(),
    }
}

fn iattr(n: &Node, k: &str, d: i64) -> i64 {
    match n.attr(k) {
        Some(Attr::Int(v)) => *v,
        _ => d,
    }
}

/// Window geometry of a conv or pool over `r` spatial axes.
struct Window {
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dil: Vec<usize>,
    /// Padding before and after each axis (after: enough for every window).
    pb: Vec<usize>,
    pe: Vec<usize>,
    /// Explicit padding after (without the ceil-mode extension).
    pe_explicit: Vec<usize>,
}

fn window(
    n: &Node,
    kernel: Vec<usize>,
    input: &[usize],
    output: &[usize],
) -> Result<Window, Error> {
    let r = kernel.len();
    let get = |k: &str| -> Vec<usize> {
        ints(n, k)
            .map(|v| v.iter().map(|&x| x.max(1) as usize).collect())
            .unwrap_or_else(|| vec![1; r])
    };
    let strides = get("strides");
    let dil = get("dilations");
    if strides.len() != r || dil.len() != r {
        return Err(Error::Graph(format!(
            "{}: strides/dilations rank",
            n.describe()
        )));
    }
    let auto = sattr(n, "auto_pad", "NOTSET");
    let mut pb = vec![0usize; r];
    let mut pe = vec![0usize; r];
    match auto.as_str() {
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..r {
                let need = ((output[i].max(1) - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1)
                    .saturating_sub(input[i]);
                let small = need / 2;
                (pb[i], pe[i]) = if auto == "SAME_UPPER" {
                    (small, need - small)
                } else {
                    (need - small, small)
                };
            }
        }
        "VALID" => {}
        _ => {
            if let Some(p) = ints(n, "pads") {
                if p.len() != 2 * r || p.iter().any(|&x| x < 0) {
                    return Err(unsup(n.op, "pads"));
                }
                for i in 0..r {
                    pb[i] = p[i] as usize;
                    pe[i] = p[r + i] as usize;
                }
            }
        }
    }
    let pe_explicit = pe.clone();
    for i in 0..r {
        let span = (output[i].max(1) - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1;
        let have = input[i] + pb[i] + pe[i];
        if span > have {
            pe[i] += span - have;
        }
    }
    Ok(Window {
        kernel,
        strides,
        dil,
        pb,
        pe,
        pe_explicit,
    })
}

/// x padded with `value` ([N, C, *spatial + pads]); x itself without pads.
fn padded(lw: &mut Lw, x: &TRef, w: &Window, value: f64) -> Result<TRef, Error> {
    if w.pb.iter().chain(&w.pe).all(|&p| p == 0) {
        return Ok(x.clone());
    }
    let mut shape = x.shape[..2].to_vec();
    for i in 0..w.kernel.len() {
        shape.push(x.shape[2 + i] + w.pb[i] + w.pe[i]);
    }
    let t = lw.temp_like("pad", x, &shape);
    movement::fill(lw, &t, value)?;
    let st = strides(&shape);
    let off: i64 = (0..w.kernel.len())
        .map(|i| w.pb[i] as i64 * st[2 + i])
        .sum();
    lw.p.phase();
    movement::copy_nd(
        &mut lw.p,
        x,
        &movement::plain(x),
        &t,
        &View { off, strides: st },
        &x.shape.clone(),
    )?;
    Ok(t)
}

/// The strided view of xp that lists, for channels `c0..c0+cn` of image n
/// (all images when `images`), each output position's window:
/// shape [images, o..., cn, k...].
fn windows_view(
    xp: &TRef,
    w: &Window,
    out_sp: &[usize],
    c0: usize,
    cn: usize,
) -> (Vec<usize>, View) {
    let st = strides(&xp.shape);
    let r = w.kernel.len();
    let mut shape = vec![xp.shape[0]];
    let mut s = vec![st[0]];
    for i in 0..r {
        shape.push(out_sp[i]);
        s.push(st[2 + i] * w.strides[i] as i64);
    }
    shape.push(cn);
    s.push(st[1]);
    for i in 0..r {
        shape.push(w.kernel[i]);
        s.push(st[2 + i] * w.dil[i] as i64);
    }
    (
        shape,
        View {
            off: c0 as i64 * st[1],
            strides: s,
        },
    )
}

pub fn lower(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    for v in n
        .inputs
        .iter()
        .flatten()
        .chain(n.outputs.iter().take(1).flatten())
    {
        let (_, d) = lw.static_ty(*v)?;
        if !matches!(d, DType::F32 | DType::F16 | DType::BF16) {
            return Err(unsup(n.op, format!("dtype {d}")));
        }
    }
    match n.op {
        Op::Conv | Op::FusedConv => conv(lw, n),
        Op::ConvTranspose => conv_transpose(lw, n),
        Op::MaxPool | Op::AveragePool | Op::LpPool => pool(lw, n),
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let x = lw.input(n, 0)?;
            let y = lw.output(n, 0)?;
            let rows = (x.shape[0] * x.shape.get(1).copied().unwrap_or(1)) as u64;
            let cols = x.numel() / rows.max(1);
            rows::row_reduce(lw, &x, &y, rows, cols, n.op == Op::GlobalMaxPool)
        }
        Op::BatchNormalization => batchnorm(lw, n),
        _ => Err(unsup(n.op, "")),
    }
}

fn conv(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let wt = lw.input(n, 1)?;
    let y = lw.output(n, 0)?;
    let r = x.shape.len().saturating_sub(2);
    if r == 0 || wt.shape.len() != r + 2 || y.shape.len() != r + 2 {
        return Err(unsup(n.op, "rank"));
    }
    let groups = iattr(n, "group", 1).max(1) as usize;
    let (nb, c) = (x.shape[0], x.shape[1]);
    let oc = wt.shape[0];
    let cg = wt.shape[1];
    if cg * groups != c || oc % groups != 0 {
        return Err(Error::Graph(format!(
            "{}: channels and groups disagree",
            n.describe()
        )));
    }
    let ocg = oc / groups;
    let kernel: Vec<usize> = wt.shape[2..].to_vec();
    let out_sp: Vec<usize> = y.shape[2..].to_vec();
    let w = window(n, kernel.clone(), &x.shape[2..], &out_sp)?;
    let (dt, split) = matmul::unit_dtype(lw)?;
    let xp = padded(lw, &x, &w, 0.0)?;
    let kk: usize = kernel.iter().product::<usize>() * cg;
    // Epilogue: bias per output channel (a row of the per-group product),
    // activation, residual.
    let mut epi = Vec::new();
    if Lw::has_input(n, 2) {
        epi.push(Epi::RowBias(lw.input(n, 2)?));
    }
    if n.op == Op::FusedConv {
        if let Some(Attr::String(a)) = n.attr("activation")
            && !a.is_empty()
        {
            let op: Op = a
                .parse()
                .map_err(|_| unsup(n.op, format!("activation {a}")))?;
            epi.push(Epi::Act(op, None));
        }
        if Lw::has_input(n, 3) {
            let res = lw.input(n, 3)?;
            if res.shape != y.shape {
                return Err(unsup(n.op, "broadcast residual"));
            }
            epi.push(Epi::Residual(res));
        }
    }
    // Weights: [OC, Cg·K], one block of OCg rows per group.
    let w_parts = match lw.known_input(n, 1) {
        Some(t) => {
            let flat = Tensor::from_f64(
                t.dtype,
                vec![oc, kk],
                t.to_f64_vec().ok_or_else(|| unsup(n.op, "weights"))?,
            );
            matmul::const_parts(lw, "conv.w", &flat, dt, split)?
        }
        None => {
            let v = View {
                off: 0,
                strides: strides(&[oc, kk]),
            };
            matmul::dyn_parts(lw, &wt, &v, &[oc, kk], dt, split)?
        }
    };
    let geo = Geometry {
        nb,
        oc,
        cg,
        ocg,
        kk,
        groups,
    };
    conv_groups(lw, &xp, &w, &out_sp, &y, &w_parts, &epi, &geo, dt)
}

/// Channel bookkeeping of a (grouped) convolution.
struct Geometry {
    nb: usize,
    oc: usize,
    cg: usize,
    ocg: usize,
    kk: usize,
    groups: usize,
}

/// Per group: im2col of the padded input, then W_g · colᵀ per image into y.
#[allow(clippy::too_many_arguments)]
fn conv_groups(
    lw: &mut Lw,
    xp: &TRef,
    w: &Window,
    out_sp: &[usize],
    y: &TRef,
    w_parts: &[TRef],
    epi: &[Epi],
    geo: &Geometry,
    dt: smelt_runtime::maia::Dt,
) -> Result<(), Error> {
    let Geometry {
        nb,
        oc,
        cg,
        ocg,
        kk,
        groups,
    } = *geo;
    let split = w_parts.len() > 1;
    let ohw: usize = out_sp.iter().product();
    for g in 0..groups {
        let (shape, view) = windows_view(xp, w, out_sp, g * cg, cg);
        // im2col: [N, OHW, Cg·K], the product's B (n × k).
        let col_parts = matmul::dyn_parts(lw, xp, &view, &shape, dt, split)?;
        let jobs: Vec<Job> = (0..nb)
            .map(|i| {
                let out = ((i * oc + g * ocg) * ohw) as u64;
                Job {
                    a: (g * ocg * kk) as u64,
                    b: (i * ohw * kk) as u64,
                    out,
                    res: out,
                    row: (g * ocg) as u64,
                }
            })
            .collect();
        matmul::emit(
            lw,
            &Spec {
                m: ocg as u64,
                n: ohw as u64,
                k: kk as u64,
                a: w_parts.to_vec(),
                b: col_parts,
                out: y.clone(),
                jobs,
                epi: epi.to_vec(),
                siblings: Vec::new(),
            },
            dt,
        )?;
    }
    Ok(())
}

/// ConvTranspose as a convolution (stride 1) of the input spread out by
/// the strides with zeros between and around, with the kernel flipped and
/// its channel axes swapped (done on the weights at compile time).
fn conv_transpose(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    let x = lw.input(n, 0)?;
    let wt = lw.input(n, 1)?;
    let y = lw.output(n, 0)?;
    let r = x.shape.len().saturating_sub(2);
    if r == 0 || wt.shape.len() != r + 2 || y.shape.len() != r + 2 {
        return Err(unsup(n.op, "rank"));
    }
    let wv = lw.known_input(n, 1).and_then(|t| t.to_f64_vec());
    let groups = iattr(n, "group", 1).max(1) as usize;
    let (nb, c) = (x.shape[0], x.shape[1]);
    let ocg = wt.shape[1];
    let oc = ocg * groups;
    if wt.shape[0] != c || c % groups != 0 || y.shape[1] != oc {
        return Err(Error::Graph(format!(
            "{}: channels and groups disagree",
            n.describe()
        )));
    }
    let cg = c / groups;
    let kernel: Vec<usize> = wt.shape[2..].to_vec();
    let get = |k: &str| -> Vec<usize> {
        ints(n, k)
            .map(|v| v.iter().map(|&x| x.max(1) as usize).collect())
            .unwrap_or_else(|| vec![1; r])
    };
    let (st, dil) = (get("strides"), get("dilations"));
    let in_sp = &x.shape[2..];
    let out_sp: Vec<usize> = y.shape[2..].to_vec();
    let auto = sattr(n, "auto_pad", "NOTSET");
    let pads = ints(n, "pads");
    let mut lo = Vec::with_capacity(r);
    let mut shape_u = vec![nb, c];
    for i in 0..r {
        let span = (kernel[i] - 1) * dil[i];
        let full = (in_sp[i] - 1) * st[i] + span + 1;
        let total = full as i64 - out_sp[i] as i64
            + ints(n, "output_padding").map_or(0, |v| v.get(i).copied().unwrap_or(0));
        let pb = match (&pads, auto.as_str()) {
            (Some(p), "NOTSET") if p.len() == 2 * r => p[i],
            (_, "SAME_LOWER") => total - total / 2,
            _ => total / 2,
        };
        let l = span as i64 - pb;
        // Spread input plus borders: conv output = U - span.
        let u = out_sp[i] + span;
        let h = u as i64 - l - ((in_sp[i] - 1) * st[i] + 1) as i64;
        if l < 0 || h < 0 {
            return Err(unsup(n.op, "padding beyond the kernel span"));
        }
        lo.push(l as usize);
        shape_u.push(u);
    }
    // U: zeros, with x at stride `st` after the `lo` border.
    let u = lw.temp_like("convt.u", &x, &shape_u);
    movement::fill(lw, &u, 0.0)?;
    let us = strides(&shape_u);
    let off: i64 = (0..r).map(|i| lo[i] as i64 * us[2 + i]).sum();
    let mut dst = us.clone();
    for i in 0..r {
        dst[2 + i] *= st[i] as i64;
    }
    lw.p.phase();
    movement::copy_nd(
        &mut lw.p,
        &x,
        &movement::plain(&x),
        &u,
        &View { off, strides: dst },
        &x.shape.clone(),
    )?;
    // W' [OC, Cg, k...] flipped: W'[g·OCg + o, ci, k] = W[g·Cg + ci, o, K-1-k].
    let kn: usize = kernel.iter().product();
    let kk = cg * kn;
    let (dt, split) = matmul::unit_dtype(lw)?;
    let w_parts = match wv {
        Some(wv) => {
            let mut w2 = vec![0.0; oc * kk];
            for g in 0..groups {
                for o in 0..ocg {
                    for ci in 0..cg {
                        for k in 0..kn {
                            let src = ((g * cg + ci) * ocg + o) * kn + (kn - 1 - k);
                            w2[((g * ocg + o) * cg + ci) * kn + k] = wv[src];
                        }
                    }
                }
            }
            let t = Tensor::from_f64(wt.gdt, vec![oc, kk], w2);
            matmul::const_parts(lw, "convt.w", &t, dt, split)?
        }
        None => {
            // At run time: one strided copy per kernel position (the flip).
            let w2 = lw.temp_like("convt.w", &wt, &[oc, kk]);
            lw.p.phase();
            for k in 0..kn {
                let sv = View {
                    off: (kn - 1 - k) as i64,
                    strides: vec![(cg * ocg * kn) as i64, kn as i64, (ocg * kn) as i64],
                };
                let dv = View {
                    off: k as i64,
                    strides: vec![(ocg * cg * kn) as i64, (cg * kn) as i64, kn as i64],
                };
                movement::copy_nd(&mut lw.p, &wt, &sv, &w2, &dv, &[groups, ocg, cg])?;
            }
            let v = movement::plain(&w2);
            matmul::dyn_parts(lw, &w2, &v, &[oc, kk], dt, split)?
        }
    };
    let mut epi = Vec::new();
    if Lw::has_input(n, 2) {
        epi.push(Epi::RowBias(lw.input(n, 2)?));
    }
    let w = Window {
        kernel,
        strides: vec![1; r],
        dil,
        pb: vec![0; r],
        pe: vec![0; r],
        pe_explicit: vec![0; r],
    };
    let geo = Geometry {
        nb,
        oc,
        cg,
        ocg,
        kk,
        groups,
    };
    conv_groups(lw, &u, &w, &out_sp, &y, &w_parts, &epi, &geo, dt)
}

fn pool(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    if n.outputs.get(1).copied().flatten().is_some() {
        return Err(unsup(n.op, "indices output"));
    }
    let x = lw.input(n, 0)?;
    let y = lw.output(n, 0)?;
    let r = x.shape.len().saturating_sub(2);
    let kernel: Vec<usize> = ints(n, "kernel_shape")
        .ok_or_else(|| Error::Graph(format!("{}: no kernel_shape", n.describe())))?
        .iter()
        .map(|&k| k.max(1) as usize)
        .collect();
    if kernel.len() != r {
        return Err(Error::Graph(format!("{}: kernel rank", n.describe())));
    }
    let out_sp: Vec<usize> = y.shape[2..].to_vec();
    let w = window(n, kernel.clone(), &x.shape[2..], &out_sp)?;
    let max = n.op == Op::MaxPool;
    if max && iattr(n, "storage_order", 0) != 0 {
        return Err(unsup(n.op, "storage_order"));
    }
    let xp = padded(lw, &x, &w, if max { f64::NEG_INFINITY } else { 0.0 })?;
    let (nb, c) = (x.shape[0], x.shape[1]);
    // Windows of all images and channels: [N·C, O..., K...] via the view
    // with the channel axis folded into the image axis.
    let (mut shape, mut view) = windows_view(&xp, &w, &out_sp, 0, 1);
    shape[0] = nb * c;
    view.strides[0] = strides(&xp.shape)[1];
    let k: usize = kernel.iter().product();
    let o: usize = out_sp.iter().product();
    let cols = lw.temp_like("pool.win", &xp, &shape);
    lw.p.phase();
    movement::copy_nd(
        &mut lw.p,
        &xp,
        &view,
        &cols,
        &movement::plain(&cols),
        &shape,
    )?;
    let rows = (nb * c * o) as u64;
    if max {
        return rows::row_reduce(lw, &cols, &y, rows, k as u64, true);
    }
    if n.op == Op::LpPool {
        let p = iattr(n, "p", 2).max(1) as f32;
        return rows::row_pnorm(lw, &cols, &y, rows, k as u64, p);
    }
    let include = iattr(n, "count_include_pad", 0) != 0;
    let pads_all_zero = w.pb.iter().chain(&w.pe).all(|&p| p == 0);
    if pads_all_zero {
        return rows::row_reduce(lw, &cols, &y, rows, k as u64, false);
    }
    // Sum, then divide by each position's count of cells inside the input
    // (or inside input + explicit pads with count_include_pad).
    let sums = lw.temp_f32("pool.sum", &y.shape);
    rows::row_sum(lw, &cols, &sums, rows, k as u64)?;
    let mut div = vec![0.0f64; o];
    let inp = &x.shape[2..];
    for (pos, d) in div.iter_mut().enumerate() {
        let mut rem = pos;
        let mut count = 1usize;
        for i in (0..r).rev() {
            let oi = rem % out_sp[i];
            rem /= out_sp[i];
            let start = (oi * w.strides[i]) as i64 - w.pb[i] as i64;
            let (lo, hi) = if include {
                (-(w.pb[i] as i64), (inp[i] + w.pe_explicit[i]) as i64)
            } else {
                (0, inp[i] as i64)
            };
            let cnt = (0..kernel[i])
                .map(|j| start + (j * w.dil[i]) as i64)
                .filter(|&p| p >= lo && p < hi)
                .count();
            count *= cnt;
        }
        *d = 1.0 / count.max(1) as f64;
    }
    let dv = lw.weight(
        &format!("pool.div.{}", lw.p.bufs.len()),
        &Tensor::from_f64(DType::F32, out_sp.clone(), div),
    )?;
    elementwise::run(
        lw,
        &y,
        vec![(sums, None), (dv, None)],
        true,
        &|b, d, s, _| {
            let a = match s[0] {
                VSrc::Full(a) => a,
                _ => 0,
            };
            vec![b.v(VOp::Mul, d, a, s[1])]
        },
    )
}

fn batchnorm(lw: &mut Lw, n: &Node) -> Result<(), Error> {
    if iattr(n, "training_mode", 0) != 0 || n.outputs.iter().skip(1).any(|o| o.is_some()) {
        return Err(unsup(n.op, "training mode"));
    }
    let eps = match n.attr("epsilon") {
        Some(Attr::Float(e)) => *e as f64,
        _ => 1e-5,
    };
    let mut p = Vec::new();
    for i in 1..5 {
        p.push(
            lw.known_input(n, i)
                .and_then(|t| t.to_f64_vec())
                .ok_or_else(|| unsup(n.op, "parameters not known at compile time"))?,
        );
    }
    let x = lw.input(n, 0)?;
    let y = lw.output(n, 0)?;
    let c = x.shape.get(1).copied().unwrap_or(1);
    if p.iter().any(|v| v.len() != c) {
        return Err(unsup(n.op, "parameter shapes"));
    }
    // y = x·a + b with a = scale / sqrt(var + eps), b = bias - mean·a.
    let a: Vec<f64> = (0..c).map(|i| p[0][i] / (p[3][i] + eps).sqrt()).collect();
    let b: Vec<f64> = (0..c).map(|i| p[1][i] - p[2][i] * a[i]).collect();
    let mut shape = vec![c];
    shape.extend(std::iter::repeat_n(1, x.shape.len().saturating_sub(2)));
    let at = lw.weight(
        &format!("bn.a.{}", lw.p.bufs.len()),
        &Tensor::from_f64(DType::F32, shape.clone(), a),
    )?;
    let bt = lw.weight(
        &format!("bn.b.{}", lw.p.bufs.len()),
        &Tensor::from_f64(DType::F32, shape, b),
    )?;
    elementwise::run(
        lw,
        &y,
        vec![(x, None), (at, None), (bt, None)],
        true,
        &|bl, d, s, _| {
            let a = match s[0] {
                VSrc::Full(a) => a,
                _ => 0,
            };
            vec![bl.v(VOp::Mul, d, a, s[1]), bl.v(VOp::Add, d, d, s[2])]
        },
    )
}
