//! Element types. The set is ONNX's, plus the OCP microscaling (MX) block
//! formats, which are declared here so graphs can carry them before their
//! arithmetic exists.

use std::fmt;
use std::str::FromStr;

macro_rules! dtypes {
    ($($v:ident = $name:literal, $bits:literal, $class:ident;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DType { $($v),* }

        impl DType {
            pub const ALL: &'static [DType] = &[$(DType::$v),*];

            /// The name used in the text form (`f32`, `bf16`, `f8e4m3fn`, ...).
            pub fn name(self) -> &'static str {
                match self { $(DType::$v => $name),* }
            }

            /// Storage bits per element. MX formats report the bits of one
            /// element; their shared scale is accounted per 32-element block.
            pub fn bits(self) -> u32 {
                match self { $(DType::$v => $bits),* }
            }

            pub fn class(self) -> DClass {
                match self { $(DType::$v => DClass::$class),* }
            }
        }
    };
}

/// How the interpreter stores and computes with a dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DClass {
    Float,
    Signed,
    Unsigned,
    Bool,
    String,
    /// Block-scaled formats: no element-wise arithmetic yet.
    Block,
}

dtypes! {
    F64 = "f64", 64, Float;
    F32 = "f32", 32, Float;
    F16 = "f16", 16, Float;
    BF16 = "bf16", 16, Float;
    F8E4M3FN = "f8e4m3fn", 8, Float;
    F8E4M3FNUZ = "f8e4m3fnuz", 8, Float;
    F8E5M2 = "f8e5m2", 8, Float;
    F8E5M2FNUZ = "f8e5m2fnuz", 8, Float;
    F8E8M0 = "f8e8m0", 8, Float;
    F4E2M1 = "f4e2m1", 4, Float;
    I64 = "i64", 64, Signed;
    I32 = "i32", 32, Signed;
    I16 = "i16", 16, Signed;
    I8 = "i8", 8, Signed;
    I4 = "i4", 4, Signed;
    I2 = "i2", 2, Signed;
    U64 = "u64", 64, Unsigned;
    U32 = "u32", 32, Unsigned;
    U16 = "u16", 16, Unsigned;
    U8 = "u8", 8, Unsigned;
    U4 = "u4", 4, Unsigned;
    U2 = "u2", 2, Unsigned;
    Bool = "bool", 8, Bool;
    String = "string", 0, String;
    MxFp8E4M3 = "mxfp8e4m3", 8, Block;
    MxFp8E5M2 = "mxfp8e5m2", 8, Block;
    MxFp6E3M2 = "mxfp6e3m2", 6, Block;
    MxFp6E2M3 = "mxfp6e2m3", 6, Block;
    MxFp4 = "mxfp4", 4, Block;
    MxInt8 = "mxint8", 8, Block;
}

impl DType {
    pub fn is_float(self) -> bool {
        self.class() == DClass::Float
    }

    pub fn is_int(self) -> bool {
        matches!(self.class(), DClass::Signed | DClass::Unsigned)
    }

    /// Elements per shared scale for block formats (OCP MX: 32).
    pub fn block_size(self) -> Option<usize> {
        (self.class() == DClass::Block).then_some(32)
    }

    /// Bytes needed to store `n` elements in the packed layout that ONNX
    /// raw_data uses (sub-byte types packed from the low bits up). `None` for
    /// strings, which have no fixed width, and on overflow.
    pub fn storage_bytes(self, n: usize) -> Option<usize> {
        match self.bits() {
            0 => None,
            2 => Some(n.div_ceil(4)),
            4 => Some(n.div_ceil(2)),
            6 => n.checked_mul(6).map(|b| b.div_ceil(8)),
            b => n.checked_mul(b as usize / 8),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}`")]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for &d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        assert!("f31".parse::<DType>().is_err());
    }

    #[test]
    fn packed_sizes() {
        assert_eq!(DType::I4.storage_bytes(3), Some(2));
        assert_eq!(DType::U2.storage_bytes(5), Some(2));
        assert_eq!(DType::F32.storage_bytes(3), Some(12));
        assert_eq!(DType::String.storage_bytes(3), None);
        assert_eq!(DType::F64.storage_bytes(usize::MAX), None);
    }
}
