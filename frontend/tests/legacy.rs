//! Older opset forms are rewritten into the IR's newest forms: attributes
//! that became inputs turn into constant inputs holding the same values.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Value as TV};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::lookup;
use smelt_ir::{Attr, DType, Graph, Op};

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(dimension::Value::DimValue(d));
        shape.dim.push(dim);
    }
    let mut t = type_proto::Tensor::new();
    t.elem_type = 1;
    t.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(TV::TensorType(t));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(tp).into();
    v
}

enum A {
    Ints(&'static [i64]),
    Int(i64),
    Float(f32),
    Floats(&'static [f32]),
    Str(&'static str),
}

fn attr(name: &str, a: A) -> AttributeProto {
    let mut p = AttributeProto::new();
    p.name = name.into();
    match a {
        A::Ints(v) => {
            p.type_ = AttributeType::INTS.into();
            p.ints = v.to_vec();
        }
        A::Int(i) => {
            p.type_ = AttributeType::INT.into();
            p.i = i;
        }
        A::Float(f) => {
            p.type_ = AttributeType::FLOAT.into();
            p.f = f;
        }
        A::Floats(v) => {
            p.type_ = AttributeType::FLOATS.into();
            p.floats = v.to_vec();
        }
        A::Str(s) => {
            p.type_ = AttributeType::STRING.into();
            p.s = s.as_bytes().to_vec();
        }
    }
    p
}

/// One node over graph input `x` (plus optional extra initializers).
fn import_one(
    op: &str,
    opset: i64,
    x_dims: &[i64],
    extra_inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
    inits: Vec<TensorProto>,
) -> Graph {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.input = std::iter::once("x")
        .chain(extra_inputs.iter().copied())
        .map(String::from)
        .collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    let mut g = GraphProto::new();
    g.node = vec![n];
    g.input = vec![vi("x", x_dims)];
    g.initializer = inits;
    let mut m = ModelProto::new();
    m.ir_version = 7;
    let mut o = OperatorSetIdProto::new();
    o.version = opset;
    m.opset_import.push(o);
    m.graph = Some(g).into();
    smelt_frontend::import_bytes(m.write_to_bytes().unwrap(), None)
        .unwrap_or_else(|e| panic!("{op}-{opset}: {e}"))
}

fn have(op: Op) -> bool {
    let ok = lookup(op).is_some();
    if !ok {
        println!("skipped: no semantics yet for {op}");
    }
    ok
}

/// The constant fed to input `i` of the graph's only node.
fn const_input(g: &Graph, i: usize) -> Tensor {
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    let id = g.nodes[0].inputs[i].expect("input present");
    Tensor::from_data(&g.consts[&id]).expect("a constant input")
}

fn i64s(v: &[i64]) -> Tensor {
    Tensor::from_i64(DType::I64, vec![v.len()], v.to_vec())
}

#[test]
fn reshape_4_shape_attribute() {
    if !have(Op::Reshape) {
        return;
    }
    let g = import_one(
        "Reshape",
        4,
        &[2, 3],
        &[],
        &["y"],
        vec![attr("shape", A::Ints(&[3, 2]))],
        vec![],
    );
    assert_eq!(const_input(&g, 1), i64s(&[3, 2]));
    assert!(g.nodes[0].attr("shape").is_none());
}

#[test]
fn squeeze_unsqueeze_11_axes_attribute() {
    if have(Op::Squeeze) {
        let g = import_one(
            "Squeeze",
            11,
            &[1, 3],
            &[],
            &["y"],
            vec![attr("axes", A::Ints(&[0]))],
            vec![],
        );
        assert_eq!(const_input(&g, 1), i64s(&[0]));
    }
    if have(Op::Unsqueeze) {
        let g = import_one(
            "Unsqueeze",
            11,
            &[3],
            &[],
            &["y"],
            vec![attr("axes", A::Ints(&[0, 2]))],
            vec![],
        );
        assert_eq!(const_input(&g, 1), i64s(&[0, 2]));
    }
}

#[test]
fn reduce_13_axes_attribute() {
    if !have(Op::ReduceMean) {
        return;
    }
    let g = import_one(
        "ReduceMean",
        13,
        &[2, 2],
        &[],
        &["y"],
        vec![attr("axes", A::Ints(&[1]))],
        vec![],
    );
    assert_eq!(const_input(&g, 1), i64s(&[1]));
}

#[test]
fn split_11_split_attribute_and_equal_parts() {
    if !have(Op::Split) {
        return;
    }
    let g = import_one(
        "Split",
        11,
        &[3],
        &[],
        &["a", "b"],
        vec![attr("split", A::Ints(&[1, 2]))],
        vec![],
    );
    assert_eq!(const_input(&g, 1), i64s(&[1, 2]));
    let g = import_one("Split", 11, &[6], &[], &["a", "b", "c"], vec![], vec![]);
    assert_eq!(g.nodes[0].attr("num_outputs"), Some(&Attr::Int(3)));
}

#[test]
fn slice_9_attributes() {
    if !have(Op::Slice) {
        return;
    }
    let g = import_one(
        "Slice",
        9,
        &[4, 4],
        &[],
        &["y"],
        vec![
            attr("starts", A::Ints(&[1])),
            attr("ends", A::Ints(&[3])),
            attr("axes", A::Ints(&[1])),
        ],
        vec![],
    );
    assert_eq!(const_input(&g, 1), i64s(&[1]));
    assert_eq!(const_input(&g, 2), i64s(&[3]));
    assert_eq!(const_input(&g, 3), i64s(&[1]));
}

#[test]
fn pad_2_pads_and_value() {
    if !have(Op::Pad) {
        return;
    }
    let g = import_one(
        "Pad",
        2,
        &[2],
        &[],
        &["y"],
        vec![attr("pads", A::Ints(&[1, 1])), attr("value", A::Float(2.0))],
        vec![],
    );
    assert_eq!(const_input(&g, 1), i64s(&[1, 1]));
    assert_eq!(
        const_input(&g, 2),
        Tensor::from_f64(DType::F32, vec![], vec![2.0])
    );
}

#[test]
fn clip_6_min_max() {
    if !have(Op::Clip) {
        return;
    }
    let g = import_one(
        "Clip",
        6,
        &[2],
        &[],
        &["y"],
        vec![attr("min", A::Float(-1.0)), attr("max", A::Float(1.0))],
        vec![],
    );
    assert_eq!(
        const_input(&g, 1),
        Tensor::from_f64(DType::F32, vec![], vec![-1.0])
    );
    assert_eq!(
        const_input(&g, 2),
        Tensor::from_f64(DType::F32, vec![], vec![1.0])
    );
    // Only max: min stays absent.
    let g = import_one(
        "Clip",
        6,
        &[2],
        &[],
        &["y"],
        vec![attr("max", A::Float(1.0))],
        vec![],
    );
    assert_eq!(g.nodes[0].inputs[1], None);
}

#[test]
fn dropout_10_ratio() {
    if !have(Op::Dropout) {
        return;
    }
    let g = import_one(
        "Dropout",
        10,
        &[2],
        &[],
        &["y"],
        vec![attr("ratio", A::Float(0.25))],
        vec![],
    );
    // Dropout of a non-constant input at inference is kept as a node.
    assert_eq!(const_input(&g, 1), Tensor::scalar_f32(0.25));
}

#[test]
fn topk_9_k() {
    if !have(Op::TopK) {
        return;
    }
    let g = import_one(
        "TopK",
        9,
        &[4],
        &[],
        &["v", "i"],
        vec![attr("k", A::Int(2))],
        vec![],
    );
    assert_eq!(const_input(&g, 1), i64s(&[2]));
}

#[test]
fn upsample_and_resize_10_become_resize() {
    if !have(Op::Resize) {
        return;
    }
    let g = import_one(
        "Upsample",
        7,
        &[1, 2],
        &[],
        &["y"],
        vec![
            attr("scales", A::Floats(&[1.0, 2.0])),
            attr("mode", A::Str("nearest")),
        ],
        vec![],
    );
    assert_eq!(g.nodes[0].op, Op::Resize);
    assert_eq!(g.nodes[0].inputs[1], None);
    assert_eq!(
        const_input(&g, 2),
        Tensor::from_f64(DType::F32, vec![2], vec![1.0, 2.0])
    );
    assert_eq!(
        g.nodes[0].attr("coordinate_transformation_mode"),
        Some(&Attr::String("asymmetric".into()))
    );
    let mut scales = TensorProto::new();
    scales.name = "scales".into();
    scales.data_type = 1;
    scales.dims = vec![2];
    scales.float_data = vec![1.0, 2.0];
    let g = import_one(
        "Resize",
        10,
        &[1, 2],
        &["scales"],
        &["y"],
        vec![],
        vec![scales],
    );
    assert_eq!(g.nodes[0].inputs[1], None);
    assert_eq!(
        const_input(&g, 2),
        Tensor::from_f64(DType::F32, vec![2], vec![1.0, 2.0])
    );
}

#[test]
fn scatter_becomes_scatter_elements() {
    if !have(Op::ScatterElements) {
        return;
    }
    let mut idx = TensorProto::new();
    idx.name = "idx".into();
    idx.data_type = 7;
    idx.dims = vec![1];
    idx.int64_data = vec![1];
    let mut upd = TensorProto::new();
    upd.name = "upd".into();
    upd.data_type = 1;
    upd.dims = vec![1];
    upd.float_data = vec![5.0];
    let g = import_one(
        "Scatter",
        9,
        &[3],
        &["idx", "upd"],
        &["y"],
        vec![],
        vec![idx, upd],
    );
    assert_eq!(g.nodes[0].op, Op::ScatterElements);
}

#[test]
fn dft_17_axis_attribute() {
    if !have(Op::DFT) {
        return;
    }
    let g = import_one("DFT", 17, &[1, 4, 1], &[], &["y"], vec![], vec![]);
    // The opset-17 default axis is 1.
    assert_eq!(const_input(&g, 2), Tensor::scalar_i64(1));
}

#[test]
fn hardmax_11_on_the_last_axis_needs_no_reshape() {
    if !have(Op::Hardmax) {
        return;
    }
    let g = import_one("Hardmax", 11, &[2, 3], &[], &["y"], vec![], vec![]);
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.nodes[0].attr("axis"), Some(&Attr::Int(-1)));
}
