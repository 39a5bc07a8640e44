//! DeformConv (2-D): one output element per domain point, serial loops
//! over the group's input channels and the kernel taps; each tap samples X
//! bilinearly (zero outside the map) at its regular position plus the
//! learned offset, times the mask. Coordinates and the sum are f64 like the
//! reference; every tap index is clamped before the load and zeroed after.

use super::linalg::invalid;
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "DeformConv" => deform_conv(l),
        _ => return None,
    })
}

fn f(v: f64) -> Expr {
    lit(v, Ty::F64)
}

fn pair(l: &Lower, name: &str, n: usize, default: i64) -> LResult<Vec<i64>> {
    match l.ctx().ints(name).map_err(invalid)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v),
        Some(_) => Err(LowerError::Invalid(format!(
            "DeformConv `{name}` must describe 2 spatial dims"
        ))),
    }
}

fn deform_conv(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let w = l.input(1)?;
    let off = l.input(2)?;
    let bias = l.opt_input(3);
    let mask = l.opt_input(4);
    let y = l.out(0)?;
    if x.rank() != 4 || w.rank() != 4 || off.rank() != 4 || y.rank() != 4 {
        return unsupported("DeformConv other than 2-D");
    }
    let floats = [&x, &w, &off, &y]
        .into_iter()
        .chain(bias.as_ref())
        .chain(mask.as_ref())
        .all(|t: &T| t.ty.is_float());
    if !floats || y.ty != x.ty {
        return unsupported(format!("DeformConv of {}", x.dtype));
    }
    let (n, ic, ih, iw) = (x.dims[0], x.dims[1], x.dims[2], x.dims[3]);
    let (oc, icg, kh, kw) = (w.dims[0], w.dims[1], w.dims[2], w.dims[3]);
    let group = l.ctx().int("group", 1).map_err(invalid)?.max(1) as u64;
    let og = l.ctx().int("offset_group", 1).map_err(invalid)?.max(1) as u64;
    if let Some(ks) = l.ctx().ints("kernel_shape").map_err(invalid)?
        && ks != [kh as i64, kw as i64]
    {
        return Err(LowerError::Invalid("kernel_shape does not match W".into()));
    }
    let pads = pair(l, "pads", 4, 0)?;
    let st = pair(l, "strides", 2, 1)?;
    let dil = pair(l, "dilations", 2, 1)?;
    if ic != icg * group || oc % group != 0 || ic % og != 0 {
        return Err(LowerError::Invalid(format!(
            "DeformConv channels do not fit group {group} / offset_group {og}"
        )));
    }
    let (oh, ow) = (off.dims[2], off.dims[3]);
    let taps = kh * kw;
    if off.dims[0] != n || off.dims[1] != og * taps * 2 || y.dims != [n, oc, oh, ow] {
        return Err(LowerError::Invalid("DeformConv offset shape".into()));
    }
    if let Some(m) = &mask
        && m.dims != [n, og * taps, oh, ow]
    {
        return Err(LowerError::Invalid("DeformConv mask shape".into()));
    }
    if let Some(b) = &bias
        && b.numel() != oc
    {
        return Err(LowerError::Invalid("DeformConv bias size".into()));
    }
    if y.numel() == 0 || ih == 0 || iw == 0 {
        return unsupported("DeformConv over an empty map");
    }
    let (ocg, icpo) = (oc / group, ic / og);
    let mut k = Kernel::new("deform_conv", y.dims.clone());
    let all: Vec<Expr> = (0..4).map(|d| k.index(d)).collect();
    let (bv, ov, iv, jv) = (
        all[0].clone(),
        all[1].clone(),
        all[2].clone(),
        all[3].clone(),
    );
    let xp = param(&mut k, "x", &x, Access::Read);
    let wp = param(&mut k, "w", &w, Access::Read);
    let offp = param(&mut k, "offset", &off, Access::Read);
    let bp = bias.as_ref().map(|t| param(&mut k, "b", t, Access::Read));
    let mp = mask
        .as_ref()
        .map(|t| param(&mut k, "mask", t, Access::Read));
    let yp = param(&mut k, "y", &y, Access::Write);
    let let_ = |k: &mut Kernel, body: &mut Vec<Stmt>, name: &str, ty: Ty, e: Expr| {
        let v = k.var(name, ty, false);
        body.push(Stmt::Let(v, e));
        var(v)
    };
    let acc = k.var("acc", Ty::F64, true);
    let ci = k.var("ci", Ty::I64, false);
    let a = k.var("a", Ty::I64, false);
    let e = k.var("e", Ty::I64, false);
    let pix = add(mul(iv.clone(), idx(ow as i64)), jv.clone());
    let mut body = Vec::new();
    let g = div(ov.clone(), idx(ocg as i64));
    let c = let_(
        &mut k,
        &mut body,
        "c",
        Ty::I64,
        add(mul(g, idx(icg as i64)), var(ci)),
    );
    let plane = let_(
        &mut k,
        &mut body,
        "plane",
        Ty::I64,
        mul(
            add(mul(bv.clone(), idx(ic as i64)), c.clone()),
            idx((ih * iw) as i64),
        ),
    );
    let ogi = div(c, idx(icpo as i64));
    let mut tap_body = Vec::new();
    // Offset channel pair / mask channel of this tap.
    let kk = let_(
        &mut k,
        &mut tap_body,
        "kk",
        Ty::I64,
        add(
            mul(add(mul(ogi, idx(kh as i64)), var(a)), idx(kw as i64)),
            var(e),
        ),
    );
    let plane_px = (oh * ow) as i64;
    let off_at = |comp: i64| {
        let ch = add(
            mul(bv.clone(), idx((og * taps * 2) as i64)),
            add(mul(kk.clone(), idx(2)), idx(comp)),
        );
        cast(
            Ty::F64,
            load(offp, add(mul(ch, idx(plane_px)), pix.clone())),
        )
    };
    let sy = let_(
        &mut k,
        &mut tap_body,
        "sy",
        Ty::F64,
        add(
            cast(
                Ty::F64,
                add(
                    sub(mul(iv.clone(), idx(st[0])), idx(pads[0])),
                    mul(var(a), idx(dil[0])),
                ),
            ),
            off_at(0),
        ),
    );
    let sx = let_(
        &mut k,
        &mut tap_body,
        "sx",
        Ty::F64,
        add(
            cast(
                Ty::F64,
                add(
                    sub(mul(jv.clone(), idx(st[1])), idx(pads[1])),
                    mul(var(e), idx(dil[1])),
                ),
            ),
            off_at(1),
        ),
    );
    let fy = let_(
        &mut k,
        &mut tap_body,
        "fy",
        Ty::F64,
        un(UnOp::Floor, sy.clone()),
    );
    let fx = let_(
        &mut k,
        &mut tap_body,
        "fx",
        Ty::F64,
        un(UnOp::Floor, sx.clone()),
    );
    let ty_ = let_(&mut k, &mut tap_body, "ty", Ty::F64, sub(sy, fy.clone()));
    let tx_ = let_(&mut k, &mut tap_body, "tx", Ty::F64, sub(sx, fx.clone()));
    let y0 = let_(&mut k, &mut tap_body, "y0", Ty::I64, cast(Ty::I64, fy));
    let x0 = let_(&mut k, &mut tap_body, "x0", Ty::I64, cast(Ty::I64, fx));
    let clamp = |v: Expr, n: u64| bin(BinOp::Min, bin(BinOp::Max, v, idx(0)), idx(n as i64 - 1));
    let in_map = |v: &Expr, n: u64| {
        bin(
            BinOp::And,
            cmp(CmpOp::Ge, v.clone(), idx(0)),
            cmp(CmpOp::Lt, v.clone(), idx(n as i64)),
        )
    };
    let mut sample: Option<Expr> = None;
    for (dy, wy) in [(0i64, sub(f(1.0), ty_.clone())), (1, ty_.clone())] {
        for (dx, wx) in [(0i64, sub(f(1.0), tx_.clone())), (1, tx_.clone())] {
            let yy = add(y0.clone(), idx(dy));
            let xx = add(x0.clone(), idx(dx));
            let ok = bin(BinOp::And, in_map(&yy, ih), in_map(&xx, iw));
            let at = add(
                plane.clone(),
                add(mul(clamp(yy, ih), idx(iw as i64)), clamp(xx, iw)),
            );
            let v = select(
                ok,
                mul(mul(wy.clone(), wx), cast(Ty::F64, load(xp, at))),
                f(0.0),
            );
            sample = Some(match sample {
                None => v,
                Some(s) => add(s, v),
            });
        }
    }
    let mut v = sample.unwrap_or(f(0.0));
    if let Some(mp) = mp {
        let ch = add(mul(bv.clone(), idx((og * taps) as i64)), kk.clone());
        v = mul(
            v,
            cast(Ty::F64, load(mp, add(mul(ch, idx(plane_px)), pix.clone()))),
        );
    }
    let wi = add(
        mul(
            add(
                mul(
                    add(mul(ov.clone(), idx(icg as i64)), var(ci)),
                    idx(kh as i64),
                ),
                var(a),
            ),
            idx(kw as i64),
        ),
        var(e),
    );
    tap_body.push(Stmt::Set(
        acc,
        add(var(acc), mul(v, cast(Ty::F64, load(wp, wi)))),
    ));
    body.push(Stmt::Loop {
        var: a,
        extent: idx(kh as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Loop {
            var: e,
            extent: idx(kw as i64),
            kind: LoopKind::Serial,
            body: tap_body,
        }],
    });
    let init = match bp {
        Some(b) => cast(Ty::F64, load(b, ov.clone())),
        None => f(0.0),
    };
    k.body.push(Stmt::Decl(acc, init));
    k.body.push(Stmt::Loop {
        var: ci,
        extent: idx(icg as i64),
        kind: LoopKind::Serial,
        body,
    });
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&all, &y.dims),
        value: cast(y.ty, var(acc)),
    });
    let mut args = vec![&x, &w, &off];
    if let Some(b) = &bias {
        args.push(b);
    }
    if let Some(m) = &mask {
        args.push(m);
    }
    args.push(&y);
    l.kernel(k, &args)
}
