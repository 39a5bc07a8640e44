//! Data-movement ops: each output element is one input element picked by
//! static index arithmetic (views, transposes, slices, padding, tiling,
//! depth/space shuffles), plus ops that write constants (Shape, Size,
//! ConstantOfShape, EyeLike, Range). The domain is always the output's
//! shape so the innermost loop writes contiguous memory.

use super::{LResult, Lower, LowerError, T, elementwise, param, unsupported};
use smelt_ir::semantics::OpError;
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, BinOp, CmpOp, Expr, Kernel, Stmt, Ty};

pub(super) fn inv(e: OpError) -> LowerError {
    LowerError::Invalid(e.0)
}

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let r = match l.op() {
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => view(l),
        "Transpose" => transpose(l),
        "Expand" => expand(l),
        "Concat" => concat(l),
        "Slice" => slice(l),
        "Split" => split(l),
        "Tile" => tile(l),
        "Pad" => pad(l),
        "DepthToSpace" => depth_to_space(l),
        "SpaceToDepth" => space_to_depth(l),
        "Trilu" => trilu(l),
        "CastLike" => cast_like(l),
        _ => return None,
    };
    Some(r)
}

/// Axis `a` (negative counts from the end) of a rank-`r` tensor.
pub(super) fn norm_axis(a: i64, r: usize) -> LResult<usize> {
    let x = if a < 0 { a + r as i64 } else { a };
    if x < 0 || x >= r as i64 {
        return Err(LowerError::Invalid(format!(
            "axis {a} is out of range for rank {r}"
        )));
    }
    Ok(x as usize)
}

pub(super) fn domain_vars(k: &Kernel) -> Vec<Expr> {
    (0..k.domain.len()).map(|d| k.index(d)).collect()
}

/// `y[i] = x[src(i)]` over the output's shape.
pub(super) fn gather_copy(
    l: &mut Lower,
    name: &str,
    x: &T,
    y: &T,
    src: impl FnOnce(&mut Kernel, &[Expr]) -> LResult<Expr>,
) -> LResult<()> {
    if x.ty != y.ty {
        return Err(LowerError::Invalid(format!(
            "{name}: input is {} but output is {}",
            x.dtype, y.dtype
        )));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    if x.numel() == 0 {
        return Err(LowerError::Invalid(format!(
            "{name}: nonempty output from an empty input"
        )));
    }
    let mut k = Kernel::new(name, y.dims.clone());
    let xs = param(&mut k, "x", x, Access::Read);
    let ys = param(&mut k, "y", y, Access::Write);
    let o = domain_vars(&k);
    let si = src(&mut k, &o)?;
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, si),
    });
    l.kernel(k, &[x, y])
}

/// `i` clamped into `0..n` (n > 0).
pub(super) fn clamp_idx(i: Expr, n: u64) -> Expr {
    bin(
        BinOp::Max,
        idx(0),
        bin(BinOp::Min, i, idx(n.saturating_sub(1) as i64)),
    )
}

/// Output is the input's bytes under a new shape.
fn view(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if x.numel() != y.numel() || x.ty != y.ty {
        return Err(LowerError::Invalid(format!(
            "{}: {}{:?} cannot be viewed as {}{:?}",
            l.op(),
            x.dtype,
            x.dims,
            y.dtype,
            y.dims
        )));
    }
    l.alias(&y, &x);
    Ok(())
}

fn transpose(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let r = x.rank();
    let perm: Vec<usize> = match l.ctx().ints("perm").map_err(inv)? {
        None => (0..r).rev().collect(),
        Some(p) => p.iter().map(|&a| norm_axis(a, r)).collect::<LResult<_>>()?,
    };
    if perm.len() != r || y.rank() != r {
        return Err(LowerError::Invalid("Transpose: bad perm".into()));
    }
    // A permutation that keeps the order of all non-unit dims is a view.
    let order: Vec<usize> = perm.iter().copied().filter(|&d| x.dims[d] != 1).collect();
    if order.windows(2).all(|w| w[0] < w[1]) {
        l.alias(&y, &x);
        return Ok(());
    }
    gather_copy(l, "transpose", &x, &y, |_, o| {
        let mut src = vec![idx(0); r];
        for (j, &d) in perm.iter().enumerate() {
            src[d] = o[j].clone();
        }
        Ok(flat(&src, &x.dims))
    })
}

