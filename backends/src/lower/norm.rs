//! Normalizations: Layer/RMS (rows of the trailing dims), Group/Instance
//! (blocks of channels), MeanVariance and Lp (reduced axes), Batch
//! (inference: elementwise with per-channel statistics). Statistics are
//! accumulated in f32 (f64 for f64 inputs); variances are two-pass like the
//! reference, except MeanVarianceNormalization which ONNX defines as
//! E[x^2] - E[x]^2.

use super::fold::Fold;
use super::reduce::{Split, acc_float, bad, norm_axis, serial};
use super::{LResult, Lower, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp, Var};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "LayerNormalization" => layer_norm(l, false),
        "RMSNormalization" => layer_norm(l, true),
        "BatchNormalization" => batch_norm(l),
        "InstanceNormalization" => group_norm(l, true),
        "GroupNormalization" => group_norm(l, false),
        "LpNormalization" => lp_norm(l),
        "MeanVarianceNormalization" => mvn(l),
        "LRN" => lrn(l),
        _ => return None,
    })
}

fn float_input(op: &str, t: &T) -> LResult<Ty> {
    let ty = t.ty.compute();
    if !ty.is_float() {
        return unsupported(format!("{op} of {}", t.dtype));
    }
    if t.numel() == 0 {
        return unsupported(format!("{op} of an empty tensor"));
    }
    Ok(acc_float(ty))
}

/// How a Scale/B operand of LayerNormalization is indexed within a row of
/// the trailing dims `row`: one value for all, or one per row element.
fn row_param(t: &T, row: &[u64]) -> LResult<bool> {
    if t.numel() == 1 {
        return Ok(false);
    }
    let mut d: &[u64] = &t.dims;
    while d.len() > row.len() && d.first() == Some(&1) {
        d = &d[1..];
    }
    let mut r: &[u64] = row;
    while r.len() > d.len() && r.first() == Some(&1) {
        r = &r[1..];
    }
    if d == r {
        Ok(true)
    } else {
        unsupported(format!(
            "a parameter of shape {:?} for rows of shape {row:?}",
            t.dims
        ))
    }
}

