//! Unit tests of the reduction family. Expected values were computed with
//! numpy (the expression is given next to each) unless they are facts.

use super::lookup;
use crate::interp::{Storage, Tensor};
use crate::semantics::{Ctx, TypeInput};
use crate::{Attr, DType, Dim, Node, Op, Shape, TensorType, ValueId};

pub(crate) fn node(op: Op, n_in: usize, n_out: usize, attrs: &[(&str, Attr)]) -> Node {
    Node {
        op,
        name: String::new(),
        inputs: (0..n_in).map(|i| Some(ValueId(i as u32))).collect(),
        outputs: (0..n_out)
            .map(|i| Some(ValueId((n_in + i) as u32)))
            .collect(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    }
}

/// Runs the type rule (with every input known as a constant) and the
/// kernel, checks that they agree, and returns the kernel's outputs.
pub(crate) fn run(
    op: Op,
    attrs: &[(&str, Attr)],
    ins: &[Option<&Tensor>],
    n_out: usize,
) -> Vec<Tensor> {
    let n = node(op, ins.len(), n_out, attrs);
    let ctx = Ctx::new(&n);
    let imp = lookup(op).expect("op is implemented");
    let tys: Vec<Option<TensorType>> = ins
        .iter()
        .map(|t| t.map(|t| TensorType::of_static(t.dtype, &t.shape)))
        .collect();
    let tins: Vec<Option<TypeInput>> = ins
        .iter()
        .zip(&tys)
        .map(|(t, ty)| ty.as_ref().map(|ty| TypeInput { ty, value: *t }))
        .collect();
    let types = (imp.infer)(&ctx, &tins).expect("type rule");
    let outs = (imp.kernel)(&ctx, ins).expect("kernel");
    for (t, ty) in outs.iter().zip(&types) {
        assert_eq!(t.dtype, ty.dtype, "{op} dtype");
        assert!(
            ty.shape.admits(&t.shape),
            "{op}: {:?} vs {}",
            t.shape,
            ty.shape
        );
    }
    outs
}

pub(crate) fn f32t(shape: &[usize], v: &[f64]) -> Tensor {
    Tensor::from_f64(DType::F32, shape.to_vec(), v.to_vec())
}

pub(crate) fn i64t(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_i64(DType::I64, shape.to_vec(), v.to_vec())
}

pub(crate) fn floats(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().expect("numeric")
}

/// |a - e| <= atol + rtol * |e| elementwise (the conformance tolerance).
pub(crate) fn close(a: &[f64], e: &[f64], rtol: f64) {
    assert_eq!(a.len(), e.len(), "{a:?} vs {e:?}");
    for (x, y) in a.iter().zip(e) {
        let ok = (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-7 + rtol * y.abs();
        assert!(ok, "{a:?} vs {e:?}");
    }
}

fn x3() -> Tensor {
    f32t(
        &[3, 2, 2],
        &[5., 1., 20., 2., 30., 1., 40., 2., 55., 1., 60., 2.],
    )
}

fn keep(k: i64) -> (&'static str, Attr) {
    ("keepdims", Attr::Int(k))
}

#[test]
fn float_reductions() {
    let x = x3();
    // np.sum(x, axis=(1,), keepdims=True)
    let o = run(Op::ReduceSum, &[], &[Some(&x), Some(&i64t(&[1], &[1]))], 1);
    assert_eq!(o[0].shape, vec![3, 1, 2]);
    close(&floats(&o[0]), &[25., 3., 70., 3., 115., 3.], 1e-6);
    // np.mean(x, axis=(-2,))
    let o = run(
        Op::ReduceMean,
        &[keep(0)],
        &[Some(&x), Some(&i64t(&[1], &[-2]))],
        1,
    );
    assert_eq!(o[0].shape, vec![3, 2]);
    close(&floats(&o[0]), &[12.5, 1.5, 35., 1.5, 57.5, 1.5], 1e-6);
    // np.log(np.sum(np.exp(x), axis=1))
    let o = run(
        Op::ReduceLogSumExp,
        &[keep(0)],
        &[Some(&x), Some(&i64t(&[1], &[1]))],
        1,
    );
    close(
        &floats(&o[0]),
        &[20., 2.3132617, 40.000046, 2.3132617, 60.006714, 2.3132617],
        1e-6,
    );
    // np.prod(x) with axes absent: every axis, keepdims gives [1,1,1].
    let o = run(Op::ReduceProd, &[], &[Some(&x)], 1);
    assert_eq!(o[0].shape, vec![1, 1, 1]);
    close(&floats(&o[0]), &[3.168e9], 1e-6);
    // np.sqrt(np.sum(x*x, axis=2))
    let o = run(
        Op::ReduceL2,
        &[keep(0)],
        &[Some(&x), Some(&i64t(&[1], &[2]))],
        1,
    );
    close(
        &floats(&o[0]),
        &[
            5.0990195, 20.09975, 30.016663, 40.04997, 55.00909, 60.033325,
        ],
        1e-6,
    );
    // np.max(x, axis=0)
    let o = run(
        Op::ReduceMax,
        &[keep(0)],
        &[Some(&x), Some(&i64t(&[1], &[0]))],
        1,
    );
    close(&floats(&o[0]), &[55., 1., 60., 2.], 0.0);
}

#[test]
fn noop_and_empty_sets() {
    let x = f32t(&[2], &[-3., 4.]);
    let noop = ("noop_with_empty_axes", Attr::Int(1));
    // Reducing over no axes applies the per-element part only.
    let o = run(
        Op::ReduceSumSquare,
        std::slice::from_ref(&noop),
        &[Some(&x), Some(&i64t(&[0], &[]))],
        1,
    );
    assert_eq!(o[0].shape, vec![2]);
    close(&floats(&o[0]), &[9., 16.], 0.0);
    let o = run(Op::ReduceL1, &[noop], &[Some(&x), None], 1);
    close(&floats(&o[0]), &[3., 4.], 0.0);
    // Empty axes without noop: reduce everything.
    let o = run(Op::ReduceSum, &[], &[Some(&x), Some(&i64t(&[0], &[]))], 1);
    close(&floats(&o[0]), &[1.], 0.0);
    // Identities of empty groups (math facts).
    let e = f32t(&[2, 0, 4], &[]);
    let ax = i64t(&[1], &[1]);
    for (op, want) in [
        (Op::ReduceSum, 0.0),
        (Op::ReduceProd, 1.0),
        (Op::ReduceMax, f64::NEG_INFINITY),
        (Op::ReduceMin, f64::INFINITY),
        (Op::ReduceLogSum, f64::NEG_INFINITY),
        (Op::ReduceLogSumExp, f64::NEG_INFINITY),
        (Op::ReduceL2, 0.0),
    ] {
        let o = run(op, &[], &[Some(&e), Some(&ax)], 1);
        assert_eq!(o[0].shape, vec![2, 1, 4], "{op}");
        assert_eq!(floats(&o[0]), vec![want; 8], "{op}");
    }
    // A zero-sized dim that is not reduced gives an empty output.
    let o = run(Op::ReduceSum, &[], &[Some(&e), Some(&i64t(&[1], &[2]))], 1);
    assert_eq!(o[0].shape, vec![2, 0, 1]);
}

#[test]
fn int_and_bool_reductions() {
    let i = Tensor::from_i64(DType::I8, vec![2, 2], vec![3, -7, 2, 9]);
    let ax0 = i64t(&[1], &[0]);
    let ax1 = i64t(&[1], &[1]);
    // np.sum(i, axis=0, dtype=np.int8) -> [5, 2]
    let o = run(Op::ReduceSum, &[keep(0)], &[Some(&i), Some(&ax0)], 1);
    assert_eq!(o[0].data, Storage::I(vec![5, 2]));
    // np.mean(i, axis=1, dtype=np.int8) -> [-2, 5]
    let o = run(Op::ReduceMean, &[keep(0)], &[Some(&i), Some(&ax1)], 1);
    assert_eq!(o[0].data, Storage::I(vec![-2, 5]));
    // np.prod(i, dtype=np.int8) -> -122 (wraps)
    let o = run(Op::ReduceProd, &[keep(0)], &[Some(&i)], 1);
    assert_eq!(o[0].data, Storage::I(vec![-122]));
    // Max of an empty int8 set is the dtype minimum.
    let e = Tensor::from_i64(DType::I8, vec![0, 2], vec![]);
    let o = run(Op::ReduceMax, &[keep(0)], &[Some(&e), Some(&ax0)], 1);
    assert_eq!(o[0].data, Storage::I(vec![-128, -128]));
    let b = Tensor::from_bool(vec![2, 2], vec![true, false, false, false]);
    let o = run(Op::ReduceMax, &[keep(0)], &[Some(&b), Some(&ax1)], 1);
    assert_eq!(o[0].data, Storage::B(vec![true, false]));
    let o = run(Op::ReduceMin, &[keep(0)], &[Some(&b), Some(&ax1)], 1);
    assert_eq!(o[0].data, Storage::B(vec![false, false]));
    let eb = Tensor::from_bool(vec![0], vec![]);
    let o = run(Op::ReduceMin, &[keep(0)], &[Some(&eb)], 1);
    assert_eq!(o[0].data, Storage::B(vec![true]));
}

#[test]
fn reduce_type_rules() {
    let n = node(Op::ReduceSum, 2, 1, &[keep(0)]);
    let ctx = Ctx::new(&n);
    let x = TensorType::new(
        DType::F32,
        Shape(Some(vec![
            Dim::Sym("N".into()),
            Dim::Static(3),
            Dim::Static(4),
        ])),
    );
    let axes_ty = TensorType::of_static(DType::I64, &[1]);
    let ax = i64t(&[1], &[-1]);
    let imp = lookup(Op::ReduceSum).unwrap();
    let t = (imp.infer)(
        &ctx,
        &[
            Some(TypeInput {
                ty: &x,
                value: None,
            }),
            Some(TypeInput {
                ty: &axes_ty,
                value: Some(&ax),
            }),
        ],
    )
    .unwrap();
    assert_eq!(
        t[0].shape,
        Shape(Some(vec![Dim::Sym("N".into()), Dim::Static(3)]))
    );
    // Run-time axes without keepdims: rank unknown.
    let t = (imp.infer)(
        &ctx,
        &[
            Some(TypeInput {
                ty: &x,
                value: None,
            }),
            Some(TypeInput {
                ty: &axes_ty,
                value: None,
            }),
        ],
    )
    .unwrap();
    assert_eq!(t[0].shape, Shape::unknown());
    // Bad axis is an error, not a panic.
    let bad = i64t(&[1], &[3]);
    assert!(
        (imp.infer)(
            &ctx,
            &[
                Some(TypeInput {
                    ty: &x,
                    value: None
                }),
                Some(TypeInput {
                    ty: &axes_ty,
                    value: Some(&bad)
                }),
            ],
        )
        .is_err()
    );
    // LogSum of ints is not defined.
    let ni = node(Op::ReduceLogSum, 1, 1, &[]);
    let it = TensorType::of_static(DType::I32, &[2]);
    assert!(
        (lookup(Op::ReduceLogSum).unwrap().infer)(
            &Ctx::new(&ni),
            &[Some(TypeInput {
                ty: &it,
                value: None
            })]
        )
        .is_err()
    );
}

#[test]
fn arg_max_min() {
    let a = f32t(&[2, 3], &[2., 1., 2., 3., 3., 0.]);
    // np.argmax(a, axis=1) -> [0, 0]
    let o = run(
        Op::ArgMax,
        &[("axis", Attr::Int(1)), keep(0)],
        &[Some(&a)],
        1,
    );
    assert_eq!(o[0].data, Storage::I(vec![0, 0]));
    assert_eq!(o[0].shape, vec![2]);
    // 2 - np.argmax(np.flip(a, 1), axis=1) -> [2, 1]
    let o = run(
        Op::ArgMax,
        &[("axis", Attr::Int(-1)), ("select_last_index", Attr::Int(1))],
        &[Some(&a)],
        1,
    );
    assert_eq!(o[0].data, Storage::I(vec![2, 1]));
    assert_eq!(o[0].shape, vec![2, 1]);
    // np.argmin(a, axis=0) -> [0, 0, 1]
    let o = run(Op::ArgMin, &[], &[Some(&a)], 1);
    assert_eq!(o[0].data, Storage::I(vec![0, 0, 1]));
    assert_eq!(o[0].shape, vec![1, 3]);
    let u = Tensor::from_u64(DType::U8, vec![4], vec![7, 200, 200, 1]);
    let o = run(
        Op::ArgMax,
        &[("select_last_index", Attr::Int(1))],
        &[Some(&u)],
        1,
    );
    assert_eq!(o[0].data, Storage::I(vec![2]));
}

fn loss_inputs() -> (Tensor, Tensor, Tensor) {
    // N=2, C=3, D=2
    let x = f32t(
        &[2, 3, 2],
        &[
            0.1, -0.5, 1.2, 0.3, -2.0, 0.7, 0.4, 0.9, -0.3, -1.1, 2.2, 0.05,
        ],
    );
    let t = i64t(&[2, 2], &[2, 1, 0, 2]);
    let w = f32t(&[3], &[0.2, 0.5, 1.3]);
    (x, t, w)
}

fn red(r: &str) -> (&'static str, Attr) {
    ("reduction", Attr::String(r.into()))
}

#[test]
fn nll_loss() {
    // Expected values: onnx.reference.ops.op_negative_log_likelihood_loss.
    // _compute_negative_log_likelihood_loss(x, t, weight, reduction, ignore_index)
    let (x, t, w) = loss_inputs();
    let nll = Op::NegativeLogLikelihoodLoss;
    let o = run(nll, &[red("none")], &[Some(&x), Some(&t)], 1);
    assert_eq!(o[0].shape, vec![2, 2]);
    close(&floats(&o[0]), &[2.0, -0.3, -0.4, -0.05], 1e-6);
    // (x, t, w, 'mean', ignore_index=1)
    let o = run(
        nll,
        &[("ignore_index", Attr::Int(1))],
        &[Some(&x), Some(&t), Some(&w)],
        1,
    );
    assert!(o[0].shape.is_empty());
    close(&floats(&o[0]), &[0.8767857], 1e-6);
    // (x, t, None, 'sum')
    let o = run(nll, &[red("sum")], &[Some(&x), Some(&t)], 1);
    close(&floats(&o[0]), &[1.2500001], 1e-6);
    // A target outside [0, C) that is not ignored is an error.
    let bad = i64t(&[2, 2], &[3, 0, 0, 0]);
    let n = node(nll, 2, 1, &[]);
    assert!((lookup(nll).unwrap().kernel)(&Ctx::new(&n), &[Some(&x), Some(&bad)]).is_err());
}

#[test]
fn softmax_cross_entropy_loss() {
    // Expected values: onnx.reference.ops.op_softmax_cross_entropy_loss.
    // softmaxcrossentropy(x, t, weight, reduction, ignore_index, get_log_prob)
    let (x, t, w) = loss_inputs();
    let sce = Op::SoftmaxCrossEntropyLoss;
    // (x, t, w, 'mean', None, True)
    let o = run(sce, &[], &[Some(&x), Some(&t), Some(&w)], 2);
    close(&floats(&o[0]), &[2.1823301], 1e-6);
    assert_eq!(o[1].shape, vec![2, 3, 2]);
    close(
        &floats(&o[1]),
        &[
            -1.4174593687057495,
            -1.878801941871643,
            -0.3174592852592468,
            -1.0788018703460693,
            -3.5174593925476074,
            -0.678801953792572,
            -2.0210485458374023,
            -0.44644731283187866,
            -2.721048355102539,
            -2.4464473724365234,
            -0.22104841470718384,
            -1.2964472770690918,
        ],
        1e-6,
    );
    // (x, t, None, 'none', 2)
    let o = run(
        sce,
        &[red("none"), ("ignore_index", Attr::Int(2))],
        &[Some(&x), Some(&t)],
        1,
    );
    close(
        &floats(&o[0]),
        &[0.0, 1.0788018703460693, 2.0210485458374023, 0.0],
        1e-6,
    );
}
