//! Ops whose output is generated rather than moved: Shape, Size,
//! ConstantOfShape, EyeLike, Range, and small constant tables for other
//! lowerings.

use super::movement::{domain_vars, inv};
use super::{LResult, Lower, LowerError, T, param};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, CmpOp, Expr, Kernel, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "Shape" => shape(l),
        "Size" => size(l),
        "ConstantOfShape" => constant_of_shape(l),
        "EyeLike" => eye_like(l),
        "Range" => range(l),
        _ => return None,
    };
    Some(r)
}

/// A literal of `ty` with the value of integer `v`.
fn int_lit(v: i64, ty: Ty) -> Expr {
    let ty = ty.compute();
    if ty.is_float() {
        Expr::Float(v as f64, ty)
    } else if ty == Ty::Bool {
        Expr::Int(i64::from(v != 0), ty)
    } else {
        Expr::Int(v, ty)
    }
}

/// Writes `vals` into `y` (one store each: these tables are small).
pub(super) fn write_consts(l: &mut Lower, y: &T, vals: &[Expr]) -> LResult<()> {
    if vals.len() as u64 != y.numel() {
        return Err(LowerError::Invalid(format!(
            "{}: {} values for an output of {} elements",
            l.op(),
            vals.len(),
            y.numel()
        )));
    }
    if vals.is_empty() {
        return Ok(());
    }
    let mut k = Kernel::new("consts", vec![]);
    let ys = param(&mut k, "y", y, Access::Write);
    for (i, v) in vals.iter().enumerate() {
        k.body.push(Stmt::Store {
            buf: ys,
            index: idx(i as i64),
            value: v.clone(),
        });
    }
    l.kernel(k, &[y])
}

fn shape(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let r = x.rank() as i64;
    let ctx = l.ctx();
    let fix = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let s = fix(ctx.int("start", 0).map_err(inv)?);
    let e = fix(ctx.int("end", r).map_err(inv)?);
    let vals: Vec<Expr> = x.dims[s..e.max(s)]
        .iter()
        .map(|&d| int_lit(d as i64, y.ty))
        .collect();
    write_consts(l, &y, &vals)
}

fn size(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    write_consts(l, &y, &[int_lit(x.numel() as i64, y.ty)])
}

/// `y[i] = v` everywhere.
fn fill(l: &mut Lower, y: &T, v: Expr) -> LResult<()> {
    if y.numel() == 0 {
        return Ok(());
    }
    let mut k = Kernel::new("fill", vec![y.numel()]);
    let ys = param(&mut k, "y", y, Access::Write);
    k.body.push(Stmt::Store {
        buf: ys,
        index: k.index(0),
        value: v,
    });
    l.kernel(k, &[y])
}

fn constant_of_shape(l: &mut Lower) -> LResult<()> {
    let y = l.out(0)?;
    let ty = y.ty.compute();
    let v = match l.ctx().attr("value") {
        None => lit(0.0, ty),
        Some(smelt_ir::Attr::Tensor(d)) => {
            let t = smelt_ir::interp::Tensor::from_data(d)
                .map_err(|e| LowerError::Invalid(format!("ConstantOfShape value: {e}")))?;
            if ty.is_float() {
                let v = t.to_f64_vec().unwrap_or_default();
                lit(v.first().copied().unwrap_or(0.0), ty)
            } else {
                let v = t.to_i64_vec().unwrap_or_default();
                int_lit(v.first().copied().unwrap_or(0), ty)
            }
        }
        Some(_) => return Err(LowerError::Invalid("ConstantOfShape: bad value".into())),
    };
    fill(l, &y, v)
}

fn eye_like(l: &mut Lower) -> LResult<()> {
    let y = l.out(0)?;
    let kk = l.ctx().int("k", 0).map_err(inv)?;
    if y.rank() != 2 {
        return Err(LowerError::Invalid("EyeLike: rank must be 2".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let mut k = Kernel::new("eye", y.dims.clone());
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let on = cmp(CmpOp::Eq, sub(o[1].clone(), o[0].clone()), idx(kk));
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: select(on, int_lit(1, y.ty), int_lit(0, y.ty)),
    });
    l.kernel(k, &[&y])
}

fn range(l: &mut Lower) -> LResult<()> {
    let start = l.input(0)?;
    let delta = l.input(2)?;
    let y = l.out(0)?;
    if start.numel() != 1 || delta.numel() != 1 || y.rank() != 1 {
        return Err(LowerError::Invalid(
            "Range: scalar operands expected".into(),
        ));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let ty = y.ty.compute();
    let mut k = Kernel::new("range", y.dims.clone());
    let s = param(&mut k, "start", &start, Access::Read);
    let d = param(&mut k, "delta", &delta, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let i = k.index(0);
    k.body.push(Stmt::Store {
        buf: ys,
        index: i.clone(),
        value: add(load(s, idx(0)), mul(cast(ty, i), load(d, idx(0)))),
    });
    l.kernel(k, &[&start, &delta, &y])
}
