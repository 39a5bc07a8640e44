//! STFT and MelWeightMatrix. Their scalar inputs (frame step, frame
//! length, dft length, sample rate, edges) may come at run time: the output
//! shape is static, and the kernels load the scalars. STFT is a direct DFT
//! per (batch, frame, bin) point, f64 accumulation, twiddle angle reduced
//! mod n in integers; MelWeightMatrix evaluates each filter's three edges
//! per point (one point per matrix element).

use super::{LResult, Lower, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "STFT" => Some(stft(l)),
        "MelWeightMatrix" => Some(mel(l)),
        _ => None,
    }
}

fn f(v: f64) -> Expr {
    lit(v, Ty::F64)
}

/// Element 0 of a scalar input as f64.
fn scalar(p: usize) -> Expr {
    cast(Ty::F64, load(p, idx(0)))
}

fn is_scalar(t: &T) -> bool {
    t.numel() == 1
}

fn mel(l: &mut Lower) -> LResult<()> {
    let ins: Vec<T> = (0..5).map(|i| l.input(i)).collect::<LResult<_>>()?;
    let y = l.out(0)?;
    if y.rank() != 2 || !y.ty.is_float() || y.numel() == 0 || !ins.iter().all(is_scalar) {
        return unsupported(format!("MelWeightMatrix of shape {:?}", y.dims));
    }
    let (rows, bins) = (y.dims[0], y.dims[1]);
    let mut k = Kernel::new("mel_weight_matrix", vec![rows, bins]);
    let ps: Vec<usize> = [
        "num_mel_bins",
        "dft_length",
        "sample_rate",
        "lower",
        "upper",
    ]
    .iter()
    .zip(&ins)
    .map(|(n, t)| param(&mut k, n, t, Access::Read))
    .collect();
    let yp = param(&mut k, "y", &y, Access::Write);
    let ln10 = std::f64::consts::LN_10;
    let to_mel = |hz: Expr| {
        mul(
            f(2595.0 / ln10),
            un(UnOp::Log, add(f(1.0), div(hz, f(700.0)))),
        )
    };
    let (mlo, step, scale) = (
        k.var("mlo", Ty::F64, false),
        k.var("step", Ty::F64, false),
        k.var("scale", Ty::F64, false),
    );
    k.body.push(Stmt::Let(mlo, to_mel(scalar(ps[3]))));
    k.body.push(Stmt::Let(
        step,
        div(sub(to_mel(scalar(ps[4])), var(mlo)), f(bins as f64 + 2.0)),
    ));
    // FFT bins per hertz: (dft_length + 1) / sample_rate, as the spec's
    // reference maps each edge.
    k.body.push(Stmt::Let(
        scale,
        div(add(scalar(ps[1]), f(1.0)), scalar(ps[2])),
    ));
    let i = cast(Ty::F64, k.index(1));
    let edge = |k: &mut Kernel, name: &str, off: f64| {
        let m = add(var(mlo), mul(add(i.clone(), f(off)), var(step)));
        let hz = mul(
            f(700.0),
            sub(un(UnOp::Exp, mul(m, f(ln10 / 2595.0))), f(1.0)),
        );
        let v = k.var(name, Ty::F64, false);
        k.body
            .push(Stmt::Let(v, un(UnOp::Floor, mul(var(scale), hz))));
        var(v)
    };
    let lo = edge(&mut k, "lo", 0.0);
    let mid = edge(&mut k, "mid", 1.0);
    let hi = edge(&mut k, "hi", 2.0);
    let j = cast(Ty::F64, k.index(0));
    let within = |a: Expr, b: Expr, then: Expr, els: Expr| {
        select(
            cmp(CmpOp::Ge, j.clone(), a),
            select(cmp(CmpOp::Le, j.clone(), b), then, els.clone()),
            els,
        )
    };
    // Rising edge lo..=mid (a single 1 when lo == mid), then the falling
    // edge mid..hi overwrites, as the reference fills it in that order.
    let rise = select(
        cmp(CmpOp::Eq, mid.clone(), lo.clone()),
        select(cmp(CmpOp::Eq, j.clone(), mid.clone()), f(1.0), f(0.0)),
        within(
            lo.clone(),
            mid.clone(),
            div(sub(j.clone(), lo.clone()), sub(mid.clone(), lo)),
            f(0.0),
        ),
    );
    let fall = div(sub(hi.clone(), j.clone()), sub(hi.clone(), mid.clone()));
    let v = select(
        cmp(CmpOp::Ge, j.clone(), mid),
        select(cmp(CmpOp::Lt, j.clone(), hi), fall, rise.clone()),
        rise,
    );
    k.body.push(Stmt::Store {
        buf: yp,
        index: add(mul(k.index(0), idx(bins as i64)), k.index(1)),
        value: cast(y.ty.compute(), v),
    });
    let argv: Vec<&T> = ins.iter().chain([&y]).collect();
    l.kernel(k, &argv)
}

