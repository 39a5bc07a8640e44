//! Einsum as one loop kernel: the domain is the output's labels, the
//! summed labels are serial loops, the body multiplies one load per
//! operand. Repeated labels (diagonals), transposes, reductions, batched
//! products and `...` all fall out of the index arithmetic.

use super::{LResult, Lower, LowerError, T, param, unsupported};
use smelt_kernel::ir::build::*;
use smelt_kernel::{Access, Expr, Kernel, LoopKind, Stmt, Ty};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    Some(match l.op() {
        "Einsum" => einsum(l),
        _ => return None,
    })
}

/// Labels: letters as their char code, ellipsis dims as 1000 + position.
type Label = u32;

fn bad(msg: impl Into<String>) -> LowerError {
    LowerError::Invalid(msg.into())
}

/// A term's labels, with its ellipsis expanded to `ell` dims (`None` when
/// the term has no `...`).
fn parse(term: &str) -> LResult<(Vec<Label>, Option<usize>)> {
    let mut out = Vec::new();
    let mut ell = None;
    let mut rest = term;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ell.is_some() {
                return Err(bad("einsum term with two ellipses"));
            }
            ell = Some(out.len());
            rest = r;
            continue;
        }
        let c = rest.chars().next().unwrap_or(' ');
        if !c.is_ascii_alphabetic() {
            return Err(bad(format!("einsum: unexpected `{c}`")));
        }
        out.push(c as Label);
        rest = &rest[c.len_utf8()..];
    }
    Ok((out, ell))
}

fn expand(labels: &[Label], ell: Option<usize>, n_ell: usize, total_ell: usize) -> Vec<Label> {
    match ell {
        None => labels.to_vec(),
        Some(at) => {
            let mut v = labels[..at].to_vec();
            // Right-aligned against the widest ellipsis.
            v.extend((total_ell - n_ell..total_ell).map(|i| 1000 + i as Label));
            v.extend_from_slice(&labels[at..]);
            v
        }
    }
}

fn einsum(l: &mut Lower) -> LResult<()> {
    let eq: String = l
        .ctx()
        .string("equation", "")
        .map_err(|e| bad(e.0))?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let ins: Vec<T> = (0..l.n_inputs())
        .map(|i| l.input(i))
        .collect::<LResult<_>>()?;
    let y = l.out(0)?;
    if !(y.ty.is_float() || y.ty.is_int()) || ins.iter().any(|t| t.ty != y.ty) {
        return unsupported(format!("Einsum of {}", y.dtype));
    }
    let (lhs, rhs) = match eq.split_once("->") {
        Some((a, b)) => (a.to_string(), Some(b.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<(Vec<Label>, Option<usize>)> =
        lhs.split(',').map(parse).collect::<LResult<_>>()?;
    if terms.len() != ins.len() {
        return Err(bad("einsum: term count differs from inputs"));
    }
    let mut total_ell = 0;
    let mut n_ells = Vec::new();
    for ((labels, ell), t) in terms.iter().zip(&ins) {
        let n = match ell {
            Some(_) => t
                .rank()
                .checked_sub(labels.len())
                .ok_or_else(|| bad("einsum rank"))?,
            None if t.rank() == labels.len() => 0,
            None => return Err(bad("einsum: term rank differs from its input")),
        };
        total_ell = total_ell.max(n);
        n_ells.push(n);
    }
    let full: Vec<Vec<Label>> = terms
        .iter()
        .zip(&n_ells)
        .map(|((lb, e), &n)| expand(lb, *e, n, total_ell))
        .collect();
    // Each label's extent (size-1 ellipsis dims broadcast).
    let mut size: std::collections::BTreeMap<Label, u64> = Default::default();
    for (lb, t) in full.iter().zip(&ins) {
        for (&x, &d) in lb.iter().zip(&t.dims) {
            let e = size.entry(x).or_insert(d);
            if *e == 1 {
                *e = d;
            } else if d != 1 && d != *e {
                return Err(bad("einsum: label sizes differ"));
            }
        }
    }
    let out: Vec<Label> = match &rhs {
        Some(r) => {
            let (lb, e) = parse(r)?;
            let ell_n = if e.is_some() { total_ell } else { 0 };
            expand(&lb, e, ell_n, total_ell)
        }
        None => {
            let mut v: Vec<Label> = (0..total_ell).map(|i| 1000 + i as Label).collect();
            let mut once: Vec<Label> = size
                .keys()
                .copied()
                .filter(|&x| x < 1000 && full.iter().flatten().filter(|&&z| z == x).count() == 1)
                .collect();
            once.sort_unstable();
            v.extend(once);
            v
        }
    };
    let odims: Vec<u64> = out
        .iter()
        .map(|x| {
            size.get(x)
                .copied()
                .ok_or_else(|| bad("einsum: unknown output label"))
        })
        .collect::<LResult<_>>()?;
    if odims.iter().product::<u64>() != y.numel() {
        return Err(bad("einsum: output size mismatch"));
    }
    let summed: Vec<Label> = size.keys().copied().filter(|x| !out.contains(x)).collect();
    let ty = y.ty.compute();
    let mut k = Kernel::new("einsum", odims.clone());
    let mut at: std::collections::BTreeMap<Label, Expr> = Default::default();
    for (d, &x) in out.iter().enumerate() {
        if at.contains_key(&x) {
            return unsupported("einsum with a repeated output label");
        }
        at.insert(x, k.index(d));
    }
    let loops: Vec<_> = summed
        .iter()
        .map(|&x| {
            let v = k.var("r", Ty::I64, false);
            at.insert(x, var(v));
            (v, size[&x])
        })
        .collect();
    let ps: Vec<usize> = ins
        .iter()
        .enumerate()
        .map(|(i, t)| param(&mut k, &format!("x{i}"), t, Access::Read))
        .collect();
    let yp = param(&mut k, "y", &y, Access::Write);
    let acc = k.var("acc", ty, true);
    let mut prod: Option<Expr> = None;
    for ((p, lb), t) in ps.iter().zip(&full).zip(&ins) {
        let sub: Vec<Expr> = lb
            .iter()
            .zip(&t.dims)
            .map(|(x, &d)| if d == 1 { idx(0) } else { at[x].clone() })
            .collect();
        let v = load(*p, flat(&sub, &t.dims));
        prod = Some(match prod {
            None => v,
            Some(a) => mul(a, v),
        });
    }
    let mut body = vec![Stmt::Set(
        acc,
        add(var(acc), prod.unwrap_or_else(|| lit(1.0, ty))),
    )];
    for (v, n) in loops.into_iter().rev() {
        body = vec![Stmt::Loop {
            var: v,
            extent: idx(n as i64),
            kind: LoopKind::Serial,
            body,
        }];
    }
    k.body.push(Stmt::Decl(acc, lit(0.0, ty)));
    k.body.extend(body);
    let oidx: Vec<Expr> = (0..odims.len()).map(|d| k.index(d)).collect();
    k.body.push(Stmt::Store {
        buf: yp,
        index: flat(&oidx, &odims),
        value: var(acc),
    });
    let mut args: Vec<&T> = ins.iter().collect();
    args.push(&y);
    l.kernel(k, &args)
}
