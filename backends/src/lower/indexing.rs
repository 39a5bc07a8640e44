//! Ops that move elements by run-time indices: Gather, GatherElements,
//! GatherND, ScatterElements, ScatterND, OneHot. Negative indices wrap once;
//! indices still out of range are clamped on reads and skipped on writes,
//! so a bad index never touches memory outside its buffer.

use super::movement::{clamp_idx, domain_vars, gather_copy, inv, norm_axis};
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "Gather" => gather(l),
        "GatherElements" => gather_elements(l),
        "GatherND" => gather_nd(l),
        "ScatterElements" => scatter_elements(l),
        "ScatterND" => scatter_nd(l),
        "OneHot" => one_hot(l),
        _ => return None,
    };
    Some(r)
}

fn check_indices(t: &T) -> LResult<()> {
    if t.ty.is_int() {
        Ok(())
    } else {
        Err(LowerError::Invalid(format!("indices of type {}", t.dtype)))
    }
}

/// Index `i` (any integer type) into a dim of size `n`: negative values
/// count from the end.
fn wrapped(i: Expr, n: u64) -> Expr {
    let i = cast(Ty::I64, i);
    select(
        cmp(CmpOp::Lt, i.clone(), idx(0)),
        add(i.clone(), idx(n as i64)),
        i,
    )
}

/// Kernel-local binding of `e` (evaluated once per point).
fn bind(k: &mut Kernel, name: &str, e: Expr) -> Expr {
    let v = k.var(name, Ty::I64, false);
    k.body.push(Stmt::Let(v, e));
    var(v)
}

fn gather(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ind = l.input(1)?;
    let y = l.out(0)?;
    check_indices(&ind)?;
    let r = x.rank();
    let axis = norm_axis(l.ctx().int("axis", 0).map_err(inv)?, r)?;
    let q = ind.rank();
    if y.rank() != r + q - 1 || y.numel() == 0 {
        if y.numel() == 0 {
            return Ok(());
        }
        return Err(LowerError::Invalid("Gather: output rank mismatch".into()));
    }
    let n = x.dims[axis];
    if n == 0 {
        return Err(LowerError::Invalid("Gather from an empty axis".into()));
    }
    let mut k = Kernel::new("gather", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let is = param(&mut k, "ind", &ind, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let ii = flat(&o[axis..axis + q], &ind.dims);
    let j = bind(&mut k, "j", clamp_idx(wrapped(load(is, ii), n), n));
    let mut src: Vec<Expr> = o[..axis].to_vec();
    src.push(j);
    src.extend_from_slice(&o[axis + q..]);
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, flat(&src, &x.dims)),
    });
    l.kernel(k, &[&x, &ind, &y])
}