fn stft(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let step_t = l.input(1)?;
    let win = l.opt_input(2);
    let flen = l.opt_input(3);
    let y = l.out(0)?;
    let ok = x.rank() == 3
        && x.ty.is_float()
        && matches!(x.dims[2], 1 | 2)
        && y.rank() == 4
        && y.dims[3] == 2
        && y.dims[0] == x.dims[0]
        && y.numel() != 0
        && is_scalar(&step_t)
        && step_t.ty.is_int()
        && flen.as_ref().is_none_or(|t| is_scalar(t) && t.ty.is_int())
        && win
            .as_ref()
            .is_none_or(|w| w.rank() == 1 && w.ty.is_float());
    if !ok {
        return unsupported(format!("STFT of {} {:?}", x.dtype, x.dims));
    }
    let (len, cin) = (x.dims[1], x.dims[2]);
    let (frames, bins) = (y.dims[1], y.dims[2]);
    let mut k = Kernel::new("stft", vec![y.dims[0], frames, bins]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let sp = param(&mut k, "frame_step", &step_t, Access::Read);
    let wp = win
        .as_ref()
        .map(|w| param(&mut k, "window", w, Access::Read));
    let fp = flen
        .as_ref()
        .map(|t| param(&mut k, "frame_length", t, Access::Read));
    let yp = param(&mut k, "y", &y, Access::Write);
    let (b, fr, bin_i) = (k.index(0), k.index(1), k.index(2));
    // The transform length: frame_length, else the window's, else the
    // whole signal.
    let n = k.var("n", Ty::I64, false);
    let n_e = match (fp, &win) {
        (Some(p), _) => cast(Ty::I64, load(p, idx(0))),
        (None, Some(w)) => idx(w.dims[0] as i64),
        (None, None) => idx(len as i64),
    };
    k.body.push(Stmt::Let(n, n_e));
    let start = k.var("start", Ty::I64, false);
    k.body
        .push(Stmt::Let(start, mul(fr, cast(Ty::I64, load(sp, idx(0))))));
    // Windowed samples past the window's end are zero padding.
    let count = match &win {
        Some(w) => bin(BinOp::Min, var(n), idx(w.dims[0] as i64)),
        None => var(n),
    };
    let re = k.var("re", Ty::F64, true);
    let im = k.var("im", Ty::F64, true);
    let t = k.var("t", Ty::I64, false);
    let pos = k.var("pos", Ty::I64, false);
    let (xr, xi) = (k.var("xr", Ty::F64, false), k.var("xi", Ty::F64, false));
    let (c, s) = (k.var("c", Ty::F64, false), k.var("s", Ty::F64, false));
    let inside = cmp(CmpOp::Lt, var(pos), idx(len as i64));
    // Clamped so that the load stays inside the signal.
    let at = bin(BinOp::Min, var(pos), idx(len as i64 - 1));
    let base = mul(b.clone(), idx((len * cin) as i64));
    let sample = |comp: u64| -> Expr {
        if comp >= cin {
            return f(0.0);
        }
        let i = add(
            base.clone(),
            add(mul(at.clone(), idx(cin as i64)), idx(comp as i64)),
        );
        let v = cast(Ty::F64, load(xp, i));
        let v = match wp {
            Some(w) => mul(v, cast(Ty::F64, load(w, var(t)))),
            None => v,
        };
        select(inside.clone(), v, f(0.0))
    };
    let ang = mul(
        cast(Ty::F64, rem(mul(bin_i, var(t)), var(n))),
        div(f(-2.0 * std::f64::consts::PI), cast(Ty::F64, var(n))),
    );
    let body = vec![
        Stmt::Let(pos, add(var(start), var(t))),
        Stmt::Let(xr, sample(0)),
        Stmt::Let(xi, sample(1)),
        Stmt::Let(c, un(UnOp::Cos, ang.clone())),
        Stmt::Let(s, un(UnOp::Sin, ang)),
        Stmt::Set(
            re,
            add(var(re), sub(mul(var(xr), var(c)), mul(var(xi), var(s)))),
        ),
        Stmt::Set(
            im,
            add(var(im), add(mul(var(xr), var(s)), mul(var(xi), var(c)))),
        ),
    ];
    let dom = [y.dims[0], frames, bins];
    let oi = mul(flat(&[k.index(0), k.index(1), k.index(2)], &dom), idx(2));
    let yt = y.ty.compute();
    k.body.extend([
        Stmt::Decl(re, f(0.0)),
        Stmt::Decl(im, f(0.0)),
        Stmt::Loop {
            var: t,
            extent: count,
            kind: LoopKind::Serial,
            body,
        },
        Stmt::Store {
            buf: yp,
            index: oi.clone(),
            value: cast(yt, var(re)),
        },
        Stmt::Store {
            buf: yp,
            index: add(oi, idx(1)),
            value: cast(yt, var(im)),
        },
    ]);
    let mut argv = vec![&x, &step_t];
    argv.extend(win.as_ref());
    argv.extend(flen.as_ref());
    argv.push(&y);
    l.kernel(k, &argv)
}
