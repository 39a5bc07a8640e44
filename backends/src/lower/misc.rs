//! Small ops without a family of their own: BitCast and Dropout (views),
//! Swish, SwiGLU, Shrink, Binarizer (maps) and RotaryEmbedding.

use super::{LResult, Lower, LowerError, T, elementwise, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "BitCast" => bitcast(l),
        "Dropout" => dropout(l),
        "Swish" => swish(l),
        "SwiGLU" => swiglu(l),
        "Shrink" => shrink(l),
        "Binarizer" => binarizer(l),
        "RotaryEmbedding" => rotary(l),
        _ => return None,
    };
    Some(r)
}

fn ierr(e: smelt_ir::semantics::OpError) -> LowerError {
    LowerError::Invalid(e.0)
}

/// Same bit width, so the output is the input's bytes under another type.
fn bitcast(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if x.ty.bytes() != y.ty.bytes() || y.ty == Ty::Bool {
        // A byte other than 0/1 read as bool has no kernel meaning.
        return unsupported(format!("BitCast to {}", y.ty.name()));
    }
    l.alias(&y, &x);
    Ok(())
}

/// Inference Dropout (or a zero ratio) is the identity with an all-true
/// mask; a random mask is refused (the reference refuses it too).
fn dropout(l: &mut Lower) -> LResult<()> {
    let training = match l.opt_input(2) {
        None => false,
        Some(_) => match l.const_ints(2) {
            Some(v) => v.first().copied().unwrap_or(0) != 0,
            None => return unsupported("Dropout with a run-time training_mode"),
        },
    };
    if training {
        let ratio = match l.opt_input(1) {
            None => 0.5,
            Some(_) => match l.const_f64s(1) {
                Some(v) => v.first().copied().unwrap_or(0.5),
                None => return unsupported("Dropout with a run-time ratio"),
            },
        };
        if ratio != 0.0 {
            return unsupported("training Dropout with a non-zero ratio");
        }
    }
    let x = l.input(0)?;
    let y = l.out(0)?;
    l.alias(&y, &x);
    if let Some(m) = l.output(1) {
        let mut k = Kernel::new("dropout_mask", vec![m.numel().max(1)]);
        let p = param(&mut k, "mask", &m, Access::Write);
        if m.numel() > 0 {
            k.body.push(Stmt::Store {
                buf: p,
                index: k.index(0),
                value: Expr::Int(1, Ty::Bool),
            });
        }
        l.kernel(k, &[&m])?;
    }
    Ok(())
}

fn float_in(l: &Lower) -> LResult<T> {
    let x = l.input(0)?;
    if !x.ty.is_float() {
        return unsupported(format!("{} of {}", l.op(), x.dtype));
    }
    Ok(x)
}

fn sigmoid(ty: Ty, x: Expr) -> Expr {
    div(
        lit(1.0, ty),
        add(lit(1.0, ty), un(UnOp::Exp, un(UnOp::Neg, x))),
    )
}

fn swish(l: &mut Lower) -> LResult<()> {
    let x = float_in(l)?;
    let y = l.out(0)?;
    let a = l.ctx().float("alpha", 1.0).map_err(ierr)? as f64;
    let ty = x.ty.compute();
    elementwise::map(l, "swish", &[x], &y, move |_, v| {
        let x = v[0].clone();
        Ok(mul(x.clone(), sigmoid(ty, mul(lit(a, ty), x))))
    })
}

/// a * sigmoid(alpha * a) * b on equal shapes. The reference rounds the
/// sigmoid and a * sigmoid to the dtype; f32 arithmetic does that for f32.
fn swiglu(l: &mut Lower) -> LResult<()> {
    let a = float_in(l)?;
    let b = l.input(1)?;
    let y = l.out(0)?;
    if a.dims != b.dims || a.ty != b.ty {
        return Err(LowerError::Invalid(
            "SwiGLU needs A and B of the same shape and dtype".into(),
        ));
    }
    let alpha = l.ctx().float("alpha", 1.0).map_err(ierr)? as f64;
    let ty = a.ty.compute();
    elementwise::map(l, "swiglu", &[a, b], &y, move |_, v| {
        let x = v[0].clone();
        Ok(mul(
            mul(x.clone(), sigmoid(ty, mul(lit(alpha, ty), x))),
            v[1].clone(),
        ))
    })
}

fn shrink(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let ctx = l.ctx();
    let lambd = ctx.float("lambd", 0.5).map_err(ierr)? as f64;
    let bias = ctx.float("bias", 0.0).map_err(ierr)? as f64;
    if !x.ty.is_float() && !x.ty.is_int() {
        return unsupported(format!("Shrink of {}", x.dtype));
    }
    // Integers go through f64 like the reference, truncating back.
    let (xt, ct) = (
        x.ty,
        if x.ty.is_float() {
            x.ty.compute()
        } else {
            Ty::F64
        },
    );
    elementwise::map(l, "shrink", &[x], &y, move |_, v| {
        let x = cast(ct, v[0].clone());
        let r = select(
            cmp(CmpOp::Lt, x.clone(), lit(-lambd, ct)),
            add(x.clone(), lit(bias, ct)),
            select(
                cmp(CmpOp::Gt, x.clone(), lit(lambd, ct)),
                sub(x, lit(bias, ct)),
                lit(0.0, ct),
            ),
        );
        Ok(if xt.is_float() { r } else { cast(xt, r) })
    })
}

fn binarizer(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if x.ty == Ty::Bool {
        return unsupported("Binarizer of bool");
    }
    let th = l.ctx().float("threshold", 0.0).map_err(ierr)? as f64;
    let xt = x.ty.compute();
    elementwise::map(l, "binarizer", &[x], &y, move |_, v| {
        let gt = cmp(CmpOp::Gt, cast(Ty::F64, v[0].clone()), lit(th, Ty::F64));
        Ok(select(gt, lit(1.0, xt), lit(0.0, xt)))
    })
}

