//! RoiAlign: one output bin per domain point, serial loops over the bin's
//! sampling grid (its size is per roi when `sampling_ratio` is 0), each
//! sample a clamped bilinear read of the roi's image. Coordinates are f64
//! like the reference; every read index is clamped into the plane and the
//! batch index into [0, N) so no roi can read out of bounds.

use super::linalg::invalid;
use super::{LResult, Lower, LowerError, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "RoiAlign" => roi_align(l),
        _ => return None,
    })
}

fn f(v: f64) -> Expr {
    lit(v, Ty::F64)
}

fn max_(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Max, a, b)
}

fn roi_align(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let rois = l.input(1)?;
    let bi = l.input(2)?;
    let y = l.out(0)?;
    if x.rank() != 4 || rois.rank() != 2 || rois.dims[1] != 4 {
        return Err(LowerError::Invalid(
            "RoiAlign needs X [N, C, H, W] and rois [R, 4]".into(),
        ));
    }
    if !x.ty.is_float() || !rois.ty.is_float() || !bi.ty.is_int() || y.ty != x.ty {
        return unsupported(format!("RoiAlign of {}", x.dtype));
    }
    let (n, c, h, w) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let nr = rois.dims[0];
    if bi.numel() != nr {
        return Err(LowerError::Invalid("RoiAlign batch_indices size".into()));
    }
    let ctx = l.ctx();
    let oh = ctx.int("output_height", 1).map_err(invalid)?;
    let ow = ctx.int("output_width", 1).map_err(invalid)?;
    if oh <= 0 || ow <= 0 || y.dims != [nr, c, oh as u64, ow as u64] {
        return Err(LowerError::Invalid("RoiAlign output size".into()));
    }
    let ratio = ctx.int("sampling_ratio", 0).map_err(invalid)?;
    let scale = ctx.float("spatial_scale", 1.0).map_err(invalid)? as f64;
    let half = match ctx
        .string("coordinate_transformation_mode", "half_pixel")
        .map_err(invalid)?
        .as_str()
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => {
            return Err(LowerError::Invalid(format!(
                "unknown coordinate_transformation_mode `{m}`"
            )));
        }
    };
    let max_mode = match ctx.string("mode", "avg").map_err(invalid)?.as_str() {
        "avg" => false,
        "max" => true,
        m => return Err(LowerError::Invalid(format!("unknown mode `{m}`"))),
    };
    if h == 0 || w == 0 || n == 0 || y.numel() == 0 {
        return unsupported("RoiAlign over an empty map");
    }
    let off = if half { 0.5 } else { 0.0 };
    let mut k = Kernel::new("roi_align", y.dims.clone());
    let all: Vec<Expr> = (0..4).map(|d| k.index(d)).collect();
    let (rv, cv, phv, pwv) = (
        all[0].clone(),
        all[1].clone(),
        all[2].clone(),
        all[3].clone(),
    );
    let xp = param(&mut k, "x", &x, Access::Read);
    let rp = param(&mut k, "rois", &rois, Access::Read);
    let bp = param(&mut k, "batch", &bi, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let let_ = |k: &mut Kernel, body: &mut Vec<Stmt>, name: &str, ty: Ty, e: Expr| {
        let v = k.var(name, ty, false);
        body.push(Stmt::Let(v, e));
        var(v)
    };
    let mut body = Vec::new();
    let b = let_(
        &mut k,
        &mut body,
        "b",
        Ty::I64,
        bin(
            BinOp::Min,
            max_(cast(Ty::I64, load(bp, rv.clone())), idx(0)),
            idx(n as i64 - 1),
        ),
    );
    let corner = |q: i64| {
        sub(
            mul(
                cast(Ty::F64, load(rp, add(mul(rv.clone(), idx(4)), idx(q)))),
                f(scale),
            ),
            f(off),
        )
    };
    let x0 = let_(&mut k, &mut body, "x0", Ty::F64, corner(0));
    let y0 = let_(&mut k, &mut body, "y0", Ty::F64, corner(1));
    let mut rw = sub(corner(2), x0.clone());
    let mut rh = sub(corner(3), y0.clone());
    if !half {
        // Malformed rois become at least 1x1.
        rw = max_(rw, f(1.0));
        rh = max_(rh, f(1.0));
    }
    let rw = let_(&mut k, &mut body, "rw", Ty::F64, rw);
    let rh = let_(&mut k, &mut body, "rh", Ty::F64, rh);
    let bh = let_(&mut k, &mut body, "bh", Ty::F64, div(rh, f(oh as f64)));
    let bw = let_(&mut k, &mut body, "bw", Ty::F64, div(rw, f(ow as f64)));
    let grid = |bin_: &Expr| {
        if ratio > 0 {
            idx(ratio)
        } else {
            cast(Ty::I64, max_(un(UnOp::Ceil, bin_.clone()), f(0.0)))
        }
    };
    let gh = let_(&mut k, &mut body, "gh", Ty::I64, grid(&bh));
    let gw = let_(&mut k, &mut body, "gw", Ty::I64, grid(&bw));
    let plane = let_(
        &mut k,
        &mut body,
        "plane",
        Ty::I64,
        mul(add(mul(b, idx(c as i64)), cv.clone()), idx((h * w) as i64)),
    );
    let acc = k.var("acc", Ty::F64, true);
    body.push(Stmt::Decl(
        acc,
        f(if max_mode { f64::NEG_INFINITY } else { 0.0 }),
    ));
    let iy = k.var("iy", Ty::I64, false);
    let ix = k.var("ix", Ty::I64, false);
    let mut inner = Vec::new();
    let sy = let_(
        &mut k,
        &mut inner,
        "sy",
        Ty::F64,
        add(
            add(y0, mul(cast(Ty::F64, phv.clone()), bh.clone())),
            div(
                mul(add(cast(Ty::F64, var(iy)), f(0.5)), bh),
                cast(Ty::F64, gh.clone()),
            ),
        ),
    );
    let sx = let_(
        &mut k,
        &mut inner,
        "sx",
        Ty::F64,
        add(
            add(x0, mul(cast(Ty::F64, pwv.clone()), bw.clone())),
            div(
                mul(add(cast(Ty::F64, var(ix)), f(0.5)), bw),
                cast(Ty::F64, gw.clone()),
            ),
        ),
    );
    let inside = bin(
        BinOp::And,
        bin(
            BinOp::And,
            cmp(CmpOp::Ge, sy.clone(), f(-1.0)),
            cmp(CmpOp::Le, sy.clone(), f(h as f64)),
        ),
        bin(
            BinOp::And,
            cmp(CmpOp::Ge, sx.clone(), f(-1.0)),
            cmp(CmpOp::Le, sx.clone(), f(w as f64)),
        ),
    );
    // Clamped bilinear taps along one axis: (low, high, low weight, high weight).
    let axis = |k: &mut Kernel, out: &mut Vec<Stmt>, name: &str, s: Expr, n: u64| {
        let sc = let_(k, out, &format!("{name}c"), Ty::F64, max_(s, f(0.0)));
        let lo0 = let_(
            k,
            out,
            &format!("{name}l0"),
            Ty::I64,
            cast(Ty::I64, sc.clone()),
        );
        let edge = cmp(CmpOp::Ge, lo0.clone(), idx(n as i64 - 1));
        let lo = let_(
            k,
            out,
            &format!("{name}l"),
            Ty::I64,
            select(edge.clone(), idx(n as i64 - 1), lo0.clone()),
        );
        let hi = select(edge.clone(), idx(n as i64 - 1), add(lo0, idx(1)));
        let pos = select(edge, f((n - 1) as f64), sc);
        let lw = let_(
            k,
            out,
            &format!("{name}w"),
            Ty::F64,
            sub(pos, cast(Ty::F64, lo.clone())),
        );
        (lo, hi, sub(f(1.0), lw.clone()), lw)
    };
    let mut taps_body = Vec::new();
    let (yl, yh, hy, ly) = axis(&mut k, &mut taps_body, "y", sy, h);
    let (xl, xh, hx, lx) = axis(&mut k, &mut taps_body, "x", sx, w);
    let tap = |yy: &Expr, xx: &Expr, wy: &Expr, wx: &Expr| {
        let at = add(
            plane.clone(),
            add(mul(yy.clone(), idx(w as i64)), xx.clone()),
        );
        mul(mul(wy.clone(), wx.clone()), cast(Ty::F64, load(xp, at)))
    };
    let t = [
        tap(&yl, &xl, &hy, &hx),
        tap(&yl, &xh, &hy, &lx),
        tap(&yh, &xl, &ly, &hx),
        tap(&yh, &xh, &ly, &lx),
    ];
    let [t0, t1, t2, t3] = t;
    if max_mode {
        let v = max_(max_(max_(t0, t1), t2), t3);
        taps_body.push(Stmt::Set(acc, max_(var(acc), v)));
        inner.push(Stmt::If {
            cond: inside,
            then: taps_body,
            els: vec![Stmt::Set(acc, max_(var(acc), f(0.0)))],
        });
    } else {
        let s = add(add(add(t0, t1), t2), t3);
        taps_body.push(Stmt::Set(acc, add(var(acc), s)));
        inner.push(Stmt::If {
            cond: inside,
            then: taps_body,
            els: vec![],
        });
    }
    body.push(Stmt::Loop {
        var: iy,
        extent: gh.clone(),
        kind: LoopKind::Serial,
        body: vec![Stmt::Loop {
            var: ix,
            extent: gw.clone(),
            kind: LoopKind::Serial,
            body: inner,
        }],
    });
    let count = mul(gh, gw);
    let value = if max_mode {
        select(cmp(CmpOp::Gt, count, idx(0)), var(acc), f(0.0))
    } else {
        div(var(acc), cast(Ty::F64, max_(count, idx(1))))
    };
    body.push(Stmt::Store {
        buf: yp,
        index: flat(&all, &y.dims),
        value: cast(y.ty, value),
    });
    k.body.extend(body);
    l.kernel(k, &[&x, &rois, &bi, &y])
}
