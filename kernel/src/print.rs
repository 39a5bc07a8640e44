//! The kernel IR's text form, for snapshot tests and `--dump-kernels`. It is
//! meant to be read: loads and stores are written `buf[index]`, loops as
//! `for j in 0..n`, and every variable by its name.

use crate::ir::{Access, Expr, Kernel, LoopKind, Stmt};
use crate::schedule::Scheduled;
use std::fmt::Write;

/// The compute definition: parameters, domain and the body per point.
pub fn kernel(k: &Kernel) -> String {
    let mut s = header(k);
    let names: Vec<String> = (0..k.domain.len())
        .map(|d| k.vars[d].name.clone())
        .collect();
    let dims: Vec<String> = k.domain.iter().map(u64::to_string).collect();
    let _ = writeln!(
        s,
        "  for ({}) in [{}] {{",
        names.join(", "),
        dims.join(", ")
    );
    stmts(k, &k.body, 2, &mut s);
    s.push_str("  }\n}\n");
    s
}

/// A scheduled kernel: the same body inside the schedule's loops.
pub fn scheduled(sk: &Scheduled) -> String {
    let mut s = header(&sk.kernel);
    stmts(&sk.kernel, &sk.body, 1, &mut s);
    s.push_str("}\n");
    s
}

fn header(k: &Kernel) -> String {
    let params: Vec<String> = k
        .params
        .iter()
        .map(|p| {
            let a = match p.access {
                Access::Read => "in",
                Access::Write => "out",
            };
            format!("{a} {}: {}[{}]", p.name, p.ty.name(), p.len)
        })
        .collect();
    format!("kernel {}({}) {{\n", k.name, params.join(", "))
}

fn stmts(k: &Kernel, body: &[Stmt], depth: usize, s: &mut String) {
    let pad = "  ".repeat(depth);
    for st in body {
        match st {
            Stmt::Let(v, e) => {
                let _ = writeln!(s, "{pad}let {} = {}", k.var_info(*v).name, expr(k, e));
            }
            Stmt::Decl(v, e) => {
                let i = k.var_info(*v);
                let _ = writeln!(s, "{pad}var {}: {} = {}", i.name, i.ty.name(), expr(k, e));
            }
            Stmt::Set(v, e) => {
                let _ = writeln!(s, "{pad}{} = {}", k.var_info(*v).name, expr(k, e));
            }
            Stmt::Loop {
                var,
                extent,
                kind,
                body,
            } => {
                let kw = match kind {
                    LoopKind::Serial => "for",
                    LoopKind::Parallel => "parallel for",
                    LoopKind::Vector => "vector for",
                };
                let _ = writeln!(
                    s,
                    "{pad}{kw} {} in 0..{} {{",
                    k.var_info(*var).name,
                    expr(k, extent)
                );
                stmts(k, body, depth + 1, s);
                let _ = writeln!(s, "{pad}}}");
            }
            Stmt::Store { buf, index, value } => {
                let _ = writeln!(
                    s,
                    "{pad}{}[{}] = {}",
                    param_name(k, *buf),
                    expr(k, index),
                    expr(k, value)
                );
            }
            Stmt::If { cond, then, els } => {
                let _ = writeln!(s, "{pad}if {} {{", expr(k, cond));
                stmts(k, then, depth + 1, s);
                if !els.is_empty() {
                    let _ = writeln!(s, "{pad}}} else {{");
                    stmts(k, els, depth + 1, s);
                }
                let _ = writeln!(s, "{pad}}}");
            }
        }
    }
}

fn param_name(k: &Kernel, b: usize) -> String {
    k.params
        .get(b)
        .map_or_else(|| format!("<param {b}>"), |p| p.name.clone())
}

/// An expression, fully parenthesized below the top level so that a reader
/// never needs precedence rules.
pub fn expr(k: &Kernel, e: &Expr) -> String {
    match e {
        Expr::Int(n, t) => match t {
            crate::ir::Ty::I64 => n.to_string(),
            crate::ir::Ty::Bool => (*n != 0).to_string(),
            _ => format!("{n}{}", t.name()),
        },
        Expr::Float(x, t) => {
            let v = if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
                format!("{x:.1}")
            } else {
                format!("{x:?}")
            };
            if *t == crate::ir::Ty::F32 {
                v
            } else {
                format!("{v}{}", t.name())
            }
        }
        Expr::Var(v) => k
            .vars
            .get(v.0 as usize)
            .map_or_else(|| format!("<var {}>", v.0), |i| i.name.clone()),
        Expr::Load(b, i) => format!("{}[{}]", param_name(k, *b), expr(k, i)),
        Expr::Un(op, a) => format!("{}({})", op.name(), expr(k, a)),
        Expr::Bin(op, a, b) => {
            if op.infix() {
                format!("({} {} {})", expr(k, a), op.name(), expr(k, b))
            } else {
                format!("{}({}, {})", op.name(), expr(k, a), expr(k, b))
            }
        }
        Expr::Cmp(op, a, b) => format!("({} {} {})", expr(k, a), op.name(), expr(k, b)),
        Expr::Select(c, a, b) => format!("select({}, {}, {})", expr(k, c), expr(k, a), expr(k, b)),
        Expr::Cast(t, a) => format!("{}({})", t.name(), expr(k, a)),
    }
}