/// RotaryEmbedding (opset 23): each element of the first
/// `rotary_embedding_dim` features of a head pairs with its partner (the
/// other half, or its interleaved neighbour) and rotates by the cached
/// angle of its position; the rest pass through.
fn rotary(l: &mut Lower) -> LResult<()> {
    let x = float_in(l)?;
    let cos = l.input(1)?;
    let sin = l.input(2)?;
    let pos = l.opt_input(3);
    let y = l.out(0)?;
    let ctx = l.ctx();
    // The domain is the stored layout with heads split out: [b, h, s, d]
    // for 4-D input, [b, s, h, d] for 3-D; `bsd` are the positions of
    // batch, sequence and feature in it.
    let (domain, bsd) = match x.dims[..] {
        [b, h, s, d] => (vec![b, h, s, d], [0, 2, 3]),
        [b, s, hid] => {
            let nh = ctx.int("num_heads", 0).map_err(ierr)?;
            if nh < 1 || hid % nh as u64 != 0 {
                return Err(LowerError::Invalid(
                    "3-D RotaryEmbedding needs num_heads dividing the hidden size".into(),
                ));
            }
            let nh = nh as u64;
            (vec![b, s, nh, hid / nh], [0, 1, 3])
        }
        _ => return unsupported("RotaryEmbedding of rank other than 3 or 4"),
    };
    let (nb, ns, d) = (domain[bsd[0]], domain[bsd[1]], domain[3]);
    let rd = match ctx.int("rotary_embedding_dim", 0).map_err(ierr)? {
        0 => d,
        r if r > 0 && (r as u64) <= d && r % 2 == 0 => r as u64,
        r => {
            return Err(LowerError::Invalid(format!(
                "rotary_embedding_dim {r} does not fit head size {d}"
            )));
        }
    };
    let half = rd / 2;
    if cos.dims.last() != Some(&half) || sin.dims != cos.dims || cos.ty != x.ty {
        return unsupported("RotaryEmbedding caches of another shape or type");
    }
    let rows = cos.numel() / half.max(1);
    let interleaved = ctx.int("interleaved", 0).map_err(ierr)? != 0;
    if pos.is_none() && nb * ns > rows {
        return Err(LowerError::Invalid(
            "cos/sin caches are too small for the input".into(),
        ));
    }
    let ty = x.ty.compute();
    let mut k = Kernel::new("rotary", domain.clone());
    let at: Vec<Expr> = (0..4).map(|i| k.index(i)).collect();
    let px = param(&mut k, "x", &x, Access::Read);
    let pc = param(&mut k, "cos", &cos, Access::Read);
    let ps = param(&mut k, "sin", &sin, Access::Read);
    let mut args = vec![x.clone(), cos.clone(), sin.clone()];
    let bs = add(mul(at[bsd[0]].clone(), idx(ns as i64)), at[bsd[1]].clone());
    let row = match &pos {
        Some(p) => {
            if p.numel() != nb * ns || !p.ty.is_int() {
                return unsupported("position_ids of another shape");
            }
            let pp = param(&mut k, "pos", p, Access::Read);
            args.push(p.clone());
            // Clamped so a bad id cannot read outside the caches (the
            // reference rejects it).
            let r = cast(Ty::I64, load(pp, bs));
            bin(BinOp::Max, bin(BinOp::Min, r, idx(rows as i64 - 1)), idx(0))
        }
        None => bs,
    };
    let py = param(&mut k, "y", &y, Access::Write);
    args.push(y.clone());
    let dd = at[bsd[2]].clone();
    let (dv, rowv) = (k.var("dd", Ty::I64, false), k.var("row", Ty::I64, false));
    k.body.push(Stmt::Let(dv, dd));
    k.body.push(Stmt::Let(rowv, row));
    let dd = var(dv);
    let inside = cmp(CmpOp::Lt, dd.clone(), idx(rd as i64));
    let (first, partner, i) = if interleaved {
        let even = cmp(CmpOp::Eq, rem(dd.clone(), idx(2)), idx(0));
        (
            even.clone(),
            select(even, add(dd.clone(), idx(1)), sub(dd.clone(), idx(1))),
            div(dd.clone(), idx(2)),
        )
    } else {
        let lo = cmp(CmpOp::Lt, dd.clone(), idx(half as i64));
        (
            lo.clone(),
            select(
                lo.clone(),
                add(dd.clone(), idx(half as i64)),
                sub(dd.clone(), idx(half as i64)),
            ),
            select(lo, dd.clone(), sub(dd.clone(), idx(half as i64))),
        )
    };
    // Outside the rotary part both stay in range and are unused.
    let partner = select(inside.clone(), partner, dd.clone());
    let i = select(inside.clone(), i, idx(0));
    let mut pidx = at.clone();
    pidx[bsd[2]] = partner;
    let here = flat(&at, &domain);
    let xv = cast(ty, load(px, here.clone()));
    let xp = cast(ty, load(px, flat(&pidx, &domain)));
    let ci = add(mul(var(rowv), idx(half as i64)), i);
    let c = cast(ty, load(pc, ci.clone()));
    let s = cast(ty, load(ps, ci));
    let rotated = select(
        first,
        sub(mul(c.clone(), xv.clone()), mul(s.clone(), xp.clone())),
        add(mul(s, xp), mul(c, xv.clone())),
    );
    k.body.push(Stmt::Store {
        buf: py,
        index: here,
        value: select(inside, rotated, xv),
    });
    let refs: Vec<&T> = args.iter().collect();
    l.kernel(k, &refs)
}