fn expand(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if x.rank() > y.rank() {
        return Err(LowerError::Invalid("Expand: output rank too small".into()));
    }
    if x.numel() == y.numel() {
        l.alias(&y, &x);
        return Ok(());
    }
    gather_copy(l, "expand", &x, &y, |_, o| {
        Ok(elementwise::broadcast_index(o, &y.dims, &x.dims))
    })
}

fn tile(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    if x.rank() != y.rank() {
        return Err(LowerError::Invalid("Tile: rank mismatch".into()));
    }
    gather_copy(l, "tile", &x, &y, |_, o| {
        let src: Vec<Expr> = o
            .iter()
            .zip(x.dims.iter().zip(&y.dims))
            .map(|(i, (&n, &m))| {
                if n == m {
                    i.clone()
                } else {
                    rem(i.clone(), idx(n as i64))
                }
            })
            .collect();
        Ok(flat(&src, &x.dims))
    })
}

/// Copies `x` into the region of `y` starting at `offset` along `axis`.
fn place(l: &mut Lower, x: &T, y: &T, axis: usize, offset: u64) -> LResult<()> {
    if x.numel() == 0 {
        return Ok(());
    }
    let mut k = Kernel::new("concat", x.dims.clone());
    let xs = param(&mut k, "x", x, Access::Read);
    let ys = param(&mut k, "y", y, Access::Write);
    let mut o = domain_vars(&k);
    let src = flat(&o, &x.dims);
    if offset != 0 {
        o[axis] = add(o[axis].clone(), idx(offset as i64));
    }
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, src),
    });
    l.kernel(k, &[x, y])
}

fn concat(l: &mut Lower) -> LResult<()> {
    let y = l.out(0)?;
    let ins: Vec<T> = (0..l.n_inputs()).filter_map(|i| l.opt_input(i)).collect();
    let axis = norm_axis(l.ctx().int("axis", 0).map_err(inv)?, y.rank())?;
    let mut off = 0;
    for x in &ins {
        if x.rank() != y.rank() || x.ty != y.ty {
            return Err(LowerError::Invalid("Concat: operand mismatch".into()));
        }
        place(l, x, &y, axis, off)?;
        off += x.dims[axis];
    }
    if off != y.dims[axis] {
        return Err(LowerError::Invalid("Concat: sizes do not add up".into()));
    }
    Ok(())
}

/// `y` = `x` sliced with per-dim `start` and `step` (sizes are `y`'s).
fn strided(l: &mut Lower, name: &str, x: &T, y: &T, start: &[i64], step: &[i64]) -> LResult<()> {
    for d in 0..x.rank() {
        if y.dims[d] == 0 {
            return Ok(());
        }
        let last = start[d] + step[d] * (y.dims[d] as i64 - 1);
        if start[d] < 0 || start[d] >= x.dims[d] as i64 || last < 0 || last >= x.dims[d] as i64 {
            return Err(LowerError::Invalid(format!("{name}: slice out of bounds")));
        }
    }
    gather_copy(l, name, x, y, |_, o| {
        let src: Vec<Expr> = o
            .iter()
            .enumerate()
            .map(|(d, i)| {
                let e = if step[d] == 1 {
                    i.clone()
                } else {
                    mul(i.clone(), idx(step[d]))
                };
                if start[d] == 0 {
                    e
                } else {
                    add(e, idx(start[d]))
                }
            })
            .collect();
        Ok(flat(&src, &x.dims))
    })
}

/// Integer operand `i` of a node: its constant values, or a kernel
/// parameter to load them from at run time.
pub(super) enum Ints {
    Const(Vec<i64>),
    Dyn(T),
}

impl Ints {
    pub(super) fn of(l: &Lower, i: usize) -> LResult<Option<Ints>> {
        let Some(t) = l.opt_input(i) else {
            return Ok(None);
        };
        if let Some(v) = l.const_ints(i) {
            return Ok(Some(Ints::Const(v)));
        }
        if !t.ty.is_int() {
            return Err(LowerError::Invalid(format!(
                "{}: input {i} must be integers",
                l.op()
            )));
        }
        Ok(Some(Ints::Dyn(t)))
    }

    fn len(&self) -> u64 {
        match self {
            Ints::Const(v) => v.len() as u64,
            Ints::Dyn(t) => t.numel(),
        }
    }
}

