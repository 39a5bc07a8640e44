//! Reductions (Reduce*, ArgMax/ArgMin) and the index helper every
//! row-wise family (softmax, normalizations, scans) shares: the kernel's
//! domain is the *kept* dims (so each point owns its output elements and
//! points run in parallel) and each point loops serially over the reduced
//! elements.

use super::fold::Fold;
use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_ir::DType;
use smelt_ir::semantics::OpError;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, LoopKind, Stmt, Ty, UnOp, Var};

pub(crate) fn bad(e: OpError) -> LowerError {
    LowerError::Invalid(e.0)
}

/// `axis` (possibly negative) as an index into `rank` dims.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> LResult<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(LowerError::Invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// A tensor's dims split into kept and reduced groups. Size-1 dims are
/// dropped (they move no index) and neighbours of the same group that are
/// contiguous in memory are merged, so a reduction over the last axes is
/// one loop over contiguous memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// (extent, stride in elements), outermost first.
    pub kept: Vec<(u64, i64)>,
    pub red: Vec<(u64, i64)>,
    /// The innermost (non-1) dim is reduced: the domain gets a trailing
    /// size-1 dim so that the kept dims become the parallel loop.
    pub last_reduced: bool,
}

impl Split {
    pub fn new(dims: &[u64], mask: &[bool]) -> Split {
        let n = dims.len();
        let mut strides = vec![1i64; n];
        for d in (0..n.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * dims[d + 1] as i64;
        }
        let mut s = Split {
            kept: Vec::new(),
            red: Vec::new(),
            last_reduced: false,
        };
        let mut prev: Option<bool> = None;
        for d in 0..n {
            if dims[d] == 1 {
                continue;
            }
            let m = mask.get(d).copied().unwrap_or(false);
            let group = if m { &mut s.red } else { &mut s.kept };
            match group.last_mut() {
                Some(last) if prev == Some(m) && last.1 == dims[d] as i64 * strides[d] => {
                    *last = (last.0 * dims[d], strides[d]);
                }
                _ => group.push((dims[d], strides[d])),
            }
            prev = Some(m);
        }
        s.last_reduced = prev == Some(true);
        s
    }

    /// Number of elements each domain point reduces.
    pub fn count(&self) -> u64 {
        self.red.iter().map(|r| r.0).product()
    }

    /// The kernel domain: the kept extents (row-major, so a point's flat
    /// index is its output element).
    pub fn domain(&self) -> Vec<u64> {
        let mut d: Vec<u64> = self.kept.iter().map(|k| k.0).collect();
        if self.last_reduced || d.is_empty() {
            d.push(1);
        }
        d
    }

    /// The input index of the point's first element (reduced indices 0).
    pub fn base(&self, k: &Kernel) -> Expr {
        let mut acc: Option<Expr> = None;
        for (d, &(_, stride)) in self.kept.iter().enumerate() {
            let t = if stride == 1 {
                k.index(d)
            } else {
                mul(k.index(d), idx(stride))
            };
            acc = Some(match acc {
                None => t,
                Some(a) => add(a, t),
            });
        }
        acc.unwrap_or_else(|| idx(0))
    }

    /// The input index of the first element of the point whose flat
    /// (row-major over the kept dims) index is `p`.
    pub fn base_of_flat(&self, p: Expr) -> Expr {
        let mut acc = idx(0);
        let mut rest = p;
        for (d, &(ext, stride)) in self.kept.iter().enumerate().rev() {
            let i = if d == 0 {
                rest.clone()
            } else {
                rem(rest.clone(), idx(ext as i64))
            };
            acc = add(acc, mul(i, idx(stride)));
            rest = div(rest, idx(ext as i64));
        }
        acc
    }

    /// The point's flat index in the output (the kept dims, row-major).
    pub fn out_index(&self, k: &Kernel) -> Expr {
        let dom = self.domain();
        let ix: Vec<Expr> = (0..dom.len()).map(|d| k.index(d)).collect();
        flat(&ix, &dom)
    }

