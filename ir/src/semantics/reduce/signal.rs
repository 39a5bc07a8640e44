//! Signal ops: window functions, MelWeightMatrix, DFT and STFT.
//!
//! Complex tensors are real tensors with a trailing dim of 2 (re, im); a
//! trailing dim of 1 is a real signal. Transforms are plain O(n^2) DFTs in
//! f64 with the twiddle angle reduced mod n, which is exact enough for an
//! oracle and works for every length.

use crate::interp::Tensor;
use crate::semantics::util::norm_axis;
use crate::semantics::{Ctx, OpImpl, OpResult, TypeInput, input, operand};
use crate::{DClass, DType, Dim, Op, Shape, TensorType, op_bail};
use std::f64::consts::PI;

pub fn lookup(op: Op) -> Option<OpImpl> {
    use Op::*;
    let (infer, kernel): (crate::semantics::InferFn, crate::semantics::KernelFn) = match op {
        BlackmanWindow | HammingWindow | HannWindow => (infer_window, k_window),
        MelWeightMatrix => (infer_mel, k_mel),
        DFT => (infer_dft, k_dft),
        STFT => (infer_stft, k_stft),
        _ => return None,
    };
    Some(OpImpl { infer, kernel })
}

fn out_float_dtype(ctx: &Ctx) -> OpResult<DType> {
    let d = ctx.dtype("output_datatype")?.unwrap_or(DType::F32);
    if d.class() != DClass::Float {
        op_bail!("{}: output_datatype {d} is not a float type", ctx.node.op);
    }
    Ok(d)
}

/// A scalar (or one-element) input as an integer.
fn scalar_int(t: &Tensor, what: &str) -> OpResult<i64> {
    match t.to_i64_vec().as_deref() {
        Some([x]) => Ok(*x),
        _ => op_bail!("{what} must be a single integer, found shape {:?}", t.shape),
    }
}

fn scalar_f64(t: &Tensor, what: &str) -> OpResult<f64> {
    match t.to_f64_vec().as_deref() {
        Some([x]) => Ok(*x),
        _ => op_bail!("{what} must be a single number, found shape {:?}", t.shape),
    }
}

fn non_negative(x: i64, what: &str) -> OpResult<usize> {
    usize::try_from(x).map_err(|_| format!("{what} must be >= 0, found {x}").into())
}

/// A constant scalar input's value, if the input is present and known.
fn const_input(ins: &[Option<TypeInput>], i: usize, what: &str) -> OpResult<Option<i64>> {
    match ins.get(i) {
        Some(Some(TypeInput { value: Some(v), .. })) => Ok(Some(scalar_int(v, what)?)),
        _ => Ok(None),
    }
}

fn static_dim(n: Option<usize>) -> Dim {
    n.map_or(Dim::Unknown, |n| Dim::Static(n as u64))
}

fn infer_window(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    input(ins, 0)?;
    let n = const_input(ins, 0, "window size")?
        .map(|n| non_negative(n, "window size"))
        .transpose()?;
    Ok(vec![TensorType::new(
        out_float_dtype(ctx)?,
        Shape(Some(vec![static_dim(n)])),
    )])
}

fn k_window(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let size = non_negative(scalar_int(operand(ins, 0)?, "window size")?, "window size")?;
    let periodic = ctx.int("periodic", 1)? != 0;
    // A symmetric window of N points is the periodic one of N - 1.
    let period = if periodic {
        size as f64
    } else {
        size as f64 - 1.0
    };
    let w: Vec<f64> = (0..size)
        .map(|i| {
            let t = 2.0 * PI * i as f64 / period;
            match ctx.node.op {
                Op::BlackmanWindow => 0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos(),
                // ONNX's Hamming uses alpha = 25/46, not the rounded 0.54.
                Op::HammingWindow => 25.0 / 46.0 - (21.0 / 46.0) * t.cos(),
                _ => (t / 2.0).sin().powi(2),
            }
        })
        .collect();
    Ok(vec![Tensor::from_f64(out_float_dtype(ctx)?, vec![size], w)])
}