/// Axes operand `i` (constant) or all dims in order.
fn const_axes(l: &Lower, i: usize, n: usize, r: usize) -> LResult<Vec<usize>> {
    match l.opt_input(i) {
        None => Ok((0..n).collect()),
        Some(_) => match l.const_ints(i) {
            Some(a) => a.iter().map(|&a| norm_axis(a, r)).collect(),
            None => unsupported(format!("{} with run-time axes", l.op())),
        },
    }
}

fn slice(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let r = x.rank();
    if y.rank() != r {
        return Err(LowerError::Invalid("Slice: rank mismatch".into()));
    }
    let Some(starts) = Ints::of(l, 1)? else {
        return Err(LowerError::Invalid("Slice without starts".into()));
    };
    let n = starts.len() as usize;
    let axes = match Ints::of(l, 3)? {
        Some(Ints::Dyn(t)) => Err(t),
        _ => Ok(const_axes(l, 3, n, r)?),
    };
    let steps = Ints::of(l, 4)?.unwrap_or(Ints::Const(vec![1; n]));
    if axes.as_ref().is_ok_and(|a| a.len() != n)
        || axes.as_ref().is_err_and(|t| t.numel() != n as u64)
        || steps.len() as usize != n
    {
        return Err(LowerError::Invalid("Slice: argument lengths differ".into()));
    }
    if let (Ints::Const(starts), Ints::Const(steps), Ok(axes)) = (&starts, &steps, &axes) {
        let mut start = vec![0i64; r];
        let mut step = vec![1i64; r];
        for ((&a, &s0), &st) in axes.iter().zip(starts).zip(steps) {
            if st == 0 {
                return Err(LowerError::Invalid("Slice: step 0".into()));
            }
            let n = x.dims[a] as i64;
            let s = if s0 < 0 { s0.saturating_add(n) } else { s0 };
            start[a] = if st > 0 {
                s.clamp(0, n)
            } else {
                s.clamp(0, (n - 1).max(0))
            };
            step[a] = st;
        }
        return strided(l, "slice", &x, &y, &start, &step);
    }
    if y.numel() == 0 {
        return Ok(());
    }
    if x.numel() == 0 {
        return Err(LowerError::Invalid(
            "Slice: nonempty slice of nothing".into(),
        ));
    }
    // Run-time starts/steps: clamp as the spec does, then clamp every
    // source index into the input so that no load can stray.
    let mut k = Kernel::new("slice", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ys = param(&mut k, "y", &y, Access::Write);
    let mut args = vec![&x, &y];
    let sp = match &starts {
        Ints::Dyn(t) => {
            args.push(t);
            Some(param(&mut k, "starts", t, Access::Read))
        }
        Ints::Const(_) => None,
    };
    let tp = match &steps {
        Ints::Dyn(t) => {
            args.push(t);
            Some(param(&mut k, "steps", t, Access::Read))
        }
        Ints::Const(_) => None,
    };
    let ap = match &axes {
        Err(t) => {
            args.push(t);
            Some(param(&mut k, "axes", t, Access::Read))
        }
        Ok(_) => None,
    };
    let o = domain_vars(&k);
    // Per dim: (start, step) chosen by the slice entries that name it.
    let mut per: Vec<(Expr, Expr)> = (0..r).map(|_| (idx(0), idx(1))).collect();
    for j in 0..n {
        // The dims entry j may name, with the run-time test that it does.
        let cands: Vec<(usize, Option<Expr>)> = match (&axes, ap) {
            (Ok(a), _) => vec![(a[j], None)],
            (_, Some(p)) => {
                let av = k.var("ax", Ty::I64, false);
                let a0 = cast(Ty::I64, load(p, idx(j as i64)));
                k.body.push(Stmt::Let(
                    av,
                    select(
                        cmp(CmpOp::Lt, a0.clone(), idx(0)),
                        add(a0.clone(), idx(r as i64)),
                        a0,
                    ),
                ));
                (0..r)
                    .map(|d| (d, Some(cmp(CmpOp::Eq, var(av), idx(d as i64)))))
                    .collect()
            }
            _ => vec![],
        };
        for (a, hit) in cands {
            let (start, st) = slice_entry(&mut k, &starts, sp, &steps, tp, j, x.dims[a]);
            per[a] = match hit {
                None => (start, st),
                Some(h) => (
                    select(h.clone(), start, per[a].0.clone()),
                    select(h, st, per[a].1.clone()),
                ),
            };
        }
    }
    let src: Vec<Expr> = per
        .into_iter()
        .enumerate()
        .map(|(a, (start, st))| clamp_idx(add(start, mul(o[a].clone(), st)), x.dims[a]))
        .collect();
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value: load(xs, flat(&src, &x.dims)),
    });
    // Parameters were added as x, y, then the run-time operands in order.
    l.kernel(k, &args)
}

