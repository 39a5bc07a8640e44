//! TopK: one domain point per line along the axis. Without scratch memory
//! per line, output slot `s` is found by one serial pass that picks the best
//! element ranked after slot `s - 1`'s in the total order (value, with NaN
//! above every number, then lower index first) — K passes over the line.

use super::reduce::{bad, norm_axis, serial};
use super::{LResult, Lower, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "TopK" => Some(topk(l)),
        _ => None,
    }
}

fn or(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Or, a, b)
}

fn and(a: Expr, b: Expr) -> Expr {
    bin(BinOp::And, a, b)
}

fn topk(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let vals = l.out(0)?;
    let inds = l.out(1)?;
    let ctx = l.ctx();
    let a = norm_axis(ctx.int("axis", -1).map_err(bad)?, x.rank())?;
    // A run-time K is the outputs' static extent along the axis.
    let kk = match l.const_ints(1).as_deref() {
        Some([k]) if *k >= 0 => *k as u64,
        Some(_) => return unsupported("TopK: K must be one non-negative integer"),
        None => match vals.dims.get(a) {
            Some(&k) if vals.rank() == x.rank() => k,
            _ => return unsupported("TopK: output rank differs from the input's"),
        },
    };
    let largest = ctx.int("largest", 1).map_err(bad)? != 0;
    let n = x.dims[a];
    if kk > n || kk == 0 || x.numel() == 0 || inds.ty != Ty::I64 {
        return unsupported(format!("TopK with K = {kk} of {n}"));
    }
    let outer: u64 = x.dims[..a].iter().product();
    let inner: u64 = x.dims[a + 1..].iter().product();
    let xt = x.ty.compute();
    let mut k = Kernel::new("topk", vec![outer, inner]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let vp = param(&mut k, "values", &vals, Access::Write);
    let ip = param(&mut k, "indices", &inds, Access::Write);
    let (o, i) = (k.index(0), k.index(1));
    let ib = add(mul(o.clone(), idx((n * inner) as i64)), i.clone());
    let ob = add(mul(o, idx((kk * inner) as i64)), i);
    let nan = |e: &Expr| -> Expr {
        if xt.is_float() {
            un(UnOp::IsNan, e.clone())
        } else {
            Expr::Int(0, Ty::Bool)
        }
    };
    let not = |e: Expr| un(UnOp::Not, e);
    // a ranks strictly before b on value alone.
    let before = |a: &Expr, b: &Expr| -> Expr {
        let (an, bn) = (nan(a), nan(b));
        if largest {
            or(and(an, not(bn)), cmp(CmpOp::Gt, a.clone(), b.clone()))
        } else {
            or(and(not(an), bn), cmp(CmpOp::Lt, a.clone(), b.clone()))
        }
    };
    let same = |a: &Expr, b: &Expr| -> Expr {
        or(and(nan(a), nan(b)), cmp(CmpOp::Eq, a.clone(), b.clone()))
    };
    let pv = k.var("pv", xt, true);
    let pi = k.var("pi", Ty::I64, true);
    k.body.push(Stmt::Decl(pv, load(xp, ib.clone())));
    k.body.push(Stmt::Decl(pi, idx(-1)));
    let s = k.var("s", Ty::I64, false);
    let r = k.var("r", Ty::I64, false);
    let c = k.var("c", xt, false);
    let bv = k.var("bv", xt, true);
    let bi = k.var("bi", Ty::I64, true);
    let (cv, pvv, bvv) = (var(c), var(pv), var(bv));
    // Eligible: ranked after the previous slot's element.
    let eligible = or(
        cmp(CmpOp::Lt, var(pi), idx(0)),
        or(
            before(&pvv, &cv),
            and(same(&pvv, &cv), cmp(CmpOp::Lt, var(pi), var(r))),
        ),
    );
    // Indices only grow along the pass, so a tie never beats the best.
    let better = or(cmp(CmpOp::Lt, var(bi), idx(0)), before(&cv, &bvv));
    let pass = vec![
        Stmt::Let(c, load(xp, add(ib.clone(), mul(var(r), idx(inner as i64))))),
        Stmt::If {
            cond: and(eligible, better),
            then: vec![Stmt::Set(bv, var(c)), Stmt::Set(bi, var(r))],
            els: vec![],
        },
    ];
    let oi = add(ob, mul(var(s), idx(inner as i64)));
    let slot = vec![
        Stmt::Decl(bv, var(pv)),
        Stmt::Decl(bi, idx(-1)),
        serial(r, n, pass),
        Stmt::Store {
            buf: vp,
            index: oi.clone(),
            value: var(bv),
        },
        Stmt::Store {
            buf: ip,
            index: oi,
            value: var(bi),
        },
        Stmt::Set(pv, var(bv)),
        Stmt::Set(pi, var(bi)),
    ];
    k.body.push(serial(s, kk, slot));
    l.kernel(k, &[&x, &vals, &inds])
}
