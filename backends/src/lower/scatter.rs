//! Scatter-like ops written as gathers over their output: TensorScatter
//! (KV-cache update).

use super::movement::{domain_vars, inv, norm_axis};
use super::{LResult, Lower, LowerError, param};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Kernel, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "TensorScatter" => tensor_scatter(l),
        _ => return None,
    };
    Some(r)
}

/// Each cache slot along `axis` reads the update row written there (if
/// any): position p of batch b holds update row p - start[b] (mod the
/// cache length when circular) when that row exists.
fn tensor_scatter(l: &mut Lower) -> LResult<()> {
    let past = l.input(0)?;
    let upd = l.input(1)?;
    let wi = l.opt_input(2);
    let y = l.out(0)?;
    let r = past.rank();
    let ctx = l.ctx();
    let axis = norm_axis(ctx.int("axis", -2).map_err(inv)?, r)?;
    if upd.rank() != r || r < 2 || past.ty != upd.ty || y.ty != past.ty || y.dims != past.dims {
        return Err(LowerError::Invalid("TensorScatter: bad operands".into()));
    }
    if axis == 0 {
        return Err(LowerError::Invalid(
            "TensorScatter: axis is the batch axis".into(),
        ));
    }
    for i in 0..r {
        if (i != axis && past.dims[i] != upd.dims[i]) || (i == axis && upd.dims[i] > past.dims[i]) {
            return Err(LowerError::Invalid(
                "TensorScatter: update does not fit".into(),
            ));
        }
    }
    let circular = match ctx.string("mode", "linear").map_err(inv)?.as_str() {
        "linear" => false,
        "circular" => true,
        m => {
            return Err(LowerError::Invalid(format!(
                "TensorScatter: unknown mode `{m}`"
            )));
        }
    };
    if let Some(w) = &wi
        && (w.numel() != past.dims[0] || !w.ty.is_int())
    {
        return Err(LowerError::Invalid(
            "TensorScatter: bad write_indices".into(),
        ));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let max_len = past.dims[axis] as i64;
    let seq = upd.dims[axis] as i64;
    let mut k = Kernel::new("tensor_scatter", y.dims.clone());
    let ps = param(&mut k, "past", &past, Access::Read);
    let us = param(&mut k, "update", &upd, Access::Read);
    let ws = wi
        .as_ref()
        .map(|w| param(&mut k, "write_indices", w, Access::Read));
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let start = match ws {
        Some(w) => cast(Ty::I64, load(w, o[0].clone())),
        None => idx(0),
    };
    let s = k.var("s", Ty::I64, false);
    let d = sub(o[axis].clone(), start);
    let e = if circular {
        let m = k.var("m", Ty::I64, false);
        k.body.push(Stmt::Let(m, rem(d, idx(max_len))));
        select(
            cmp(CmpOp::Lt, var(m), idx(0)),
            add(var(m), idx(max_len)),
            var(m),
        )
    } else {
        d
    };
    k.body.push(Stmt::Let(s, e));
    let hit = k.var("hit", Ty::Bool, false);
    k.body.push(Stmt::Let(
        hit,
        bin(
            BinOp::And,
            cmp(CmpOp::Ge, var(s), idx(0)),
            cmp(CmpOp::Lt, var(s), idx(seq)),
        ),
    ));
    let mut ui = o.clone();
    ui[axis] = select(var(hit), var(s), idx(0));
    let index = flat(&o, &y.dims);
    let from_upd = load(us, flat(&ui, &upd.dims));
    k.body.push(Stmt::If {
        cond: var(hit),
        then: vec![Stmt::Store {
            buf: ys,
            index: index.clone(),
            value: from_upd,
        }],
        els: vec![Stmt::Store {
            buf: ys,
            index,
            value: load(ps, flat(&o, &past.dims)),
        }],
    });
    let mut args = vec![&past, &upd];
    if let Some(w) = &wi {
        args.push(w);
    }
    args.push(&y);
    l.kernel(k, &args)
}