/// Slice entry `j`'s clamped start and its step, for a dim of size `n`.
fn slice_entry(
    k: &mut Kernel,
    starts: &Ints,
    sp: Option<usize>,
    steps: &Ints,
    tp: Option<usize>,
    j: usize,
    n: u64,
) -> (Expr, Expr) {
    {
        let nd = n as i64;
        let s0 = match (starts, sp) {
            (Ints::Const(v), _) => idx(v[j]),
            (_, Some(p)) => cast(Ty::I64, load(p, idx(j as i64))),
            _ => idx(0),
        };
        let (st, st_pos): (Expr, Option<bool>) = match (steps, tp) {
            (Ints::Const(v), _) => (idx(v[j]), Some(v[j] > 0)),
            (_, Some(p)) => (cast(Ty::I64, load(p, idx(j as i64))), None),
            _ => (idx(1), Some(true)),
        };
        let sv = k.var("s", Ty::I64, false);
        k.body.push(Stmt::Let(
            sv,
            select(
                cmp(CmpOp::Lt, s0.clone(), idx(0)),
                add(s0.clone(), idx(nd)),
                s0,
            ),
        ));
        let clamp_to = |hi: i64| bin(BinOp::Max, idx(0), bin(BinOp::Min, var(sv), idx(hi)));
        let start = match st_pos {
            Some(true) => clamp_to(nd),
            Some(false) => clamp_to((nd - 1).max(0)),
            None => select(
                cmp(CmpOp::Gt, st.clone(), idx(0)),
                clamp_to(nd),
                clamp_to((nd - 1).max(0)),
            ),
        };
        (start, st)
    }
}

fn split(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let axis = norm_axis(l.ctx().int("axis", 0).map_err(inv)?, x.rank())?;
    let mut off = 0u64;
    for i in 0..l.node.outputs.len() {
        let y = match l.output(i) {
            Some(y) => y,
            None => {
                return unsupported("Split with an unwanted output (its size is unknown)");
            }
        };
        let mut start = vec![0i64; x.rank()];
        start[axis] = off as i64;
        if y.dims[axis] > 0 {
            strided(l, "split", &x, &y, &start, &vec![1; x.rank()])?;
        }
        off += y.dims[axis];
    }
    Ok(())
}

/// Source coordinate of padded coordinate `c` (already shifted by the
/// leading pad) in a dim of size `n`, for the non-constant modes.
fn pad_coord(mode: &str, c: Expr, n: u64) -> Expr {
    let ni = n as i64;
    match mode {
        "edge" => clamp_idx(c, n),
        "wrap" => rem(add(rem(c, idx(ni)), idx(ni)), idx(ni)),
        // reflect: period 2(n-1), mirrored around n-1.
        _ => {
            if n == 1 {
                return idx(0);
            }
            let m = 2 * (ni - 1);
            let p = rem(add(rem(c, idx(m)), idx(m)), idx(m));
            select(
                cmp(CmpOp::Ge, p.clone(), idx(ni)),
                sub(idx(m), p.clone()),
                p,
            )
        }
    }
}

