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
/// division and must be exact and in range. The image shape is the
/// output's static shape; a block shape given at run time is read by the
/// kernel (its product is static: input channels / output channels).
fn col2im(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let bsh = l.input(2)?;
    let y = l.out(0)?;
    if !x.ty.is_float() || x.ty != y.ty || !bsh.ty.is_int() {
        return unsupported("Col2Im: non-float input");
    }
    if x.rank() != 3 || y.rank() < 3 || bsh.numel() != y.rank() as u64 - 2 {
        return Err(LowerError::Invalid("Col2Im: bad ranks".into()));
    }
    let n = y.rank() - 2;
    let img: Vec<i64> = y.dims[2..].iter().map(|&d| d as i64).collect();
    if let Some(i) = l.const_ints(1)
        && i != img
    {
        return Err(LowerError::Invalid(
            "Col2Im: image shape does not match the output".into(),
        ));
    }
    let ctx = l.ctx();
    let dil = ints_or(&ctx, "dilations", n, 1)?;
    let st = ints_or(&ctx, "strides", n, 1)?;
    let pads = ints_or(&ctx, "pads", 2 * n, 0)?;
    if dil.len() != n || st.len() != n || pads.len() != 2 * n || st.iter().any(|&s| s <= 0) {
        return Err(LowerError::Invalid("Col2Im: bad attributes".into()));
    }
    let (b, ck, len) = (x.dims[0] as i64, x.dims[1] as i64, x.dims[2] as i64);
    let c = y.dims[1] as i64;
    if y.dims[0] as i64 != b || c <= 0 || ck % c != 0 {
        return Err(LowerError::Invalid("Col2Im: channels do not agree".into()));
    }
    let kk = ck / c;
    if y.numel() == 0 || kk == 0 || len == 0 {
        return unsupported("Col2Im: empty operands");
    }
    let const_blk = l.const_ints(2);
    if let Some(blk) = &const_blk
        && (blk.len() != n || blk.iter().product::<i64>() != kk)
    {
        return Err(LowerError::Invalid("Col2Im: bad block shape".into()));
    }
    let mut k = Kernel::new("col2im", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let bs = param(&mut k, "block_shape", &bsh, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let let_i = |k: &mut Kernel, name: &str, e: Expr| -> Expr {
        let v = k.var(name, Ty::I64, false);
        k.body.push(Stmt::Let(v, e));
        var(v)
    };
    // Per dim: block extent, number of sliding positions.
    let mut blk = Vec::with_capacity(n);
    let mut nbs = Vec::with_capacity(n);
    for i in 0..n {
        let bi = match &const_blk {
            Some(v) => idx(v[i]),
            None => {
                let e = bin(BinOp::Max, cast(Ty::I64, load(bs, idx(i as i64))), idx(1));
                let_i(&mut k, "blk", e)
            }
        };
        let span = add(mul(idx(dil[i]), sub(bi.clone(), idx(1))), idx(1));
        let nb = add(
            div(sub(idx(img[i] + pads[i] + pads[n + i]), span), idx(st[i])),
            idx(1),
        );
        nbs.push(let_i(&mut k, "nb", nb));
        blk.push(bi);
    }
    // Row-major strides of the kernel offsets and of the block positions.
    let mut kstr = vec![idx(1); n];
    let mut bstr = vec![idx(1); n];
    for i in (0..n.saturating_sub(1)).rev() {
        kstr[i] = let_i(&mut k, "ks", mul(kstr[i + 1].clone(), blk[i + 1].clone()));
        bstr[i] = let_i(&mut k, "bst", mul(bstr[i + 1].clone(), nbs[i + 1].clone()));
    }
    let acc = k.var("acc", Ty::F64, true);
    let kv = k.var("kv", Ty::I64, false);
    k.body.push(Stmt::Decl(acc, lit(0.0, Ty::F64)));
    let mut body = Vec::new();
    let mut ok: Option<Expr> = None;
    let mut col: Option<Expr> = None;
    for i in 0..n {
        let ko = rem(div(var(kv), kstr[i].clone()), blk[i].clone());
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
            cmp(CmpOp::Lt, qb.clone(), nbs[i].clone()),
        );
        if st[i] != 1 {
            c = bin(
                BinOp::And,
                c,
                cmp(CmpOp::Eq, rem(var(q), idx(st[i])), idx(0)),
            );
        }
        ok = and(ok, c);
        let term = mul(qb, bstr[i].clone());
        col = Some(match col {
            None => term,
            Some(a) => add(a, term),
        });
    }
    let (Some(ok), Some(col)) = (ok, col) else {
        return Err(LowerError::Invalid("Col2Im: no spatial dims".into()));
    };
    let colv = k.var("col", Ty::I64, false);
    body.push(Stmt::Let(colv, col));
    // A run-time block shape that disagrees with the column count must
    // not index past the input.
    let ok = bin(BinOp::And, ok, cmp(CmpOp::Lt, var(colv), idx(len)));
    let okv = k.var("ok", Ty::Bool, false);
    body.push(Stmt::Let(okv, ok));
    let row = add(mul(o[1].clone(), idx(kk)), var(kv));
    let src = flat(&[o[0].clone(), row, var(colv)], &x.dims);
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
    l.kernel(k, &[&x, &bsh, &y])
}
