//! The printer. Output depends only on the graph's content and order (never
//! on value ids), so a parsed graph prints back identically.

use super::PrintOptions;
use super::lexer::{ident_or_quote, quote, value_ref};
use crate::data::{Payload, TensorData};
use crate::{Attr, Dim, Graph, Node, TensorType, ValueId};
use std::fmt::Write;

/// The text of `g`, every constant inlined.
pub fn print(g: &Graph) -> String {
    print_with(g, &PrintOptions::default())
}

pub fn print_with(g: &Graph, opts: &PrintOptions) -> String {
    let mut out = String::new();
    out.push_str("graph ");
    out.push_str(&quote(&g.name));
    out.push('(');
    for (i, &id) in g.inputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        typed_value(&mut out, g, id);
    }
    out.push(')');
    if !g.dim_bounds.is_empty() {
        out.push_str(" bounds(");
        for (i, (name, b)) in g.dim_bounds.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={b}", ident_or_quote(name));
        }
        out.push(')');
    }
    out.push_str(" {\n");
    for (&id, data) in &g.consts {
        out.push_str("  ");
        out.push_str(&name_of(g, id));
        out.push_str(": ");
        // The constant's own type is the truth; a value typed otherwise
        // would not verify anyway.
        ty(&mut out, &data.ty());
        out.push_str(" = const ");
        payload(&mut out, data, opts);
        out.push('\n');
    }
    for node in &g.nodes {
        out.push_str("  ");
        self::node(&mut out, g, node, opts);
        out.push('\n');
    }
    out.push_str("  return");
    for (i, &id) in g.outputs.iter().enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(&name_of(g, id));
    }
    out.push_str("\n}\n");
    out
}

/// `%name`; an id outside the arena (which the verifier rejects) gets a
/// name that says so rather than a panic.
fn name_of(g: &Graph, id: ValueId) -> String {
    match g.values.get(id.index()) {
        Some(v) => value_ref(&v.name),
        None => value_ref(&format!("<dangling id {}>", id.0)),
    }
}

fn typed_value(out: &mut String, g: &Graph, id: ValueId) {
    out.push_str(&name_of(g, id));
    out.push_str(": ");
    match g.values.get(id.index()) {
        Some(v) => ty(out, &v.ty),
        None => out.push('?'),
    }
}

pub(super) fn ty(out: &mut String, t: &TensorType) {
    out.push_str(t.dtype.name());
    match t.shape.dims() {
        None => out.push_str("[*]"),
        Some(dims) => {
            out.push('[');
            for (i, d) in dims.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match d {
                    Dim::Static(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Dim::Unknown => out.push('?'),
                    Dim::Sym(s) => out.push_str(&ident_or_quote(s)),
                }
            }
            out.push(']');
        }
    }
}

fn node(out: &mut String, g: &Graph, n: &Node, opts: &PrintOptions) {
    for (i, o) in n.outputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match o {
            Some(id) => typed_value(out, g, *id),
            None => out.push('_'),
        }
    }
    if !n.outputs.is_empty() {
        out.push_str(" = ");
    }
    out.push_str(n.op.name());
    out.push('(');
    for (i, x) in n.inputs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match x {
            Some(id) => out.push_str(&name_of(g, *id)),
            None => out.push('_'),
        }
    }
    out.push(')');
    if !n.attrs.is_empty() {
        out.push_str(" {");
        for (i, (k, v)) in n.attrs.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&ident_or_quote(k));
            out.push('=');
            attr(out, v, opts);
        }
        out.push('}');
    }
    if !n.name.is_empty() {
        out.push_str(" name=");
        out.push_str(&quote(&n.name));
    }
}

/// Shortest text that reads back as the same f32, always with a `.` or an
/// exponent so that it never reads back as an int.
pub(super) fn float(f: f32) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        // Debug of a finite f32 is shortest-round-trip and keeps `.0`.
        format!("{f:?}")
    }
}

fn list<T>(out: &mut String, kind: &str, items: &[T], each: impl Fn(&T) -> String) {
    if items.is_empty() {
        out.push_str(kind);
    }
    out.push('[');
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&each(x));
    }
    out.push(']');
}

fn attr(out: &mut String, a: &Attr, opts: &PrintOptions) {
    match a {
        Attr::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Attr::Float(f) => out.push_str(&float(*f)),
        Attr::String(s) => out.push_str(&quote(s)),
        Attr::Ints(v) => list(out, "ints", v, |i| i.to_string()),
        Attr::Floats(v) => list(out, "floats", v, |f| float(*f)),
        Attr::Strings(v) => list(out, "strings", v, |s| quote(s)),
        Attr::Tensor(t) => {
            ty(out, &t.ty());
            out.push(' ');
            payload(out, t, opts);
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn payload(out: &mut String, data: &TensorData, opts: &PrintOptions) {
    match &data.payload {
        Payload::Raw(b) => {
            if let Some(o) = b.origin() {
                let path = o.path.to_string_lossy();
                let _ = write!(
                    out,
                    "file({}, offset={}, len={})",
                    quote(&path),
                    o.offset,
                    b.len()
                );
            } else if opts.inline_limit.is_some_and(|l| b.len() > l) {
                let _ = write!(out, "elided({})", b.len());
            } else {
                let bytes = b.as_ref();
                out.reserve(bytes.len() * 2 + 5);
                out.push_str("hex\"");
                for &x in bytes {
                    out.push(HEX[(x >> 4) as usize] as char);
                    out.push(HEX[(x & 15) as usize] as char);
                }
                out.push('"');
            }
        }
        Payload::Strings(s) => {
            let size: usize = s.iter().map(String::len).sum();
            if opts.inline_limit.is_some_and(|l| size > l) {
                let _ = write!(out, "elided({size})");
            } else {
                list(out, "", s, |x| quote(x));
            }
        }
    }
}
