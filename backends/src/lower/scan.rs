//! CumSum and CumProd: one domain point per line along the axis, a serial
//! running accumulator (in the element's compute type, wrapping for
//! integers like the reference).

use super::reduce::{Split, norm_axis, serial};
use super::{LResult, Lower, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, CmpOp, Expr, Kernel, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let op = l.op();
    Some(match op {
        "CumSum" | "CumProd" => cum(l, op == "CumProd"),
        _ => return None,
    })
}

fn cum(l: &mut Lower, prod: bool) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let axis_t = l.input(1)?;
    let axis = match l.const_ints(1).as_deref() {
        Some([a]) => Some(norm_axis(*a, x.rank())?),
        Some(_) => return unsupported("CumSum/CumProd axis must have one element"),
        None => None,
    };
    if x.numel() == 0 || x.rank() == 0 {
        return unsupported("CumSum/CumProd of an empty tensor");
    }
    let ctx = l.ctx();
    let exclusive = ctx.int("exclusive", 0).map_err(super::reduce::bad)? != 0;
    let reverse = ctx.int("reverse", 0).map_err(super::reduce::bad)? != 0;
    let ty = x.ty.compute();
    if ty == Ty::Bool {
        return unsupported("CumSum/CumProd of bool");
    }
    let name = if prod { "cumprod" } else { "cumsum" };
    let line = Line {
        prod,
        exclusive,
        reverse,
        ty,
    };
    let Some(a) = axis else {
        // A run-time axis: one point walks the whole tensor, with one
        // branch per possible axis.
        if axis_t.numel() != 1 || !axis_t.ty.is_int() {
            return unsupported("CumSum/CumProd axis must be one integer");
        }
        let rank = x.rank() as i64;
        let mut k = Kernel::new(name, vec![1]);
        let xp = param(&mut k, "x", &x, Access::Read);
        let ap = param(&mut k, "axis", &axis_t, Access::Read);
        let yp = param(&mut k, "y", &y, Access::Write);
        let av = k.var("a", Ty::I64, false);
        let a0 = cast(Ty::I64, load(ap, idx(0)));
        k.body.push(Stmt::Let(
            av,
            select(
                cmp(CmpOp::Lt, a0.clone(), idx(0)),
                add(a0.clone(), idx(rank)),
                a0,
            ),
        ));
        let mut chain = Vec::new();
        for a in (0..x.rank()).rev() {
            let outer: u64 = x.dims[..a].iter().product();
            let n = x.dims[a];
            let inner: u64 = x.dims[a + 1..].iter().product();
            let o = k.var("o", Ty::I64, false);
            let i = k.var("i", Ty::I64, false);
            let base = add(mul(var(o), idx((n * inner) as i64)), var(i));
            let body = line.body(&mut k, xp, yp, base, n, inner);
            chain = vec![Stmt::If {
                cond: cmp(CmpOp::Eq, var(av), idx(a as i64)),
                then: vec![serial(o, outer, vec![serial(i, inner, body)])],
                els: chain,
            }];
        }
        k.body.extend(chain);
        return l.kernel(k, &[&x, &axis_t, &y]);
    };
    let n = x.dims[a];
    let stride: u64 = x.dims[a + 1..].iter().product();
    let mut mask = vec![false; x.rank()];
    mask[a] = true;
    let s = Split::new(&x.dims, &mask);
    let mut k = Kernel::new(name, s.domain());
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let base = s.base(&k);
    let body = line.body(&mut k, xp, yp, base, n, stride);
    k.body.extend(body);
    l.kernel(k, &[&x, &y])
}

/// One line of the scan.
struct Line {
    prod: bool,
    exclusive: bool,
    reverse: bool,
    ty: Ty,
}

impl Line {
    /// Scans the `n` elements at `base + j * stride`.
    fn body(
        &self,
        k: &mut Kernel,
        xp: usize,
        yp: usize,
        base: Expr,
        n: u64,
        stride: u64,
    ) -> Vec<Stmt> {
        let ty = self.ty;
        let acc = k.var("acc", ty, true);
        let r = k.var("r", Ty::I64, false);
        let j = if self.reverse {
            sub(idx(n as i64 - 1), var(r))
        } else {
            var(r)
        };
        let i = k.var("e", Ty::I64, false);
        let v = load(xp, var(i));
        let next = if self.prod {
            mul(var(acc), v)
        } else {
            add(var(acc), v)
        };
        let store = Stmt::Store {
            buf: yp,
            index: var(i),
            value: var(acc),
        };
        let mut body = vec![Stmt::Let(i, add(base, mul(j, idx(stride as i64))))];
        if self.exclusive {
            body.push(store);
            body.push(Stmt::Set(acc, next));
        } else {
            body.push(Stmt::Set(acc, next));
            body.push(store);
        }
        vec![
            Stmt::Decl(acc, lit(if self.prod { 1.0 } else { 0.0 }, ty)),
            serial(r, n, body),
        ]
    }
}
