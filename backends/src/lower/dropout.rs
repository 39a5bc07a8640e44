//! Dropout in inference form: the identity, with an all-true mask. Training
//! with a non-zero ratio is random (the reference refuses it), so only
//! graphs whose training flag is absent or constant false, or whose ratio
//! is constant zero, are compiled.

use super::elementwise::map;
use super::{LResult, Lower, param, unsupported};
use smelt_kernel::{Access, Expr, Kernel, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "Dropout" => Some(dropout(l)),
        _ => None,
    }
}

fn dropout(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let inference = match l.opt_input(2) {
        None => true,
        Some(_) => matches!(l.const_ints(2).as_deref(), Some([0])),
    };
    let zero_ratio =
        l.opt_input(1).is_some() && matches!(l.const_f64s(1).as_deref(), Some([r]) if *r == 0.0);
    if !inference && !zero_ratio {
        return unsupported("Dropout with a training flag known only at run time");
    }
    map(l, "dropout", &[x], &y, |_, v| Ok(v[0].clone()))?;
    if let Some(m) = l.output(1) {
        if m.ty != Ty::Bool {
            return unsupported("Dropout mask that is not bool");
        }
        let mut k = Kernel::new("dropout_mask", vec![m.numel()]);
        let mp = param(&mut k, "mask", &m, Access::Write);
        k.body.push(Stmt::Store {
            buf: mp,
            index: k.index(0),
            value: Expr::Int(1, Ty::Bool),
        });
        l.kernel(k, &[&m])?;
    }
    Ok(())
}
