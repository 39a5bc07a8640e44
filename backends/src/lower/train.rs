//! The training optimizer steps Adagrad, Adam and Momentum: one
//! elementwise kernel per optimized tensor, reading the run-time scalars R
//! (learning rate) and T (step count) and computing in f64 like the
//! reference.

use super::reduce::bad;
use super::{LResult, Lower, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let k = match l.op() {
        "Adagrad" | "Momentum" => 3,
        "Adam" => 4,
        _ => return None,
    };
    Some(optimizer(l, k))
}

fn f(x: f64) -> Expr {
    lit(x, Ty::F64)
}

fn ld(buf: usize, i: Expr) -> Expr {
    cast(Ty::F64, load(buf, i))
}

fn optimizer(l: &mut Lower, k: usize) -> LResult<()> {
    let op = l.op();
    let n_in = l.n_inputs();
    if n_in < 2 + k || !(n_in - 2).is_multiple_of(k) {
        return unsupported(format!("{op} input count {n_in}"));
    }
    let n = (n_in - 2) / k;
    let ctx = l.ctx();
    let norm = ctx.float("norm_coefficient", 0.0).map_err(bad)? as f64;
    let r = l.input(0)?;
    let t = l.input(1)?;
    if r.numel() != 1 || t.numel() != 1 || r.ty == Ty::Bool || t.ty == Ty::Bool {
        return unsupported(format!("{op}: R and T must be numeric scalars"));
    }
    for i in 0..n {
        let ins: Vec<T> = (0..k)
            .map(|g| l.input(2 + g * n + i))
            .collect::<LResult<_>>()?;
        let outs: Vec<T> = (0..k - 1)
            .map(|g| l.out(g * n + i))
            .collect::<LResult<_>>()?;
        if ins
            .iter()
            .chain(&outs)
            .any(|x| x.dims != ins[0].dims || !x.ty.is_float())
        {
            return unsupported(format!("{op}: operand shapes or types"));
        }
        let mut kn = Kernel::new(op.to_ascii_lowercase(), vec![ins[0].numel()]);
        let pr = param(&mut kn, "r", &r, Access::Read);
        let pt = param(&mut kn, "t", &t, Access::Read);
        let pin: Vec<usize> = ins
            .iter()
            .map(|x| param(&mut kn, "in", x, Access::Read))
            .collect();
        let pout: Vec<usize> = outs
            .iter()
            .map(|x| param(&mut kn, "out", x, Access::Write))
            .collect();
        let j = kn.index(0);
        let mut s = Vec::new();
        let mut bind = |kn: &mut Kernel, name: &str, e: Expr| {
            let v = kn.var(name, Ty::F64, false);
            s.push(Stmt::Let(v, e));
            var(v)
        };
        let rv = bind(&mut kn, "r", ld(pr, idx(0)));
        let tv = bind(&mut kn, "t", ld(pt, idx(0)));
        let x = bind(&mut kn, "x", ld(pin[0], j.clone()));
        let gi = ld(pin[1], j.clone());
        let g = bind(&mut kn, "g", add(mul(f(norm), x.clone()), gi));
        let news: Vec<Expr> = match op {
            "Adagrad" => {
                let decay = ctx.float("decay_factor", 0.0).map_err(bad)? as f64;
                let eps = ctx.float("epsilon", 1e-6).map_err(bad)? as f64;
                let lr = div(rv, add(f(1.0), mul(tv, f(decay))));
                let h2 = bind(
                    &mut kn,
                    "h2",
                    add(ld(pin[2], j.clone()), mul(g.clone(), g.clone())),
                );
                let x2 = sub(x, div(mul(lr, g), add(un(UnOp::Sqrt, h2.clone()), f(eps))));
                vec![x2, h2]
            }
            "Adam" => {
                let alpha = ctx.float("alpha", 0.9).map_err(bad)? as f64;
                let beta = ctx.float("beta", 0.999).map_err(bad)? as f64;
                let eps = ctx.float("epsilon", 1e-6).map_err(bad)? as f64;
                let post = ctx.float("norm_coefficient_post", 0.0).map_err(bad)? as f64;
                let v2 = bind(
                    &mut kn,
                    "v2",
                    add(
                        mul(f(alpha), ld(pin[2], j.clone())),
                        mul(f(1.0 - alpha), g.clone()),
                    ),
                );
                let h2 = bind(
                    &mut kn,
                    "h2",
                    add(
                        mul(f(beta), ld(pin[3], j.clone())),
                        mul(f(1.0 - beta), mul(g.clone(), g)),
                    ),
                );
                let corrected = div(
                    mul(
                        rv.clone(),
                        un(
                            UnOp::Sqrt,
                            sub(f(1.0), bin(BinOp::Pow, f(beta), tv.clone())),
                        ),
                    ),
                    sub(f(1.0), bin(BinOp::Pow, f(alpha), tv.clone())),
                );
                let lr = bind(
                    &mut kn,
                    "lr",
                    select(cmp(CmpOp::Gt, tv, f(0.0)), corrected, rv),
                );
                let x2 = mul(
                    f(1.0 - post),
                    sub(
                        x,
                        div(mul(lr, v2.clone()), add(un(UnOp::Sqrt, h2.clone()), f(eps))),
                    ),
                );
                vec![x2, v2, h2]
            }
            _ => {
                let alpha = ctx.float("alpha", 0.0).map_err(bad)? as f64;
                let beta = ctx.float("beta", 0.0).map_err(bad)? as f64;
                let nesterov = match ctx.string("mode", "standard").map_err(bad)?.as_str() {
                    "standard" => false,
                    "nesterov" => true,
                    m => return unsupported(format!("Momentum mode `{m}`")),
                };
                let b = select(cmp(CmpOp::Gt, tv, f(0.0)), f(beta), f(1.0));
                let v2 = bind(
                    &mut kn,
                    "v2",
                    add(mul(f(alpha), ld(pin[2], j.clone())), mul(b, g.clone())),
                );
                let step = if nesterov {
                    add(g, mul(f(alpha), v2.clone()))
                } else {
                    v2.clone()
                };
                vec![sub(x, mul(rv, step)), v2]
            }
        };
        for (p, e) in pout.iter().zip(news) {
            let ty = kn.params[*p].ty.compute();
            s.push(Stmt::Store {
                buf: *p,
                index: j.clone(),
                value: cast(ty, e),
            });
        }
        kn.body = s;
        let mut args: Vec<&T> = vec![&r, &t];
        args.extend(ins.iter());
        args.extend(outs.iter());
        l.kernel(kn, &args)?;
    }
    Ok(())
}
