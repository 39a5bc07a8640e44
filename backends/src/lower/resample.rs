//! Resize (nearest, linear, cubic; no antialias). Shapes, scales and ROI
//! are compile-time constants, so each resized axis's source coordinate
//! is a short f64 expression of the output index, evaluated with the same
//! operations in the same order as the reference so that tie-breaking in
//! nearest mode agrees. Interpolation taps are clamped into the input.

use super::movement::{clamp_idx, domain_vars, inv, norm_axis};
use super::{LResult, Lower, LowerError, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "Resize" => Some(resize(l)),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

struct Opts {
    coord: String,
    nearest: String,
    a: f64,
    exclude_outside: bool,
    extrapolation: f64,
}

/// Per-dim (scale, output size), as the reference plans them.
fn plan(l: &Lower, in_dims: &[u64], axes: &[usize]) -> LResult<Vec<f64>> {
    let r = in_dims.len();
    let mut sc = vec![1.0; r];
    let sizes = l
        .opt_input(3)
        .and_then(|_| l.const_ints(3))
        .filter(|s| !s.is_empty());
    let scales = l
        .opt_input(2)
        .and_then(|_| l.const_f64s(2))
        .filter(|s| !s.is_empty());
    if l.opt_input(3).is_some_and(|t| t.numel() > 0) && sizes.is_none()
        || l.opt_input(2).is_some_and(|t| t.numel() > 0) && scales.is_none()
    {
        return unsupported("Resize with run-time scales or sizes");
    }
    match (scales, sizes) {
        (_, Some(s)) => {
            if s.len() != axes.len() {
                return Err(LowerError::Invalid("Resize: sizes/axes mismatch".into()));
            }
            for (&a, &v) in axes.iter().zip(&s) {
                sc[a] = v as f64 / in_dims[a] as f64;
            }
            let policy = l
                .ctx()
                .string("keep_aspect_ratio_policy", "stretch")
                .map_err(inv)?;
            if policy != "stretch" {
                let it = axes.iter().map(|&a| sc[a]);
                let s = match policy.as_str() {
                    "not_larger" => it.fold(f64::INFINITY, f64::min),
                    "not_smaller" => it.fold(f64::NEG_INFINITY, f64::max),
                    p => return unsupported(format!("keep_aspect_ratio_policy {p}")),
                };
                for &a in axes {
                    sc[a] = s;
                }
            }
        }
        (Some(s), None) => {
            if s.len() != axes.len() {
                return Err(LowerError::Invalid("Resize: scales/axes mismatch".into()));
            }
            for (&a, &v) in axes.iter().zip(&s) {
                sc[a] = v;
            }
        }
        (None, None) => return Err(LowerError::Invalid("Resize needs scales or sizes".into())),
    }
    Ok(sc)
}

fn f(x: f64) -> Expr {
    Expr::Float(x, Ty::F64)
}

/// The source coordinate of output index `y` (f64) along an axis, and
/// whether it is inside the crop box (tf_crop_and_resize only). `None`
/// for an unknown mode.
fn coord(
    o: &Opts,
    y: Expr,
    scale: f64,
    wi: f64,
    w_out: u64,
    roi: (f64, f64),
) -> Option<(Expr, Option<Expr>)> {
    let wo = scale * wi;
    let half = || sub(div(add(y.clone(), f(0.5)), f(scale)), f(0.5));
    Some(match o.coord.as_str() {
        "align_corners" => {
            if wo == 1.0 {
                (f(0.0), None)
            } else {
                (div(mul(y.clone(), f(wi - 1.0)), f(wo - 1.0)), None)
            }
        }
        "asymmetric" => (div(y.clone(), f(scale)), None),
        "tf_crop_and_resize" => {
            let x = if wo == 1.0 {
                f((roi.1 - roi.0) * (wi - 1.0) / 2.0)
            } else {
                div(
                    mul(mul(y.clone(), f(roi.1 - roi.0)), f(wi - 1.0)),
                    f(wo - 1.0),
                )
            };
            let x = add(x, f(roi.0 * (wi - 1.0)));
            let ok = bin(
                BinOp::And,
                cmp(CmpOp::Ge, x.clone(), f(0.0)),
                cmp(CmpOp::Le, x.clone(), f(wi - 1.0)),
            );
            (x, Some(ok))
        }
        "pytorch_half_pixel" => {
            if wo == 1.0 {
                (f(-0.5), None)
            } else {
                (half(), None)
            }
        }
        "half_pixel" => (half(), None),
        "half_pixel_symmetric" => {
            let adjustment = w_out as f64 / wo;
            let offset = wi / 2.0 * (1.0 - adjustment);
            (
                sub(
                    add(f(offset), div(add(y.clone(), f(0.5)), f(scale))),
                    f(0.5),
                ),
                None,
            )
        }
        _ => return None,
    })
}

/// One axis's taps: (clamped source index, weight; None = 1).
type Taps = Vec<(Expr, Option<Expr>)>;

fn cubic_coeffs(a: f64, r: Expr) -> Vec<Expr> {
    let q = sub(f(1.0), r.clone());
    let outer = |t: Expr| {
        // ((a (t+1) - 5a)(t+1) + 8a)(t+1) - 4a
        let t1 = add(t, f(1.0));
        sub(
            mul(
                add(
                    mul(sub(mul(f(a), t1.clone()), f(5.0 * a)), t1.clone()),
                    f(8.0 * a),
                ),
                t1,
            ),
            f(4.0 * a),
        )
    };
    let inner = |t: Expr| {
        // ((a+2) t - (a+3)) t^2 + 1
        add(
            mul(
                mul(sub(mul(f(a + 2.0), t.clone()), f(a + 3.0)), t.clone()),
                t,
            ),
            f(1.0),
        )
    };
    vec![outer(r.clone()), inner(r), inner(q.clone()), outer(q)]
}

fn resize(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let ctx = l.ctx();
    let r = x.rank();
    if y.rank() != r {
        return Err(LowerError::Invalid("Resize: rank mismatch".into()));
    }
    let mode = match ctx.string("mode", "nearest").map_err(inv)?.as_str() {
        "nearest" => Mode::Nearest,
        "linear" => Mode::Linear,
        "cubic" => Mode::Cubic,
        m => return unsupported(format!("Resize mode {m}")),
    };
    if mode == Mode::Nearest && ctx.int("exclude_outside", 0).map_err(inv)? != 0 {
        return unsupported("nearest Resize with exclude_outside");
    }
    if mode != Mode::Nearest && ctx.int("antialias", 0).map_err(inv)? != 0 {
        return unsupported("Resize with antialias");
    }
    let o = Opts {
        coord: ctx
            .string("coordinate_transformation_mode", "half_pixel")
            .map_err(inv)?,
        nearest: ctx
            .string("nearest_mode", "round_prefer_floor")
            .map_err(inv)?,
        a: ctx.float("cubic_coeff_a", -0.75).map_err(inv)? as f64,
        exclude_outside: ctx.int("exclude_outside", 0).map_err(inv)? != 0,
        extrapolation: ctx.float("extrapolation_value", 0.0).map_err(inv)? as f64,
    };
    let axes: Vec<usize> = match ctx.ints("axes").map_err(inv)? {
        None => (0..r).collect(),
        Some(a) => a.iter().map(|&a| norm_axis(a, r)).collect::<LResult<_>>()?,
    };
    let scales = plan(l, &x.dims, &axes)?;
    let mut roi = vec![(0.0, 1.0); r];
    if l.opt_input(1).is_some_and(|t| t.numel() > 0) {
        let Some(v) = l.const_f64s(1) else {
            return unsupported("Resize with a run-time roi");
        };
        let n = axes.len();
        if v.len() != 2 * n {
            return Err(LowerError::Invalid("Resize: roi length".into()));
        }
        for (k, &a) in axes.iter().enumerate() {
            roi[a] = (v[k], v[n + k]);
        }
    }
    if y.numel() == 0 {
        return Ok(());
    }
    if x.numel() == 0 {
        return unsupported("Resize of an empty tensor");
    }
    let int_out = !y.ty.is_float();
    if int_out && !y.ty.is_int() {
        return unsupported(format!("Resize of {}", y.dtype));
    }
    let mut k = Kernel::new("resize", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let od = domain_vars(&k);
    let mut taps: Vec<Taps> = Vec::with_capacity(r);
    let mut inside: Option<Expr> = None;
    for a in 0..r {
        let trivial_roi = roi[a].0.abs() < 1e-9 && (roi[a].1 - 1.0).abs() < 1e-9;
        if !axes.contains(&a)
            || ((scales[a] - 1.0).abs() < 1e-9 && y.dims[a] == x.dims[a] && trivial_roi)
        {
            if y.dims[a] != x.dims[a] {
                return Err(LowerError::Invalid("Resize: unexpected output size".into()));
            }
            taps.push(vec![(od[a].clone(), None)]);
            continue;
        }
        let wi = x.dims[a];
        let yf = cast(Ty::F64, od[a].clone());
        let Some((xc, ok)) = coord(&o, yf, scales[a], wi as f64, y.dims[a], roi[a]) else {
            return unsupported(format!("coordinate_transformation_mode {}", o.coord));
        };
        let xv = k.var("x", Ty::F64, false);
        k.body.push(Stmt::Let(xv, xc));
        if let Some(ok) = ok {
            inside = Some(match inside {
                None => ok,
                Some(p) => bin(BinOp::And, p, ok),
            });
        }
        let flv = k.var("fl", Ty::F64, false);
        k.body.push(Stmt::Let(flv, un(UnOp::Floor, var(xv))));
        let rv = k.var("r", Ty::F64, false);
        k.body.push(Stmt::Let(rv, sub(var(xv), var(flv))));
        // Clamp in f64 first so that a huge coordinate cannot overflow the
        // integer conversion.
        let base = cast(
            Ty::I64,
            bin(
                BinOp::Max,
                f(-4.0),
                bin(BinOp::Min, var(flv), f(wi as f64 + 4.0)),
            ),
        );
        let bv = k.var("b", Ty::I64, false);
        k.body.push(Stmt::Let(bv, base));
        let rr = var(rv);
        let t: Taps = match mode {
            Mode::Nearest => {
                let up = match o.nearest.as_str() {
                    "round_prefer_ceil" => cmp(CmpOp::Ge, rr, f(0.5)),
                    "floor" => Expr::Int(0, Ty::Bool),
                    "ceil" => cmp(CmpOp::Gt, rr, f(0.0)),
                    _ => cmp(CmpOp::Gt, rr, f(0.5)),
                };
                let i = add(var(bv), select(up, idx(1), idx(0)));
                vec![(clamp_idx(i, wi), None)]
            }
            Mode::Linear => vec![
                (clamp_idx(var(bv), wi), Some(sub(f(1.0), rr.clone()))),
                (clamp_idx(add(var(bv), idx(1)), wi), Some(rr)),
            ],
            Mode::Cubic => {
                let c = cubic_coeffs(o.a, rr);
                let mut out = Vec::new();
                let mut ws = Vec::new();
                for (j, cj) in c.into_iter().enumerate() {
                    let raw = add(var(bv), idx(j as i64 - 1));
                    let w = if o.exclude_outside {
                        select(
                            bin(
                                BinOp::And,
                                cmp(CmpOp::Ge, raw.clone(), idx(0)),
                                cmp(CmpOp::Lt, raw.clone(), idx(wi as i64)),
                            ),
                            cj,
                            f(0.0),
                        )
                    } else {
                        cj
                    };
                    let wv = k.var("w", Ty::F64, false);
                    k.body.push(Stmt::Let(wv, w));
                    ws.push(wv);
                    out.push((clamp_idx(raw, wi), var(wv)));
                }
                if o.exclude_outside {
                    let s = ws
                        .iter()
                        .map(|&w| var(w))
                        .reduce(add)
                        .unwrap_or_else(|| f(1.0));
                    let sv = k.var("s", Ty::F64, false);
                    k.body.push(Stmt::Let(
                        sv,
                        select(cmp(CmpOp::Eq, s.clone(), f(0.0)), f(1.0), s),
                    ));
                    out.into_iter()
                        .map(|(i, w)| (i, Some(div(w, var(sv)))))
                        .collect()
                } else {
                    out.into_iter().map(|(i, w)| (i, Some(w))).collect()
                }
            }
        };
        taps.push(t);
    }
    // Sum over the product of every axis's taps.
    let mut terms: Vec<(Vec<Expr>, Option<Expr>)> = vec![(Vec::new(), None)];
    for t in &taps {
        let mut next = Vec::with_capacity(terms.len() * t.len());
        for (src, w) in &terms {
            for (i, wt) in t {
                let mut s = src.clone();
                s.push(i.clone());
                let w = match (w, wt) {
                    (None, x) => x.clone(),
                    (x, None) => x.clone(),
                    (Some(a), Some(b)) => Some(mul(a.clone(), b.clone())),
                };
                next.push((s, w));
            }
        }
        terms = next;
    }
    let value = if mode == Mode::Nearest {
        let (s, _) = &terms[0];
        let v = load(xs, flat(s, &x.dims));
        match inside {
            None => v,
            Some(ok) => select(ok, v, cast(y.ty, f(o.extrapolation))),
        }
    } else {
        let mut acc: Option<Expr> = None;
        for (s, w) in terms {
            let v = cast(Ty::F64, load(xs, flat(&s, &x.dims)));
            let t = match w {
                Some(w) => mul(w, v),
                None => v,
            };
            acc = Some(match acc {
                None => t,
                Some(a) => add(a, t),
            });
        }
        let mut v = acc.unwrap_or_else(|| f(0.0));
        if let Some(ok) = inside {
            v = select(ok, v, f(o.extrapolation));
        }
        if int_out {
            v = un(UnOp::Round, v);
        }
        cast(y.ty, v)
    };
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&od, &y.dims),
        value,
    });
    l.kernel(k, &[&x, &y])
}
