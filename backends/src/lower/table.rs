//! ai.onnx.ml table ops: ArrayFeatureExtractor picks columns of the last
//! dim by a run-time index list; one point per output element.

use super::{LResult, Lower, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, Expr, Kernel, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    match l.op() {
        "ArrayFeatureExtractor" => Some(afe(l)),
        _ => None,
    }
}

fn afe(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let ix = l.input(1)?;
    let y = l.out(0)?;
    let last = x.dims.last().copied().unwrap_or(0);
    if x.rank() == 0 || last == 0 || !ix.ty.is_int() || y.numel() == 0 || y.ty != x.ty {
        return unsupported(format!(
            "ArrayFeatureExtractor of {} {:?} by {}",
            x.dtype, x.dims, ix.dtype
        ));
    }
    let k_cols = ix.numel();
    let rows = x.numel() / last;
    if y.numel() != rows * k_cols || y.dims.last() != Some(&k_cols) {
        return unsupported("ArrayFeatureExtractor output shape");
    }
    // The domain is [rows, picked columns]; the output is contiguous in it.
    let mut k = Kernel::new("array_feature_extractor", vec![rows, k_cols]);
    let xp = param(&mut k, "x", &x, Access::Read);
    let ip = param(&mut k, "indices", &ix, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let (r, j) = (k.index(0), k.index(1));
    // The reference rejects out-of-range indices; clamping keeps the load
    // inside the row.
    let c: Expr = bin(
        BinOp::Max,
        bin(
            BinOp::Min,
            cast(Ty::I64, load(ip, j.clone())),
            idx(last as i64 - 1),
        ),
        idx(0),
    );
    k.body.push(Stmt::Store {
        buf: yp,
        index: add(mul(r.clone(), idx(k_cols as i64)), j),
        value: load(xp, add(mul(r, idx(last as i64)), c)),
    });
    l.kernel(k, &[&x, &ix, &y])
}
