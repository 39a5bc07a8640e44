//! Vertical fusion: a consumer kernel that reads a producer's output
//! element-for-element takes the producer's expression in place of the
//! load, so the intermediate never goes to memory. This is how a chain of
//! elementwise ops (bias, activation, residual, cast) becomes one pass.

use crate::ir::{Expr, Kernel, Stmt};

/// The value a pure map kernel stores: its body is one store of `value` at
/// `index`, both in terms of the domain variables and loads only.
fn pure_map(k: &Kernel) -> Option<(usize, &Expr, &Expr)> {
    match k.body.as_slice() {
        [Stmt::Store { buf, index, value }] => Some((*buf, index, value)),
        _ => None,
    }
}

/// A map with leading `Let`s (what fusion produces): the lets, then the
/// one store.
fn let_map(k: &Kernel) -> Option<(&[Stmt], usize, &Expr, &Expr)> {
    let (last, lets) = k.body.split_last()?;
    if !lets.iter().all(|s| matches!(s, Stmt::Let(..))) {
        return None;
    }
    match last {
        Stmt::Store { buf, index, value } => Some((lets, *buf, index, value)),
        _ => None,
    }
}

fn remap_vars(e: &Expr, f: &dyn Fn(crate::ir::Var) -> crate::ir::Var) -> Expr {
    e.rewrite(&mut |x| match x {
        Expr::Var(v) => Expr::Var(f(v)),
        x => x,
    })
}

fn loads_of(e: &Expr, buf: usize, out: &mut Vec<Expr>) {
    e.visit(&mut |x| {
        if let Expr::Load(b, i) = x
            && *b == buf
        {
            out.push((**i).clone());
        }
    });
}

fn stmt_loads(s: &[Stmt], buf: usize, out: &mut Vec<Expr>) {
    for st in s {
        match st {
            Stmt::Let(_, e) | Stmt::Decl(_, e) | Stmt::Set(_, e) => loads_of(e, buf, out),
            Stmt::Loop { extent, body, .. } => {
                loads_of(extent, buf, out);
                stmt_loads(body, buf, out);
            }
            Stmt::Store { index, value, .. } => {
                loads_of(index, buf, out);
                loads_of(value, buf, out);
            }
            Stmt::If { cond, then, els } => {
                loads_of(cond, buf, out);
                stmt_loads(then, buf, out);
                stmt_loads(els, buf, out);
            }
        }
    }
}

/// Rewrites expressions: loads of `buf` become `with`, other parameter
/// indices go through `remap`.
fn subst(e: &Expr, buf: usize, with: &Expr, remap: &dyn Fn(usize) -> usize) -> Expr {
    e.rewrite(&mut |x| match x {
        Expr::Load(b, _) if b == buf => with.clone(),
        Expr::Load(b, i) => Expr::Load(remap(b), i),
        x => x,
    })
}

fn subst_stmts(s: &[Stmt], buf: usize, with: &Expr, remap: &dyn Fn(usize) -> usize) -> Vec<Stmt> {
    let x = |e: &Expr| subst(e, buf, with, remap);
    s.iter()
        .map(|st| match st {
            Stmt::Let(v, e) => Stmt::Let(*v, x(e)),
            Stmt::Decl(v, e) => Stmt::Decl(*v, x(e)),
            Stmt::Set(v, e) => Stmt::Set(*v, x(e)),
            Stmt::Loop {
                var,
                extent,
                kind,
                body,
            } => Stmt::Loop {
                var: *var,
                extent: x(extent),
                kind: *kind,
                body: subst_stmts(body, buf, with, remap),
            },
            Stmt::Store {
                buf: b,
                index,
                value,
            } => Stmt::Store {
                buf: remap(*b),
                index: x(index),
                value: x(value),
            },
            Stmt::If { cond, then, els } => Stmt::If {
                cond: x(cond),
                then: subst_stmts(then, buf, with, remap),
                els: subst_stmts(els, buf, with, remap),
            },
        })
        .collect()
}

