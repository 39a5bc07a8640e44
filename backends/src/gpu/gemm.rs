//! A matrix product as a kernel-IR kernel: one thread per output element
//! with a serial reduction over k. It is what a GEMM becomes where a
//! printer has no tensor-core kernel for it, and since it is kernel IR both
//! GPU printers share it.

use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, Kernel, LoopKind, Stmt, Ty};
use smelt_runtime::cpu::Gemm;

/// `C[b] = alpha * A[b] B[b] + beta * C[b]` over the strides of `g`;
/// `lens` are the element counts of the A, B and C buffers.
pub fn kernel(g: &Gemm, lens: [u64; 3]) -> Option<Kernel> {
    // f16/bf16 are storage types: loads give f32, the sum is f32 and the
    // store rounds once (or not at all into an f32 C).
    let store = match g.dtype.as_str() {
        "f32" => Ty::F32,
        "f64" => Ty::F64,
        "f16" => Ty::F16,
        "bf16" => Ty::BF16,
        _ => return None,
    };
    let c_store = match g.c_dtype() {
        c if c == g.dtype => store,
        "f32" if matches!(store, Ty::F16 | Ty::BF16) => Ty::F32,
        _ => return None,
    };
    let ty = store.compute();
    let mut k = Kernel::new("gemm", vec![g.batch, g.m, g.n]);
    let (b, i, j) = (k.index(0), k.index(1), k.index(2));
    let ap = k.param("a", store, lens[0], Access::Read);
    let bp = k.param("b", store, lens[1], Access::Read);
    // Accumulating GEMMs read C before writing it; a Write parameter may
    // be read by the kernel that owns it.
    let cp = k.param("c", c_store, lens[2], Access::Write);
    let acc = k.var("acc", ty, true);
    let r = k.var("r", Ty::I64, false);
    let at = |s: [i64; 3], x: &smelt_kernel::Expr, y: &smelt_kernel::Expr| {
        add(
            add(mul(b.clone(), idx(s[0])), mul(x.clone(), idx(s[1]))),
            mul(y.clone(), idx(s[2])),
        )
    };
    let a_at = at(g.a_strides, &i, &var(r));
    let b_at = at(g.b_strides, &var(r), &j);
    let c_at = at(g.c_strides, &i, &j);
    k.body.push(Stmt::Decl(acc, lit(0.0, ty)));
    k.body.push(Stmt::Loop {
        var: r,
        extent: idx(g.k as i64),
        kind: LoopKind::Serial,
        body: vec![Stmt::Set(
            acc,
            add(var(acc), mul(load(ap, a_at), load(bp, b_at))),
        )],
    });
    let mut v = var(acc);
    if g.alpha != 1.0 {
        v = mul(lit(g.alpha, ty), v);
    }
    if g.beta != 0.0 {
        v = add(v, mul(lit(g.beta, ty), load(cp, c_at.clone())));
    }
    k.body.push(Stmt::Store {
        buf: cp,
        index: c_at,
        value: v,
    });
    Some(k)
}