fn layer_norm(l: &mut Lower, rms: bool) -> LResult<()> {
    let op = l.op();
    let x = l.input(0)?;
    let y = l.out(0)?;
    let at = float_input(op, &x)?;
    let ctx = l.ctx();
    let a = norm_axis(ctx.int("axis", -1).map_err(bad)?, x.rank())?;
    let eps = ctx.float("epsilon", 1e-5).map_err(bad)? as f64;
    let scale = l.opt_input(1);
    let bias = if rms { None } else { l.opt_input(2) };
    let (mean_out, inv_out) = if rms {
        (None, None)
    } else {
        (l.output(1), l.output(2))
    };
    let row = &x.dims[a..];
    let inner: u64 = row.iter().product();
    let outer: u64 = x.dims[..a].iter().product();
    let mut k = Kernel::new(op.to_ascii_lowercase(), vec![outer, 1]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let mut args = vec![&x];
    let sp = match &scale {
        Some(t) => {
            let per = row_param(t, row)?;
            args.push(t);
            Some((param(&mut k, "scale", t, Access::Read), per))
        }
        None => None,
    };
    let bp = match &bias {
        Some(t) => {
            let per = row_param(t, row)?;
            args.push(t);
            Some((param(&mut k, "bias", t, Access::Read), per))
        }
        None => None,
    };
    let yp = param(&mut k, "y", &y, Access::Write);
    args.push(&y);
    let mp = mean_out.as_ref().map(|t| {
        args.push(t);
        (param(&mut k, "mean", t, Access::Write), t.ty.compute())
    });
    let ip = inv_out.as_ref().map(|t| {
        args.push(t);
        (param(&mut k, "inv_std", t, Access::Write), t.ty.compute())
    });
    for (_, t) in mp.iter().chain(&ip) {
        if t.is_float() {
            continue;
        }
        return unsupported("non-float statistics");
    }
    let base = mul(k.index(0), idx(inner as i64));
    let elem = |j: Var| cast(at, load(xp, add(base.clone(), var(j))));
    let (mean, inv) = moments(&mut k, at, xp, base.clone(), inner, eps, !rms);
    let j = k.var("j", Ty::I64, false);
    let pick = |p: usize, per: bool| {
        let i = if per { var(j) } else { idx(0) };
        cast(at, load(p, i))
    };
    let mut v = mul(sub(elem(j), var(mean)), var(inv));
    if let Some((p, per)) = sp {
        v = mul(v, pick(p, per));
    }
    if let Some((p, per)) = bp {
        v = add(v, pick(p, per));
    }
    k.body.push(serial(
        j,
        inner,
        vec![Stmt::Store {
            buf: yp,
            index: add(base.clone(), var(j)),
            value: cast(y.ty.compute(), v),
        }],
    ));
    if let Some((p, t)) = mp {
        k.body.push(Stmt::Store {
            buf: p,
            index: k.index(0),
            value: cast(t, var(mean)),
        });
    }
    if let Some((p, t)) = ip {
        k.body.push(Stmt::Store {
            buf: p,
            index: k.index(0),
            value: cast(t, var(inv)),
        });
    }
    l.kernel(k, &args)
}

fn per_channel(op: &str, t: &T, c: u64) -> LResult<()> {
    if t.numel() != c || !t.ty.is_float() {
        return unsupported(format!(
            "{op}: a parameter of shape {:?} ({}) for {c} channels",
            t.dims, t.dtype
        ));
    }
    Ok(())
}

fn batch_norm(l: &mut Lower) -> LResult<()> {
    let op = l.op();
    let x = l.input(0)?;
    let y = l.out(0)?;
    let at = float_input(op, &x)?;
    let ctx = l.ctx();
    let training = ctx.int("training_mode", 0).map_err(bad)? != 0;
    let eps = ctx.float("epsilon", 1e-5).map_err(bad)? as f64;
    let momentum = ctx.float("momentum", 0.9).map_err(bad)? as f64;
    if !training && (l.output(1).is_some() || l.output(2).is_some()) {
        return unsupported("BatchNormalization statistics outputs in inference mode");
    }
    if x.rank() < 2 {
        return unsupported("BatchNormalization of rank < 2");
    }
    let (n, c) = (x.dims[0], x.dims[1]);
    let plane: u64 = x.dims[2..].iter().product();
    let mut ps: Vec<T> = (1..5).map(|i| l.input(i)).collect::<LResult<_>>()?;
    for p in &ps {
        per_channel(op, p, c)?;
    }
    if training {
        // Batch statistics per channel (population variance, two passes),
        // and the running statistics outputs blended with `momentum`.
        let sdt = if at == Ty::F64 {
            smelt_ir::DType::F64
        } else {
            smelt_ir::DType::F32
        };
        let bm = l.temp(sdt, &[c])?;
        let bv = l.temp(sdt, &[c])?;
        let (rm, rv) = (l.output(1), l.output(2));
        let mut k = Kernel::new("batchnorm_stats", vec![c, 1]);
        let xp = param(&mut k, "x", &x, Access::Read);
        let mp = param(&mut k, "mean", &ps[2], Access::Read);
        let vp = param(&mut k, "var", &ps[3], Access::Read);
        let bmp = param(&mut k, "batch_mean", &bm, Access::Write);
        let bvp = param(&mut k, "batch_var", &bv, Access::Write);
        let mut args = vec![&x, &ps[2], &ps[3], &bm, &bv];
        let rmp = rm.as_ref().map(|t| {
            args.push(t);
            (
                param(&mut k, "running_mean", t, Access::Write),
                t.ty.compute(),
            )
        });
        let rvp = rv.as_ref().map(|t| {
            args.push(t);
            (
                param(&mut k, "running_var", t, Access::Write),
                t.ty.compute(),
            )
        });
        let ch = k.index(0);
        let cnt = lit((n * plane) as f64, at);
        let (b, p) = (k.var("b", Ty::I64, false), k.var("p", Ty::I64, false));
        let xi = add(
            mul(
                add(mul(var(b), idx(c as i64)), ch.clone()),
                idx(plane as i64),
            ),
            var(p),
        );
        let s = k.var("s", at, true);
        k.body.push(Stmt::Decl(s, lit(0.0, at)));
        k.body.push(serial(
            b,
            n,
            vec![serial(
                p,
                plane,
                vec![Stmt::Set(s, add(var(s), cast(at, load(xp, xi.clone()))))],
            )],
        ));
        let mean = k.var("bmean", at, false);
        k.body.push(Stmt::Let(mean, div(var(s), cnt.clone())));
        let ss = k.var("ss", at, true);
        k.body.push(Stmt::Decl(ss, lit(0.0, at)));
        let (b2, p2) = (k.var("b", Ty::I64, false), k.var("p", Ty::I64, false));
        let xi2 = add(
            mul(
                add(mul(var(b2), idx(c as i64)), ch.clone()),
                idx(plane as i64),
            ),
            var(p2),
        );
        let d = k.var("d", at, false);
        k.body.push(serial(
            b2,
            n,
            vec![serial(
                p2,
                plane,
                vec![
                    Stmt::Let(d, sub(cast(at, load(xp, xi2)), var(mean))),
                    Stmt::Set(ss, add(var(ss), mul(var(d), var(d)))),
                ],
            )],
        ));
        let bvar = k.var("bvar", at, false);
        k.body.push(Stmt::Let(bvar, div(var(ss), cnt)));
        k.body.push(Stmt::Store {
            buf: bmp,
            index: ch.clone(),
            value: var(mean),
        });
        k.body.push(Stmt::Store {
            buf: bvp,
            index: ch.clone(),
            value: var(bvar),
        });
        let blend = |old: usize, new: Expr| {
            add(
                mul(cast(at, load(old, ch.clone())), lit(momentum, at)),
                mul(new, lit(1.0 - momentum, at)),
            )
        };
        if let Some((p, t)) = rmp {
            let v = cast(t, blend(mp, var(mean)));
            k.body.push(Stmt::Store {
                buf: p,
                index: ch.clone(),
                value: v,
            });
        }
        if let Some((p, t)) = rvp {
            let v = cast(t, blend(vp, var(bvar)));
            k.body.push(Stmt::Store {
                buf: p,
                index: ch.clone(),
                value: v,
            });
        }
        l.kernel(k, &args)?;
        ps[2] = bm;
        ps[3] = bv;
    }
    let mut k = Kernel::new("batchnorm", vec![n, c, plane]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let names = ["scale", "bias", "mean", "var"];
    let pp: Vec<usize> = ps
        .iter()
        .zip(names)
        .map(|(t, nm)| param(&mut k, nm, t, Access::Read))
        .collect();
    let yp = param(&mut k, "y", &y, Access::Write);
    let ch = k.index(1);
    let get = |i: usize| cast(at, load(pp[i], ch.clone()));
    let ix: Vec<Expr> = (0..3).map(|d| k.index(d)).collect();
    let xi = flat(&ix, &[n, c, plane]);
    let a = div(get(0), un(UnOp::Sqrt, add(get(3), lit(eps, at))));
    let v = add(mul(sub(cast(at, load(xp, xi.clone())), get(2)), a), get(1));
    k.body.push(Stmt::Store {
        buf: yp,
        index: xi,
        value: cast(y.ty.compute(), v),
    });
    let mut args = vec![&x];
    args.extend(ps.iter());
    args.push(&y);
    l.kernel(k, &args)
}

fn lrn(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let at = float_input("LRN", &x)?;
    let ctx = l.ctx();
    let size = ctx.int("size", 0).map_err(bad)?;
    if size < 1 || x.rank() < 2 {
        return unsupported(format!("LRN with size {size} of rank {}", x.rank()));
    }
    let alpha = ctx.float("alpha", 1e-4).map_err(bad)? as f64;
    let beta = ctx.float("beta", 0.75).map_err(bad)? as f64;
    let bias = ctx.float("bias", 1.0).map_err(bad)? as f64;
    let (n, c) = (x.dims[0], x.dims[1]);
    let plane: u64 = x.dims[2..].iter().product();
    // The window over channels is [ch - floor((size-1)/2), ch + ceil((size-1)/2)].
    let before = (size - 1) / 2;
    let mut k = Kernel::new("lrn", vec![n, c, plane]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let (b, ch, p) = (k.index(0), k.index(1), k.index(2));
    let sq = k.var("sq", at, true);
    k.body.push(Stmt::Decl(sq, lit(0.0, at)));
    let j = k.var("j", Ty::I64, false);
    let w = k.var("w", Ty::I64, false);
    let at_ch = |chan: Expr| {
        add(
            mul(add(mul(b.clone(), idx(c as i64)), chan), idx(plane as i64)),
            p.clone(),
        )
    };
    let v = k.var("v", at, false);
    let inside = bin(
        BinOp::And,
        cmp(CmpOp::Ge, var(w), idx(0)),
        cmp(CmpOp::Lt, var(w), idx(c as i64)),
    );
    k.body.push(serial(
        j,
        size as u64,
        vec![
            Stmt::Let(w, add(sub(ch.clone(), idx(before)), var(j))),
            Stmt::If {
                cond: inside,
                then: vec![
                    Stmt::Let(v, cast(at, load(xp, at_ch(var(w))))),
                    Stmt::Set(sq, add(var(sq), mul(var(v), var(v)))),
                ],
                els: vec![],
            },
        ],
    ));
    let xi = at_ch(ch.clone());
    let den = bin(
        BinOp::Pow,
        add(lit(bias, at), mul(lit(alpha / size as f64, at), var(sq))),
        lit(beta, at),
    );
    k.body.push(Stmt::Store {
        buf: yp,
        index: xi.clone(),
        value: cast(y.ty.compute(), div(cast(at, load(xp, xi)), den)),
    });
    l.kernel(k, &[&x, &y])
}

fn group_norm(l: &mut Lower, instance: bool) -> LResult<()> {
    let op = l.op();
    let x = l.input(0)?;
    let y = l.out(0)?;
    let at = float_input(op, &x)?;
    let ctx = l.ctx();
    let eps = ctx.float("epsilon", 1e-5).map_err(bad)? as f64;
    if x.rank() < 2 {
        return unsupported(format!("{op} of rank < 2"));
    }
    let (n, c) = (x.dims[0], x.dims[1]);
    let plane: u64 = x.dims[2..].iter().product();
    let groups = if instance {
        c
    } else {
        let g = ctx.int("num_groups", 0).map_err(bad)?;
        if g < 1 || c % g as u64 != 0 {
            return unsupported(format!("{op}: num_groups {g} for {c} channels"));
        }
        g as u64
    };
    let scale = l.input(1)?;
    let bias = l.input(2)?;
    per_channel(op, &scale, c)?;
    per_channel(op, &bias, c)?;
    let cpg = c / groups;
    let gsize = cpg * plane;
    let mut k = Kernel::new(op.to_ascii_lowercase(), vec![n * groups, 1]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let sp = param(&mut k, "scale", &scale, Access::Read);
    let bp = param(&mut k, "bias", &bias, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let base = mul(k.index(0), idx(gsize as i64));
    // The group is contiguous: statistics fold over it flat.
    let (mean, inv) = moments(&mut k, at, xp, base.clone(), gsize, eps, true);
    // Per channel: y = x * a + b with a = inv * scale, b = bias - mean * a.
    let cc = k.var("cc", Ty::I64, false);
    let p = k.var("p", Ty::I64, false);
    let ch = k.var("ch", Ty::I64, false);
    let ca = k.var("a", at, false);
    let cb = k.var("b", at, false);
    let g = rem(k.index(0), idx(groups as i64));
    let xi = add(base.clone(), add(mul(var(cc), idx(plane as i64)), var(p)));
    let inner = vec![Stmt::Store {
        buf: yp,
        index: xi.clone(),
        value: cast(
            y.ty.compute(),
            add(mul(cast(at, load(xp, xi)), var(ca)), var(cb)),
        ),
    }];
    k.body.push(serial(
        cc,
        cpg,
        vec![
            Stmt::Let(ch, add(mul(g, idx(cpg as i64)), var(cc))),
            Stmt::Let(ca, mul(var(inv), cast(at, load(sp, var(ch))))),
            Stmt::Let(
                cb,
                sub(cast(at, load(bp, var(ch))), mul(var(mean), var(ca))),
            ),
            serial(p, plane, inner),
        ],
    ));
    l.kernel(k, &[&x, &scale, &bias, &y])
}

fn lp_norm(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let at = float_input("LpNormalization", &x)?;
    let ctx = l.ctx();
    let a = norm_axis(ctx.int("axis", -1).map_err(bad)?, x.rank())?;
    let p = ctx.int("p", 2).map_err(bad)?;
    if p != 1 && p != 2 {
        return unsupported(format!("LpNormalization with p = {p}"));
    }
    let mut mask = vec![false; x.rank()];
    mask[a] = true;
    let s = Split::new(&x.dims, &mask);
    let mut k = Kernel::new("lpnorm", s.domain());
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let base = s.base(&k);
    let (st, acc) = s.fold(
        &mut k,
        base.clone(),
        &Fold {
            ty: at,
            init: lit(0.0, at),
            term: &|_, i| {
                let v = cast(at, load(xp, i));
                if p == 1 {
                    un(UnOp::Abs, v)
                } else {
                    mul(v.clone(), v)
                }
            },
            combine: &add,
        },
    );
    k.body.extend(st);
    let norm = k.var("norm", at, false);
    let nv = if p == 1 {
        var(acc)
    } else {
        un(UnOp::Sqrt, var(acc))
    };
    k.body.push(Stmt::Let(norm, nv));
    let yt = y.ty.compute();
    let body = s.over(&mut k, base, |_, i| {
        let v = select(
            cmp(CmpOp::Eq, var(norm), lit(0.0, at)),
            lit(0.0, at),
            div(cast(at, load(xp, i.clone())), var(norm)),
        );
        vec![Stmt::Store {
            buf: yp,
            index: i,
            value: cast(yt, v),
        }]
    });
    k.body.extend(body);
    l.kernel(k, &[&x, &y])
}

fn mvn(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let at = float_input("MeanVarianceNormalization", &x)?;
    let r = x.rank();
    let axes = l
        .ctx()
        .ints("axes")
        .map_err(bad)?
        .unwrap_or_else(|| vec![0, 2, 3]);
    let mut mask = vec![false; r];
    for a in axes {
        mask[norm_axis(a, r)?] = true;
    }
    let s = Split::new(&x.dims, &mask);
    let nf = lit(s.count() as f64, at);
    let mut k = Kernel::new("mvn", s.domain());
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let base = s.base(&k);
    let sum = k.var("sum", at, true);
    let sq = k.var("sq", at, true);
    k.body.push(Stmt::Decl(sum, lit(0.0, at)));
    k.body.push(Stmt::Decl(sq, lit(0.0, at)));
    let body = s.over(&mut k, base.clone(), |k, i| {
        let c = k.var("c", at, false);
        vec![
            Stmt::Let(c, cast(at, load(xp, i))),
            Stmt::Set(sum, add(var(sum), var(c))),
            Stmt::Set(sq, add(var(sq), mul(var(c), var(c)))),
        ]
    });
    k.body.extend(body);
    let mean = k.var("mean", at, false);
    k.body.push(Stmt::Let(mean, div(var(sum), nf.clone())));
    let den = k.var("den", at, false);
    let var_ = sub(div(var(sq), nf), mul(var(mean), var(mean)));
    let std = un(UnOp::Sqrt, bin(BinOp::Max, var_, lit(0.0, at)));
    k.body.push(Stmt::Let(den, add(std, lit(1e-9, at))));
    let yt = y.ty.compute();
    let body = s.over(&mut k, base, |_, i| {
        let v = div(sub(cast(at, load(xp, i.clone())), var(mean)), var(den));
        vec![Stmt::Store {
            buf: yp,
            index: i,
            value: cast(yt, v),
        }]
    });
    k.body.extend(body);
    l.kernel(k, &[&x, &y])
}

/// Mean and 1/sqrt(variance + eps) of `len` contiguous elements of `xp`
/// from `base`, as `Let`s appended to the body. Uncentred (`centered`
/// false, RMSNorm): the mean is 0 and the variance is the mean square.
fn moments(
    k: &mut Kernel,
    at: Ty,
    xp: usize,
    base: Expr,
    len: u64,
    eps: f64,
    centered: bool,
) -> (Var, Var) {
    let n = lit(len as f64, at);
    let mean = k.var("mean", at, false);
    if centered {
        let (st, s) = Fold {
            ty: at,
            init: lit(0.0, at),
            term: &|_, i| cast(at, load(xp, i)),
            combine: &add,
        }
        .run(k, base.clone(), len, 1);
        k.body.extend(st);
        k.body.push(Stmt::Let(mean, div(var(s), n.clone())));
    } else {
        k.body.push(Stmt::Let(mean, lit(0.0, at)));
    }
    let (st, ss) = Fold {
        ty: at,
        init: lit(0.0, at),
        term: &|_, i| {
            let d = sub(cast(at, load(xp, i)), var(mean));
            mul(d.clone(), d)
        },
        combine: &add,
    }
    .run(k, base, len, 1);
    k.body.extend(st);
    let inv = k.var("inv", at, false);
    k.body.push(Stmt::Let(
        inv,
        div(
            lit(1.0, at),
            un(UnOp::Sqrt, add(div(var(ss), n), lit(eps, at))),
        ),
    ));
    (mean, inv)
}