    /// Serial loops over the reduced elements of the point at `base`;
    /// `body` gets the element's input index.
    pub fn over(
        &self,
        k: &mut Kernel,
        base: Expr,
        body: impl FnOnce(&mut Kernel, Expr) -> Vec<Stmt>,
    ) -> Vec<Stmt> {
        let vars: Vec<_> = self
            .red
            .iter()
            .map(|_| k.var("r", Ty::I64, false))
            .collect();
        let mut index = base;
        for (v, &(_, stride)) in vars.iter().zip(&self.red) {
            let t = if stride == 1 {
                var(*v)
            } else {
                mul(var(*v), idx(stride))
            };
            index = add(index, t);
        }
        let mut stmts = body(k, index);
        for (v, &(ext, _)) in vars.iter().zip(&self.red).rev() {
            stmts = vec![serial(*v, ext, stmts)];
        }
        stmts
    }
}

impl Split {
    /// Folds the reduced elements of the point at `base`; one contiguous
    /// run is folded in vector lanes.
    pub(crate) fn fold(&self, k: &mut Kernel, base: Expr, f: &Fold) -> (Vec<Stmt>, Var) {
        match self.red.as_slice() {
            [] => f.run(k, base, 1, 1),
            [(n, stride)] => f.run(k, base, *n, *stride),
            _ => {
                let res = k.var("acc", f.ty, true);
                let mut out = vec![Stmt::Decl(res, f.init.clone())];
                out.extend(self.over(k, base, |k, i| {
                    let t = (f.term)(k, i);
                    vec![Stmt::Set(res, (f.combine)(var(res), t))]
                }));
                (out, res)
            }
        }
    }
}

pub(crate) fn serial(v: smelt_kernel::Var, extent: u64, body: Vec<Stmt>) -> Stmt {
    Stmt::Loop {
        var: v,
        extent: idx(extent as i64),
        kind: LoopKind::Serial,
        body,
    }
}

/// The type a float reduction accumulates in: f64 for f64, else f32.
pub(crate) fn acc_float(t: Ty) -> Ty {
    if t == Ty::F64 { Ty::F64 } else { Ty::F32 }
}

pub(crate) fn neg_inf(ty: Ty) -> Expr {
    Expr::Float(f64::NEG_INFINITY, ty)
}

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let op = l.op();
    Some(match op {
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce(l, op),
        "ArgMax" | "ArgMin" => arg(l, op == "ArgMax"),
        "GlobalAveragePool" => global_pool(l, "ReduceMean"),
        "GlobalMaxPool" => global_pool(l, "ReduceMax"),
        _ => return None,
    })
}

