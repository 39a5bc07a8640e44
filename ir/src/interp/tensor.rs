//! The interpreter's run-time tensor. Every float dtype is held as f64 values
//! that are exactly representable in the dtype (each kernel rounds its
//! results through `Tensor::from_f64`), signed integers as i64, unsigned as
//! u64. Computing in f64 and rounding once per op is at least as accurate as
//! any backend, which is what an oracle needs.

use super::minifloat;
use crate::data::{Payload, TensorData};
use crate::{Bytes, DClass, DType};
use half::{bf16, f16};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq)]
pub enum Storage {
    F(Vec<f64>),
    I(Vec<i64>),
    U(Vec<u64>),
    B(Vec<bool>),
    S(Vec<String>),
}

impl Storage {
    pub fn len(&self) -> usize {
        match self {
            Storage::F(v) => v.len(),
            Storage::I(v) => v.len(),
            Storage::U(v) => v.len(),
            Storage::B(v) => v.len(),
            Storage::S(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Storage,
}

/// Rounds an f64 to the nearest value of a float dtype (saturating FP8 casts
/// are handled by the Cast kernel; this is the plain IEEE-style rounding).
pub fn round_float(d: DType, x: f64) -> f64 {
    match d {
        DType::F64 => x,
        DType::F32 => x as f32 as f64,
        DType::F16 => f16::from_f64(x).to_f64(),
        DType::BF16 => bf16::from_f64(x).to_f64(),
        DType::F8E4M3FN
        | DType::F8E4M3FNUZ
        | DType::F8E5M2
        | DType::F8E5M2FNUZ
        | DType::F8E8M0
        | DType::F4E2M1 => minifloat::decode(d, minifloat::encode(d, x, false)),
        _ => x,
    }
}

/// Wraps an integer to the width of a signed dtype (two's complement).
pub fn wrap_signed(d: DType, x: i64) -> i64 {
    match d {
        DType::I32 => x as i32 as i64,
        DType::I16 => x as i16 as i64,
        DType::I8 => x as i8 as i64,
        DType::I4 => (x << 60) >> 60,
        DType::I2 => (x << 62) >> 62,
        _ => x,
    }
}

pub fn wrap_unsigned(d: DType, x: u64) -> u64 {
    match d {
        DType::U32 => x as u32 as u64,
        DType::U16 => x as u16 as u64,
        DType::U8 => x as u8 as u64,
        DType::U4 => x & 0xF,
        DType::U2 => x & 0x3,
        _ => x,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error("dtype {0} has no element-wise representation in the interpreter")]
    Unrepresentable(DType),
    #[error("{0}")]
    Data(#[from] crate::data::DataError),
}

impl Tensor {
    /// Float tensor; values are rounded to `dtype`.
    pub fn from_f64(dtype: DType, shape: Vec<usize>, mut v: Vec<f64>) -> Tensor {
        debug_assert_eq!(v.len(), shape.iter().product::<usize>());
        if dtype != DType::F64 {
            for x in &mut v {
                *x = round_float(dtype, *x);
            }
        }
        Tensor {
            dtype,
            shape,
            data: Storage::F(v),
        }
    }

    pub fn from_i64(dtype: DType, shape: Vec<usize>, mut v: Vec<i64>) -> Tensor {
        for x in &mut v {
            *x = wrap_signed(dtype, *x);
        }
        Tensor {
            dtype,
            shape,
            data: Storage::I(v),
        }
    }

    pub fn from_u64(dtype: DType, shape: Vec<usize>, mut v: Vec<u64>) -> Tensor {
        for x in &mut v {
            *x = wrap_unsigned(dtype, *x);
        }
        Tensor {
            dtype,
            shape,
            data: Storage::U(v),
        }
    }

    pub fn from_bool(shape: Vec<usize>, v: Vec<bool>) -> Tensor {
        Tensor {
            dtype: DType::Bool,
            shape,
            data: Storage::B(v),
        }
    }

    pub fn scalar_i64(x: i64) -> Tensor {
        Tensor::from_i64(DType::I64, vec![], vec![x])
    }

    pub fn scalar_f32(x: f32) -> Tensor {
        Tensor::from_f64(DType::F32, vec![], vec![x as f64])
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Every element as f64 (ints converted, bools as 0/1). `None` for strings.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        Some(match &self.data {
            Storage::F(v) => v.clone(),
            Storage::I(v) => v.iter().map(|&x| x as f64).collect(),
            Storage::U(v) => v.iter().map(|&x| x as f64).collect(),
            Storage::B(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
            Storage::S(_) => return None,
        })
    }

    /// Every element as i64 (floats truncated toward zero). `None` for strings.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match &self.data {
            Storage::F(v) => v.iter().map(|&x| x as i64).collect(),
            Storage::I(v) => v.clone(),
            Storage::U(v) => v.iter().map(|&x| x as i64).collect(),
            Storage::B(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Storage::S(_) => return None,
        })
    }

    /// A tensor of the same dtype with other data/shape: the constructor
    /// kernels use for ops that only move elements around.
    pub fn with_data(&self, shape: Vec<usize>, data: Storage) -> Tensor {
        Tensor {
            dtype: self.dtype,
            shape,
            data,
        }
    }

    /// Gathers elements by flat index (the building block of every
    /// data-movement kernel: transpose, slice, gather, expand, ...).
    pub fn take(&self, shape: Vec<usize>, idx: &[usize]) -> Tensor {
        fn pick<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i].clone()).collect()
        }
        let data = match &self.data {
            Storage::F(v) => Storage::F(pick(v, idx)),
            Storage::I(v) => Storage::I(pick(v, idx)),
            Storage::U(v) => Storage::U(pick(v, idx)),
            Storage::B(v) => Storage::B(pick(v, idx)),
            Storage::S(v) => Storage::S(pick(v, idx)),
        };
        self.with_data(shape, data)
    }

