//! Hann, Hamming and Blackman windows: the window length is the output's
//! static extent (the size input need not be a constant), one point per
//! sample, computed in f64 and rounded on store like the reference.

use super::reduce::bad;
use super::{LResult, Lower, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let op = l.op();
    match op {
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => Some(window(l, op)),
        _ => None,
    }
}

fn window(l: &mut Lower, op: &str) -> LResult<()> {
    let y = l.out(0)?;
    if y.rank() != 1 || !y.ty.is_float() || y.numel() == 0 {
        return unsupported(format!("{op} of shape {:?} ({})", y.dims, y.dtype));
    }
    let size = y.dims[0];
    let periodic = l.ctx().int("periodic", 1).map_err(bad)? != 0;
    // A symmetric window of N points is the periodic one of N - 1.
    let period = if periodic {
        size as f64
    } else {
        size as f64 - 1.0
    };
    let mut k = Kernel::new(op.to_ascii_lowercase(), vec![size]);
    let yp = param(&mut k, "y", &y, Access::Write);
    let f = |x: f64| lit(x, Ty::F64);
    let t = mul(
        cast(Ty::F64, k.index(0)),
        f(2.0 * std::f64::consts::PI / period),
    );
    let v = match op {
        "BlackmanWindow" => add(
            sub(f(0.42), mul(f(0.5), un(UnOp::Cos, t.clone()))),
            mul(f(0.08), un(UnOp::Cos, mul(f(2.0), t))),
        ),
        // ONNX's Hamming uses alpha = 25/46, not the rounded 0.54.
        "HammingWindow" => sub(f(25.0 / 46.0), mul(f(21.0 / 46.0), un(UnOp::Cos, t))),
        _ => {
            let s = un(UnOp::Sin, mul(t, f(0.5)));
            mul(s.clone(), s)
        }
    };
    k.body.push(Stmt::Store {
        buf: yp,
        index: k.index(0),
        value: cast(y.ty.compute(), v),
    });
    l.kernel(k, &[&y])
}
