//! Node attributes, ONNX-style: a sorted map from name to value, so printing
//! is deterministic.

use crate::op::AttrDefault;
use crate::{Op, TensorData};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    String(String),
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
    Tensor(TensorData),
}

impl Attr {
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Int(_) => "int",
            Attr::Float(_) => "float",
            Attr::String(_) => "string",
            Attr::Ints(_) => "ints",
            Attr::Floats(_) => "floats",
            Attr::Strings(_) => "strings",
            Attr::Tensor(_) => "tensor",
        }
    }
}

impl From<AttrDefault> for Attr {
    fn from(d: AttrDefault) -> Self {
        match d {
            AttrDefault::Int(i) => Attr::Int(i),
            AttrDefault::Float(f) => Attr::Float(f),
            AttrDefault::Str(s) => Attr::String(s.to_string()),
            AttrDefault::Ints(v) => Attr::Ints(v.to_vec()),
            AttrDefault::Floats(v) => Attr::Floats(v.to_vec()),
            AttrDefault::Strs(v) => Attr::Strings(v.iter().map(|s| s.to_string()).collect()),
        }
    }
}

pub type Attrs = BTreeMap<String, Attr>;

/// Fills in the spec defaults of `op` for attributes not given.
pub fn with_defaults(op: Op, mut attrs: Attrs) -> Attrs {
    for (name, d) in op.info().defaults {
        attrs
            .entry((*name).to_string())
            .or_insert_with(|| Attr::from(*d));
    }
    attrs
}