fn pad(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let r = x.rank();
    let mode = l.ctx().string("mode", "constant").map_err(inv)?;
    if !matches!(mode.as_str(), "constant" | "reflect" | "edge" | "wrap") {
        return unsupported(format!("Pad mode {mode}"));
    }
    let Some(pads) = Ints::of(l, 1)? else {
        return Err(LowerError::Invalid("Pad without pads".into()));
    };
    // Run-time axes: each dim's leading pad is chosen among the pads at
    // run time (shapes are static either way).
    let dyn_axes = l
        .opt_input(3)
        .filter(|t| l.const_ints(3).is_none() && t.ty.is_int());
    let axes = match &dyn_axes {
        Some(t) => (0..t.numel() as usize).collect(),
        None => const_axes(l, 3, r, r)?,
    };
    if pads.len() != 2 * axes.len() as u64 || y.rank() != r {
        return Err(LowerError::Invalid("Pad: pads do not match axes".into()));
    }
    let cval = l.opt_input(2).filter(|c| c.numel() > 0);
    if y.numel() == 0 {
        return Ok(());
    }
    if x.numel() == 0 && mode != "constant" {
        return unsupported("Pad of an empty tensor");
    }
    let mut k = Kernel::new("pad", y.dims.clone());
    let ys = param(&mut k, "y", &y, Access::Write);
    let mut args: Vec<&T> = vec![&y];
    let xs = (x.numel() > 0).then(|| param(&mut k, "x", &x, Access::Read));
    if x.numel() > 0 {
        args.push(&x);
    }
    let cs = cval.as_ref().map(|c| param(&mut k, "c", c, Access::Read));
    if let Some(c) = &cval {
        args.push(c);
    }
    let pp = match &pads {
        Ints::Dyn(t) => {
            args.push(t);
            Some(param(&mut k, "pads", t, Access::Read))
        }
        Ints::Const(_) => None,
    };
    // Leading pad per dim: None when the dim is untouched.
    let mut before: Vec<Option<Expr>> = vec![None; r];
    if let Some(at) = &dyn_axes {
        args.push(at);
        let ap = param(&mut k, "axes", at, Access::Read);
        let mut pick: Vec<Expr> = vec![idx(0); r];
        for i in 0..axes.len() {
            let a = k.var("a", Ty::I64, false);
            k.body
                .push(Stmt::Let(a, cast(Ty::I64, load(ap, idx(i as i64)))));
            let an = select(
                cmp(CmpOp::Lt, var(a), idx(0)),
                add(var(a), idx(r as i64)),
                var(a),
            );
            let pv = match (&pads, pp) {
                (Ints::Const(v), _) => idx(v[i]),
                (_, Some(p)) => cast(Ty::I64, load(p, idx(i as i64))),
                _ => idx(0),
            };
            for (d, e) in pick.iter_mut().enumerate() {
                *e = select(
                    cmp(CmpOp::Eq, an.clone(), idx(d as i64)),
                    pv.clone(),
                    e.clone(),
                );
            }
        }
        for (d, e) in pick.into_iter().enumerate() {
            let v = k.var("pb", Ty::I64, false);
            k.body.push(Stmt::Let(v, e));
            before[d] = Some(var(v));
        }
    }
    for (i, &a) in axes.iter().enumerate().filter(|_| dyn_axes.is_none()) {
        before[a] = match (&pads, pp) {
            (Ints::Const(v), _) => {
                if v[i] == 0 && y.dims[a] == x.dims[a] {
                    None
                } else {
                    Some(idx(v[i]))
                }
            }
            (_, Some(p)) => {
                let v = k.var("pb", Ty::I64, false);
                k.body
                    .push(Stmt::Let(v, cast(Ty::I64, load(p, idx(i as i64)))));
                Some(var(v))
            }
            _ => None,
        };
    }
    let o = domain_vars(&k);
    let mut src = Vec::with_capacity(r);
    let mut inside: Option<Expr> = None;
    for d in 0..r {
        let Some(b) = before[d].clone() else {
            src.push(o[d].clone());
            continue;
        };
        let shifted = sub(o[d].clone(), b);
        if mode == "constant" {
            let ok = bin(
                BinOp::And,
                cmp(CmpOp::Ge, shifted.clone(), idx(0)),
                cmp(CmpOp::Lt, shifted.clone(), idx(x.dims[d] as i64)),
            );
            inside = Some(match inside {
                None => ok,
                Some(a) => bin(BinOp::And, a, ok),
            });
            src.push(clamp_idx(shifted, x.dims[d]));
        } else {
            src.push(pad_coord(&mode, shifted, x.dims[d]));
        }
    }
    let ty = y.ty.compute();
    let c = match cs {
        Some(c) => load(c, idx(0)),
        None => lit(0.0, ty),
    };
    let value = match (xs, inside) {
        (None, _) => c,
        (Some(xs), None) => load(xs, flat(&src, &x.dims)),
        (Some(xs), Some(ok)) => select(ok, load(xs, flat(&src, &x.dims)), c),
    };
    k.body.push(Stmt::Store {
        buf: ys,
        index: flat(&o, &y.dims),
        value,
    });
    l.kernel(k, &args)
}

