//! Shape and data-movement ops. Kernels compute a flat index map and call
//! `Tensor::take`, so every dtype (strings included) moves the same way;
//! only ops that do arithmetic (scatter reductions, cumulative sums, resize)
//! look at the values.

mod basic;
mod gather;
mod grid_sample;
mod layout;
mod resize;
pub use resize::{ResizePlan, Taps, resize_plan};
mod sort;
mod spatial;

use super::{InferFn, KernelFn, OpImpl, OpResult, TypeInput};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{DClass, DType, Dim, Op, Shape, TensorType, op_bail};

pub fn lookup(op: Op) -> Option<OpImpl> {
    let (infer, kernel): (InferFn, KernelFn) = basic::lookup(op)
        .or_else(|| layout::lookup(op))
        .or_else(|| gather::lookup(op))
        .or_else(|| sort::lookup(op))
        .or_else(|| resize::lookup(op))
        .or_else(|| spatial::lookup(op))
        .or_else(|| grid_sample::lookup(op))?;
    Some(OpImpl { infer, kernel })
}

type Pair = (InferFn, KernelFn);
type InferOut = OpResult<Vec<TensorType>>;
type KernelOut = OpResult<Vec<Tensor>>;

fn tt(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape(Some(dims)))
}

fn sdims(v: &[usize]) -> Vec<Dim> {
    v.iter().map(|&d| Dim::Static(d as u64)).collect()
}

/// Constant integer contents of optional input `i`, when known.
fn cints(ins: &[Option<TypeInput>], i: usize) -> Option<Vec<i64>> {
    ins.get(i)?.as_ref()?.value?.to_i64_vec()
}

/// Whether optional input `i` is given.
fn has_in<T>(ins: &[Option<T>], i: usize) -> bool {
    matches!(ins.get(i), Some(Some(_)))
}

/// Integer contents of optional run-time input `i` (`None` if absent).
fn kints(ins: &[Option<&Tensor>], i: usize) -> OpResult<Option<Vec<i64>>> {
    match ins.get(i) {
        Some(Some(t)) => match t.to_i64_vec() {
            Some(v) => Ok(Some(v)),
            None => op_bail!("input {i} should hold integers, found {}", t.dtype),
        },
        _ => Ok(None),
    }
}

/// Resolves an axis in `[-rank, rank)`.
fn axis(a: i64, rank: usize) -> OpResult<usize> {
    super::util::norm_axis(a, rank)
}

/// Product of static dims, or Unknown.
fn dim_product(d: &[Dim]) -> Dim {
    let mut n = 1u64;
    for x in d {
        match x {
            Dim::Static(k) => n = n.saturating_mul(*k),
            _ => return Dim::Unknown,
        }
    }
    Dim::Static(n)
}

fn checked_numel(shape: &[usize]) -> OpResult<usize> {
    match crate::shape::checked_numel(shape) {
        Some(n) => Ok(n),
        None => op_bail!("shape {shape:?} has too many elements"),
    }
}

/// Converts a requested dim from a model to usize, refusing negatives.
fn to_dim(v: i64, what: &str) -> OpResult<usize> {
    if v < 0 {
        op_bail!("{what} must not be negative, found {v}");
    }
    Ok(v as usize)
}

/// Advances a row-major multi-index; false once it wraps around.
fn next_index(idx: &mut [usize], shape: &[usize]) -> bool {
    for d in (0..shape.len()).rev() {
        idx[d] += 1;
        if idx[d] < shape[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// Calls `f` with every multi-index of `shape` in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut idx = vec![0usize; shape.len()];
    loop {
        f(&idx);
        if !next_index(&mut idx, shape) {
            break;
        }
    }
}

/// The elements of all `ts` one after another, as a flat tensor; index maps
/// then refer to positions in it (how Pad mixes in its fill value, scatter
/// its updates, and so on).
fn cat_flat(ts: &[&Tensor]) -> OpResult<Tensor> {
    let Some(first) = ts.first() else {
        op_bail!("nothing to concatenate");
    };
    for t in ts {
        if t.dtype != first.dtype {
            op_bail!("mixed dtypes {} and {}", first.dtype, t.dtype);
        }
    }
    fn join<T: Clone>(parts: Vec<&Vec<T>>) -> Vec<T> {
        parts.into_iter().flatten().cloned().collect()
    }
    macro_rules! gather {
        ($var:ident) => {{
            let mut parts = Vec::new();
            for t in ts {
                match &t.data {
                    Storage::$var(v) => parts.push(v),
                    _ => op_bail!("inconsistent storage for {}", t.dtype),
                }
            }
            Storage::$var(join(parts))
        }};
    }
    let data = match &first.data {
        Storage::F(_) => gather!(F),
        Storage::I(_) => gather!(I),
        Storage::U(_) => gather!(U),
        Storage::B(_) => gather!(B),
        Storage::S(_) => gather!(S),
    };
    let n = data.len();
    Ok(first.with_data(vec![n], data))
}

/// A one-element tensor holding zero (false, "") of `dtype`.
fn zero_of(dtype: DType) -> OpResult<Tensor> {
    Ok(match dtype.class() {
        DClass::Float => Tensor::from_f64(dtype, vec![1], vec![0.0]),
        DClass::Signed => Tensor::from_i64(dtype, vec![1], vec![0]),
        DClass::Unsigned => Tensor::from_u64(dtype, vec![1], vec![0]),
        DClass::Bool => Tensor::from_bool(vec![1], vec![false]),
        DClass::String => Tensor {
            dtype,
            shape: vec![1],
            data: Storage::S(vec![String::new()]),
        },
        DClass::Block => op_bail!("dtype {dtype} is not supported here"),
    })
}

/// Checks that every index in a map is inside `n` elements, so `take`
/// cannot panic on a map built from bad model data.
fn checked_take(t: &Tensor, shape: Vec<usize>, idx: &[usize]) -> OpResult<Tensor> {
    let n = t.numel();
    if let Some(bad) = idx.iter().find(|&&i| i >= n) {
        op_bail!("internal index {bad} out of range for {n} elements");
    }
    Ok(t.take(shape, idx))
}

/// Normalizes an index into `[0, n)` allowing negative (from-the-end) values.
fn wrap_index(i: i64, n: usize) -> OpResult<usize> {
    let j = if i < 0 { i + n as i64 } else { i };
    if j < 0 || j >= n as i64 {
        op_bail!("index {i} is out of bounds for a dimension of size {n}");
    }
    Ok(j as usize)
}

#[cfg(test)]
mod test_util;
