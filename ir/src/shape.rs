//! Shapes with static, symbolic and unknown dimensions, and tensor types.

use crate::DType;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Static(u64),
    /// A named dimension such as a batch or sequence length; two dims with
    /// the same name are equal at run time.
    Sym(String),
    /// Not known at compile time and not named.
    Unknown,
}

impl Dim {
    pub fn as_static(&self) -> Option<u64> {
        match self {
            Dim::Static(n) => Some(*n),
            _ => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Static(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// `None` dims means the rank itself is unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape(pub Option<Vec<Dim>>);

impl Shape {
    pub fn unknown() -> Self {
        Shape(None)
    }

    pub fn from_static(dims: &[usize]) -> Self {
        Shape(Some(dims.iter().map(|&d| Dim::Static(d as u64)).collect()))
    }

    pub fn dims(&self) -> Option<&[Dim]> {
        self.0.as_deref()
    }

    pub fn rank(&self) -> Option<usize> {
        self.0.as_ref().map(Vec::len)
    }

    /// All dims static: the concrete shape.
    pub fn as_static(&self) -> Option<Vec<usize>> {
        self.0
            .as_ref()?
            .iter()
            .map(|d| d.as_static().map(|n| n as usize))
            .collect()
    }

    /// Whether a concrete run-time shape is an instance of this shape
    /// (symbolic and unknown dims match anything; symbol consistency across
    /// values is checked by the caller).
    pub fn admits(&self, concrete: &[usize]) -> bool {
        match &self.0 {
            None => true,
            Some(d) => {
                d.len() == concrete.len()
                    && d.iter().zip(concrete).all(|(d, &c)| match d {
                        Dim::Static(n) => *n == c as u64,
                        _ => true,
                    })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType { dtype, shape }
    }

    pub fn of_static(dtype: DType, dims: &[usize]) -> Self {
        TensorType::new(dtype, Shape::from_static(dims))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("[*]"),
            Some(d) => {
                f.write_str("[")?;
                for (i, x) in d.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// Element count of a concrete shape, refusing overflow of i64 (the largest
/// count ONNX can describe).
pub fn checked_numel(dims: &[usize]) -> Option<usize> {
    let mut n: usize = 1;
    for &d in dims {
        n = n.checked_mul(d)?;
    }
    (n as u128 <= i64::MAX as u128).then_some(n)
}