fn gather_elements(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ind = l.input(1)?;
    let y = l.out(0)?;
    check_indices(&ind)?;
    let r = x.rank();
    let axis = norm_axis(l.ctx().int("axis", 0).map_err(inv)?, r)?;
    if ind.dims != y.dims || r != y.rank() {
        return Err(LowerError::Invalid("GatherElements: shape mismatch".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    if (0..r).any(|d| d != axis && ind.dims[d] > x.dims[d]) || x.dims[axis] == 0 {
        return Err(LowerError::Invalid(
            "GatherElements: indices too large".into(),
        ));
    }
    let n = x.dims[axis];
    let mut k = Kernel::new("gather_elements", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let is = param(&mut k, "ind", &ind, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let fi = flat(&o, &y.dims);
    let j = bind(&mut k, "j", clamp_idx(wrapped(load(is, fi.clone()), n), n));
    let mut src = o.clone();
    src[axis] = j;
    k.body.push(Stmt::Store {
        buf: ys,
        index: fi,
        value: load(xs, flat(&src, &x.dims)),
    });
    l.kernel(k, &[&x, &ind, &y])
}

fn gather_nd(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ind = l.input(1)?;
    let y = l.out(0)?;
    check_indices(&ind)?;
    let b = l.ctx().int("batch_dims", 0).map_err(inv)?.max(0) as usize;
    let q = ind.rank();
    if q == 0 {
        return Err(LowerError::Invalid("GatherND: scalar indices".into()));
    }
    let kk = ind.dims[q - 1] as usize;
    let r = x.rank();
    if b + kk > r || b >= q || y.rank() != q - 1 + r - b - kk {
        return Err(LowerError::Invalid("GatherND: shape mismatch".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    if (b..b + kk).any(|d| x.dims[d] == 0) || (0..b).any(|d| ind.dims[d] > x.dims[d]) {
        return Err(LowerError::Invalid("GatherND: bad shapes".into()));
    }
    let mut k = Kernel::new("gather_nd", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let is = param(&mut k, "ind", &ind, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let mut src: Vec<Expr> = o[..b].to_vec();
    for j in 0..kk {
        let mut ip: Vec<Expr> = o[..q - 1].to_vec();
        ip.push(idx(j as i64));
        let n = x.dims[b + j];
        let e = clamp_idx(wrapped(load(is, flat(&ip, &ind.dims)), n), n);
        src.push(bind(&mut k, "j", e));
    }
    src.extend_from_slice(&o[q - 1..]);
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, flat(&src, &x.dims)),
    });
    l.kernel(k, &[&x, &ind, &y])
}

/// How a scatter combines an update with the element already there.
fn reduction(l: &Lower, ty: Ty) -> LResult<Option<BinOp>> {
    let r = l.ctx().string("reduction", "none").map_err(inv)?;
    let op = match r.as_str() {
        "none" => return Ok(None),
        "add" => BinOp::Add,
        "mul" => BinOp::Mul,
        "max" => BinOp::Max,
        "min" => BinOp::Min,
        _ => return unsupported(format!("scatter reduction {r}")),
    };
    if ty == Ty::Bool {
        return unsupported("scatter reduction on bool");
    }
    Ok(Some(op))
}

fn scatter_store(ys: usize, target: Expr, u: Expr, red: Option<BinOp>) -> Stmt {
    let value = match red {
        None => u,
        Some(op) => bin(op, load(ys, target.clone()), u),
    };
    Stmt::Store {
        buf: ys,
        index: target,
        value,
    }
}

fn and(a: Option<Expr>, b: Expr) -> Expr {
    match a {
        None => b,
        Some(a) => bin(BinOp::And, a, b),
    }
}

fn in_range(i: &Expr, n: u64) -> Expr {
    bin(
        BinOp::And,
        cmp(CmpOp::Ge, i.clone(), idx(0)),
        cmp(CmpOp::Lt, i.clone(), idx(n as i64)),
    )
}

/// Scatters start from a copy of the data.
fn copy_data(l: &mut Lower, x: &T, y: &T) -> LResult<()> {
    if x.dims != y.dims {
        return Err(LowerError::Invalid(format!(
            "{}: output shape differs from data",
            l.op()
        )));
    }
    gather_copy(l, "copy", x, y, |_, o| Ok(flat(o, &x.dims)))
}

fn scatter_elements(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ind = l.input(1)?;
    let upd = l.input(2)?;
    let y = l.out(0)?;
    check_indices(&ind)?;
    let r = x.rank();
    let axis = norm_axis(l.ctx().int("axis", 0).map_err(inv)?, r)?;
    let red = reduction(l, y.ty)?;
    if ind.dims != upd.dims || ind.rank() != r || upd.ty != y.ty {
        return Err(LowerError::Invalid(
            "ScatterElements: shape mismatch".into(),
        ));
    }
    if (0..r).any(|d| d != axis && ind.dims[d] > x.dims[d]) {
        return Err(LowerError::Invalid(
            "ScatterElements: updates too large".into(),
        ));
    }
    copy_data(l, &x, &y)?;
    if upd.numel() == 0 {
        return Ok(());
    }
    // Updates that differ off the axis never collide: those dims are the
    // domain; the axis is a serial loop so repeated indices apply in order.
    let dom: Vec<u64> = (0..r).filter(|&d| d != axis).map(|d| upd.dims[d]).collect();
    let mut k = Kernel::new("scatter_elements", dom);
    let is = param(&mut k, "ind", &ind, Access::Read);
    let us = param(&mut k, "upd", &upd, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let a = k.var("a", Ty::I64, false);
    let j = k.var("j", Ty::I64, false);
    let mut pos = o.clone();
    pos.insert(axis, var(a));
    let n = x.dims[axis];
    let mut tgt = pos.clone();
    tgt[axis] = var(j);
    let body = vec![
        Stmt::Let(j, wrapped(load(is, flat(&pos, &ind.dims)), n)),
        Stmt::If {
            cond: in_range(&var(j), n),
            then: vec![scatter_store(
                ys,
                flat(&tgt, &y.dims),
                load(us, flat(&pos, &upd.dims)),
                red,
            )],
            els: vec![],
        },
    ];
    k.body.push(Stmt::Loop {
        var: a,
        extent: idx(upd.dims[axis] as i64),
        kind: LoopKind::Serial,
        body,
    });
    l.kernel(k, &[&ind, &upd, &y])
}

fn scatter_nd(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ind = l.input(1)?;
    let upd = l.input(2)?;
    let y = l.out(0)?;
    check_indices(&ind)?;
    let red = reduction(l, y.ty)?;
    let q = ind.rank();
    if q == 0 {
        return Err(LowerError::Invalid("ScatterND: scalar indices".into()));
    }
    let kk = ind.dims[q - 1] as usize;
    let r = x.rank();
    let tail: Vec<u64> = x.dims.get(kk..).map(<[u64]>::to_vec).unwrap_or_default();
    let mut want: Vec<u64> = ind.dims[..q - 1].to_vec();
    want.extend_from_slice(&tail);
    if kk > r || upd.dims != want || upd.ty != y.ty {
        return Err(LowerError::Invalid("ScatterND: shape mismatch".into()));
    }
    copy_data(l, &x, &y)?;
    let m: u64 = ind.dims[..q - 1].iter().product();
    if upd.numel() == 0 || m == 0 {
        return Ok(());
    }
    // Each element of the slice is independent; the index tuples are a
    // serial loop so repeated indices apply in order.
    let slice_n: u64 = tail.iter().product();
    let mut k = Kernel::new("scatter_nd", tail.clone());
    let is = param(&mut k, "ind", &ind, Access::Read);
    let us = param(&mut k, "upd", &upd, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let mi = k.var("m", Ty::I64, false);
    let mut body = Vec::new();
    let mut tgt = Vec::new();
    let mut ok = None;
    for j in 0..kk {
        let v = k.var("j", Ty::I64, false);
        let at = add(mul(var(mi), idx(kk as i64)), idx(j as i64));
        body.push(Stmt::Let(v, wrapped(load(is, at), x.dims[j])));
        ok = Some(and(ok, in_range(&var(v), x.dims[j])));
        tgt.push(var(v));
    }
    tgt.extend_from_slice(&o);
    let u = load(us, add(mul(var(mi), idx(slice_n as i64)), flat(&o, &tail)));
    let st = scatter_store(ys, flat(&tgt, &y.dims), u, red);
    match ok {
        Some(c) => body.push(Stmt::If {
            cond: c,
            then: vec![st],
            els: vec![],
        }),
        None => body.push(st),
    }
    k.body.push(Stmt::Loop {
        var: mi,
        extent: idx(m as i64),
        kind: LoopKind::Serial,
        body,
    });
    l.kernel(k, &[&ind, &upd, &y])
}

fn one_hot(l: &mut Lower) -> LResult<()> {
    let ind = l.input(0)?;
    let vals = l.input(2)?;
    let y = l.out(0)?;
    let r = y.rank();
    if r != ind.rank() + 1 || vals.numel() != 2 || vals.ty != y.ty {
        return Err(LowerError::Invalid("OneHot: shape mismatch".into()));
    }
    let axis = norm_axis(l.ctx().int("axis", -1).map_err(inv)?, r)?;
    if y.numel() == 0 {
        return Ok(());
    }
    let depth = y.dims[axis];
    let mut k = Kernel::new("one_hot", y.dims.clone());
    let is = param(&mut k, "ind", &ind, Access::Read);
    let vs = param(&mut k, "values", &vals, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let mut ip = o.clone();
    ip.remove(axis);
    // Compare in the indices' own type so fractional float indices match
    // nothing, as the reference does.
    let it = ind.ty.compute();
    let v = load(is, flat(&ip, &ind.dims));
    let d = lit(depth as f64, it);
    let w = if it.is_unsigned() {
        v
    } else {
        select(
            cmp(CmpOp::Lt, v.clone(), lit(0.0, it)),
            add(v.clone(), d),
            v,
        )
    };
    let hit = cmp(CmpOp::Eq, w, cast(it, o[axis].clone()));
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: select(hit, load(vs, idx(1)), load(vs, idx(0))),
    });
    l.kernel(k, &[&ind, &vals, &y])
}