fn infer_mel(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    for i in 0..5 {
        input(ins, i)?;
    }
    let bins = const_input(ins, 0, "num_mel_bins")?
        .map(|n| non_negative(n, "num_mel_bins"))
        .transpose()?;
    let dft = const_input(ins, 1, "dft_length")?
        .map(|n| non_negative(n, "dft_length"))
        .transpose()?;
    Ok(vec![TensorType::new(
        out_float_dtype(ctx)?,
        Shape(Some(vec![
            static_dim(dft.map(|n| n / 2 + 1)),
            static_dim(bins),
        ])),
    )])
}

fn k_mel(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let bins = non_negative(
        scalar_int(operand(ins, 0)?, "num_mel_bins")?,
        "num_mel_bins",
    )?;
    let dft = non_negative(scalar_int(operand(ins, 1)?, "dft_length")?, "dft_length")?;
    let rate = scalar_int(operand(ins, 2)?, "sample_rate")?;
    let lo = scalar_f64(operand(ins, 3)?, "lower_edge_hertz")?;
    let hi = scalar_f64(operand(ins, 4)?, "upper_edge_hertz")?;
    if rate <= 0 {
        op_bail!("sample_rate must be positive, found {rate}");
    }
    let rows = dft / 2 + 1;
    let mel = |hz: f64| 2595.0 * (hz / 700.0).ln_1p() / 10f64.ln();
    let (mlo, mhi) = (mel(lo), mel(hi));
    // bins + 2 edges evenly spaced in mel, mapped back to FFT bin indices
    // (floor, as the spec's reference does).
    let step = (mhi - mlo) / (bins + 2) as f64;
    let edges: Vec<i64> = (0..bins + 2)
        .map(|i| {
            let m = mlo + i as f64 * step;
            let hz = 700.0 * (m / 2595.0 * 10f64.ln()).exp_m1();
            ((dft as f64 + 1.0) * hz / rate as f64).floor() as i64
        })
        .collect();
    let mut out = vec![0.0; rows * bins];
    let mut set = |r: i64, c: usize, v: f64| -> OpResult<()> {
        match usize::try_from(r) {
            Ok(r) if r < rows => {
                out[r * bins + c] = v;
                Ok(())
            }
            _ => op_bail!("mel filter edge {r} is outside the {rows} spectrogram bins"),
        }
    };
    for i in 0..bins {
        let (l, c, h) = (edges[i], edges[i + 1], edges[i + 2]);
        if c == l {
            set(c, i, 1.0)?;
        } else {
            for j in l..=c {
                set(j, i, (j - l) as f64 / (c - l) as f64)?;
            }
        }
        for j in c..h {
            set(j, i, (h - j) as f64 / (h - c) as f64)?;
        }
    }
    Ok(vec![Tensor::from_f64(
        out_float_dtype(ctx)?,
        vec![rows, bins],
        out,
    )])
}

/// DFT of `re + i im` at `n` points (truncated or zero-padded), for
/// frequencies `0..bins`; `sign` is -1 for the forward transform.
fn dft_1d(re: &[f64], im: &[f64], n: usize, bins: usize, sign: f64) -> (Vec<f64>, Vec<f64>) {
    let m = re.len().min(n);
    let mut out_re = vec![0.0; bins];
    let mut out_im = vec![0.0; bins];
    for k in 0..bins {
        let (mut sr, mut si) = (0.0, 0.0);
        for t in 0..m {
            let ang = sign * 2.0 * PI * ((k * t) % n) as f64 / n as f64;
            let (s, c) = ang.sin_cos();
            sr += re[t] * c - im[t] * s;
            si += re[t] * s + im[t] * c;
        }
        out_re[k] = sr;
        out_im[k] = si;
    }
    (out_re, out_im)
}