/// Fuses `producer` (a pure map writing its parameter `out`) into
/// `consumer` (reading it as parameter `input`), if the consumer reads it
/// only at the very element the producer writes for the same domain point.
/// The result's parameters are the consumer's minus `input`, then the
/// producer's minus `out`; the second value maps each of the result's
/// parameters to ("consumer", i) = false/true for producer.
pub fn fuse(
    producer: &Kernel,
    out: usize,
    consumer: &Kernel,
    input: usize,
) -> Option<(Kernel, Vec<(bool, usize)>)> {
    if producer.domain != consumer.domain {
        return None;
    }
    let (plets, pbuf, pindex, pvalue) = let_map(producer)?;
    if pbuf != out {
        return None;
    }
    // An FP8 / FP4 store rounds coarsely (and saturates or overflows), a
    // sub-byte integer store keeps the low bits: the consumer must see the
    // stored value, not the exact one.
    let pty = producer.params[out].ty;
    if pty.is_f8() || pty.packed_bits().is_some() {
        return None;
    }
    // The producer may use only its domain variables (shared with the
    // consumer by position), its own lets (renamed below) and loads.
    let rank = producer.domain.len() as u32;
    if !only_domain_vars(pindex, rank) {
        return None;
    }
    let mut idx = Vec::new();
    stmt_loads(&consumer.body, input, &mut idx);
    if idx.is_empty() || idx.iter().any(|i| i != pindex) {
        return None;
    }
    // The consumer's own variables must not shadow the domain variables
    // the producer's expression refers to: true by construction (vars
    // 0..rank are the domain in every kernel).
    let mut k = consumer.clone();
    let mut origin = Vec::new();
    let mut cmap = vec![usize::MAX; consumer.params.len()];
    k.params.clear();
    for (i, p) in consumer.params.iter().enumerate() {
        if i != input {
            cmap[i] = k.params.len();
            k.params.push(p.clone());
            origin.push((false, i));
        }
    }
    let mut pmap = vec![usize::MAX; producer.params.len()];
    for (i, p) in producer.params.iter().enumerate() {
        if i != out {
            pmap[i] = k.params.len();
            let mut p = p.clone();
            p.name = format!("{}_{}", producer.name, p.name);
            k.params.push(p);
            origin.push((true, i));
        }
    }
    // Producer lets become fresh consumer variables.
    let mut vmap = std::collections::HashMap::new();
    let mut body = Vec::new();
    let none = &Expr::Int(0, crate::Ty::I64);
    for st in plets {
        if let Stmt::Let(v, e) = st {
            let info = producer.var_info(*v).clone();
            let nv = k.var(format!("{}_{}", producer.name, info.name), info.ty, false);
            let e = remap_vars(e, &|x| *vmap.get(&x).unwrap_or(&x));
            body.push(Stmt::Let(nv, subst(&e, usize::MAX, none, &|b| pmap[b])));
            vmap.insert(*v, nv);
        }
    }
    let pval = remap_vars(pvalue, &|x| *vmap.get(&x).unwrap_or(&x));
    let pval = subst(&pval, usize::MAX, none, &|b| pmap[b]);
    // Computed once per point and bound, however often the consumer reads
    // it (GELU reads its input twice; an erf per read would double the cost).
    let ty = producer.params[out].ty.compute();
    let t = k.var(format!("{}_v", producer.name), ty, false);
    body.push(Stmt::Let(t, pval));
    body.extend(subst_stmts(&consumer.body, input, &Expr::Var(t), &|b| {
        cmap[b]
    }));
    k.body = body;
    k.name = format!("{}_{}", producer.name, consumer.name);
    Some((k, origin))
}

fn only_domain_vars(e: &Expr, rank: u32) -> bool {
    let mut ok = true;
    e.visit(&mut |x| {
        if let Expr::Var(v) = x {
            ok &= v.0 < rank;
        }
    });
    ok
}

fn subst_var0(e: &Expr, with: &Expr) -> Expr {
    e.rewrite(&mut |x| match x {
        Expr::Var(v) if v.0 == 0 => with.clone(),
        x => x,
    })
}

/// A one-dimensional pure map re-expressed over `domain` (same number of
/// points, walked in row-major order), so that it can fuse with a kernel
/// over that domain. The flat index becomes `flat(i0..in)`: no division.
pub fn lift(k: &Kernel, domain: &[u64]) -> Option<Kernel> {
    if k.domain.len() != 1 || k.vars.len() != 1 || k.points() != domain.iter().product::<u64>() {
        return None;
    }
    let (buf, index, value) = pure_map(k)?;
    let mut out = Kernel::new(k.name.clone(), domain.to_vec());
    out.params = k.params.clone();
    let idx: Vec<Expr> = (0..domain.len()).map(|d| out.index(d)).collect();
    let f = crate::ir::build::flat(&idx, domain);
    out.body = vec![Stmt::Store {
        buf,
        index: subst_var0(index, &f),
        value: subst_var0(value, &f),
    }];
    Some(out)
}