fn reduce(l: &mut Lower, op: &str) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let rank = x.rank();
    if y.numel() == 0 {
        // Nothing to write.
        return Ok(());
    }
    // Run-time axes: the static shapes say which masks are possible. When
    // they all reduce the same elements the axes' values do not matter;
    // otherwise the kernel picks the mask that matches them at run time.
    let mut runtime: Option<(T, Vec<Vec<bool>>)> = None;
    let mask = match l.opt_input(1) {
        Some(axes) => match l.const_ints(1) {
            Some(a) if !a.is_empty() => {
                let mut m = vec![false; rank];
                for v in a {
                    m[norm_axis(v, rank)?] = true;
                }
                m
            }
            Some(_) => empty_axes(l, rank)?,
            None => {
                let keep = l.ctx().int("keepdims", 1).map_err(bad)? != 0;
                let cands = masks_from_shapes(&x.dims, &y.dims, keep);
                let Some(first) = cands.first().cloned() else {
                    return unsupported(format!("{op}: no axes fit {:?} -> {:?}", x.dims, y.dims));
                };
                let class = |m: &[bool]| -> Vec<bool> {
                    m.iter().zip(&x.dims).map(|(&r, &d)| r && d != 1).collect()
                };
                if cands.iter().any(|m| class(m) != class(&first)) {
                    if !axes.ty.is_int() {
                        return unsupported(format!("{op} with {} axes", axes.dtype));
                    }
                    runtime = Some((axes, cands));
                }
                first
            }
        },
        None => empty_axes(l, rank)?,
    };
    let xt = x.ty.compute();
    let yt = y.ty.compute();
    let Some((axes, cands)) = runtime else {
        let s = Split::new(&x.dims, &mask);
        if let Some(r) = two_stage(l, op, &s, &x, &y) {
            return r;
        }
        let mut k = Kernel::new(op.to_ascii_lowercase(), s.domain());
        let xp = param(&mut k, "x", &x, Access::Read);
        let yp = param(&mut k, "y", &y, Access::Write);
        let base = s.base(&k);
        let oi = s.out_index(&k);
        let body = reduce_body(&mut k, op, &s, (xp, xt, base), (yp, yt, oi))?;
        k.body = body;
        return l.kernel(k, &[&x, &y]);
    };
    // The domain is the output's dims; each candidate maps them onto the
    // input's kept dims (in order).
    let mut strides = vec![1i64; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * x.dims[d + 1] as i64;
    }
    let dom = if y.dims.is_empty() {
        vec![1]
    } else {
        y.dims.clone()
    };
    let mut k = Kernel::new(op.to_ascii_lowercase(), dom.clone());
    let xp = param(&mut k, "x", &x, Access::Read);
    let ap = param(&mut k, "axes", &axes, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let ix: Vec<Expr> = (0..dom.len()).map(|d| k.index(d)).collect();
    let oi = flat(&ix, &dom);
    let keep = y.rank() == rank;
    let mut chain: Vec<Stmt> = Vec::new();
    for m in cands.iter().rev() {
        let s = Split::new(&x.dims, m);
        let mut base = idx(0);
        let mut j = 0;
        for d in 0..rank {
            if m[d] && !keep {
                continue;
            }
            if !m[d] && x.dims[d] != 1 {
                base = add(
                    base,
                    mul(ix[if keep { d } else { j }].clone(), idx(strides[d])),
                );
            }
            j += 1;
        }
        let body = reduce_body(&mut k, op, &s, (xp, xt, base), (yp, yt, oi.clone()))?;
        // Matches when every axis value names a dim of the candidate (the
        // counts agree, so the sets are equal).
        let mut cond = Expr::Int(1, Ty::Bool);
        for e in 0..axes.numel() {
            let a = cast(Ty::I64, load(ap, idx(e as i64)));
            let a = select(
                cmp(CmpOp::Lt, a.clone(), idx(0)),
                add(a.clone(), idx(rank as i64)),
                a,
            );
            let mut any = Expr::Int(0, Ty::Bool);
            for (d, _) in m.iter().enumerate().filter(|(_, r)| **r) {
                any = bin(BinOp::Or, any, cmp(CmpOp::Eq, a.clone(), idx(d as i64)));
            }
            cond = bin(BinOp::And, cond, any);
        }
        chain = vec![Stmt::If {
            cond,
            then: body,
            els: chain,
        }];
    }
    k.body = chain;
    l.kernel(k, &[&x, &axes, &y])
}

/// GlobalAveragePool / GlobalMaxPool: a mean / max over the spatial dims
/// (everything after N and C), kept as size 1.
fn global_pool(l: &mut Lower, reduction: &str) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let xt = x.ty.compute();
    if !xt.is_float() || x.rank() < 2 || y.numel() == 0 {
        return unsupported(format!("{} of {} {:?}", l.op(), x.dtype, x.dims));
    }
    let mask: Vec<bool> = (0..x.rank()).map(|d| d >= 2).collect();
    let s = Split::new(&x.dims, &mask);
    let mut k = Kernel::new(l.op().to_ascii_lowercase(), s.domain());
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let base = s.base(&k);
    let oi = s.out_index(&k);
    let body = reduce_body(
        &mut k,
        reduction,
        &s,
        (xp, xt, base),
        (yp, y.ty.compute(), oi),
    )?;
    k.body = body;
    l.kernel(k, &[&x, &y])
}

/// Reductions with fewer points than this many run in two stages.
const FEW_POINTS: u64 = 64;
/// Elements per partial fold of the first stage.
const CHUNK: u64 = 8192;