/// DFT's transform of one signal (real and imaginary parts along the
/// axis): `bins` outputs of a length-`n` transform, forward or inverse,
/// with a one-sided inverse's input rebuilt into the Hermitian spectrum.
/// Public so that targets expanding DFT into a linear map build it from
/// the same definition.
pub fn dft_signal(
    re: &[f64],
    im: &[f64],
    n: usize,
    bins: usize,
    inverse: bool,
    onesided: bool,
) -> (Vec<f64>, Vec<f64>) {
    if !inverse {
        return dft_1d(re, im, n, bins, -1.0);
    }
    let (mut sr, mut si) = (re.to_vec(), im.to_vec());
    if onesided {
        // Rebuild the Hermitian spectrum from bins 0..=n/2; the real part
        // of its inverse ignores any imaginary part of the self-conjugate
        // bins, as numpy's irfft does.
        let half = n / 2 + 1;
        sr.resize(half, 0.0);
        si.resize(half, 0.0);
        for k in half..n {
            sr.push(sr[n - k]);
            si.push(-si[n - k]);
        }
    }
    let (fr, fi) = dft_1d(&sr, &si, n, bins, 1.0);
    let s = 1.0 / n as f64;
    (
        fr.iter().map(|v| v * s).collect(),
        fi.iter().map(|v| v * s).collect(),
    )
}

struct DftArgs {
    axis: usize,
    n: usize,
    inverse: bool,
    onesided: bool,
}

impl DftArgs {
    /// (length along the axis, trailing dim) of the result.
    fn out_dims(&self) -> (usize, usize) {
        match (self.inverse, self.onesided) {
            (false, true) => (self.n / 2 + 1, 2),
            (true, true) => (self.n, 1),
            _ => (self.n, 2),
        }
    }
}

fn check_signal_rank(rank: usize) -> OpResult<()> {
    if rank < 2 {
        op_bail!("signal must have rank >= 2 (..., length, 1 or 2), found rank {rank}");
    }
    Ok(())
}

fn dft_axis(axis: i64, rank: usize) -> OpResult<usize> {
    let a = norm_axis(axis, rank)?;
    if a == rank - 1 {
        op_bail!("DFT axis {axis} is the complex dim; it must be a signal dim");
    }
    Ok(a)
}

fn infer_dft(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    if x.dtype.class() != DClass::Float {
        op_bail!("DFT needs a float signal, found {}", x.dtype);
    }
    let inverse = ctx.int("inverse", 0)? != 0;
    let onesided = ctx.int("onesided", 0)? != 0;
    let Some(dims) = x.shape.dims() else {
        return Ok(vec![x.clone()]);
    };
    check_signal_rank(dims.len())?;
    let last = if inverse && onesided { 1 } else { 2 };
    let axis_given = matches!(ins.get(2), Some(Some(_)));
    let axis = match const_input(ins, 2, "axis")? {
        Some(a) => dft_axis(a, dims.len())?,
        None if !axis_given => dft_axis(-2, dims.len())?,
        None => {
            let mut d = vec![Dim::Unknown; dims.len()];
            d[dims.len() - 1] = Dim::Static(last);
            return Ok(vec![TensorType::new(x.dtype, Shape(Some(d)))]);
        }
    };
    let len_given = matches!(ins.get(1), Some(Some(_)));
    let n = match const_input(ins, 1, "dft_length")? {
        Some(n) => Some(non_negative(n, "dft_length")?),
        None if !len_given => dims[axis].as_static().map(|m| {
            let m = m as usize;
            if inverse && onesided {
                2 * m.saturating_sub(1)
            } else {
                m
            }
        }),
        None => None,
    };
    let mut out = dims.to_vec();
    out[axis] = static_dim(n.map(|n| {
        DftArgs {
            axis,
            n,
            inverse,
            onesided,
        }
        .out_dims()
        .0
    }));
    out[dims.len() - 1] = Dim::Static(last);
    Ok(vec![TensorType::new(x.dtype, Shape(Some(out)))])
}

