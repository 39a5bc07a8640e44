//! Sampling ops driven by coordinate grids: GridSample and AffineGrid.
//!
//! GridSample's domain is the output [N, C, O1..Or]: every point recomputes
//! its (cheap) source coordinates so that points stay independent, then
//! sums its taps (1, 2 or 4 per spatial dim, unrolled at compile time).
//! Each tap index is resolved against the padding mode and clamped before
//! the load, so no coordinate (NaN, huge, negative) can read out of bounds.

use super::movement::{domain_vars, inv};
use super::{LResult, Lower, LowerError, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp, Var};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "GridSample" => grid_sample(l),
        "AffineGrid" => affine_grid(l),
        _ => return None,
    };
    Some(r)
}

#[derive(Clone, Copy, PartialEq)]
enum Pad {
    Zeros,
    Border,
    Reflection,
}

fn f64e(x: f64) -> Expr {
    lit(x, Ty::F64)
}

fn let_var(k: &mut Kernel, name: &str, ty: Ty, e: Expr) -> Expr {
    let v: Var = k.var(name, ty, false);
    k.body.push(Stmt::Let(v, e));
    var(v)
}

/// Folds `v` (f64) back into [lo, hi] by reflecting at the borders as many
/// times as needed; values inside are returned unchanged.
fn reflect(k: &mut Kernel, v: Expr, lo: f64, hi: f64) -> Expr {
    let rng = hi - lo;
    if rng <= 0.0 {
        return f64e(lo);
    }
    let below = let_var(k, "below", Ty::Bool, cmp(CmpOp::Lt, v.clone(), f64e(lo)));
    let above = cmp(CmpOp::Gt, v.clone(), f64e(hi));
    let dx = let_var(
        k,
        "dx",
        Ty::F64,
        select(
            below.clone(),
            sub(f64e(lo), v.clone()),
            sub(v.clone(), f64e(hi)),
        ),
    );
    let n = let_var(
        k,
        "nref",
        Ty::F64,
        un(UnOp::Trunc, div(dx.clone(), f64e(rng))),
    );
    let rest = let_var(k, "rref", Ty::F64, sub(dx, mul(n.clone(), f64e(rng))));
    // The parity of the number of whole folds, computed in floats so that a
    // huge count cannot overflow an integer.
    let half = un(UnOp::Floor, mul(n.clone(), f64e(0.5)));
    let even = cmp(CmpOp::Eq, sub(n, mul(half, f64e(2.0))), f64e(0.0));
    let to_lo = cmp(CmpOp::Eq, below.clone(), even);
    let folded = select(to_lo, add(f64e(lo), rest.clone()), sub(f64e(hi), rest));
    select(bin(BinOp::Or, below, above), folded, v)
}

/// Keys' cubic weights (alpha = -0.75) for taps -1, 0, 1, 2 around offset t.
fn cubic_weights(t: &Expr) -> [Expr; 4] {
    let a = -0.75;
    let far = |x: Expr| {
        sub(
            mul(
                add(
                    mul(sub(mul(f64e(a), x.clone()), f64e(5.0 * a)), x.clone()),
                    f64e(8.0 * a),
                ),
                x,
            ),
            f64e(4.0 * a),
        )
    };
    let near = |x: Expr| {
        add(
            mul(
                mul(sub(mul(f64e(a + 2.0), x.clone()), f64e(a + 3.0)), x.clone()),
                x,
            ),
            f64e(1.0),
        )
    };
    [
        far(add(t.clone(), f64e(1.0))),
        near(t.clone()),
        near(sub(f64e(1.0), t.clone())),
        far(sub(f64e(2.0), t.clone())),
    ]
}

