//! Runs a kernel on hand-built tensors, and checks that the type rule (given
//! every input as a constant) agrees with what the kernel produced.

use super::super::{Ctx, TypeInput};
use crate::interp::Tensor;
use crate::interp::tensor::Storage;
use crate::{Attr, Attrs, DType, Node, Op, TensorType, ValueId};

pub fn node(op: Op, attrs: &[(&str, Attr)], n_out: usize) -> Node {
    let attrs: Attrs = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Node {
        op,
        name: String::new(),
        inputs: vec![],
        outputs: vec![Some(ValueId(0)); n_out],
        attrs,
    }
}

/// Runs `op` and checks the inferred types (all inputs constant) admit
/// the results and that the shapes inferred are fully static.
pub fn run_n(op: Op, attrs: &[(&str, Attr)], ins: &[Option<&Tensor>], n_out: usize) -> Vec<Tensor> {
    let n = node(op, attrs, n_out);
    let ctx = Ctx::new(&n);
    let imp = super::lookup(op).expect("op implemented");
    let outs = (imp.kernel)(&ctx, ins).expect("kernel ok");
    let tys: Vec<TensorType> = ins
        .iter()
        .map(|t| t.map(|t| TensorType::of_static(t.dtype, &t.shape)))
        .map(|t| t.unwrap_or_else(|| TensorType::of_static(DType::F32, &[])))
        .collect();
    let tins: Vec<Option<TypeInput>> = ins
        .iter()
        .zip(&tys)
        .map(|(t, ty)| t.map(|t| TypeInput { ty, value: Some(t) }))
        .collect();
    let inferred = (imp.infer)(&ctx, &tins).expect("infer ok");
    assert_eq!(inferred.len(), n_out, "one type per output");
    for (t, ty) in outs.iter().zip(&inferred) {
        assert_eq!(t.dtype, ty.dtype);
        assert!(
            ty.shape.admits(&t.shape),
            "inferred {ty} but kernel gave {:?}",
            t.shape
        );
    }
    outs
}

pub fn run(op: Op, attrs: &[(&str, Attr)], ins: &[Option<&Tensor>]) -> Tensor {
    run_n(op, attrs, ins, 1).remove(0)
}

pub fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec())
}

pub fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(DType::I64, shape.to_vec(), v.to_vec())
}

pub fn strt(shape: &[usize], v: &[&str]) -> Tensor {
    Tensor {
        dtype: DType::String,
        shape: shape.to_vec(),
        data: Storage::S(v.iter().map(|s| s.to_string()).collect()),
    }
}

pub fn fvals(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().expect("numeric")
}

pub fn ivals(t: &Tensor) -> Vec<i64> {
    t.to_i64_vec().expect("numeric")
}

pub fn arange(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    f32t(shape, &(0..n).map(|x| x as f64).collect::<Vec<_>>())
}
