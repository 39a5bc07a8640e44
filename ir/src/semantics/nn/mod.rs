//! Neural-network ops: matrix products, convolution, pooling,
//! normalization, softmax, attention. Kernels compute in f64 and round
//! once per output through `Tensor::from_f64`.

use super::{OpImpl, OpResult, TypeInput};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{DClass, DType, Dim, Op, op_bail};

mod attention;
mod conv;
mod detection;
mod einsum;
mod linear_attention;
mod matmul;
mod norm;
mod pool;
mod rnn;
mod softmax;
mod window;

pub fn lookup(op: Op) -> Option<OpImpl> {
    matmul::lookup(op)
        .or_else(|| conv::lookup(op))
        .or_else(|| pool::lookup(op))
        .or_else(|| norm::lookup(op))
        .or_else(|| softmax::lookup(op))
        .or_else(|| attention::lookup(op))
        .or_else(|| einsum::lookup(op))
        .or_else(|| rnn::lookup(op))
        .or_else(|| detection::lookup(op))
        .or_else(|| linear_attention::lookup(op))
}

/// Float dtypes the NN kernels accept (the FP8/FP4 types are storage
/// formats that ONNX does not define these ops for).
fn is_nn_float(d: DType) -> bool {
    matches!(d, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
}

fn check_float(what: &str, d: DType) -> OpResult<()> {
    if !is_nn_float(d) {
        op_bail!("{what} must be f64, f32, f16 or bf16, found {d}");
    }
    Ok(())
}

/// The f64 elements of a float tensor.
fn fdata<'a>(t: &'a Tensor, what: &str) -> OpResult<&'a [f64]> {
    match &t.data {
        Storage::F(v) => Ok(v),
        _ => op_bail!("{what} must be a float tensor, found {}", t.dtype),
    }
}

/// Every element as f64 whatever the numeric dtype (integer ops compute in
/// f64 too: exact for the magnitudes quantized kernels produce).
fn num_data(t: &Tensor, what: &str) -> OpResult<Vec<f64>> {
    match t.to_f64_vec() {
        Some(v) => Ok(v),
        None => op_bail!("{what} must be numeric, found {}", t.dtype),
    }
}

/// Builds a result of dtype `d` from f64 values: floats round, integers
/// round to nearest and wrap.
fn from_f64_any(d: DType, shape: Vec<usize>, v: Vec<f64>) -> Tensor {
    match d.class() {
        DClass::Signed => Tensor::from_i64(d, shape, v.iter().map(|&x| x.round() as i64).collect()),
        DClass::Unsigned => {
            Tensor::from_u64(d, shape, v.iter().map(|&x| x.round() as u64).collect())
        }
        DClass::Bool => Tensor::from_bool(shape, v.iter().map(|&x| x != 0.0).collect()),
        _ => Tensor::from_f64(d, shape, v),
    }
}

fn ty_dims(t: &TypeInput) -> Option<Vec<Dim>> {
    t.ty.shape.dims().map(<[Dim]>::to_vec)
}

/// (outer, len, inner) sizes around `axis`: element (o, i, j) of a
/// row-major tensor sits at `(o * len + i) * inner + j`.
fn axis_split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// How many worker threads to use for `work` multiply-adds: threads only
/// pay off on large kernels.
fn threads_for(work: usize) -> usize {
    if work < 1 << 20 {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Runs `f(i, row)` for every `row_len`-sized row of `out`, spreading
/// contiguous blocks of rows over threads. Each row is written by exactly
/// one thread and the per-row computation does not depend on the split, so
/// results are identical for any thread count.
fn par_rows<F>(out: &mut [f64], row_len: usize, work: usize, f: F)
where
    F: Fn(usize, &mut [f64]) + Sync,
{
    if row_len == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / row_len;
    let nt = threads_for(work).min(rows);
    if nt <= 1 {
        for (i, r) in out.chunks_mut(row_len).enumerate() {
            f(i, r);
        }
        return;
    }
    let per = rows.div_ceil(nt);
    std::thread::scope(|s| {
        for (b, block) in out.chunks_mut(per * row_len).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (j, r) in block.chunks_mut(row_len).enumerate() {
                    f(b * per + j, r);
                }
            });
        }
    });
}

#[cfg(test)]
pub(crate) mod testutil {
    use crate::interp::Tensor;
    use crate::semantics::{Ctx, OpResult, lookup};
    use crate::{Attr, Attrs, DType, Node, Op};

    pub fn node(op: Op, attrs: &[(&str, Attr)]) -> Node {
        let mut a = Attrs::new();
        for (k, v) in attrs {
            a.insert((*k).to_string(), v.clone());
        }
        Node {
            op,
            name: "t".into(),
            inputs: vec![],
            outputs: vec![],
            attrs: a,
        }
    }

    pub fn run(op: Op, attrs: &[(&str, Attr)], ins: &[Option<&Tensor>]) -> OpResult<Vec<Tensor>> {
        let n = node(op, attrs);
        let imp = lookup(op).expect("op implemented");
        (imp.kernel)(&Ctx::new(&n), ins)
    }

    pub fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
        Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec())
    }

    pub fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        f32t(shape, &(0..n).map(|x| x as f64).collect::<Vec<_>>())
    }

    pub fn assert_close(t: &Tensor, want: &[f64]) {
        let got = t.to_f64_vec().expect("numeric");
        assert_eq!(got.len(), want.len(), "length of {got:?}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs() + 1e-5,
                "element {i}: got {g}, want {w} (all: {got:?})"
            );
        }
    }
}
