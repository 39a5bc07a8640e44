//! Ops that pick whole slices by a run-time or constant selection:
//! ReverseSequence and Compress.

use super::fill::write_consts;
use super::movement::{domain_vars, inv, norm_axis};
use super::{LResult, Lower, LowerError, T, param};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "ReverseSequence" => reverse_sequence(l),
        "Compress" => compress(l),
        _ => return None,
    };
    Some(r)
}

fn reverse_sequence(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let lens = l.input(1)?;
    let y = l.out(0)?;
    let r = x.rank();
    let ctx = l.ctx();
    let ba = norm_axis(ctx.int("batch_axis", 1).map_err(inv)?, r)?;
    let ta = norm_axis(ctx.int("time_axis", 0).map_err(inv)?, r)?;
    if lens.numel() != x.dims[ba] || !lens.ty.is_int() || x.dims != y.dims || ba == ta {
        return Err(LowerError::Invalid("ReverseSequence: bad operands".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let tn = x.dims[ta] as i64;
    let mut k = Kernel::new("reverse_sequence", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ls = param(&mut k, "lens", &lens, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let n = k.var("n", Ty::I64, false);
    k.body.push(Stmt::Let(
        n,
        bin(
            BinOp::Max,
            idx(0),
            bin(BinOp::Min, cast(Ty::I64, load(ls, o[ba].clone())), idx(tn)),
        ),
    ));
    let t = o[ta].clone();
    let mut src = o.clone();
    src[ta] = select(
        cmp(CmpOp::Lt, t.clone(), var(n)),
        sub(sub(var(n), idx(1)), t.clone()),
        t,
    );
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, flat(&src, &x.dims)),
    });
    l.kernel(k, &[&x, &lens, &y])
}

fn compress(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let axis = match l.ctx().attr("axis") {
        None => None,
        Some(_) => Some(norm_axis(l.ctx().int("axis", 0).map_err(inv)?, x.rank())?),
    };
    let Some(cond) = l.const_ints(1) else {
        return compress_dyn(l, &x, &y, axis);
    };
    let n = match axis {
        Some(a) => x.dims[a],
        None => x.numel(),
    };
    let picked: Vec<i64> = cond
        .iter()
        .take(n as usize)
        .enumerate()
        .filter(|&(_, &c)| c != 0)
        .map(|(i, _)| i as i64)
        .collect();
    let len = match axis {
        Some(a) => y.dims.get(a).copied(),
        None => y.dims.first().copied(),
    };
    if len != Some(picked.len() as u64) {
        return Err(LowerError::Invalid("Compress: output size mismatch".into()));
    }
    if picked.is_empty() {
        return Ok(());
    }
    // The picked positions as a small index table.
    let table = l.temp(smelt_ir::DType::I64, &[picked.len() as u64])?;
    let vals: Vec<Expr> = picked.iter().map(|&p| idx(p)).collect();
    write_consts(l, &table, &vals)?;
    let a = axis.unwrap_or(0);
    let mut k = Kernel::new("compress", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ts = param(&mut k, "table", &table, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let src = match axis {
        Some(_) => {
            let mut s = o.clone();
            s[a] = load(ts, o[a].clone());
            flat(&s, &x.dims)
        }
        None => load(ts, o[0].clone()),
    };
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, src),
    });
    l.kernel(k, &[&x, &table, &y])
}

/// Compress by a run-time condition: the positions off the axis are the
/// domain; a serial walk along the axis packs the selected slices.
fn compress_dyn(l: &mut Lower, x: &T, y: &T, axis: Option<usize>) -> LResult<()> {
    let c = l.input(1)?;
    let (dom, n, m) = match axis {
        Some(a) => {
            if y.rank() != x.rank() {
                return Err(LowerError::Invalid("Compress: rank mismatch".into()));
            }
            let mut d = x.dims.clone();
            d.remove(a);
            (d, x.dims[a], y.dims[a])
        }
        None => (vec![], x.numel(), y.numel()),
    };
    if y.numel() == 0 {
        return Ok(());
    }
    let steps = n.min(c.numel());
    let mut k = Kernel::new("compress", dom);
    let xs = param(&mut k, "x", x, Access::Read);
    let cs = param(&mut k, "cond", &c, Access::Read);
    let ys = param(&mut k, "y", y, Access::Write);
    let o = domain_vars(&k);
    let cnt = k.var("cnt", Ty::I64, true);
    let i = k.var("i", Ty::I64, false);
    k.body.push(Stmt::Decl(cnt, idx(0)));
    let (src, dst) = match axis {
        Some(a) => {
            let mut s = o.clone();
            s.insert(a, var(i));
            let mut d = o.clone();
            d.insert(a, var(cnt));
            (flat(&s, &x.dims), flat(&d, &y.dims))
        }
        None => (var(i), var(cnt)),
    };
    let ct = c.ty.compute();
    let picked = if ct == Ty::Bool {
        load(cs, var(i))
    } else {
        cmp(CmpOp::Ne, load(cs, var(i)), lit(0.0, ct))
    };
    k.body.push(Stmt::Loop {
        var: i,
        extent: idx(steps as i64),
        kind: smelt_kernel::LoopKind::Serial,
        body: vec![Stmt::If {
            cond: bin(BinOp::And, picked, cmp(CmpOp::Lt, var(cnt), idx(m as i64))),
            then: vec![
                Stmt::Store {
                    buf: ys,
                    index: dst,
                    value: load(xs, src),
                },
                Stmt::Set(cnt, add(var(cnt), idx(1))),
            ],
            els: vec![],
        }],
    });
    l.kernel(k, &[x, &c, y])
}
