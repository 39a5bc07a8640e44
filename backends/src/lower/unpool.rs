//! MaxUnpool: zeros, then the values scattered to their indices.
//!
//! Indices are flat over the whole unpooled tensor (batch and channel
//! included), so any input element may land in any plane: the scatter is
//! one serial loop, which keeps "last write wins" for repeated indices as
//! in the reference. A larger `output_shape` holds the unpooled block at
//! its origin.

use super::linalg::invalid;
use super::{LResult, Lower, LowerError, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "MaxUnpool" => max_unpool(l),
        _ => return None,
    })
}

fn max_unpool(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ind = l.input(1)?;
    let y = l.out(0)?;
    if x.rank() < 3 || y.rank() != x.rank() || ind.numel() != x.numel() {
        return Err(LowerError::Invalid(
            "MaxUnpool needs rank >= 3 and one index per element".into(),
        ));
    }
    if !x.ty.is_float() || y.ty != x.ty || !ind.ty.is_int() {
        return unsupported(format!("MaxUnpool of {}", x.dtype));
    }
    let sp = x.rank() - 2;
    let ctx = l.ctx();
    let kernel = match ctx.ints("kernel_shape").map_err(invalid)? {
        Some(k) if k.len() == sp => k,
        _ => return Err(LowerError::Invalid("MaxUnpool kernel_shape".into())),
    };
    let strides = match ctx.ints("strides").map_err(invalid)? {
        None => vec![1; sp],
        Some(s) if s.len() == sp => s,
        Some(_) => return Err(LowerError::Invalid("MaxUnpool strides".into())),
    };
    let pads = match ctx.ints("pads").map_err(invalid)? {
        None => vec![0; 2 * sp],
        Some(p) if p.len() == 2 * sp => p,
        Some(_) => return Err(LowerError::Invalid("MaxUnpool pads".into())),
    };
    let mut inferred = x.dims[..2].to_vec();
    for i in 0..sp {
        let d = (x.dims[2 + i] as i64 - 1) * strides[i] + kernel[i] - pads[i] - pads[sp + i];
        inferred.push(d.max(0) as u64);
    }
    if inferred.iter().zip(&y.dims).any(|(b, o)| b > o) {
        return Err(LowerError::Invalid(format!(
            "MaxUnpool output {:?} is smaller than the unpooled {inferred:?}",
            y.dims
        )));
    }
    if l.opt_input(2).is_none() && inferred != y.dims {
        return Err(LowerError::Invalid("MaxUnpool output shape".into()));
    }
    let ty = y.ty.compute();
    let mut z = Kernel::new("unpool_zero", y.dims.clone());
    let all: Vec<Expr> = (0..y.rank()).map(|d| z.index(d)).collect();
    let zp = param(&mut z, "y", &y, Access::Write);
    z.body.push(Stmt::Store {
        buf: zp,
        index: flat(&all, &y.dims),
        value: lit(0.0, ty),
    });
    l.kernel(z, &[&y])?;
    let total: u64 = inferred.iter().product();
    if x.numel() == 0 || total == 0 {
        return Ok(());
    }
    let mut k = Kernel::new("unpool_scatter", vec![1]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let ip = param(&mut k, "ind", &ind, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let r = k.var("r", Ty::I64, false);
    let j = k.var("j", Ty::I64, false);
    // Out-of-range indices (the reference rejects them) write nothing.
    let target = if inferred == y.dims {
        var(j)
    } else {
        let coords: Vec<Expr> = (0..inferred.len())
            .map(|d| {
                let inner: u64 = inferred[d + 1..].iter().product();
                rem(div(var(j), idx(inner as i64)), idx(inferred[d] as i64))
            })
            .collect();
        flat(&coords, &y.dims)
    };
    let body = vec![
        Stmt::Let(j, cast(Ty::I64, load(ip, var(r)))),
        Stmt::If {
            cond: bin(
                BinOp::And,
                cmp(CmpOp::Ge, var(j), idx(0)),
                cmp(CmpOp::Lt, var(j), idx(total as i64)),
            ),
            then: vec![Stmt::Store {
                buf: yp,
                index: target,
                value: load(xp, var(r)),
            }],
            els: vec![],
        },
    ];
    k.body.push(Stmt::Loop {
        var: r,
        extent: idx(x.numel() as i64),
        kind: LoopKind::Serial,
        body,
    });
    l.kernel(k, &[&x, &ind, &y])
}
