//! Pooling: MaxPool (with optional Indices), AveragePool, LpPool and the
//! global pools. One output element per domain point, serial loops over
//! the window's taps.

use super::conv::{Window, in_range, tap_loops};
use super::linalg::invalid;
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "MaxPool" | "AveragePool" | "LpPool" => pool(l),
        "GlobalAveragePool" | "GlobalMaxPool" => global(l),
        _ => return None,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Max,
    Avg,
    Lp,
}

fn pool(l: &mut Lower) -> LResult<()> {
    let kind = match l.op() {
        "MaxPool" => Kind::Max,
        "AveragePool" => Kind::Avg,
        _ => Kind::Lp,
    };
    let x = l.input(0)?;
    let y = l.out(0)?;
    let ind = if kind == Kind::Max { l.output(1) } else { None };
    let int8 = kind == Kind::Max && matches!(x.ty, Ty::I8 | Ty::U8);
    if !(x.ty.is_float() || int8) || y.ty != x.ty {
        return unsupported(format!("{} of {}", l.op(), x.dtype));
    }
    if x.rank() < 3 || y.rank() != x.rank() {
        return Err(LowerError::Invalid("pool needs rank >= 3".into()));
    }
    if let Some(i) = &ind
        && (i.ty != Ty::I64 || i.dims != y.dims)
    {
        return Err(LowerError::Invalid("MaxPool indices shape".into()));
    }
    let ctx = l.ctx();
    let include_pad = ctx.int("count_include_pad", 0).map_err(invalid)? != 0;
    let p = ctx.int("p", 2).map_err(invalid)? as f64;
    let col_major = ctx.int("storage_order", 0).map_err(invalid)? != 0;
    let explicit = ctx.ints("pads").map_err(invalid)?;
    let auto_pad = ctx.string("auto_pad", "NOTSET").map_err(invalid)?;
    let sp = x.rank() - 2;
    let ins = x.dims[2..].to_vec();
    let win = Window::read(l, &ins, None)?;
    // End pads: windows never reach past input + end padding (ceil_mode).
    let end_pads: Vec<i64> = (0..sp)
        .map(|i| match auto_pad.as_str() {
            "NOTSET" | "" => match &explicit {
                Some(p) if p.len() == 2 * sp => p[i + sp],
                _ => 0,
            },
            "VALID" => 0,
            _ => {
                let (n, s) = (ins[i] as i64, win.strides[i] as i64);
                let span = ((win.kernel[i] - 1) * win.dilations[i] + 1) as i64;
                let out = (n + s - 1) / s;
                ((out - 1) * s + span - n).max(0) - win.pads[i]
            }
        })
        .collect();
    let ty = x.ty.compute();
    let in_plane: u64 = ins.iter().product();
    let mut k = Kernel::new(l.op().to_ascii_lowercase(), y.dims.clone());
    let all: Vec<Expr> = (0..y.rank()).map(|d| k.index(d)).collect();
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let ip = ind.as_ref().map(|i| param(&mut k, "ind", i, Access::Write));
    let acc = k.var("acc", ty, true);
    let cnt = k.var("cnt", Ty::I64, true);
    let best = k.var("best", Ty::I64, true);
    let plane = add(mul(all[0].clone(), idx(x.dims[1] as i64)), all[1].clone());
    let inner = tap_loops(&mut k, &win.kernel, |k, taps| {
        let mut pre = Vec::new();
        let mut inside: Option<Expr> = None;
        let mut reach: Option<Expr> = None;
        let mut sub = vec![all[0].clone(), all[1].clone()];
        let mut cflat: Option<Expr> = None;
        let mut cstride = 1i64;
        for j in 0..sp {
            let iv = k.var(format!("ii{j}"), Ty::I64, false);
            pre.push(Stmt::Let(
                iv,
                add(
                    add(
                        mul(all[2 + j].clone(), idx(win.strides[j] as i64)),
                        mul(taps[j].clone(), idx(win.dilations[j] as i64)),
                    ),
                    idx(-win.pads[j]),
                ),
            ));
            let ok = in_range(var(iv), ins[j]);
            inside = Some(match inside {
                None => ok,
                Some(a) => bin(BinOp::And, a, ok),
            });
            let r = cmp(CmpOp::Lt, var(iv), idx(ins[j] as i64 + end_pads[j]));
            reach = Some(match reach {
                None => r,
                Some(a) => bin(BinOp::And, a, r),
            });
            sub.push(var(iv));
            let term = mul(var(iv), idx(cstride));
            cflat = Some(match cflat {
                None => term,
                Some(a) => add(a, term),
            });
            cstride *= ins[j] as i64;
        }
        let inside = inside.unwrap_or(Expr::Int(1, Ty::Bool));
        let reach = reach.unwrap_or(Expr::Int(1, Ty::Bool));
        let at = flat(&sub, &x.dims);
        let v = load(xp, at.clone());
        let mut then = Vec::new();
        match kind {
            Kind::Max => {
                // Strictly greater keeps the first maximum, as the reference.
                let better = bin(
                    BinOp::Or,
                    cmp(CmpOp::Lt, var(best), idx(0)),
                    cmp(CmpOp::Gt, v.clone(), var(acc)),
                );
                let within = if col_major {
                    cflat.unwrap_or(idx(0))
                } else {
                    flat(&sub[2..], &ins)
                };
                then.push(Stmt::If {
                    cond: better,
                    then: vec![Stmt::Set(acc, v), Stmt::Set(best, within)],
                    els: vec![],
                });
            }
            Kind::Avg => {
                then.push(Stmt::Set(acc, add(var(acc), v)));
                if !include_pad {
                    then.push(Stmt::Set(cnt, add(var(cnt), idx(1))));
                }
            }
            Kind::Lp => {
                let a = un(UnOp::Abs, v);
                let term = if p == 1.0 {
                    a
                } else if p == 2.0 {
                    mul(a.clone(), a)
                } else {
                    bin(BinOp::Pow, a, lit(p, ty))
                };
                then.push(Stmt::Set(acc, add(var(acc), term)));
            }
        }
        let mut outer = vec![Stmt::If {
            cond: inside,
            then,
            els: vec![],
        }];
        if kind == Kind::Avg && include_pad {
            // Padded taps count too, but not those past the end padding.
            outer.push(Stmt::If {
                cond: reach,
                then: vec![Stmt::Set(cnt, add(var(cnt), idx(1)))],
                els: vec![],
            });
        }
        pre.extend(outer);
        pre
    });
    let init = match kind {
        Kind::Max => lit(if int8 { 0.0 } else { f64::NEG_INFINITY }, ty),
        _ => lit(0.0, ty),
    };
    k.body.push(Stmt::Decl(acc, init));
    k.body.push(Stmt::Decl(cnt, idx(0)));
    k.body.push(Stmt::Decl(best, idx(-1)));
    k.body.extend(inner);
    let out = match kind {
        Kind::Max => var(acc),
        Kind::Avg => select(
            cmp(CmpOp::Eq, var(cnt), idx(0)),
            lit(f64::NAN, ty),
            div(var(acc), cast(ty, var(cnt))),
        ),
        Kind::Lp => {
            if p == 1.0 {
                var(acc)
            } else if p == 2.0 {
                un(UnOp::Sqrt, var(acc))
            } else {
                bin(BinOp::Pow, var(acc), lit(1.0 / p, ty))
            }
        }
    };
    let oi = flat(&all, &y.dims);
    k.body.push(Stmt::Store {
        buf: yp,
        index: oi.clone(),
        value: out,
    });
    if let Some(ip) = ip {
        let b = select(cmp(CmpOp::Lt, var(best), idx(0)), idx(0), var(best));
        k.body.push(Stmt::Store {
            buf: ip,
            index: oi,
            value: add(mul(plane, idx(in_plane as i64)), b),
        });
    }
    let mut args: Vec<&T> = vec![&x, &y];
    if let Some(i) = &ind {
        args.push(i);
    }
    l.kernel(k, &args)
}