/// A reduction of few points over one long contiguous run: the first
/// kernel folds chunks of each run in parallel into partial results, the
/// second folds the partials (and the tail past the last whole chunk).
/// `None` when the reduction is not of that shape.
fn two_stage(l: &mut Lower, op: &str, s: &Split, x: &T, y: &T) -> Option<LResult<()>> {
    let points: u64 = s.kept.iter().map(|k| k.0).product();
    let [(n, 1)] = s.red.as_slice() else {
        return None;
    };
    let n = *n;
    if op == "ReduceLogSumExp" || points >= FEW_POINTS || n < 8 * CHUNK {
        return None;
    }
    let xt = x.ty.compute();
    let plan = Plan::new(op, xt).ok()?;
    let pdt = match plan.at {
        Ty::F32 => DType::F32,
        Ty::F64 => DType::F64,
        Ty::I64 => DType::I64,
        Ty::I32 => DType::I32,
        Ty::U64 => DType::U64,
        Ty::U32 => DType::U32,
        _ => return None,
    };
    let chunks = n / CHUNK;
    Some((|| {
        let part = l.temp(pdt, &[points * chunks])?;
        let name = op.to_ascii_lowercase();
        let mut k = Kernel::new(format!("{name}_partial"), vec![points, chunks, 1]);
        let xp = param(&mut k, "x", x, Access::Read);
        let pp = param(&mut k, "part", &part, Access::Write);
        let (p, c) = (k.index(0), k.index(1));
        let base = add(s.base_of_flat(p.clone()), mul(c.clone(), idx(CHUNK as i64)));
        let term = plan.term(xp, true);
        let (st, acc) = plan.fold(&term).run(&mut k, base, CHUNK, 1);
        k.body.extend(st);
        k.body.push(Stmt::Store {
            buf: pp,
            index: add(mul(p, idx(chunks as i64)), c),
            value: var(acc),
        });
        l.kernel(k, &[x, &part])?;

        let mut k = Kernel::new(name, s.domain());
        let xp = param(&mut k, "x", x, Access::Read);
        let pp = param(&mut k, "part", &part, Access::Read);
        let yp = param(&mut k, "y", y, Access::Write);
        let oi = s.out_index(&k);
        let base = s.base(&k);
        let pterm = plan.term(pp, false);
        let (st, a) = plan
            .fold(&pterm)
            .run(&mut k, mul(oi.clone(), idx(chunks as i64)), chunks, 1);
        k.body.extend(st);
        let tail = base.clone();
        let term = plan.term(xp, true);
        let (st, b) = plan.fold(&term).run(
            &mut k,
            add(tail, idx((chunks * CHUNK) as i64)),
            n - chunks * CHUNK,
            1,
        );
        k.body.extend(st);
        let total = (plan.combine)(var(a), var(b));
        k.body.push(Stmt::Store {
            buf: yp,
            index: oi,
            value: plan.finish(op, total, n, y.ty.compute()),
        });
        l.kernel(k, &[x, &part, y])
    })())
}

/// Every reduction mask that turns input dims `x` into output dims `y`.
fn masks_from_shapes(x: &[u64], y: &[u64], keep: bool) -> Vec<Vec<bool>> {
    if keep {
        if x.len() != y.len() {
            return vec![];
        }
        let mut m = vec![false; x.len()];
        for d in 0..x.len() {
            if y[d] != x[d] {
                if y[d] != 1 {
                    return vec![];
                }
                m[d] = true;
            }
        }
        return vec![m];
    }
    // Embeddings of y into x (in order, equal extents); the rest is reduced.
    fn go(x: &[u64], y: &[u64], i: usize, j: usize, m: &mut Vec<bool>, out: &mut Vec<Vec<bool>>) {
        if out.len() > 16 {
            return;
        }
        if j == y.len() {
            for r in m.iter_mut().skip(i) {
                *r = true;
            }
            out.push(m.clone());
            for r in m.iter_mut().skip(i) {
                *r = false;
            }
            return;
        }
        if x.len() - i < y.len() - j {
            return;
        }
        if x[i] == y[j] {
            go(x, y, i + 1, j + 1, m, out);
        }
        m[i] = true;
        go(x, y, i + 1, j, m, out);
        m[i] = false;
    }
    let mut out = Vec::new();
    go(x, y, 0, 0, &mut vec![false; x.len()], &mut out);
    if out.len() > 16 {
        out.clear();
    }
    out
}

