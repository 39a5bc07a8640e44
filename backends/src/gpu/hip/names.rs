//! C++ names for a kernel's parameters and variables: the kernel IR's own
//! names where they are valid, unreserved and unique, else adjusted
//! (`_` appended, or a numeric suffix), so the HIP source reads like the
//! kernel-IR text.

use smelt_kernel::{Kernel, Var};
use std::collections::HashSet;

/// Words a name must not be: C++ keywords, HIP built-ins, the prelude's
/// types, and `total` (the kernel's last parameter).
const RESERVED: &[&str] = &[
    "alignas",
    "alignof",
    "and",
    "and_eq",
    "asm",
    "auto",
    "bitand",
    "bitor",
    "bool",
    "break",
    "case",
    "catch",
    "char",
    "char8_t",
    "char16_t",
    "char32_t",
    "class",
    "compl",
    "concept",
    "const",
    "consteval",
    "constexpr",
    "constinit",
    "const_cast",
    "continue",
    "co_await",
    "co_return",
    "co_yield",
    "decltype",
    "default",
    "delete",
    "do",
    "double",
    "dynamic_cast",
    "else",
    "enum",
    "explicit",
    "export",
    "extern",
    "false",
    "float",
    "for",
    "friend",
    "goto",
    "if",
    "inline",
    "int",
    "long",
    "mutable",
    "namespace",
    "new",
    "noexcept",
    "not",
    "not_eq",
    "nullptr",
    "operator",
    "or",
    "or_eq",
    "private",
    "protected",
    "public",
    "register",
    "reinterpret_cast",
    "requires",
    "return",
    "short",
    "signed",
    "sizeof",
    "static",
    "static_assert",
    "static_cast",
    "struct",
    "switch",
    "template",
    "this",
    "thread_local",
    "throw",
    "true",
    "try",
    "typedef",
    "typeid",
    "typename",
    "union",
    "unsigned",
    "using",
    "virtual",
    "void",
    "volatile",
    "wchar_t",
    "while",
    "xor",
    "xor_eq",
    "int8_t",
    "int16_t",
    "int32_t",
    "int64_t",
    "uint8_t",
    "uint16_t",
    "uint32_t",
    "uint64_t",
    "size_t",
    "threadIdx",
    "blockIdx",
    "blockDim",
    "gridDim",
    "warpSize",
    "total",
    "_Float16",
];

pub fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn clean(s: &str) -> String {
    let mut n: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if n.is_empty() || n.starts_with(|c: char| c.is_ascii_digit()) {
        n.insert(0, 'v');
    }
    // Leading `__`/`_X` and the prelude's `smelt_`/`SMELT_` prefixes are taken.
    let lower = n.to_ascii_lowercase();
    if n.starts_with('_') || lower.starts_with("smelt_") {
        n.insert(0, 'v');
    }
    if RESERVED.contains(&n.as_str()) {
        n.push('_');
    }
    n
}

pub struct Names {
    params: Vec<String>,
    vars: Vec<String>,
}

impl Names {
    pub fn for_kernel(k: &Kernel) -> Names {
        let mut used: HashSet<String> = HashSet::new();
        used.insert(k.name.clone());
        let mut take = |raw: &str| {
            let base = clean(raw);
            let mut n = base.clone();
            let mut i = 1;
            while used.contains(&n) {
                n = format!("{base}_{i}");
                i += 1;
            }
            used.insert(n.clone());
            n
        };
        let params = k.params.iter().map(|p| take(&p.name)).collect();
        let vars = k.vars.iter().map(|v| take(&v.name)).collect();
        Names { params, vars }
    }

    pub fn param(&self, i: usize) -> &str {
        self.params
            .get(i)
            .map(String::as_str)
            .unwrap_or("invalid_param")
    }

    pub fn var(&self, v: Var) -> &str {
        self.vars
            .get(v.0 as usize)
            .map(String::as_str)
            .unwrap_or("invalid_var")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean("x"), "x");
        assert_eq!(clean("add.x0"), "add_x0");
        assert_eq!(clean("0a"), "v0a");
        assert_eq!(clean("int"), "int_");
        assert_eq!(clean("total"), "total_");
        assert_eq!(clean("__x"), "v__x");
        assert_eq!(clean("smelt_exp"), "vsmelt_exp");
        assert!(is_ident("k0_add"));
        assert!(!is_ident("k0-add"));
    }
}
