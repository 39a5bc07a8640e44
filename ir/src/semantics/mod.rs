//! What each op means: its type rule (dtype and shape of the outputs from
//! those of the inputs, plus input values where the shape depends on them)
//! and its reference kernel (plain loops over `interp::Tensor`). One file per
//! op family; each exposes `lookup(op) -> Option<OpImpl>`.
//!
//! To add an op: put its `OpImpl` in the family file that fits (or a new
//! one listed in `FAMILIES`), and add a conformance case or filetest.

use crate::interp::Tensor;
use crate::{Attr, DType, Dim, Node, Op, Shape, TensorType};

mod compose;
pub mod elementwise;
pub mod fused;
pub mod kv;
pub mod layout;
pub mod misc;
pub mod nn;
pub mod reduce;
pub mod shape_ops;
pub mod strings;
pub mod training;
pub mod util;

/// Everything a type rule or kernel may look at besides its operands.
pub struct Ctx<'a> {
    pub node: &'a Node,
}

/// A kernel or type-rule failure; the caller adds which node it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError(pub String);

impl<T: Into<String>> From<T> for OpError {
    fn from(s: T) -> Self {
        OpError(s.into())
    }
}

pub type OpResult<T> = Result<T, OpError>;

/// Returns early with an `OpError` built from a format string.
#[macro_export]
macro_rules! op_bail {
    ($($t:tt)*) => { return Err($crate::semantics::OpError(format!($($t)*))) };
}

/// Input types for a type rule; `value` holds an input's contents when it is
/// a known constant (Reshape's target shape, Slice's starts, ...).
pub struct TypeInput<'a> {
    pub ty: &'a TensorType,
    pub value: Option<&'a Tensor>,
}

/// Output types, one per node output (including unwanted optional ones).
pub type InferFn = fn(&Ctx, &[Option<TypeInput>]) -> OpResult<Vec<TensorType>>;
/// Output tensors, one per node output at least up to the last wanted one.
pub type KernelFn = fn(&Ctx, &[Option<&Tensor>]) -> OpResult<Vec<Tensor>>;

#[derive(Clone, Copy)]
pub struct OpImpl {
    pub infer: InferFn,
    pub kernel: KernelFn,
}

const FAMILIES: &[fn(Op) -> Option<OpImpl>] = &[
    elementwise::lookup,
    shape_ops::lookup,
    nn::lookup,
    reduce::lookup,
    fused::lookup,
    layout::lookup,
    kv::lookup,
    misc::lookup,
    strings::lookup,
    training::lookup,
];

/// The semantics of `op`, if smelt implements it.
pub fn lookup(op: Op) -> Option<OpImpl> {
    FAMILIES.iter().find_map(|f| f(op))
}

impl<'a> Ctx<'a> {
    pub fn new(node: &'a Node) -> Self {
        Ctx { node }
    }

    pub fn attr(&self, name: &str) -> Option<&'a Attr> {
        self.node.attrs.get(name)
    }

    pub fn int(&self, name: &str, default: i64) -> OpResult<i64> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Int(i)) => Ok(*i),
            Some(a) => op_bail!("attribute `{name}` should be an int, found {}", a.kind()),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> OpResult<f32> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Float(f)) => Ok(*f),
            Some(Attr::Int(i)) => Ok(*i as f32),
            Some(a) => op_bail!("attribute `{name}` should be a float, found {}", a.kind()),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> OpResult<String> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(Attr::String(s)) => Ok(s.clone()),
            Some(a) => op_bail!("attribute `{name}` should be a string, found {}", a.kind()),
        }
    }

    /// `None` if absent.
    pub fn ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(Attr::Int(i)) => Ok(Some(vec![*i])),
            Some(a) => op_bail!("attribute `{name}` should be ints, found {}", a.kind()),
        }
    }

    pub fn floats(&self, name: &str) -> OpResult<Option<Vec<f32>>> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v.clone())),
            Some(Attr::Float(f)) => Ok(Some(vec![*f])),
            Some(a) => op_bail!("attribute `{name}` should be floats, found {}", a.kind()),
        }
    }

    /// Attribute `to`/`dtype` style: an ONNX TensorProto dtype number.
    pub fn dtype(&self, name: &str) -> OpResult<Option<DType>> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Int(code)) => match util::dtype_from_onnx(*code) {
                Some(d) => Ok(Some(d)),
                None => op_bail!("attribute `{name}`: unsupported ONNX dtype {code}"),
            },
            Some(a) => op_bail!("attribute `{name}` should be an int, found {}", a.kind()),
        }
    }
}

/// Convenience for type rules: input `i` or an error naming it.
pub fn input<'x, 'a>(ins: &'x [Option<TypeInput<'a>>], i: usize) -> OpResult<&'x TypeInput<'a>> {
    match ins.get(i) {
        Some(Some(t)) => Ok(t),
        _ => op_bail!("missing required input {i}"),
    }
}

/// Convenience for kernels: input `i` or an error naming it.
pub fn operand<'a>(ins: &[Option<&'a Tensor>], i: usize) -> OpResult<&'a Tensor> {
    match ins.get(i) {
        Some(Some(t)) => Ok(t),
        _ => op_bail!("missing required input {i}"),
    }
}

/// A type whose shape is only known by rank (or not at all).
pub fn unknown_dims(dtype: DType, rank: Option<usize>) -> TensorType {
    TensorType::new(dtype, Shape(rank.map(|r| vec![Dim::Unknown; r])))
}
