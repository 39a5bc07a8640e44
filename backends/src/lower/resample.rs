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

/// A per-axis quantity known at compile time or loaded at run time.
#[derive(Clone)]
struct Val {
    e: Expr,
    c: Option<f64>,
}

impl Val {
    fn c(x: f64) -> Val {
        Val {
            e: f(x),
            c: Some(x),
        }
    }
    fn d(e: Expr) -> Val {
        Val { e, c: None }
    }
}

/// The kernel's extra operands: scales, sizes, roi (those that are not
/// constants), in parameter order.
struct Extra {
    args: Vec<super::T>,
}

impl Extra {
    /// f64 value `i` of input `input` (a constant or a kernel operand).
    fn get(&mut self, l: &Lower, k: &mut Kernel, input: usize, i: usize) -> LResult<Val> {
        if let Some(v) = l.const_f64s(input) {
            return v
                .get(i)
                .map(|&x| Val::c(x))
                .ok_or_else(|| LowerError::Invalid("Resize: operand too short".into()));
        }
        let t = l.input(input)?;
        if i as u64 >= t.numel() {
            return Err(LowerError::Invalid("Resize: operand too short".into()));
        }
        let pos = match self.args.iter().position(|a| a.buf == t.buf) {
            Some(p) => p + 2,
            None => {
                let p = param(k, "s", &t, Access::Read);
                self.args.push(t);
                p
            }
        };
        Ok(Val::d(cast(Ty::F64, load(pos, idx(i as i64)))))
    }
}

/// Per-dim scales, as the reference plans them.
fn plan(
    l: &Lower,
    k: &mut Kernel,
    ex: &mut Extra,
    in_dims: &[u64],
    out_dims: &[u64],
    axes: &[usize],
) -> LResult<Vec<Val>> {
    let r = in_dims.len();
    let mut sc = vec![Val::c(1.0); r];
    let has = |i: usize| l.opt_input(i).is_some_and(|t| t.numel() > 0);
    if has(3) {
        let policy = l
            .ctx()
            .string("keep_aspect_ratio_policy", "stretch")
            .map_err(inv)?;
        if policy == "stretch" {
            // The output's static dims are the sizes.
            for &a in axes {
                sc[a] = Val::c(out_dims[a] as f64 / in_dims[a] as f64);
            }
            return Ok(sc);
        }
        let mut acc: Option<Val> = None;
        for (j, &a) in axes.iter().enumerate() {
            let v = ex.get(l, k, 3, j)?;
            let q = match v.c {
                Some(c) => Val::c(c / in_dims[a] as f64),
                None => Val::d(div(v.e, f(in_dims[a] as f64))),
            };
            acc = Some(match acc {
                None => q,
                Some(p) => {
                    let (lo, op) = match policy.as_str() {
                        "not_larger" => (true, BinOp::Min),
                        "not_smaller" => (false, BinOp::Max),
                        p => return unsupported(format!("keep_aspect_ratio_policy {p}")),
                    };
                    match (p.c, q.c) {
                        (Some(x), Some(y)) => Val::c(if lo { x.min(y) } else { x.max(y) }),
                        _ => Val::d(bin(op, p.e, q.e)),
                    }
                }
            });
        }
        if !matches!(policy.as_str(), "not_larger" | "not_smaller") {
            return unsupported(format!("keep_aspect_ratio_policy {policy}"));
        }
        if let Some(s) = acc {
            for &a in axes {
                sc[a] = s.clone();
            }
        }
    } else if has(2) {
        for (j, &a) in axes.iter().enumerate() {
            sc[a] = ex.get(l, k, 2, j)?;
        }
    } else {
        return Err(LowerError::Invalid("Resize needs scales or sizes".into()));
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
    scale: &Val,
    wi: f64,
    w_out: u64,
    roi: (Val, Val),
) -> Option<(Expr, Option<Expr>)> {
    let s = scale.e.clone();
    let wo_c = scale.c.map(|c| c * wi);
    let wo = match wo_c {
        Some(c) => f(c),
        None => mul(s.clone(), f(wi)),
    };
    // `one` when the scaled input length is exactly 1, else `other`.
    let if_one = |one: Expr, other: Expr| match wo_c {
        Some(c) => {
            if c == 1.0 {
                one
            } else {
                other
            }
        }
        None => select(cmp(CmpOp::Eq, wo.clone(), f(1.0)), one, other),
    };
    let half = || sub(div(add(y.clone(), f(0.5)), s.clone()), f(0.5));
    Some(match o.coord.as_str() {
        "align_corners" => (
            if_one(
                f(0.0),
                div(mul(y.clone(), f(wi - 1.0)), sub(wo.clone(), f(1.0))),
            ),
            None,
        ),
        "asymmetric" => (div(y.clone(), s.clone()), None),
        "tf_crop_and_resize" => {
            let span = sub(roi.1.e.clone(), roi.0.e.clone());
            let x = if_one(
                div(mul(span.clone(), f(wi - 1.0)), f(2.0)),
                div(
                    mul(mul(y.clone(), span), f(wi - 1.0)),
                    sub(wo.clone(), f(1.0)),
                ),
            );
            let x = add(x, mul(roi.0.e, f(wi - 1.0)));
            let ok = bin(
                BinOp::And,
                cmp(CmpOp::Ge, x.clone(), f(0.0)),
                cmp(CmpOp::Le, x.clone(), f(wi - 1.0)),
            );
            (x, Some(ok))
        }
        "pytorch_half_pixel" => (if_one(f(-0.5), half()), None),
        "half_pixel" => (half(), None),
        "half_pixel_symmetric" => {
            let adjustment = div(f(w_out as f64), wo.clone());
            let offset = mul(f(wi / 2.0), sub(f(1.0), adjustment));
            (
                sub(add(offset, div(add(y.clone(), f(0.5)), s.clone())), f(0.5)),
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
    let mut ex = Extra { args: Vec::new() };
    let scales = plan(l, &mut k, &mut ex, &x.dims, &y.dims, &axes)?;
    let mut roi = vec![(Val::c(0.0), Val::c(1.0)); r];
    if o.coord == "tf_crop_and_resize" && l.opt_input(1).is_some_and(|t| t.numel() > 0) {
        let n = axes.len();
        for (j, &a) in axes.iter().enumerate() {
            roi[a] = (ex.get(l, &mut k, 1, j)?, ex.get(l, &mut k, 1, n + j)?);
        }
    }
    let od = domain_vars(&k);
    let mut taps: Vec<Taps> = Vec::with_capacity(r);
    let mut inside: Option<Expr> = None;
    for a in 0..r {
        let trivial_roi = match (roi[a].0.c, roi[a].1.c) {
            (Some(r0), Some(r1)) => r0.abs() < 1e-9 && (r1 - 1.0).abs() < 1e-9,
            _ => false,
        };
        let unit = scales[a].c.is_some_and(|s| (s - 1.0).abs() < 1e-9);
        if !axes.contains(&a) || (unit && y.dims[a] == x.dims[a] && trivial_roi) {
            if y.dims[a] != x.dims[a] {
                return Err(LowerError::Invalid("Resize: unexpected output size".into()));
            }
            taps.push(vec![(od[a].clone(), None)]);
            continue;
        }
        let wi = x.dims[a];
        let yf = cast(Ty::F64, od[a].clone());
        let Some((xc, ok)) = coord(&o, yf, &scales[a], wi as f64, y.dims[a], roi[a].clone()) else {
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
    let mut args = vec![&x, &y];
    args.extend(ex.args.iter());
    l.kernel(k, &args)
}