fn global(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if !x.ty.is_float() || y.ty != x.ty {
        return unsupported(format!("{} of {}", l.op(), x.dtype));
    }
    if x.rank() < 2 {
        return Err(LowerError::Invalid("global pool needs rank >= 2".into()));
    }
    let max = l.op() == "GlobalMaxPool";
    let rows = x.dims[0] * x.dims[1];
    let plane: u64 = x.dims[2..].iter().product();
    if y.numel() != rows {
        return Err(LowerError::Invalid("global pool output size".into()));
    }
    let ty = x.ty.compute();
    let mut k = Kernel::new(l.op().to_ascii_lowercase(), vec![rows]);
    let r = k.index(0);
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let acc = k.var("acc", ty, true);
    let j = k.var("j", Ty::I64, false);
    let v = load(xp, add(mul(r.clone(), idx(plane as i64)), var(j)));
    k.body.push(Stmt::Decl(
        acc,
        lit(if max { f64::NEG_INFINITY } else { 0.0 }, ty),
    ));
    k.body.push(Stmt::Loop {
        var: j,
        extent: idx(plane as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(
            acc,
            if max {
                bin(BinOp::Max, var(acc), v)
            } else {
                add(var(acc), v)
            },
        )],
    });
    let out = if max {
        var(acc)
    } else {
        div(var(acc), lit(plane as f64, ty))
    };
    k.body.push(Stmt::Store {
        buf: yp,
        index: r,
        value: out,
    });
    l.kernel(k, &[&x, &y])
}