fn grid_sample(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let g = l.input(1)?;
    let y = l.out(0)?;
    let r = x.rank();
    if !x.ty.is_float() || !g.ty.is_float() {
        return unsupported("GridSample: integer X or grid");
    }
    if r < 3 || g.rank() != r || y.rank() != r || x.ty != y.ty {
        return Err(LowerError::Invalid("GridSample: bad operand ranks".into()));
    }
    let sp = r - 2;
    if g.dims[0] != x.dims[0] || g.dims[r - 1] != sp as u64 {
        return Err(LowerError::Invalid(
            "GridSample: grid does not fit X".into(),
        ));
    }
    let mut want = vec![x.dims[0], x.dims[1]];
    want.extend_from_slice(&g.dims[1..r - 1]);
    if y.dims != want {
        return Err(LowerError::Invalid("GridSample: bad output shape".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let ctx = l.ctx();
    let align = ctx.int("align_corners", 0).map_err(inv)? != 0;
    let taps: usize = match ctx.string("mode", "linear").map_err(inv)?.as_str() {
        "nearest" => 1,
        "linear" | "bilinear" => 2,
        "cubic" | "bicubic" => 4,
        m => {
            return Err(LowerError::Invalid(format!(
                "GridSample: unknown mode `{m}`"
            )));
        }
    };
    let pad = match ctx.string("padding_mode", "zeros").map_err(inv)?.as_str() {
        "zeros" => Pad::Zeros,
        "border" => Pad::Border,
        "reflection" => Pad::Reflection,
        p => {
            return Err(LowerError::Invalid(format!(
                "GridSample: unknown padding_mode `{p}`"
            )));
        }
    };
    if x.dims[2..].contains(&0) {
        return unsupported("GridSample: empty spatial input");
    }
    let dims: Vec<u64> = x.dims[2..].to_vec();
    let borders: Vec<(f64, f64)> = dims
        .iter()
        .map(|&d| {
            if align {
                (0.0, d as f64 - 1.0)
            } else {
                (-0.5, d as f64 - 0.5)
            }
        })
        .collect();

    let mut k = Kernel::new("grid_sample", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let gs = param(&mut k, "grid", &g, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    // Per spatial dim: tap indices (already resolved, clamped for the load)
    // with their in-range flags, and weights.
    let mut tap_idx: Vec<Vec<(Expr, Expr)>> = Vec::with_capacity(sp);
    let mut tap_w: Vec<Vec<Expr>> = Vec::with_capacity(sp);
    for kd in 0..sp {
        let d = dims[kd];
        let len = d as f64;
        let mut gi = vec![o[0].clone()];
        gi.extend_from_slice(&o[2..]);
        gi.push(idx((sp - 1 - kd) as i64));
        let nrm = cast(Ty::F64, load(gs, flat(&gi, &g.dims)));
        let den = if align {
            mul(mul(add(nrm, f64e(1.0)), f64e(0.5)), f64e(len - 1.0))
        } else {
            div(
                sub(mul(add(nrm, f64e(1.0)), f64e(len)), f64e(1.0)),
                f64e(2.0),
            )
        };
        // The reference keeps coordinates in f32.
        let mut v = cast(Ty::F64, cast(Ty::F32, den));
        if taps == 1 {
            v = un(UnOp::Round, v);
        }
        let mut v = let_var(&mut k, "v", Ty::F64, v);
        let (lo, hi) = borders[kd];
        match pad {
            Pad::Border => {
                let clamped = bin(
                    BinOp::Max,
                    bin(BinOp::Min, v.clone(), f64e(len - 1.0)),
                    f64e(0.0),
                );
                let out = bin(
                    BinOp::Or,
                    cmp(CmpOp::Lt, v.clone(), f64e(lo)),
                    cmp(CmpOp::Gt, v.clone(), f64e(hi)),
                );
                v = let_var(&mut k, "vb", Ty::F64, select(out, clamped, v.clone()));
            }
            Pad::Reflection => {
                let e = reflect(&mut k, v, lo, hi);
                v = let_var(&mut k, "vr", Ty::F64, e);
            }
            Pad::Zeros => {}
        }
        let base = if taps == 1 {
            un(UnOp::Trunc, v.clone())
        } else {
            un(UnOp::Floor, v.clone())
        };
        let f = let_var(&mut k, "f", Ty::F64, base);
        let t = let_var(&mut k, "t", Ty::F64, sub(v, f.clone()));
        // Out-of-range floats become a far-away index (never a wrapped one)
        // before the integer cast.
        let fc = bin(BinOp::Max, bin(BinOp::Min, f, f64e(len + 4.0)), f64e(-8.0));
        let fi = let_var(&mut k, "fi", Ty::I64, cast(Ty::I64, fc));
        let (offs, ws): (Vec<i64>, Vec<Expr>) = match taps {
            1 => (vec![0], vec![f64e(1.0)]),
            2 => (vec![0, 1], vec![sub(f64e(1.0), t.clone()), t.clone()]),
            _ => (vec![-1, 0, 1, 2], cubic_weights(&t).to_vec()),
        };
        let mut ids = Vec::new();
        let mut wv = Vec::new();
        for (off, w) in offs.into_iter().zip(ws) {
            let i = add(fi.clone(), idx(off));
            let j = match pad {
                Pad::Zeros => i,
                Pad::Border => bin(BinOp::Max, bin(BinOp::Min, i, idx(d as i64 - 1)), idx(0)),
                Pad::Reflection => {
                    let fl = reflect(&mut k, cast(Ty::F64, i), lo, hi);
                    cast(Ty::I64, un(UnOp::Trunc, fl))
                }
            };
            let j = let_var(&mut k, "j", Ty::I64, j);
            let ok = let_var(
                &mut k,
                "ok",
                Ty::Bool,
                bin(
                    BinOp::And,
                    cmp(CmpOp::Ge, j.clone(), idx(0)),
                    cmp(CmpOp::Lt, j.clone(), idx(d as i64)),
                ),
            );
            let safe = let_var(&mut k, "js", Ty::I64, select(ok.clone(), j, idx(0)));
            ids.push((safe, ok));
            wv.push(let_var(&mut k, "w", Ty::F64, w));
        }
        tap_idx.push(ids);
        tap_w.push(wv);
    }
    let n_taps = taps.pow(sp as u32);
    let mut acc: Option<Expr> = None;
    for tno in 0..n_taps {
        let mut rest = tno;
        let mut pos = vec![o[0].clone(), o[1].clone()];
        pos.extend(std::iter::repeat_n(idx(0), sp));
        let mut ok: Option<Expr> = None;
        let mut w: Option<Expr> = None;
        for kd in (0..sp).rev() {
            let which = rest % taps;
            rest /= taps;
            let (j, good) = &tap_idx[kd][which];
            pos[2 + kd] = j.clone();
            ok = Some(match ok {
                None => good.clone(),
                Some(a) => bin(BinOp::And, a, good.clone()),
            });
            w = Some(match w {
                None => tap_w[kd][which].clone(),
                Some(a) => mul(a, tap_w[kd][which].clone()),
            });
        }
        let (Some(ok), Some(w)) = (ok, w) else {
            return Err(LowerError::Invalid("GridSample: no spatial dims".into()));
        };
        let val = cast(Ty::F64, load(xs, flat(&pos, &x.dims)));
        let term = select(ok, mul(w, val), f64e(0.0));
        acc = Some(match acc {
            None => term,
            Some(a) => add(a, term),
        });
    }
    let Some(acc) = acc else {
        return Err(LowerError::Invalid("GridSample: no taps".into()));
    };
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: cast(y.ty.compute(), acc),
    });
    l.kernel(k, &[&x, &g, &y])
}

/// AffineGrid: out[b, o.., r] = theta[b, r, :] . (x, y[, z], 1) where the
/// homogeneous point holds the normalized coordinates of o, fastest dim first.
fn affine_grid(l: &mut Lower) -> LResult<()> {
    let th = l.input(0)?;
    let y = l.out(0)?;
    if !th.ty.is_float() || th.ty != y.ty {
        return unsupported("AffineGrid: non-float theta");
    }
    let r = y.rank();
    let nd = r.saturating_sub(2);
    if !(nd == 2 || nd == 3)
        || y.dims[r - 1] != nd as u64
        || th.dims != [y.dims[0], nd as u64, nd as u64 + 1]
    {
        return Err(LowerError::Invalid(
            "AffineGrid: theta does not fit the output".into(),
        ));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let align = l.ctx().int("align_corners", 0).map_err(inv)? != 0;
    let sp: Vec<u64> = y.dims[1..r - 1].to_vec();
    let mut k = Kernel::new("affine_grid", y.dims.clone());
    let ts = param(&mut k, "theta", &th, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let row = o[r - 1].clone();
    let mut acc = cast(
        Ty::F64,
        load(
            ts,
            flat(&[o[0].clone(), row.clone(), idx(nd as i64)], &th.dims),
        ),
    );
    for j in 0..nd {
        let n = sp[nd - 1 - j];
        let i = cast(Ty::F64, o[1 + nd - 1 - j].clone());
        let c = if align {
            if n == 1 {
                f64e(-1.0)
            } else {
                add(f64e(-1.0), mul(i, f64e(2.0 / (n - 1) as f64)))
            }
        } else {
            add(
                f64e(-1.0),
                div(add(mul(i, f64e(2.0)), f64e(1.0)), f64e(n as f64)),
            )
        };
        let w = cast(
            Ty::F64,
            load(
                ts,
                flat(&[o[0].clone(), row.clone(), idx(j as i64)], &th.dims),
            ),
        );
        acc = add(acc, mul(w, c));
    }
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: cast(y.ty.compute(), acc),
    });
    l.kernel(k, &[&th, &y])
}
