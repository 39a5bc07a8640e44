//! The op set. One list, generated from the ONNX operator schemas
//! (`table.rs`), defines the `Op` enum, each op's domain and the attribute
//! defaults from the spec. The IR gives every op the semantics of its newest
//! ONNX version; the importer rewrites older forms into it.

use std::fmt;
use std::str::FromStr;

/// An attribute default from the ONNX spec.
#[derive(Clone, Copy, Debug)]
pub enum AttrDefault {
    Int(i64),
    Float(f32),
    Str(&'static str),
    Ints(&'static [i64]),
    Floats(&'static [f32]),
    Strs(&'static [&'static str]),
}

#[derive(Debug)]
pub struct OpInfo {
    pub name: &'static str,
    pub domain: &'static str,
    /// The ONNX opset version whose semantics the IR op has.
    pub since_version: i64,
    pub defaults: &'static [(&'static str, AttrDefault)],
}

macro_rules! define_ops {
    ($($op:ident = ($domain:literal, $since:literal, [$($default:expr),*]),)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Op { $($op),* }

        impl Op {
            pub const ALL: &'static [Op] = &[$(Op::$op),*];

            pub fn info(self) -> &'static OpInfo {
                match self {
                    $(Op::$op => {
                        static INFO: OpInfo = OpInfo {
                            name: stringify!($op),
                            domain: $domain,
                            since_version: $since,
                            defaults: &[$($default),*],
                        };
                        &INFO
                    })*
                }
            }
        }
    };
}

include!("table.rs");

impl Op {
    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn domain(self) -> &'static str {
        self.info().domain
    }

    /// Looks an op up by ONNX domain ("" and "ai.onnx" are the same) and name.
    pub fn from_onnx(domain: &str, name: &str) -> Option<Op> {
        let domain = if domain.is_empty() { "ai.onnx" } else { domain };
        let op: Op = name.parse().ok()?;
        (op.domain() == domain).then_some(op)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown op `{0}`")]
pub struct UnknownOp(pub String);

impl FromStr for Op {
    type Err = UnknownOp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        static SORTED: std::sync::OnceLock<Vec<(&'static str, Op)>> = std::sync::OnceLock::new();
        let v = SORTED.get_or_init(|| {
            let mut v: Vec<_> = Op::ALL.iter().map(|&o| (o.name(), o)).collect();
            v.sort();
            v
        });
        v.binary_search_by(|(n, _)| (*n).cmp(s))
            .map(|i| v[i].1)
            .map_err(|_| UnknownOp(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup() {
        assert_eq!(Op::from_onnx("", "Conv"), Some(Op::Conv));
        assert_eq!(Op::from_onnx("ai.onnx", "Conv"), Some(Op::Conv));
        assert_eq!(Op::from_onnx("com.example", "Conv"), None);
        assert_eq!(
            Op::from_onnx("ai.onnx.ml", "LabelEncoder"),
            Some(Op::LabelEncoder)
        );
        for &op in Op::ALL {
            assert_eq!(op.name().parse::<Op>().unwrap(), op);
        }
    }
}
