//! Softmax, LogSoftmax and Hardmax along one axis: one domain point per
//! row (the other dims), three serial passes over the row (max, sum of
//! exponentials, write), so rows run in parallel.

use super::fold::Fold;
use super::reduce::{Split, acc_float, bad, neg_inf, norm_axis, serial};
use super::{LResult, Lower, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, CmpOp, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let op = l.op();
    Some(match op {
        "Softmax" | "LogSoftmax" | "Hardmax" => (|| {
            let x = l.input(0)?;
            let y = l.out(0)?;
            if x.rank() == 0 {
                return unsupported(format!("{op} of a scalar"));
            }
            let axis = norm_axis(l.ctx().int("axis", -1).map_err(bad)?, x.rank())?;
            let k = softmax_kernel(op, &x, &y, axis)?;
            l.kernel(k, &[&x, &y])
        })(),
        _ => return None,
    })
}

/// `y = op(x)` along `axis` (`op` is Softmax, LogSoftmax or Hardmax).
pub(crate) fn softmax_kernel(op: &str, x: &T, y: &T, axis: usize) -> LResult<Kernel> {
    let xt = x.ty.compute();
    if !xt.is_float() {
        return unsupported(format!("{op} of {}", x.dtype));
    }
    if x.numel() == 0 {
        return unsupported(format!("{op} of an empty tensor"));
    }
    let at = acc_float(xt);
    let len = x.dims[axis];
    let stride: u64 = x.dims[axis + 1..].iter().product();
    let mut mask = vec![false; x.rank()];
    mask[axis] = true;
    let s = Split::new(&x.dims, &mask);
    let mut k = Kernel::new(op.to_ascii_lowercase(), s.domain());
    let xp = param(&mut k, "x", x, Access::Read);
    let yp = param(&mut k, "y", y, Access::Write);
    let base = s.base(&k);
    let at_row = |r: smelt_kernel::Var| add(base.clone(), mul(var(r), idx(stride as i64)));
    let yt = y.ty.compute();
    let w = k.var("w", Ty::I64, false);
    if op == "Hardmax" {
        // The first maximum wins; NaN never beats it (the reference's `>`).
        let mx = k.var("mx", at, true);
        let arg = k.var("arg", Ty::I64, true);
        let r = k.var("r", Ty::I64, false);
        let c = k.var("c", at, false);
        k.body.push(Stmt::Decl(mx, neg_inf(at)));
        k.body.push(Stmt::Decl(arg, idx(0)));
        let pass = vec![
            Stmt::Let(c, cast(at, load(xp, at_row(r)))),
            Stmt::If {
                cond: cmp(CmpOp::Gt, var(c), var(mx)),
                then: vec![Stmt::Set(mx, var(c)), Stmt::Set(arg, var(r))],
                els: vec![],
            },
        ];
        k.body.push(serial(r, len, pass));
        let v = select(cmp(CmpOp::Eq, var(w), var(arg)), lit(1.0, yt), lit(0.0, yt));
        k.body.push(serial(
            w,
            len,
            vec![Stmt::Store {
                buf: yp,
                index: at_row(w),
                value: v,
            }],
        ));
        return Ok(k);
    }
    // The maximum ignores NaN (the reference's `>`), then the sum of
    // exponentials shifted by it.
    let (st, mx) = Fold {
        ty: at,
        init: neg_inf(at),
        term: &|_, i| cast(at, load(xp, i)),
        combine: &|a, b| select(cmp(CmpOp::Gt, b.clone(), a.clone()), b, a),
    }
    .run(&mut k, base.clone(), len, stride as i64);
    k.body.extend(st);
    let (st, sum) = Fold {
        ty: at,
        init: lit(0.0, at),
        term: &|_, i| un(UnOp::Exp, sub(cast(at, load(xp, i)), var(mx))),
        combine: &add,
    }
    .run(&mut k, base.clone(), len, stride as i64);
    k.body.extend(st);
    let d = sub(cast(at, load(xp, at_row(w))), var(mx));
    let value = if op == "LogSoftmax" {
        let ls = k.var("ls", at, false);
        k.body.push(Stmt::Let(ls, un(UnOp::Log, var(sum))));
        sub(d, var(ls))
    } else {
        let inv = k.var("inv", at, false);
        k.body.push(Stmt::Let(inv, div(lit(1.0, at), var(sum))));
        mul(un(UnOp::Exp, d), var(inv))
    };
    k.body.push(serial(
        w,
        len,
        vec![Stmt::Store {
            buf: yp,
            index: at_row(w),
            value: cast(yt, value),
        }],
    ));
    Ok(k)
}
