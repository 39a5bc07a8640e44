//! Signal windows (Hann, Hamming, Blackman). The window length is the
//! output's static size, so the values are computed here, in f64 like the
//! reference, and written as a constant table.

use super::{LResult, Lower, LowerError, fill, unsupported};
use smelt_kernel::ir::build::lit;
use std::f64::consts::PI;

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let op = l.op();
    match op {
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => Some(window(l, op)),
        _ => None,
    }
}

fn window(l: &mut Lower, op: &str) -> LResult<()> {
    let y = l.out(0)?;
    if y.rank() != 1 || !y.ty.is_float() {
        return unsupported(format!("{op} producing {}", y.dtype));
    }
    let n = y.dims[0];
    if n > 4096 {
        // One store per value: keep the kernel small.
        return unsupported(format!("{op} of {n} points"));
    }
    let periodic = l
        .ctx()
        .int("periodic", 1)
        .map_err(|e| LowerError::Invalid(e.0))?
        != 0;
    // A symmetric window of N points is the periodic one of N - 1.
    let period = if periodic { n as f64 } else { n as f64 - 1.0 };
    let vals: Vec<_> = (0..n)
        .map(|i| {
            let t = 2.0 * PI * i as f64 / period;
            let v = match op {
                "BlackmanWindow" => 0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos(),
                // ONNX's Hamming uses alpha = 25/46, not the rounded 0.54.
                "HammingWindow" => 25.0 / 46.0 - (21.0 / 46.0) * t.cos(),
                _ => (t / 2.0).sin().powi(2),
            };
            lit(v, y.ty)
        })
        .collect();
    fill::write_consts(l, &y, &vals)
}
