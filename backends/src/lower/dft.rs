//! DFT as a direct sum: one domain point per output bin (the output's dims
//! without the trailing complex dim), a serial loop over the signal, f64
//! accumulation and twiddles (the angle's numerator is reduced mod n in
//! integers, so large bins lose no precision). An axis that comes at run
//! time is resolved from the static shapes, or by a run-time branch when
//! several axes fit them.

use super::reduce::{bad, norm_axis, serial};
use super::{LResult, Lower, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "DFT" => Some(dft(l)),
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Args {
    inverse: bool,
    onesided: bool,
    /// Given dft_length, if any.
    len: Option<u64>,
}

impl Args {
    /// The transform length and output (bins, complex dim) along axis `a`.
    fn shape(&self, x: &T, a: usize) -> Option<(u64, u64, u64)> {
        let m = x.dims[a];
        let n = match self.len {
            Some(n) => n,
            None if self.inverse && self.onesided => 2 * m.saturating_sub(1),
            None => m,
        };
        if n == 0 {
            return None;
        }
        let (bins, c) = match (self.inverse, self.onesided) {
            (false, true) => (n / 2 + 1, 2),
            (true, true) => (n, 1),
            _ => (n, 2),
        };
        Some((n, bins, c))
    }

    /// The output dims for axis `a`.
    fn out_dims(&self, x: &T, a: usize) -> Option<Vec<u64>> {
        let (_, bins, c) = self.shape(x, a)?;
        let mut d = x.dims.clone();
        d[a] = bins;
        let r = d.len();
        d[r - 1] = c;
        Some(d)
    }
}

fn dft(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let r = x.rank();
    let cin = x.dims.last().copied().unwrap_or(0);
    if r < 2 || !x.ty.is_float() || !(cin == 1 || cin == 2) || y.numel() == 0 {
        return unsupported(format!("DFT of {} {:?}", x.dtype, x.dims));
    }
    let ctx = l.ctx();
    let len = match l.opt_input(1) {
        None => None,
        Some(_) => match l.const_ints(1).as_deref() {
            Some([n]) if *n > 0 => Some(*n as u64),
            _ => return unsupported("DFT with a run-time dft_length"),
        },
    };
    let args = Args {
        inverse: ctx.int("inverse", 0).map_err(bad)? != 0,
        onesided: ctx.int("onesided", 0).map_err(bad)? != 0,
        len,
    };
    let axis_t = l.opt_input(2);
    let fixed = match &axis_t {
        None => Some(norm_axis(-2, r)?),
        Some(_) => match l.const_ints(2).as_deref() {
            Some([a]) => Some(norm_axis(*a, r)?),
            Some(_) => return unsupported("DFT axis must be one integer"),
            None => None,
        },
    };
    let cands: Vec<usize> = match fixed {
        Some(a) if a + 1 < r => vec![a],
        Some(_) => return unsupported("DFT along the complex dim"),
        None => (0..r - 1)
            .filter(|&a| args.out_dims(&x, a).as_deref() == Some(&y.dims[..]))
            .collect(),
    };
    if cands.is_empty() || cands.iter().any(|&a| args.out_dims(&x, a).is_none()) {
        return unsupported("DFT output shape fits no axis");
    }
    let branch = cands.len() > 1;
    let cout = y.dims[r - 1];
    let dom: Vec<u64> = y.dims[..r - 1].to_vec();
    let mut k = Kernel::new("dft", dom.clone());
    let xp = param(&mut k, "x", &x, Access::Read);
    let ap = match (&axis_t, branch) {
        (Some(t), true) => Some(param(&mut k, "axis", t, Access::Read)),
        _ => None,
    };
    let yp = param(&mut k, "y", &y, Access::Write);
    let ix: Vec<Expr> = (0..dom.len()).map(|d| k.index(d)).collect();
    let oi = mul(flat(&ix, &dom), idx(cout as i64));
    let mut strides = vec![1i64; r];
    for d in (0..r - 1).rev() {
        strides[d] = strides[d + 1] * x.dims[d + 1] as i64;
    }
    let mut chain: Vec<Stmt> = Vec::new();
    for &a in cands.iter().rev() {
        let Some((n, _, _)) = args.shape(&x, a) else {
            return unsupported("DFT length");
        };
        let mut base = idx(0);
        for d in 0..r - 1 {
            if d != a && x.dims[d] != 1 {
                base = add(base, mul(ix[d].clone(), idx(strides[d])));
            }
        }
        let body = transform(
            &mut k,
            args,
            Line {
                xp,
                base,
                stride: strides[a],
                m: x.dims[a],
                n,
                cin,
                bin: ix[a].clone(),
            },
            (yp, oi.clone(), cout, y.ty.compute()),
        );
        chain = match ap {
            Some(p) => {
                let v = cast(Ty::I64, load(p, idx(0)));
                let v = select(
                    cmp(CmpOp::Lt, v.clone(), idx(0)),
                    add(v.clone(), idx(r as i64)),
                    v,
                );
                vec![Stmt::If {
                    cond: cmp(CmpOp::Eq, v, idx(a as i64)),
                    then: body,
                    els: chain,
                }]
            }
            None => body,
        };
    }
    k.body = chain;
    let mut argv = vec![&x];
    if let (Some(t), true) = (&axis_t, branch) {
        argv.push(t);
    }
    argv.push(&y);
    l.kernel(k, &argv)
}

/// The signal line of one output bin.
struct Line {
    xp: usize,
    base: Expr,
    stride: i64,
    /// Samples in the input along the axis.
    m: u64,
    /// Transform length.
    n: u64,
    cin: u64,
    /// The output bin (the domain index along the axis).
    bin: Expr,
}

fn transform(k: &mut Kernel, args: Args, ln: Line, out: (usize, Expr, u64, Ty)) -> Vec<Stmt> {
    let (yp, oi, cout, yt) = out;
    let f = |v: f64| lit(v, Ty::F64);
    let sample = |t: Expr, comp: i64| -> Expr {
        if comp == 1 && ln.cin == 1 {
            return f(0.0);
        }
        let i = add(ln.base.clone(), add(mul(t, idx(ln.stride)), idx(comp)));
        cast(Ty::F64, load(ln.xp, i))
    };
    let re = k.var("re", Ty::F64, true);
    let im = k.var("im", Ty::F64, true);
    let t = k.var("t", Ty::I64, false);
    let (xr, xi) = (k.var("xr", Ty::F64, false), k.var("xi", Ty::F64, false));
    let (c, s) = (k.var("c", Ty::F64, false), k.var("s", Ty::F64, false));
    let sign = if args.inverse { 1.0 } else { -1.0 };
    let mut body = Vec::new();
    let steps = if args.inverse && args.onesided {
        // The Hermitian spectrum from bins 0..=n/2: bin t >= half mirrors
        // bin n - t, conjugated.
        let half = (ln.n / 2 + 1) as i64;
        let src = k.var("src", Ty::I64, false);
        let mirrored = cmp(CmpOp::Ge, var(t), idx(half));
        body.push(Stmt::Let(
            src,
            select(mirrored.clone(), sub(idx(ln.n as i64), var(t)), var(t)),
        ));
        let present = cmp(CmpOp::Lt, var(src), idx(ln.m as i64));
        // Clamped so that the load stays inside the line.
        let at = bin(BinOp::Min, var(src), idx(ln.m as i64 - 1));
        body.push(Stmt::Let(
            xr,
            select(present.clone(), sample(at.clone(), 0), f(0.0)),
        ));
        let im_v = select(present, sample(at, 1), f(0.0));
        body.push(Stmt::Let(
            xi,
            select(mirrored, un(UnOp::Neg, im_v.clone()), im_v),
        ));
        ln.n
    } else {
        body.push(Stmt::Let(xr, sample(var(t), 0)));
        body.push(Stmt::Let(xi, sample(var(t), 1)));
        ln.m.min(ln.n)
    };
    let ang = mul(
        cast(Ty::F64, rem(mul(ln.bin.clone(), var(t)), idx(ln.n as i64))),
        f(sign * 2.0 * std::f64::consts::PI / ln.n as f64),
    );
    body.push(Stmt::Let(c, un(UnOp::Cos, ang.clone())));
    body.push(Stmt::Let(s, un(UnOp::Sin, ang)));
    body.push(Stmt::Set(
        re,
        add(var(re), sub(mul(var(xr), var(c)), mul(var(xi), var(s)))),
    ));
    body.push(Stmt::Set(
        im,
        add(var(im), add(mul(var(xr), var(s)), mul(var(xi), var(c)))),
    ));
    let scale = if args.inverse { 1.0 / ln.n as f64 } else { 1.0 };
    let mut out = vec![
        Stmt::Decl(re, f(0.0)),
        Stmt::Decl(im, f(0.0)),
        serial(t, steps, body),
        Stmt::Store {
            buf: yp,
            index: oi.clone(),
            value: cast(yt, mul(var(re), f(scale))),
        },
    ];
    if cout == 2 {
        out.push(Stmt::Store {
            buf: yp,
            index: add(oi, idx(1)),
            value: cast(yt, mul(var(im), f(scale))),
        });
    }
    out
}