fn blocksize(l: &Lower) -> LResult<u64> {
    let b = l.ctx().int("blocksize", 0).map_err(inv)?;
    if b <= 0 {
        return Err(LowerError::Invalid(format!("blocksize {b}")));
    }
    Ok(b as u64)
}

fn depth_to_space(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let b = blocksize(l)?;
    let crd = l.ctx().string("mode", "DCR").map_err(inv)? == "CRD";
    if x.rank() != 4 || y.rank() != 4 {
        return unsupported("DepthToSpace of rank other than 4");
    }
    let cout = y.dims[1] as i64;
    let bi = b as i64;
    gather_copy(l, "depth_to_space", &x, &y, |_, o| {
        let (h, i) = (div(o[2].clone(), idx(bi)), rem(o[2].clone(), idx(bi)));
        let (w, j) = (div(o[3].clone(), idx(bi)), rem(o[3].clone(), idx(bi)));
        let ij = add(mul(i, idx(bi)), j);
        let c = if crd {
            add(mul(o[1].clone(), idx(bi * bi)), ij)
        } else {
            add(mul(ij, idx(cout)), o[1].clone())
        };
        Ok(flat(&[o[0].clone(), c, h, w], &x.dims))
    })
}

fn space_to_depth(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let b = blocksize(l)?;
    if x.rank() != 4 || y.rank() != 4 {
        return unsupported("SpaceToDepth of rank other than 4");
    }
    let crd = l.ctx().string("mode", "DCR").map_err(inv)? == "CRD";
    let cin = x.dims[1] as i64;
    let bi = b as i64;
    gather_copy(l, "space_to_depth", &x, &y, |_, o| {
        // Output channel = (i * b + j) * C + c (DCR) or c * b * b + i * b + j (CRD).
        let (c, ij) = if crd {
            (
                div(o[1].clone(), idx(bi * bi)),
                rem(o[1].clone(), idx(bi * bi)),
            )
        } else {
            (rem(o[1].clone(), idx(cin)), div(o[1].clone(), idx(cin)))
        };
        let (i, j) = (div(ij.clone(), idx(bi)), rem(ij, idx(bi)));
        let h = add(mul(o[2].clone(), idx(bi)), i);
        let w = add(mul(o[3].clone(), idx(bi)), j);
        Ok(flat(&[o[0].clone(), c, h, w], &x.dims))
    })
}

fn trilu(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let upper = l.ctx().int("upper", 1).map_err(inv)? != 0;
    let kt = l.opt_input(1);
    if x.rank() < 2 || x.dims != y.dims {
        return Err(LowerError::Invalid("Trilu: input must be rank >= 2".into()));
    }
    if kt
        .as_ref()
        .is_some_and(|t| t.numel() != 1 || !t.ty.is_int())
    {
        return Err(LowerError::Invalid(
            "Trilu: k must be an integer scalar".into(),
        ));
    }
    if y.numel() == 0 {
        return Ok(());
    }
    let r = x.rank();
    let mut k = Kernel::new("trilu", y.dims.clone());
    let xs = param(&mut k, "x", &x, Access::Read);
    let ks = kt.as_ref().map(|t| param(&mut k, "k", t, Access::Read));
    let ys = param(&mut k, "y", &y, Access::Write);
    let o = domain_vars(&k);
    let kv = match ks {
        Some(p) => cast(Ty::I64, load(p, idx(0))),
        None => idx(0),
    };
    let diff = sub(o[r - 1].clone(), o[r - 2].clone());
    let keep = if upper {
        cmp(CmpOp::Ge, diff, kv)
    } else {
        cmp(CmpOp::Le, diff, kv)
    };
    let fi = flat(&o, &y.dims);
    k.body.push(Stmt::Store {
        buf: ys,
        index: fi.clone(),
        value: select(keep, load(xs, fi), lit(0.0, y.ty)),
    });
    let mut args = vec![&x];
    if let Some(t) = &kt {
        args.push(t);
    }
    args.push(&y);
    l.kernel(k, &args)
}

fn cast_like(l: &mut Lower) -> LResult<()> {
    let x = l.input(0)?;
    let y = l.out(0)?;
    let to = y.ty;
    elementwise::map(l, "cast", &[x], &y, move |_, v| Ok(cast(to, v[0].clone())))
}