fn k_dft(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    check_signal_rank(x.rank())?;
    let inverse = ctx.int("inverse", 0)? != 0;
    let onesided = ctx.int("onesided", 0)? != 0;
    let axis = match ins.get(2) {
        Some(Some(a)) => scalar_int(a, "axis")?,
        _ => -2,
    };
    let axis = dft_axis(axis, x.rank())?;
    let m = x.shape[axis];
    let n = match ins.get(1) {
        Some(Some(t)) => non_negative(scalar_int(t, "dft_length")?, "dft_length")?,
        _ if inverse && onesided => 2 * m.saturating_sub(1),
        _ => m,
    };
    if n == 0 {
        op_bail!("DFT length must be positive");
    }
    let args = DftArgs {
        axis,
        n,
        inverse,
        onesided,
    };
    let (re, im, shape) = transform(x, &args)?;
    Ok(vec![interleave(
        x.dtype,
        shape,
        &re,
        &im,
        args.out_dims().1,
    )])
}

/// Splits a (..., 1|2) tensor into real and imaginary planes.
fn planes(x: &Tensor) -> OpResult<(Vec<f64>, Vec<f64>)> {
    let c = *x.shape.last().unwrap_or(&0);
    if c != 1 && c != 2 {
        op_bail!("the last dim of a signal must be 1 (real) or 2 (complex), found {c}");
    }
    let v = x.to_f64_vec().ok_or("signal must be numeric")?;
    if c == 1 {
        let zeros = vec![0.0; v.len()];
        return Ok((v, zeros));
    }
    Ok((
        v.iter().step_by(2).copied().collect(),
        v.iter().skip(1).step_by(2).copied().collect(),
    ))
}

fn interleave(d: DType, shape: Vec<usize>, re: &[f64], im: &[f64], c: usize) -> Tensor {
    let v = if c == 1 {
        re.to_vec()
    } else {
        re.iter().zip(im).flat_map(|(&r, &i)| [r, i]).collect()
    };
    Tensor::from_f64(d, shape, v)
}

/// Applies the DFT along `args.axis` of a signal tensor; returns the result
/// planes and the output shape (with the trailing complex dim).
fn transform(x: &Tensor, args: &DftArgs) -> OpResult<(Vec<f64>, Vec<f64>, Vec<usize>)> {
    let (re, im) = planes(x)?;
    let r = x.rank();
    let m = x.shape[args.axis];
    let outer: usize = x.shape[..args.axis].iter().product();
    let inner: usize = x.shape[args.axis + 1..r - 1].iter().product();
    let (len, c) = args.out_dims();
    let n = args.n;
    let mut ore = vec![0.0; outer * len * inner];
    let mut oim = vec![0.0; outer * len * inner];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| (o * m + k) * inner + i;
            let sr: Vec<f64> = (0..m).map(|k| re[at(k)]).collect();
            let si: Vec<f64> = (0..m).map(|k| im[at(k)]).collect();
            let (fr, fi) = dft_signal(&sr, &si, n, len, args.inverse, args.onesided);
            for k in 0..len {
                let j = (o * len + k) * inner + i;
                ore[j] = fr[k];
                oim[j] = fi[k];
            }
        }
    }
    let mut shape = x.shape.clone();
    shape[args.axis] = len;
    shape[r - 1] = c;
    Ok((ore, oim, shape))
}

