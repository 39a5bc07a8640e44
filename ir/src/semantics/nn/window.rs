//! Sliding-window geometry shared by Conv, ConvTranspose and the pools:
//! attribute reading, auto_pad and output sizes.

use crate::semantics::{Ctx, OpResult};
use crate::{Dim, op_bail};

/// Per-spatial-dim window attributes, already defaulted.
pub(super) struct Geometry {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Explicit pads as (begin, end); replaced when auto_pad is set.
    pub pads: Vec<(i64, i64)>,
    pub auto_pad: String,
    pub ceil_mode: bool,
}

fn positive(v: Vec<i64>, what: &str) -> OpResult<Vec<usize>> {
    v.into_iter()
        .map(|x| {
            if x < 1 {
                op_bail!("`{what}` values must be >= 1, found {x}")
            }
            Ok(x as usize)
        })
        .collect()
}

impl Geometry {
    /// Reads the window attributes for `sp` spatial dims; `kernel` is the
    /// kernel size from the weights when the op has weights.
    pub fn read(ctx: &Ctx, sp: usize, kernel: Option<Vec<usize>>) -> OpResult<Geometry> {
        let kernel = match (ctx.ints("kernel_shape")?, kernel) {
            (Some(k), _) => positive(k, "kernel_shape")?,
            (None, Some(k)) => k,
            (None, None) => op_bail!("attribute `kernel_shape` is required"),
        };
        if kernel.len() != sp {
            op_bail!(
                "kernel has {} dims but the input has {sp} spatial dims",
                kernel.len()
            );
        }
        let per_dim = |name: &str| -> OpResult<Vec<usize>> {
            match ctx.ints(name)? {
                None => Ok(vec![1; sp]),
                Some(v) if v.len() == sp => positive(v, name),
                Some(v) => op_bail!("`{name}` has {} values, expected {sp}", v.len()),
            }
        };
        let pads = match ctx.ints("pads")? {
            None => vec![(0, 0); sp],
            Some(p) if p.len() == 2 * sp => (0..sp).map(|i| (p[i], p[i + sp])).collect(),
            Some(p) => op_bail!("`pads` has {} values, expected {}", p.len(), 2 * sp),
        };
        Ok(Geometry {
            kernel,
            strides: per_dim("strides")?,
            dilations: per_dim("dilations")?,
            pads,
            auto_pad: ctx.string("auto_pad", "NOTSET")?,
            ceil_mode: ctx.int("ceil_mode", 0)? != 0,
        })
    }

    /// Extent of the dilated kernel along dim `i`.
    pub fn span(&self, i: usize) -> i64 {
        ((self.kernel[i] - 1) * self.dilations[i] + 1) as i64
    }

    /// Output size and (begin, end) pads of dim `i` for input size `n`.
    pub fn out_dim(&self, i: usize, n: usize) -> OpResult<(usize, (i64, i64))> {
        let (n, s, ek) = (n as i64, self.strides[i] as i64, self.span(i));
        let (out, pads) = match self.auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = (n + s - 1) / s;
                let total = ((out - 1) * s + ek - n).max(0);
                let small = total / 2;
                let pads = if self.auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                (out, pads)
            }
            "VALID" => ((n - ek).div_euclid(s) + 1, (0, 0)),
            "NOTSET" | "" => {
                let (b, e) = self.pads[i];
                let room = n + b + e - ek;
                let out = if self.ceil_mode {
                    let mut o = room.div_euclid(s) + i64::from(room.rem_euclid(s) != 0) + 1;
                    // The last window must start inside the input or its
                    // leading padding.
                    if (o - 1) * s >= n + b {
                        o -= 1;
                    }
                    o
                } else {
                    room.div_euclid(s) + 1
                };
                (out, (b, e))
            }
            other => op_bail!("unknown auto_pad `{other}`"),
        };
        if out < 0 {
            op_bail!("the window does not fit the input: input {n}, kernel span {ek}");
        }
        Ok((out as usize, pads))
    }

    /// Output dims for symbolic input spatial dims (unknown where the input is).
    pub fn out_dims(&self, dims: &[Dim]) -> OpResult<Vec<Dim>> {
        dims.iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Static(n) => Ok(Dim::Static(self.out_dim(i, *n as usize)?.0 as u64)),
                _ => Ok(Dim::Unknown),
            })
            .collect()
    }
}

/// Range of output positions `o` in `0..out` whose input position
/// `o * s + off` lies in `0..n`.
pub(super) fn valid_range(out: usize, n: usize, s: usize, off: i64) -> (usize, usize) {
    let s = s as i64;
    // smallest o with o*s + off >= 0
    let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
    // largest o with o*s + off <= n-1, plus one
    let hi = if (n as i64) - 1 - off < 0 {
        0
    } else {
        ((n as i64) - 1 - off) / s + 1
    };
    let lo = (lo as usize).min(out);
    (lo, (hi as usize).clamp(lo, out))
}

/// Multi-indices of a row-major box of shape `dims`, in order.
pub(super) fn box_indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let n: usize = dims.iter().product();
    let mut res = Vec::with_capacity(n);
    let mut idx = vec![0; dims.len()];
    for _ in 0..n {
        res.push(idx.clone());
        for d in (0..dims.len()).rev() {
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    res
}
