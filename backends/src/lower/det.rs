//! Det: one domain point per matrix runs Gaussian elimination with partial
//! pivoting (the reference's order, so results round the same way) on an
//! f64 scratch copy of its matrix.

use super::{LResult, Lower, LowerError, param, unsupported};
use smelt_ir::DType;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp, Var};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "Det" => det(l),
        _ => return None,
    };
    Some(r)
}

fn serial(v: Var, n: i64, body: Vec<Stmt>) -> Stmt {
    Stmt::Loop {
        var: v,
        extent: idx(n),
        kind: LoopKind::Serial,
        body,
    }
}

fn det(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let r = x.rank();
    if !x.ty.is_float() || x.ty != y.ty {
        return unsupported("Det: non-float input");
    }
    if r < 2 || x.dims[r - 1] != x.dims[r - 2] || y.dims != x.dims[..r - 2] {
        return Err(LowerError::Invalid("Det needs square matrices".into()));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let n = x.dims[r - 1] as i64;
    let batch = y.numel();
    let tmp = l.temp(DType::F64, &[batch, n as u64, n as u64])?;
    let mut k = Kernel::new("det", vec![batch]);
    let xs = param(&mut k, "x", &x, Access::Read);
    let ms = param(&mut k, "scratch", &tmp, Access::Write);
    let ys = param(&mut k, "y", &y, Access::Write);
    let b = k.index(0);
    let at = |i: Expr, j: Expr| add(mul(b.clone(), idx(n * n)), add(mul(i, idx(n)), j));
    let m = |i: Expr, j: Expr| load(ms, at(i, j));
    let e = k.var("e", Ty::I64, false);
    let d = k.var("det", Ty::F64, true);
    let alive = k.var("alive", Ty::Bool, true);
    let c = k.var("c", Ty::I64, false);
    let i = k.var("i", Ty::I64, false);
    let j = k.var("j", Ty::I64, false);
    let p = k.var("p", Ty::I64, true);
    let best = k.var("best", Ty::F64, true);
    let piv = k.var("piv", Ty::F64, false);
    let f = k.var("f", Ty::F64, false);
    let t = k.var("t", Ty::F64, false);
    k.body.push(serial(
        e,
        n * n,
        vec![Stmt::Store {
            buf: ms,
            index: add(mul(b.clone(), idx(n * n)), var(e)),
            value: cast(Ty::F64, load(xs, add(mul(b.clone(), idx(n * n)), var(e)))),
        }],
    ));
    k.body.push(Stmt::Decl(d, lit(1.0, Ty::F64)));
    k.body.push(Stmt::Decl(alive, Expr::Int(1, Ty::Bool)));
    let absm = |i: Expr, j: Expr| un(UnOp::Abs, m(i, j));
    // Pivot: the last row below c holding the largest magnitude.
    let find = vec![
        Stmt::Set(p, var(c)),
        Stmt::Set(best, absm(var(c), var(c))),
        serial(
            i,
            n,
            vec![Stmt::If {
                cond: bin(
                    BinOp::And,
                    cmp(CmpOp::Gt, var(i), var(c)),
                    cmp(CmpOp::Ge, absm(var(i), var(c)), var(best)),
                ),
                then: vec![Stmt::Set(p, var(i)), Stmt::Set(best, absm(var(i), var(c)))],
                els: vec![],
            }],
        ),
    ];
    let swap = Stmt::If {
        cond: cmp(CmpOp::Ne, var(p), var(c)),
        then: vec![
            serial(
                j,
                n,
                vec![
                    Stmt::Let(t, m(var(p), var(j))),
                    Stmt::Store {
                        buf: ms,
                        index: at(var(p), var(j)),
                        value: m(var(c), var(j)),
                    },
                    Stmt::Store {
                        buf: ms,
                        index: at(var(c), var(j)),
                        value: var(t),
                    },
                ],
            ),
            Stmt::Set(d, un(UnOp::Neg, var(d))),
        ],
        els: vec![],
    };
    let elim = serial(
        i,
        n,
        vec![Stmt::If {
            cond: cmp(CmpOp::Gt, var(i), var(c)),
            then: vec![
                Stmt::Let(f, div(m(var(i), var(c)), var(piv))),
                serial(
                    j,
                    n,
                    vec![Stmt::If {
                        cond: cmp(CmpOp::Ge, var(j), var(c)),
                        then: vec![Stmt::Store {
                            buf: ms,
                            index: at(var(i), var(j)),
                            value: sub(m(var(i), var(j)), mul(var(f), m(var(c), var(j)))),
                        }],
                        els: vec![],
                    }],
                ),
            ],
            els: vec![],
        }],
    );
    let mut step = find;
    step.push(Stmt::If {
        cond: cmp(CmpOp::Eq, m(var(p), var(c)), lit(0.0, Ty::F64)),
        then: vec![
            Stmt::Set(d, lit(0.0, Ty::F64)),
            Stmt::Set(alive, Expr::Int(0, Ty::Bool)),
        ],
        els: vec![
            swap,
            Stmt::Let(piv, m(var(c), var(c))),
            Stmt::Set(d, mul(var(d), var(piv))),
            elim,
        ],
    });
    k.body.push(serial(
        c,
        n,
        vec![Stmt::If {
            cond: var(alive),
            then: step,
            els: vec![],
        }],
    ));
    k.body.push(Stmt::Store {
        buf: ys,
        index: b.clone(),
        value: cast(y.ty.compute(), var(d)),
    });
    l.kernel(k, &[&x, &tmp, &y])
}