fn infer_stft(ctx: &Ctx, ins: &[Option<TypeInput>]) -> OpResult<Vec<TensorType>> {
    let x = input(ins, 0)?.ty;
    input(ins, 1)?;
    if x.dtype.class() != DClass::Float {
        op_bail!("STFT needs a float signal, found {}", x.dtype);
    }
    let onesided = ctx.int("onesided", 1)? != 0;
    let dims = x.shape.dims();
    if let Some(d) = dims
        && d.len() != 3
    {
        op_bail!(
            "STFT signal must be [batch, length, 1 or 2], found rank {}",
            d.len()
        );
    }
    let step = const_input(ins, 1, "frame_step")?;
    let window_len = match ins.get(2) {
        Some(Some(w)) => w.ty.shape.dims().and_then(|d| d.first()?.as_static()),
        _ => None,
    };
    let frame = match const_input(ins, 3, "frame_length")? {
        Some(f) => Some(f as u64),
        None if matches!(ins.get(3), Some(Some(_))) => None,
        None => window_len,
    };
    let length = dims.and_then(|d| d[1].as_static());
    let frames = match (length, frame, step) {
        (Some(l), Some(f), Some(s)) if s > 0 && l >= f => Dim::Static(1 + (l - f) / s as u64),
        _ => Dim::Unknown,
    };
    let bins = static_dim(frame.map(|f| if onesided { f / 2 + 1 } else { f } as usize));
    let batch = dims.map_or(Dim::Unknown, |d| d[0].clone());
    Ok(vec![TensorType::new(
        x.dtype,
        Shape(Some(vec![batch, frames, bins, Dim::Static(2)])),
    )])
}

fn k_stft(ctx: &Ctx, ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
    let x = operand(ins, 0)?;
    if x.rank() != 3 {
        op_bail!(
            "STFT signal must be [batch, length, 1 or 2], found {:?}",
            x.shape
        );
    }
    let onesided = ctx.int("onesided", 1)? != 0;
    let step = scalar_int(operand(ins, 1)?, "frame_step")?;
    if step <= 0 {
        op_bail!("frame_step must be positive, found {step}");
    }
    let step = step as usize;
    let window = match ins.get(2) {
        Some(Some(w)) => Some(w.to_f64_vec().ok_or("window must be numeric")?),
        _ => None,
    };
    let frame = match (ins.get(3), &window) {
        (Some(Some(f)), _) => non_negative(scalar_int(f, "frame_length")?, "frame_length")?,
        (_, Some(w)) => w.len(),
        _ => x.shape[1],
    };
    let window = window.unwrap_or_else(|| vec![1.0; frame]);
    let (batch, len) = (x.shape[0], x.shape[1]);
    if frame == 0 || frame > len {
        op_bail!("frame_length {frame} does not fit a signal of length {len}");
    }
    let frames = 1 + (len - frame) / step;
    let wl = window.len();
    // Windowed frames laid out as [batch, frames, window, c], zero past the
    // end of the signal; then one DFT of `frame` points along axis 2.
    let (re, im) = planes(x)?;
    let mut fr = Vec::with_capacity(batch * frames * wl * 2);
    for b in 0..batch {
        for f in 0..frames {
            for (k, &w) in window.iter().enumerate() {
                let t = f * step + k;
                let (r, i) = if t < len {
                    (re[b * len + t], im[b * len + t])
                } else {
                    (0.0, 0.0)
                };
                fr.extend([r * w, i * w]);
            }
        }
    }
    let framed = Tensor::from_f64(DType::F64, vec![batch, frames, wl, 2], fr);
    let args = DftArgs {
        axis: 2,
        n: frame,
        inverse: false,
        onesided,
    };
    let (ore, oim, shape) = transform(&framed, &args)?;
    Ok(vec![interleave(x.dtype, shape, &ore, &oim, 2)])
}

#[cfg(test)]
mod tests {
    use crate::interp::Tensor;
    use crate::semantics::reduce::tests::{close, floats, i64t, run};
    use crate::{Attr, DType, Op};

