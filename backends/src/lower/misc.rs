//! Small ops without a family of their own: BitCast (a view), Swish,
//! SwiGLU, Shrink and Binarizer (maps).

use super::{LResult, Lower, LowerError, T, elementwise, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{CmpOp, Expr, Ty, UnOp};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "BitCast" => bitcast(l),
        "Swish" => swish(l),
        "SwiGLU" => swiglu(l),
        "Shrink" => shrink(l),
        "Binarizer" => binarizer(l),
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