    /// Decodes a constant into run-time form.
    pub fn from_data(t: &TensorData) -> Result<Tensor, TensorError> {
        let n = t.numel();
        let shape = t.shape.clone();
        let raw = match &t.payload {
            Payload::Strings(s) => {
                return Ok(Tensor {
                    dtype: DType::String,
                    shape,
                    data: Storage::S(s.as_ref().clone()),
                });
            }
            Payload::Raw(b) => b.as_ref(),
        };
        let d = t.dtype;
        let le = |w: usize| raw.chunks_exact(w);
        // Sub-byte element i of width `b` bits, packed from the low bits up.
        let sub = |i: usize, b: usize| (raw[i * b / 8] >> ((i * b) % 8)) & ((1u8 << b) - 1);
        let nib = |i: usize| sub(i, 4);
        Ok(match d {
            DType::F64 => Tensor::from_f64(
                d,
                shape,
                le(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::F32 => Tensor::from_f64(
                d,
                shape,
                le(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
            ),
            DType::F16 => Tensor::from_f64(
                d,
                shape,
                le(2)
                    .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f64())
                    .collect(),
            ),
            DType::BF16 => Tensor::from_f64(
                d,
                shape,
                le(2)
                    .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f64())
                    .collect(),
            ),
            DType::F8E4M3FN
            | DType::F8E4M3FNUZ
            | DType::F8E5M2
            | DType::F8E5M2FNUZ
            | DType::F8E8M0 => Tensor {
                dtype: d,
                shape,
                data: Storage::F(raw.iter().map(|&c| minifloat::decode(d, c)).collect()),
            },
            DType::F4E2M1 => Tensor {
                dtype: d,
                shape,
                data: Storage::F((0..n).map(|i| minifloat::decode(d, nib(i))).collect()),
            },
            DType::I64 => Tensor::from_i64(
                d,
                shape,
                le(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::I32 => Tensor::from_i64(
                d,
                shape,
                le(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                    .collect(),
            ),
            DType::I16 => Tensor::from_i64(
                d,
                shape,
                le(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i64)
                    .collect(),
            ),
            DType::I8 => Tensor::from_i64(d, shape, raw.iter().map(|&c| c as i8 as i64).collect()),
            DType::I4 => Tensor::from_i64(d, shape, (0..n).map(|i| nib(i) as i64).collect()),
            DType::I2 => Tensor::from_i64(d, shape, (0..n).map(|i| sub(i, 2) as i64).collect()),
            DType::U64 => Tensor::from_u64(
                d,
                shape,
                le(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            DType::U32 => Tensor::from_u64(
                d,
                shape,
                le(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
                    .collect(),
            ),
            DType::U16 => Tensor::from_u64(
                d,
                shape,
                le(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as u64)
                    .collect(),
            ),
            DType::U8 => Tensor::from_u64(d, shape, raw.iter().map(|&c| c as u64).collect()),
            DType::U4 => Tensor::from_u64(d, shape, (0..n).map(|i| nib(i) as u64).collect()),
            DType::U2 => Tensor::from_u64(d, shape, (0..n).map(|i| sub(i, 2) as u64).collect()),
            DType::Bool => Tensor::from_bool(shape, raw.iter().map(|&c| c != 0).collect()),
            _ => return Err(TensorError::Unrepresentable(d)),
        })
    }

    /// Encodes into the raw little-endian layout of a constant.
    pub fn to_data(&self) -> Result<TensorData, TensorError> {
        let d = self.dtype;
        if let Storage::S(s) = &self.data {
            return Ok(TensorData::new(
                d,
                self.shape.clone(),
                Payload::Strings(Arc::new(s.clone())),
            )?);
        }
        if d.class() == DClass::Block || d == DType::String {
            return Err(TensorError::Unrepresentable(d));
        }
        let mut out: Vec<u8> = Vec::with_capacity(d.storage_bytes(self.numel()).unwrap_or(0));
        let f = self.to_f64_vec().unwrap_or_default();
        match (&self.data, d) {
            (Storage::F(_), DType::F64) => f.iter().for_each(|x| out.extend(x.to_le_bytes())),
            (Storage::F(_), DType::F32) => {
                f.iter().for_each(|&x| out.extend((x as f32).to_le_bytes()))
            }
            (Storage::F(_), DType::F16) => f
                .iter()
                .for_each(|&x| out.extend(f16::from_f64(x).to_le_bytes())),
            (Storage::F(_), DType::BF16) => f
                .iter()
                .for_each(|&x| out.extend(bf16::from_f64(x).to_le_bytes())),
            (Storage::F(_), DType::F4E2M1) => {
                pack_nibbles(&mut out, f.iter().map(|&x| minifloat::encode(d, x, false)))
            }
            (Storage::F(_), _) => f
                .iter()
                .for_each(|&x| out.push(minifloat::encode(d, x, false))),
            (Storage::I(v), DType::I4) => pack_nibbles(&mut out, v.iter().map(|&x| x as u8 & 0xF)),
            (Storage::I(v), DType::I2) => pack_bits(&mut out, 2, v.iter().map(|&x| x as u8)),
            (Storage::I(v), _) => {
                let w = d.bits() as usize / 8;
                v.iter().for_each(|x| out.extend(&x.to_le_bytes()[..w]))
            }
            (Storage::U(v), DType::U4) => pack_nibbles(&mut out, v.iter().map(|&x| x as u8 & 0xF)),
            (Storage::U(v), DType::U2) => pack_bits(&mut out, 2, v.iter().map(|&x| x as u8)),
            (Storage::U(v), _) => {
                let w = d.bits() as usize / 8;
                v.iter().for_each(|x| out.extend(&x.to_le_bytes()[..w]))
            }
            (Storage::B(v), _) => v.iter().for_each(|&x| out.push(u8::from(x))),
            (Storage::S(_), _) => unreachable!("handled above"),
        }
        Ok(TensorData::new(
            d,
            self.shape.clone(),
            Payload::Raw(Bytes::from_vec(out)),
        )?)
    }
}

fn pack_nibbles(out: &mut Vec<u8>, it: impl Iterator<Item = u8>) {
    pack_bits(out, 4, it)
}

/// Packs `bits`-wide values (2 or 4) from the low bits of each byte up, the
/// ONNX raw_data layout for sub-byte types.
fn pack_bits(out: &mut Vec<u8>, bits: usize, it: impl Iterator<Item = u8>) {
    let per = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let v: Vec<u8> = it.collect();
    for group in v.chunks(per) {
        let mut byte = 0u8;
        for (k, &x) in group.iter().enumerate() {
            byte |= (x & mask) << (k * bits);
        }
        out.push(byte);
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trip() {
        for t in [
            Tensor::from_f64(DType::F16, vec![3], vec![1.0, -2.5, 65504.0]),
            Tensor::from_f64(DType::BF16, vec![2], vec![1.0, 3.0]),
            Tensor::from_f64(DType::F8E4M3FN, vec![3], vec![1.0, -448.0, 0.0]),
            Tensor::from_f64(DType::F4E2M1, vec![3], vec![0.5, -6.0, 2.0]),
            Tensor::from_i64(DType::I4, vec![3], vec![-8, 7, -1]),
            Tensor::from_i64(DType::I2, vec![5], vec![-2, 1, -1, 0, 1]),
            Tensor::from_u64(DType::U2, vec![3], vec![3, 0, 2]),
            Tensor::from_i64(DType::I32, vec![2], vec![-5, i32::MAX as i64]),
            Tensor::from_u64(DType::U64, vec![1], vec![u64::MAX]),
            Tensor::from_bool(vec![2], vec![true, false]),
        ] {
            let back = Tensor::from_data(&t.to_data().unwrap()).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn rounding_and_wrapping() {
        let t = Tensor::from_f64(DType::F32, vec![1], vec![0.1]);
        assert_eq!(t.data, Storage::F(vec![0.1f32 as f64]));
        let t = Tensor::from_i64(DType::I8, vec![1], vec![200]);
        assert_eq!(t.data, Storage::I(vec![-56]));
    }
}