    fn f64t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F64, shape.to_vec(), v.to_vec())
    }

    #[test]
    fn windows() {
        let f64out = ("output_datatype", Attr::Int(11));
        let five = i64t(&[], &[5]);
        // np.sin(np.arange(5) * np.pi / 4) ** 2
        let o = run(
            Op::HannWindow,
            &[("periodic", Attr::Int(0)), f64out.clone()],
            &[Some(&five)],
            1,
        );
        close(&floats(&o[0]), &[0.0, 0.5, 1.0, 0.5, 0.0], 1e-12);
        // 25/46 - 21/46 * np.cos(np.arange(4) * 2 * np.pi / 4)
        let o = run(
            Op::HammingWindow,
            std::slice::from_ref(&f64out),
            &[Some(&i64t(&[], &[4]))],
            1,
        );
        close(
            &floats(&o[0]),
            &[
                0.08695652173913043,
                0.5434782608695652,
                1.0,
                0.5434782608695653,
            ],
            1e-12,
        );
        // 0.42 - 0.5*cos(2 pi n/5) + 0.08*cos(4 pi n/5), n = arange(5)
        let o = run(Op::BlackmanWindow, &[], &[Some(&five)], 1);
        assert_eq!(o[0].dtype, DType::F32);
        close(
            &floats(&o[0]),
            &[
                0.0,
                0.20077014326253045,
                0.8492298567374694,
                0.8492298567374695,
                0.20077014326253056,
            ],
            1e-6,
        );
    }

    #[test]
    fn dft_forward_inverse() {
        let x = f64t(&[1, 5, 1], &[1.0, 2.0, -1.0, 0.5, 3.0]);
        // np.fft.fft(x)
        let o = run(Op::DFT, &[], &[Some(&x)], 1);
        assert_eq!(o[0].shape, vec![1, 5, 2]);
        close(
            &floats(&o[0]),
            &[
                5.5,
                0.0,
                2.949593469062211,
                1.8327343947338632,
                -3.199593469062211,
                -0.8387995221502571,
                -3.199593469062211,
                0.8387995221502571,
                2.949593469062211,
                -1.8327343947338632,
            ],
            1e-12,
        );
        // np.fft.rfft(x, n=6), axis given explicitly as 1
        let o = run(
            Op::DFT,
            &[("onesided", Attr::Int(1))],
            &[Some(&x), Some(&i64t(&[], &[6])), Some(&i64t(&[], &[1]))],
            1,
        );
        assert_eq!(o[0].shape, vec![1, 4, 2]);
        close(
            &floats(&o[0]),
            &[
                5.5,
                0.0,
                0.5,
                1.7320508075688772,
                -0.5,
                -5.196152422706632,
                0.5,
                0.0,
            ],
            1e-12,
        );
        // np.fft.irfft([1+1j, 2-1j, 0.5+2j], n=4)
        let s = f64t(&[3, 2], &[1.0, 1.0, 2.0, -1.0, 0.5, 2.0]);
        let o = run(
            Op::DFT,
            &[("onesided", Attr::Int(1)), ("inverse", Attr::Int(1))],
            &[Some(&s), None, Some(&i64t(&[], &[0]))],
            1,
        );
        assert_eq!(o[0].shape, vec![4, 1]);
        close(&floats(&o[0]), &[1.375, 0.625, -0.625, -0.375], 1e-12);
        // np.fft.ifft([1+2j, -1+0.5j, 3-1j])
        let c = f64t(&[3, 2], &[1.0, 2.0, -1.0, 0.5, 3.0, -1.0]);
        let o = run(
            Op::DFT,
            &[("inverse", Attr::Int(1))],
            &[Some(&c), None, Some(&i64t(&[], &[0]))],
            1,
        );
        close(
            &floats(&o[0]),
            &[
                1.0,
                0.5,
                -0.4330127018922193,
                -0.40470053837925146,
                0.4330127018922193,
                1.9047005383792515,
            ],
            1e-12,
        );
    }

    #[test]
    fn stft_hann_frames() {
        let sig = f64t(&[1, 8, 1], &[0.5, 1.0, -2.0, 3.0, 0.25, -1.0, 2.0, 1.5]);
        let w = f64t(&[4], &[0.0, 0.5, 1.0, 0.5]);
        // [np.fft.rfft(sig[2f:2f+4] * w) for f in range(3)], w = hann(4, periodic)
        let o = run(
            Op::STFT,
            &[],
            &[Some(&sig), Some(&i64t(&[], &[2])), Some(&w), None],
            1,
        );
        assert_eq!(o[0].shape, vec![1, 3, 3, 2]);
        close(
            &floats(&o[0]),
            &[
                0.0, 0.0, 2.0, 1.0, -4.0, 0.0, 1.25, 0.0, -0.25, -2.0, -0.75, 0.0, 2.25, 0.0, -2.0,
                1.25, 1.75, 0.0,
            ],
            1e-9,
        );
    }

    #[test]
    fn mel_weight_matrix() {
        // onnx.reference.ops.op_mel_weight_matrix.MelWeightMatrix._run(
        //     None, 4, 16, 8000, np.float32(0), np.float32(4000))
        let ins = [
            i64t(&[], &[4]),
            i64t(&[], &[16]),
            i64t(&[], &[8000]),
            Tensor::from_f64(DType::F32, vec![], vec![0.0]),
            Tensor::from_f64(DType::F32, vec![], vec![4000.0]),
        ];
        let refs: Vec<Option<&Tensor>> = ins.iter().map(Some).collect();
        let o = run(Op::MelWeightMatrix, &[], &refs, 1);
        assert_eq!(o[0].shape, vec![9, 4]);
        let mut want = vec![0.0; 36];
        for (r, c, v) in [
            (0, 0, 1.0),
            (1, 1, 1.0),
            (2, 2, 1.0),
            (3, 3, 1.0),
            (4, 3, 0.5),
        ] {
            want[r * 4 + c] = v;
        }
        assert_eq!(floats(&o[0]), want);
    }

    #[test]
    fn type_rules_without_values() {
        use crate::semantics::{Ctx, TypeInput};
        use crate::{Dim, Shape, TensorType};
        let x = TensorType::new(
            DType::F32,
            Shape(Some(vec![
                Dim::Sym("B".into()),
                Dim::Static(16),
                Dim::Static(1),
            ])),
        );
        let scalar = TensorType::of_static(DType::I64, &[]);
        let n = crate::semantics::reduce::tests::node(Op::DFT, 3, 1, &[("onesided", Attr::Int(1))]);
        let ctx = Ctx::new(&n);
        let infer = crate::semantics::lookup(Op::DFT).unwrap().infer;
        // Default axis -2, default length: rfft of 16 points gives 9 bins.
        let t = infer(
            &ctx,
            &[Some(TypeInput {
                ty: &x,
                value: None,
            })],
        )
        .unwrap();
        assert_eq!(
            t[0].shape,
            Shape(Some(vec![
                Dim::Sym("B".into()),
                Dim::Static(9),
                Dim::Static(2)
            ]))
        );
        // A run-time length leaves that dim unknown.
        let t = infer(
            &ctx,
            &[
                Some(TypeInput {
                    ty: &x,
                    value: None,
                }),
                Some(TypeInput {
                    ty: &scalar,
                    value: None,
                }),
            ],
        )
        .unwrap();
        assert_eq!(
            t[0].shape,
            Shape(Some(vec![
                Dim::Sym("B".into()),
                Dim::Unknown,
                Dim::Static(2)
            ]))
        );
        // The complex dim cannot be the transform axis.
        let last = i64t(&[], &[-1]);
        assert!(
            infer(
                &ctx,
                &[
                    Some(TypeInput {
                        ty: &x,
                        value: None
                    }),
                    None,
                    Some(TypeInput {
                        ty: &scalar,
                        value: Some(&last)
                    }),
                ],
            )
            .is_err()
        );
        // A window of run-time size has one unknown dim.
        let wn = crate::semantics::reduce::tests::node(Op::HannWindow, 1, 1, &[]);
        let t = (crate::semantics::lookup(Op::HannWindow).unwrap().infer)(
            &Ctx::new(&wn),
            &[Some(TypeInput {
                ty: &scalar,
                value: None,
            })],
        )
        .unwrap();
        assert_eq!(
            t[0],
            TensorType::new(DType::F32, Shape(Some(vec![Dim::Unknown])))
        );
    }
}
