//! Folding a run of elements into one value. Codegen does not reassociate
//! floating point, so a single accumulator keeps a reduction loop scalar;
//! over a contiguous run the fold instead keeps `LANES` independent partial
//! accumulators (element `i` goes to lane `i % LANES`), which the SLP
//! vectorizer turns into one vector accumulator, and merges the lanes at
//! the end. The order of operations is fixed, so results are deterministic.

use super::reduce::serial;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Expr, Kernel, Stmt, Ty, Var};

pub(crate) const LANES: u64 = 8;

/// How elements fold: `term` maps an element's index to the value to
/// accumulate, `combine` merges two partial results (associative, with
/// `init` its identity).
pub(crate) struct Fold<'a> {
    pub ty: Ty,
    pub init: Expr,
    pub term: &'a dyn Fn(&mut Kernel, Expr) -> Expr,
    pub combine: &'a dyn Fn(Expr, Expr) -> Expr,
}

impl Fold<'_> {
    /// Folds the `n` elements at `base + i * stride`; returns the
    /// statements and the variable that holds the result after them.
    pub fn run(&self, k: &mut Kernel, base: Expr, n: u64, stride: i64) -> (Vec<Stmt>, Var) {
        let res = k.var("acc", self.ty, true);
        let mut out = vec![Stmt::Decl(res, self.init.clone())];
        let at = |i: Expr| {
            if stride == 1 {
                add(base.clone(), i)
            } else {
                add(base.clone(), mul(i, idx(stride)))
            }
        };
        if stride != 1 || n < 2 * LANES {
            let r = k.var("r", Ty::I64, false);
            let t = (self.term)(k, at(var(r)));
            out.push(serial(
                r,
                n,
                vec![Stmt::Set(res, (self.combine)(var(res), t))],
            ));
            return (out, res);
        }
        let lanes: Vec<Var> = (0..LANES).map(|_| k.var("lane", self.ty, true)).collect();
        for &v in &lanes {
            out.push(Stmt::Decl(v, self.init.clone()));
        }
        let r = k.var("r", Ty::I64, false);
        let start = k.var("i", Ty::I64, false);
        let mut body = vec![Stmt::Let(start, mul(var(r), idx(LANES as i64)))];
        for (j, &v) in lanes.iter().enumerate() {
            let t = (self.term)(k, at(add(var(start), idx(j as i64))));
            body.push(Stmt::Set(v, (self.combine)(var(v), t)));
        }
        let full = n / LANES;
        out.push(serial(r, full, body));
        for (j, &v) in lanes.iter().enumerate().take((n % LANES) as usize) {
            let t = (self.term)(k, at(idx((full * LANES) as i64 + j as i64)));
            out.push(Stmt::Set(v, (self.combine)(var(v), t)));
        }
        // Merge pairwise: lane j with lane j + half, halving each round.
        let mut vals: Vec<Expr> = lanes.iter().map(|&v| var(v)).collect();
        while vals.len() > 1 {
            let half = vals.len() / 2;
            let (lo, hi) = vals.split_at(half);
            vals = lo
                .iter()
                .zip(hi)
                .map(|(a, b)| (self.combine)(a.clone(), b.clone()))
                .collect();
        }
        out.push(Stmt::Set(res, vals.remove(0)));
        (out, res)
    }
}
