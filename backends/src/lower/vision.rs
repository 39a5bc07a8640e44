//! Image-layout ops with index arithmetic: CenterCropPad, Col2Im.
//!
//! Both are written as gathers over the output so that points stay
//! independent; every source index is range-checked and replaced by 0
//! before the load when it falls outside the input.

use super::movement::{domain_vars, inv};
use super::{LResult, Lower, LowerError, param, unsupported};
use smelt_ir::semantics::Ctx;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "CenterCropPad" => center_crop_pad(l),
        "Col2Im" => col2im(l),
        _ => return None,
    };
    Some(r)
}

fn and(a: Option<Expr>, b: Expr) -> Option<Expr> {
    Some(match a {
        None => b,
        Some(a) => bin(BinOp::And, a, b),
    })
}

fn center_crop_pad(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if x.rank() != y.rank() || x.ty != y.ty {
        return Err(LowerError::Invalid(
            "CenterCropPad: rank or type mismatch".into(),
        ));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let mut k = Kernel::new("center_crop_pad", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let mut src = Vec::with_capacity(x.rank());
    let mut ok: Option<Expr> = None;
    for (a, (&i, &n)) in x.dims.iter().zip(&y.dims).enumerate() {
        // Crop starts at floor((in-out)/2); padding puts the input at
        // floor((out-in)/2).
        let (i, n) = (i as i64, n as i64);
        let off = (i - n).div_euclid(2) + i64::from(i < n && (n - i) % 2 == 1);
        let j = add(o[a].clone(), idx(off));
        if off < 0 || n + off > i {
            let c = bin(
                BinOp::And,
                cmp(CmpOp::Ge, j.clone(), idx(0)),
                cmp(CmpOp::Lt, j.clone(), idx(i)),
            );
            ok = and(ok, c);
        }
        src.push(j);
    }
    let value = match ok {
        None => load(xs, flat(&src, &x.dims)),
        Some(c) => {
            let v = k.var("in", Ty::Bool, false);
            k.body.push(Stmt::Let(v, c));
            select(
                var(v),
                load(xs, select(var(v), flat(&src, &x.dims), idx(0))),
                lit(0.0, y.ty.compute()),
            )
        }
    };
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value,
    });
    l.kernel(k, &[&x, &y])
}

fn ints_or(ctx: &Ctx, name: &str, n: usize, d: i64) -> LResult<Vec<i64>> {
    Ok(ctx.ints(name).map_err(inv)?.unwrap_or_else(|| vec![d; n]))
}

/// Col2Im: each output pixel sums the columns of every (kernel offset,
/// block) pair that lands on it; the block along a dim is found by
/// division and must be exact and in range.
fn col2im(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let (Some(img), Some(blk)) = (l.const_ints(1), l.const_ints(2)) else {
        return unsupported("Col2Im: image or block shape is not constant");
    };
    if !x.ty.is_float() || x.ty != y.ty {
        return unsupported("Col2Im: non-float input");
    }
    let n = img.len();
    if blk.len() != n || x.rank() != 3 || y.rank() != n + 2 {
        return Err(LowerError::Invalid("Col2Im: bad ranks".into()));
    }
    let ctx = l.ctx();
    let dil = ints_or(&ctx, "dilations", n, 1)?;
    let st = ints_or(&ctx, "strides", n, 1)?;
    let pads = ints_or(&ctx, "pads", 2 * n, 0)?;
    if dil.len() != n || st.len() != n || pads.len() != 2 * n || st.iter().any(|&s| s <= 0) {
        return Err(LowerError::Invalid("Col2Im: bad attributes".into()));
    }
    let kk: i64 = blk.iter().product();
    let (b, ck, len) = (x.dims[0] as i64, x.dims[1] as i64, x.dims[2] as i64);
    if kk <= 0 || ck % kk != 0 || blk.iter().any(|&v| v <= 0) {
        return Err(LowerError::Invalid("Col2Im: bad block shape".into()));
    }
    let c = ck / kk;
    let mut blocks = Vec::with_capacity(n);
    for i in 0..n {
        let nb = (img[i] + pads[i] + pads[n + i] - (dil[i] * (blk[i] - 1) + 1)) / st[i] + 1;
        if nb < 1 {
            return Err(LowerError::Invalid("Col2Im: no sliding blocks".into()));
        }
        blocks.push(nb);
    }
    let mut want = vec![b as u64, c as u64];
    want.extend(img.iter().map(|&v| v.max(0) as u64));
    if blocks.iter().product::<i64>() != len || y.dims != want {
        return Err(LowerError::Invalid("Col2Im: shapes do not agree".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let mut k = Kernel::new("col2im", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let acc = k.var("acc", Ty::F64, true);
    let kv = k.var("kv", Ty::I64, false);
    k.body.push(Stmt::Decl(acc, lit(0.0, Ty::F64)));
    let mut body = Vec::new();
    let mut ok: Option<Expr> = None;
    let mut bo = Vec::with_capacity(n);
    // Kernel offset along dim i from the flat kernel index (row-major).
    let mut inner = 1i64;
    let mut kstr = vec![0i64; n];
    for i in (0..n).rev() {
        kstr[i] = inner;
        inner *= blk[i];
    }
    for i in 0..n {
        let ko = rem(div(var(kv), idx(kstr[i])), idx(blk[i]));
        let q = k.var("q", Ty::I64, false);
        body.push(Stmt::Let(
            q,
            sub(add(o[2 + i].clone(), idx(pads[i])), mul(ko, idx(dil[i]))),
        ));
        let qb = if st[i] == 1 {
            var(q)
        } else {
            div(var(q), idx(st[i]))
        };
        let mut c = bin(
            BinOp::And,
            cmp(CmpOp::Ge, var(q), idx(0)),
            cmp(CmpOp::Lt, qb.clone(), idx(blocks[i])),
        );
        if st[i] != 1 {
            c = bin(
                BinOp::And,
                c,
                cmp(CmpOp::Eq, rem(var(q), idx(st[i])), idx(0)),
            );
        }
        ok = and(ok, c);
        bo.push(qb);
    }
    let Some(ok) = ok else {
        return Err(LowerError::Invalid("Col2Im: no spatial dims".into()));
    };
    let okv = k.var("ok", Ty::Bool, false);
    body.push(Stmt::Let(okv, ok));
    let col = flat(&bo, &blocks.iter().map(|&v| v as u64).collect::<Vec<_>>());
    let row = add(mul(o[1].clone(), idx(kk)), var(kv));
    let src = flat(&[o[0].clone(), row, col], &x.dims);
    body.push(Stmt::If {
        cond: var(okv),
        then: vec![Stmt::Set(acc, add(var(acc), cast(Ty::F64, load(xs, src))))],
        els: vec![],
    });
    k.body.push(Stmt::Loop {
        var: kv,
        extent: idx(kk),
        kind: LoopKind::Serial,
        body,
    });
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: cast(y.ty.compute(), var(acc)),
    });
    l.kernel(k, &[&x, &y])
}