/// The statements of one reduction point: reads `x` from `base` over the
/// reduced elements of `s`, writes the result to `y[oi]`.
fn reduce_body(
    k: &mut Kernel,
    op: &str,
    s: &Split,
    (xp, xt, base): (usize, Ty, Expr),
    (yp, yt, oi): (usize, Ty, Expr),
) -> LResult<Vec<Stmt>> {
    let count = s.count();
    let mut out = Vec::new();
    if op == "ReduceLogSumExp" {
        if !xt.is_float() {
            return unsupported(format!("{op} of {}", xt.name()));
        }
        let at = acc_float(xt);
        let inf = Expr::Float(f64::INFINITY, at);
        // Shift by the largest element that is not +inf; a row without a
        // finite maximum is not shifted.
        let (st, mx) = s.fold(
            k,
            base.clone(),
            &Fold {
                ty: at,
                init: neg_inf(at),
                term: &|_, i| {
                    let v = cast(at, load(xp, i));
                    select(cmp(CmpOp::Ne, v.clone(), inf.clone()), v, neg_inf(at))
                },
                combine: &|a, b| select(cmp(CmpOp::Gt, b.clone(), a.clone()), b, a),
            },
        );
        out.extend(st);
        let m = k.var("m", at, false);
        let finite = cmp(CmpOp::Lt, un(UnOp::Abs, var(mx)), inf.clone());
        out.push(Stmt::Let(m, select(finite, var(mx), lit(0.0, at))));
        let (st, acc) = s.fold(
            k,
            base,
            &Fold {
                ty: at,
                init: lit(0.0, at),
                term: &|_, i| un(UnOp::Exp, sub(cast(at, load(xp, i)), var(m))),
                combine: &add,
            },
        );
        out.extend(st);
        let r = add(un(UnOp::Log, var(acc)), var(m));
        out.push(Stmt::Store {
            buf: yp,
            index: oi,
            value: cast(yt, r),
        });
        return Ok(out);
    }
    let plan = Plan::new(op, xt)?;
    let term = plan.term(xp, true);
    let (st, acc) = s.fold(k, base, &plan.fold(&term));
    out.extend(st);
    out.push(Stmt::Store {
        buf: yp,
        index: oi,
        value: plan.finish(op, var(acc), count, yt),
    });
    Ok(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Term {
    Plain,
    Square,
    Abs,
}

type Combine = fn(Expr, Expr) -> Expr;

/// A reduction that is one fold (every Reduce* but LogSumExp): what each
/// element contributes and how contributions combine.
struct Plan {
    at: Ty,
    init: Expr,
    term: Term,
    combine: Combine,
}

impl Plan {
    fn new(op: &str, xt: Ty) -> LResult<Plan> {
        let sum = add as Combine;
        let max = |a, b| bin(BinOp::Max, a, b);
        let min = |a, b| bin(BinOp::Min, a, b);
        let (at, init, term, combine): (Ty, Expr, Term, Combine) = if xt.is_float() {
            let at = acc_float(xt);
            let z = lit(0.0, at);
            match op {
                "ReduceSum" | "ReduceMean" | "ReduceLogSum" => (at, z, Term::Plain, sum),
                "ReduceSumSquare" | "ReduceL2" => (at, z, Term::Square, sum),
                "ReduceL1" => (at, z, Term::Abs, sum),
                "ReduceProd" => (at, lit(1.0, at), Term::Plain, mul),
                "ReduceMax" => (at, neg_inf(at), Term::Plain, max),
                "ReduceMin" => (at, Expr::Float(f64::INFINITY, at), Term::Plain, min),
                _ => return unsupported(op.to_string()),
            }
        } else if xt.is_int() {
            // Wrapping arithmetic in the element type equals the reference's
            // wide arithmetic wrapped to the dtype at the end.
            let z = Expr::Int(0, xt);
            let (lo, hi) = int_range(xt);
            match op {
                "ReduceSum" => (xt, z, Term::Plain, sum),
                "ReduceSumSquare" => (xt, z, Term::Square, sum),
                "ReduceL1" => (xt, z, Term::Abs, sum),
                "ReduceProd" => (xt, Expr::Int(1, xt), Term::Plain, mul),
                "ReduceMax" => (xt, Expr::Int(lo, xt), Term::Plain, max),
                "ReduceMin" => (xt, Expr::Int(hi, xt), Term::Plain, min),
                "ReduceL2" => (Ty::F64, lit(0.0, Ty::F64), Term::Square, sum),
                "ReduceMean" => {
                    let wide = if xt.is_signed() { Ty::I64 } else { Ty::U64 };
                    (wide, Expr::Int(0, wide), Term::Plain, sum)
                }
                _ => return unsupported(format!("{op} of {}", xt.name())),
            }
        } else if xt == Ty::Bool {
            match op {
                "ReduceMax" => (Ty::Bool, Expr::Int(0, Ty::Bool), Term::Plain, |a, b| {
                    bin(BinOp::Or, a, b)
                }),
                "ReduceMin" => (Ty::Bool, Expr::Int(1, Ty::Bool), Term::Plain, |a, b| {
                    bin(BinOp::And, a, b)
                }),
                _ => return unsupported(format!("{op} of bool")),
            }
        } else {
            return unsupported(format!("{op} of {}", xt.name()));
        };
        Ok(Plan {
            at,
            init,
            term,
            combine,
        })
    }

    /// What an element of buffer `p` contributes: raw elements
    /// (`elements`) or partial results of an earlier fold.
    fn term(&self, p: usize, elements: bool) -> impl Fn(&mut Kernel, Expr) -> Expr + use<> {
        let at = self.at;
        let term = if elements { self.term } else { Term::Plain };
        move |_: &mut Kernel, i: Expr| {
            let v = load(p, i);
            let v = if at == Ty::Bool { v } else { cast(at, v) };
            match term {
                Term::Plain => v,
                Term::Square => mul(v.clone(), v),
                Term::Abs => un(UnOp::Abs, v),
            }
        }
    }

    fn fold<'a>(&'a self, term: &'a dyn Fn(&mut Kernel, Expr) -> Expr) -> Fold<'a> {
        Fold {
            ty: self.at,
            init: self.init.clone(),
            term,
            combine: &self.combine,
        }
    }

    /// The output value from the folded `acc` of `count` elements.
    fn finish(&self, op: &str, a: Expr, count: u64, yt: Ty) -> Expr {
        let at = self.at;
        let r = match op {
            "ReduceL2" => un(UnOp::Sqrt, a),
            "ReduceLogSum" => un(UnOp::Log, a),
            "ReduceMean" => {
                if at.is_float() {
                    div(a, lit(count as f64, at))
                } else {
                    div(a, Expr::Int(count as i64, at))
                }
            }
            _ => a,
        };
        if at == Ty::Bool { r } else { cast(yt, r) }
    }
}

/// Absent or empty axes: all axes, or none with `noop_with_empty_axes`.
fn empty_axes(l: &Lower, rank: usize) -> LResult<Vec<bool>> {
    let noop = l.ctx().int("noop_with_empty_axes", 0).map_err(bad)? != 0;
    Ok(vec![!noop; rank])
}

/// The smallest and largest value of an integer type (as i64 bits).
fn int_range(t: Ty) -> (i64, i64) {
    match t {
        Ty::I8 => (i8::MIN as i64, i8::MAX as i64),
        Ty::I16 => (i16::MIN as i64, i16::MAX as i64),
        Ty::I32 => (i32::MIN as i64, i32::MAX as i64),
        Ty::I64 => (i64::MIN, i64::MAX),
        Ty::U8 => (0, u8::MAX as i64),
        Ty::U16 => (0, u16::MAX as i64),
        Ty::U32 => (0, u32::MAX as i64),
        // All ones: u64::MAX as bits.
        _ => (0, -1),
    }
}

fn arg(l: &mut Lower, want_max: bool) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let ctx = l.ctx();
    let last = ctx.int("select_last_index", 0).map_err(bad)? != 0;
    let axis = norm_axis(ctx.int("axis", 0).map_err(bad)?, x.rank())?;
    let n = x.dims[axis];
    if n == 0 || y.numel() == 0 {
        return unsupported("ArgMax/ArgMin over an empty axis");
    }
    let mut mask = vec![false; x.rank()];
    mask[axis] = true;
    let s = Split::new(&x.dims, &mask);
    let xt = x.ty.compute();
    let mut k = Kernel::new(if want_max { "argmax" } else { "argmin" }, s.domain());
    let xp = param(&mut k, "x", &x, Access::Read);
    let yp = param(&mut k, "y", &y, Access::Write);
    let base = s.base(&k);
    let oi = s.out_index(&k);
    let best = k.var("best", xt, true);
    let bi = k.var("bi", Ty::I64, true);
    k.body.push(Stmt::Decl(best, load(xp, base.clone())));
    k.body.push(Stmt::Decl(bi, idx(0)));
    // The axis is one reduced dim (or none when its extent is 1).
    if let Some(&(_, stride)) = s.red.first() {
        let r = k.var("r", Ty::I64, false);
        let c = k.var("c", xt, false);
        let v = var(c);
        let b = var(best);
        let tie = || -> Expr {
            if last {
                cmp(CmpOp::Eq, v.clone(), b.clone())
            } else {
                Expr::Int(0, Ty::Bool)
            }
        };
        let order = if want_max { CmpOp::Gt } else { CmpOp::Lt };
        let wins = bin(BinOp::Or, cmp(order, v.clone(), b.clone()), tie());
        // NaN beats every number; a later NaN beats a NaN only with
        // select_last_index.
        let beats = if xt.is_float() {
            let vn = un(UnOp::IsNan, v.clone());
            let bn = un(UnOp::IsNan, b.clone());
            let after_nan = if last {
                vn.clone()
            } else {
                Expr::Int(0, Ty::Bool)
            };
            select(bn, after_nan, bin(BinOp::Or, vn, wins))
        } else {
            wins
        };
        let body = vec![
            Stmt::Let(c, load(xp, add(base, mul(var(r), idx(stride))))),
            Stmt::If {
                cond: beats,
                then: vec![Stmt::Set(best, v.clone()), Stmt::Set(bi, var(r))],
                els: vec![],
            },
        ];
        k.body.push(Stmt::Loop {
            var: r,
            extent: idx(n as i64),
            kind: LoopKind::Serial,
            body,
        });
    }
    k.body.push(Stmt::Store {
        buf: yp,
        index: oi,
        value: var(bi),
    });
    l.kernel(k, &[&x, &y])
}

#[cfg(test)]
mod tests {
    use super::{Split, masks_from_shapes};

    #[test]
    fn masks_follow_from_shapes() {
        // keepdims: the dims that became 1 are reduced.
        assert_eq!(
            masks_from_shapes(&[3, 2, 2], &[3, 1, 2], true),
            vec![vec![false, true, false]]
        );
        // Without keepdims [3, 2, 2] -> [3, 2] drops dim 1 or dim 2.
        assert_eq!(
            masks_from_shapes(&[3, 2, 2], &[3, 2], false),
            vec![vec![false, false, true], vec![false, true, false]]
        );
        // Everything reduced to a scalar.
        assert_eq!(
            masks_from_shapes(&[4, 5], &[], false),
            vec![vec![true, true]]
        );
        // Extents that cannot come from a reduction.
        assert!(masks_from_shapes(&[4, 5], &[3], false).is_empty());
        assert!(masks_from_shapes(&[4, 5], &[4, 2], true).is_empty());
    }

    #[test]
    fn split_merges_contiguous_dims() {
        // [2, 3, 4] reducing the last two: one kept dim of stride 12, one
        // reduced run of 12 contiguous elements.
        let s = Split::new(&[2, 3, 4], &[false, true, true]);
        assert_eq!(s.kept, vec![(2, 12)]);
        assert_eq!(s.red, vec![(12, 1)]);
        assert!(s.last_reduced);
        assert_eq!(s.domain(), vec![2, 1]);
        // Reducing the middle axis keeps both outer and inner.
        let s = Split::new(&[2, 3, 4], &[false, true, false]);
        assert_eq!(s.kept, vec![(2, 12), (4, 1)]);
        assert_eq!(s.red, vec![(3, 4)]);
        assert_eq!(s.domain(), vec![2, 4]);
        // Size-1 dims vanish; reduced dims 0 and 2 are not contiguous.
        let s = Split::new(&[5, 1, 3, 2], &[true, true, true, false]);
        assert_eq!(s.kept, vec![(2, 1)]);
        assert_eq!(s.red, vec![(15, 2)]);
        assert_eq!(s.count(), 15);
        let s = Split::new(&[5, 4, 3], &[true, false, true]);
        assert_eq!(s.red, vec![(5, 12), (3, 1)]);
        assert_eq!(s.kept, vec![(4, 3)]);
    }
}
