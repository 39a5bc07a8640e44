//! Schedules: how a target walks a kernel's domain. The compute (the
//! kernel's body per domain point) is untouched; a schedule only wraps it in
//! loops and binds the domain variables from loop indices.

use crate::ir::build::*;
use crate::ir::{Expr, Kernel, LoopKind, Stmt, Ty, Var};
use serde::{Deserialize, Serialize};

/// A kernel with its loop nest. The outermost statement is one `Parallel`
/// loop of `parallel_extent` iterations; a runtime may run any sub-range of
/// it on any thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scheduled {
    pub kernel: Kernel,
    pub body: Vec<Stmt>,
    pub parallel_extent: u64,
    /// Domain points per parallel iteration (how much work one is), so that
    /// a runtime can pick chunk sizes without knowing the kernel.
    pub points_per_iter: u64,
}

/// CPU parameters of the schedule.
#[derive(Clone, Copy, Debug)]
pub struct CpuSchedule {
    /// Split the innermost dimension into blocks of this many points when
    /// the outer dimensions alone give fewer than `min_parallel` iterations.
    pub block: u64,
    pub min_parallel: u64,
}

impl Default for CpuSchedule {
    fn default() -> Self {
        CpuSchedule {
            block: 4096,
            min_parallel: 64,
        }
    }
}

/// CPU: the outer dimensions collapse into one parallel loop (their indices
/// recovered by div/mod once per row); the innermost dimension is a
/// contiguous loop for the vectorizer, cut into blocks when the outer
/// dimensions are too few to keep every core busy.
pub fn cpu(k: &Kernel, s: CpuSchedule) -> Scheduled {
    let mut k = k.clone();
    let body = std::mem::take(&mut k.body);
    let n = k.domain.len();
    if n == 0 {
        let p = k.var("p", Ty::I64, false);
        return Scheduled {
            body: vec![Stmt::Loop {
                var: p,
                extent: idx(1),
                kind: LoopKind::Parallel,
                body,
            }],
            kernel: k,
            parallel_extent: 1,
            points_per_iter: 1,
        };
    }
    let last = k.domain[n - 1];
    let outer: u64 = k.domain[..n - 1].iter().product();
    let split = outer < s.min_parallel && last > 2 * s.block;
    let blocks = if split { last.div_ceil(s.block) } else { 1 };
    let p = k.var("p", Ty::I64, false);
    let j = k.var("j", Ty::I64, false);
    let mut head = Vec::new();
    // Recover the outer indices from p: innermost first.
    let mut rest = var(p);
    let blk = if split {
        let b = k.var("blk", Ty::I64, false);
        head.push(Stmt::Let(b, rem(rest.clone(), idx(blocks as i64))));
        rest = div(rest, idx(blocks as i64));
        Some(b)
    } else {
        None
    };
    for d in (0..n - 1).rev() {
        let ext = k.domain[d] as i64;
        let v = Var(d as u32);
        if d == 0 {
            head.push(Stmt::Let(v, rest.clone()));
        } else {
            head.push(Stmt::Let(v, rem(rest.clone(), idx(ext))));
            rest = div(rest, idx(ext));
        }
    }
    let last_var = Var((n - 1) as u32);
    let (extent, bind) = match blk {
        Some(b) => {
            // The last block may be short.
            let start = mul(var(b), idx(s.block as i64));
            let left = sub(idx(last as i64), start.clone());
            (
                bin(crate::ir::BinOp::Min, left, idx(s.block as i64)),
                add(start, var(j)),
            )
        }
        None => (idx(last as i64), var(j)),
    };
    let mut inner = vec![Stmt::Let(last_var, bind)];
    inner.extend(body);
    head.push(Stmt::Loop {
        var: j,
        extent,
        kind: LoopKind::Vector,
        body: inner,
    });
    let parallel_extent = outer * blocks;
    Scheduled {
        body: vec![Stmt::Loop {
            var: p,
            extent: idx(parallel_extent as i64),
            kind: LoopKind::Parallel,
            body: head,
        }],
        kernel: k,
        parallel_extent,
        points_per_iter: if split { s.block } else { last },
    }
}

/// GPU-style: one thread per domain point, all indices recovered from the
/// flat thread index (the parallel loop is the grid).
pub fn flat(k: &Kernel) -> Scheduled {
    let mut k = k.clone();
    let body = std::mem::take(&mut k.body);
    let total = k.points();
    let p = k.var("tid", Ty::I64, false);
    let mut head = Vec::new();
    let mut rest: Expr = var(p);
    let n = k.domain.len();
    for d in (0..n).rev() {
        let ext = k.domain[d] as i64;
        let v = Var(d as u32);
        if d == 0 {
            head.push(Stmt::Let(v, rest.clone()));
        } else {
            head.push(Stmt::Let(v, rem(rest.clone(), idx(ext))));
            rest = div(rest, idx(ext));
        }
    }
    head.extend(body);
    Scheduled {
        body: vec![Stmt::Loop {
            var: p,
            extent: idx(total as i64),
            kind: LoopKind::Parallel,
            body: head,
        }],
        kernel: k,
        parallel_extent: total,
        points_per_iter: 1,
    }
}
