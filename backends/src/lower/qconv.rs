//! Integer convolutions: ConvInteger and QLinearConv.
//!
//! One output element per domain point: an exact i64 sum over input
//! channels and taps of the zero-point-shifted operands (padding
//! contributes 0 after the shift, as in the reference), then (QLinear) the
//! int32 bias, the rescale, round half to even and saturation.

use super::conv::{Window, tap_input, tap_loops};
use super::linalg::invalid;
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "ConvInteger" => int_conv(l, false),
        "QLinearConv" => int_conv(l, true),
        _ => return None,
    })
}

/// A scalar or per-output-channel operand (`want` values) at channel `ch`.
fn per_channel(k: &mut Kernel, name: &str, t: &T, ch: &Expr, want: u64) -> LResult<Expr> {
    let p = param(k, name, t, Access::Read);
    if t.numel() == 1 {
        Ok(load(p, idx(0)))
    } else if t.numel() == want {
        Ok(load(p, ch.clone()))
    } else {
        Err(LowerError::Invalid(format!(
            "{name} has {} values, expected 1 or {want}",
            t.numel()
        )))
    }
}

fn int_conv(l: &mut Lower, qlinear: bool) -> LResult<()> {
    let (xi, wi, xzi, wzi) = if qlinear { (0, 3, 2, 5) } else { (0, 1, 2, 3) };
    let x = l.input(xi)?;
    let w = l.input(wi)?;
    let y = l.out(0)?;
    let name = if qlinear {
        "QLinearConv"
    } else {
        "ConvInteger"
    };
    if x.rank() < 3 || w.rank() != x.rank() || y.rank() != x.rank() {
        return Err(LowerError::Invalid(format!(
            "{name} needs X, W of equal rank >= 3"
        )));
    }
    if !x.ty.is_int() || !w.ty.is_int() {
        return unsupported(format!("{name} of {} x {}", x.dtype, w.dtype));
    }
    let group = l.ctx().int("group", 1).map_err(invalid)?.max(1) as u64;
    let (n, c, m, cg) = (x.dims[0], x.dims[1], w.dims[0], w.dims[1]);
    if c != cg * group || m % group != 0 || y.dims[1] != m || y.dims[0] != n {
        return Err(LowerError::Invalid(format!(
            "{name} channels do not fit group {group}: X {:?}, W {:?}",
            x.dims, w.dims
        )));
    }
    let win = Window::read(l, &x.dims[2..], Some(&w.dims[2..]))?;
    if win.kernel != w.dims[2..] {
        return Err(LowerError::Invalid("kernel_shape differs from W".into()));
    }
    let sp = x.rank() - 2;
    let mg = m / group;
    let ins = x.dims[2..].to_vec();
    let mut k = Kernel::new(
        if qlinear {
            "qlinear_conv"
        } else {
            "conv_integer"
        },
        y.dims.clone(),
    );
    let all: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let (nv, mv) = (all[0].clone(), all[1].clone());
    let xp = param(&mut k, "x", &x, Access::Read);
    let wp = param(&mut k, "w", &w, Access::Read);
    let mut args: Vec<T> = vec![x.clone(), w.clone()];
    let xz = match l.opt_input(xzi) {
        Some(t) => {
            let e = per_channel(&mut k, "x_zp", &t, &mv, 1)?;
            args.push(t);
            cast(Ty::I64, e)
        }
        None => idx(0),
    };
    let wz = match l.opt_input(wzi) {
        Some(t) => {
            let e = per_channel(&mut k, "w_zp", &t, &mv, m)?;
            args.push(t);
            cast(Ty::I64, e)
        }
        None => idx(0),
    };
    let xzv = k.var("xz", Ty::I64, false);
    let wzv = k.var("wz", Ty::I64, false);
    k.body.push(Stmt::Let(xzv, xz));
    k.body.push(Stmt::Let(wzv, wz));
    let acc = k.var("acc", Ty::I64, true);
    let ic = k.var("ic", Ty::I64, false);
    let c0 = mul(div(mv.clone(), idx(mg as i64)), idx(cg as i64));
    let cin = add(c0, var(ic));
    let inner = tap_loops(&mut k, &win.kernel, |k, taps| {
        let (mut pre, cond, pos) = tap_input(k, &win, &all[2..2 + sp], taps, &ins[..sp]);
        let mut sub_ix = vec![nv.clone(), cin.clone()];
        sub_ix.extend(pos);
        let mut wsub = vec![mv.clone(), var(ic)];
        wsub.extend(taps.iter().cloned());
        let prod = mul(
            sub(cast(Ty::I64, load(xp, flat(&sub_ix, &x.dims))), var(xzv)),
            sub(cast(Ty::I64, load(wp, flat(&wsub, &w.dims))), var(wzv)),
        );
        pre.push(Stmt::If {
            cond,
            then: vec![Stmt::Set(acc, add(var(acc), prod))],
            els: vec![],
        });
        pre
    });
    k.body.push(Stmt::Decl(acc, idx(0)));
    k.body.push(Stmt::Loop {
        var: ic,
        extent: idx(cg as i64),
        kind: LoopKind::Serial,
        body: inner,
    });
    let value = if qlinear {
        let (lo, hi) = match y.ty {
            Ty::U8 => (0.0, 255.0),
            Ty::I8 => (-128.0, 127.0),
            Ty::U16 => (0.0, 65535.0),
            Ty::I16 => (-32768.0, 32767.0),
            Ty::I32 => (i32::MIN as f64, i32::MAX as f64),
            _ => return unsupported(format!("QLinearConv to {}", y.dtype)),
        };
        let xsc = l.input(1)?;
        let wsc = l.input(4)?;
        let ysc = l.input(6)?;
        let yzp = l.input(7)?;
        if xsc.numel() != 1 || ysc.numel() != 1 || yzp.numel() != 1 {
            return Err(LowerError::Invalid(
                "QLinearConv needs scalar x_scale, y_scale, y_zero_point".into(),
            ));
        }
        let sx = cast(Ty::F64, per_channel(&mut k, "x_scale", &xsc, &mv, 1)?);
        let sw = cast(Ty::F64, per_channel(&mut k, "w_scale", &wsc, &mv, m)?);
        let sy = cast(Ty::F64, per_channel(&mut k, "y_scale", &ysc, &mv, 1)?);
        let zy = cast(Ty::F64, per_channel(&mut k, "y_zp", &yzp, &mv, 1)?);
        args.extend([xsc, wsc, ysc, yzp]);
        let mut sum = var(acc);
        if let Some(b) = l.opt_input(8) {
            if !b.ty.is_int() {
                return unsupported(format!("QLinearConv bias of {}", b.dtype));
            }
            let bv = per_channel(&mut k, "b", &b, &mv, m)?;
            args.push(b);
            sum = add(sum, cast(Ty::I64, bv));
        }
        // Same association as the reference: ((acc * sx) * sw) / sy + zy.
        let v = add(div(mul(mul(cast(Ty::F64, sum), sx), sw), sy), zy);
        let v = bin(
            BinOp::Min,
            bin(BinOp::Max, un(UnOp::Round, v), lit(lo, Ty::F64)),
            lit(hi, Ty::F64),
        );
        cast(y.ty, v)
    } else {
        if y.ty != Ty::I32 {
            return unsupported("ConvInteger to a dtype other than int32");
        }
        cast(Ty::I32, var(acc))
    };
    let yp = param(&mut k, "y", &y, Access::Write);
    args.push(y.clone());
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&all, &y.dims),
        value,
    });
    let refs: Vec<&T> = args.iter().collect();
    l.kernel(k, &refs)
}
