//! Importer tests on small models built in the test with the protobuf
//! types. Expected values are mathematical facts stated next to them.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::type_proto::{self, Value as TV};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use smelt_frontend::{ImportError, import_bytes, import_file};
use smelt_ir::interp::{Storage, Tensor};
use smelt_ir::semantics::lookup;
use smelt_ir::{DType, Dim, Op, Payload, Shape};
use std::path::Path;

const F32: i32 = 1;
const I64: i32 = 7;

fn vi(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(if d >= 0 {
            dimension::Value::DimValue(d)
        } else {
            dimension::Value::DimParam("N".into())
        });
        shape.dim.push(dim);
    }
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem;
    t.shape = Some(shape).into();
    let mut tp = TypeProto::new();
    tp.value = Some(TV::TensorType(t));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(tp).into();
    v
}

fn node(op: &str, ins: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.input = ins.iter().map(|s| s.to_string()).collect();
    n.output = outs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOATS.into();
    a.floats = v.to_vec();
    a
}

fn raw_f32(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = F32;
    t.dims = dims.to_vec();
    t.raw_data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    t
}

fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
) -> ModelProto {
    let mut g = GraphProto::new();
    g.name = "g".into();
    g.node = nodes;
    g.input = inputs;
    g.output = outputs;
    g.initializer = inits;
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut o = OperatorSetIdProto::new();
    o.version = opset;
    m.opset_import.push(o);
    m.graph = Some(g).into();
    m
}

fn bytes(m: &ModelProto) -> Vec<u8> {
    m.write_to_bytes().unwrap()
}

fn import(m: &ModelProto) -> Result<smelt_ir::Graph, ImportError> {
    import_bytes(bytes(m), None)
}

fn err(m: &ModelProto) -> String {
    let e = import(m).expect_err("import should fail");
    let s = e.to_string();
    assert!(!s.contains('\n'), "multi-line error: {s}");
    s
}

/// y = x + w with w an initializer: the smallest valid model.
fn add_model(w: TensorProto) -> ModelProto {
    model(
        13,
        vec![node("Add", &["x", "w"], &["y"], vec![])],
        vec![vi("x", F32, &[2])],
        vec![vi("y", F32, &[2])],
        vec![w],
    )
}

fn have(ops: &[Op]) -> bool {
    let missing: Vec<_> = ops.iter().filter(|o| lookup(**o).is_none()).collect();
    if !missing.is_empty() {
        println!("skipped: no semantics yet for {missing:?}");
    }
    missing.is_empty()
}

#[test]
fn imports_a_simple_model_and_runs_it() {
    let g = import(&add_model(raw_f32("w", &[2], &[1.0, 2.0]))).unwrap();
    assert_eq!(g.nodes.len(), 1);
    assert_eq!(g.consts.len(), 1);
    let out = smelt_ir::interp::run(
        &g,
        vec![Tensor::from_f64(DType::F32, vec![2], vec![10.0, 20.0])],
    )
    .unwrap();
    // 10 + 1 and 20 + 2.
    assert_eq!(out[0].data, Storage::F(vec![11.0, 22.0]));
}

#[test]
fn bad_files_give_clean_errors() {
    let e = import_bytes(Vec::new(), None).unwrap_err();
    assert!(e.to_string().contains("not a valid ONNX model"), "{e}");

    // Deterministic pseudo-random bytes (64-bit LCG).
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in [1usize, 7, 100, 4096] {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect();
        let e = import_bytes(junk, None).unwrap_err();
        assert!(!e.to_string().contains('\n'));
    }

    let full = bytes(&add_model(raw_f32("w", &[2], &[1.0, 2.0])));
    for cut in [1, full.len() / 3, full.len() / 2, full.len() - 1] {
        let e = import_bytes(full[..cut].to_vec(), None).unwrap_err();
        assert!(!e.to_string().contains('\n'));
    }

    let mut m = add_model(raw_f32("w", &[2], &[1.0, 2.0]));
    m.graph.clear();
    assert!(err(&m).contains("no graph"));
}

#[test]
fn file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.onnx");
    std::fs::write(&p, b"").unwrap();
    let e = import_file(&p).unwrap_err().to_string();
    assert!(e.contains("model.onnx: not a valid ONNX model"), "{e}");
    let e = import_file(&dir.path().join("missing.onnx"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.onnx"), "{e}");
}

#[test]
fn cycle_and_dangling_input_are_errors() {
    let m = model(
        13,
        vec![
            node("Add", &["x", "b"], &["a"], vec![]),
            node("Relu", &["a"], &["b"], vec![]),
        ],
        vec![vi("x", F32, &[2])],
        vec![vi("b", F32, &[2])],
        vec![],
    );
    let e = err(&m);
    assert!(e.contains("cycle through node"), "{e}");

    let m = model(
        13,
        vec![node("Add", &["x", "nope"], &["y"], vec![])],
        vec![vi("x", F32, &[2])],
        vec![vi("y", F32, &[2])],
        vec![],
    );
    let e = err(&m);
    assert!(e.contains("dangling input \"nope\""), "{e}");
}

#[test]
fn nodes_out_of_order_are_sorted() {
    let m = model(
        13,
        vec![
            node("Relu", &["a"], &["y"], vec![]),
            node("Neg", &["x"], &["a"], vec![]),
        ],
        vec![vi("x", F32, &[2])],
        vec![vi("y", F32, &[2])],
        vec![],
    );
    let g = import(&m).unwrap();
    assert_eq!(g.nodes[0].op, Op::Neg);
    assert_eq!(g.nodes[1].op, Op::Relu);
}

#[test]
fn bad_tensors_name_the_tensor() {
    let mut w = raw_f32("w", &[2], &[1.0, 2.0]);
    w.raw_data.pop();
    let e = err(&add_model(w));
    assert!(
        e.contains("tensor \"w\"") && e.contains("raw_data has 7 bytes"),
        "{e}"
    );

    // 2^62 * 4 elements is 2^64: more than i64 can count.
    let mut w = raw_f32("w", &[], &[]);
    w.dims = vec![1 << 62, 4];
    w.raw_data.clear();
    let e = err(&add_model(w));
    assert!(
        e.contains("tensor \"w\"") && e.contains("more elements than i64"),
        "{e}"
    );

    let mut w = raw_f32("w", &[2], &[1.0, 2.0]);
    w.dims = vec![-2];
    let e = err(&add_model(w));
    assert!(e.contains("tensor \"w\"") && e.contains("negative"), "{e}");

    let mut w = raw_f32("w", &[2], &[]);
    w.raw_data.clear();
    w.float_data = vec![1.0, 2.0, 3.0];
    let e = err(&add_model(w));
    assert!(
        e.contains("tensor \"w\"") && e.contains("float_data has 3 values"),
        "{e}"
    );
}

fn const_of(g: &smelt_ir::Graph, name: &str) -> Tensor {
    let id = g.find_value(name).unwrap();
    Tensor::from_data(&g.consts[&id]).unwrap()
}

/// Imports `t` as the value of a Constant node that is the graph output.
fn constant_model(t: TensorProto) -> ModelProto {
    let mut a = AttributeProto::new();
    a.name = "value".into();
    a.type_ = AttributeType::TENSOR.into();
    a.t = Some(t).into();
    model(
        13,
        vec![node("Constant", &[], &["c"], vec![a])],
        vec![],
        vec![],
        vec![],
    )
}

#[test]
fn inline_typed_fields() {
    // f16 bit patterns in int32_data: 0x3C00 = 1.0, 0xC000 = -2.0.
    let mut t = TensorProto::new();
    t.data_type = 10;
    t.dims = vec![2];
    t.int32_data = vec![0x3C00, 0xC000];
    let g = import(&constant_model(t)).unwrap();
    assert_eq!(const_of(&g, "c").data, Storage::F(vec![1.0, -2.0]));

    // int4 packed two per int32, low nibble first: 0xE1 = [1, -2], 0x03 = [3].
    let mut t = TensorProto::new();
    t.data_type = 22;
    t.dims = vec![3];
    t.int32_data = vec![0xE1, 0x03];
    let g = import(&constant_model(t)).unwrap();
    assert_eq!(const_of(&g, "c").data, Storage::I(vec![1, -2, 3]));

    let mut t = TensorProto::new();
    t.data_type = 13;
    t.dims = vec![1];
    t.uint64_data = vec![u64::MAX];
    let g = import(&constant_model(t)).unwrap();
    assert_eq!(const_of(&g, "c").data, Storage::U(vec![u64::MAX]));

    let mut t = TensorProto::new();
    t.data_type = 11;
    t.dims = vec![2];
    t.double_data = vec![0.5, -1.25];
    let g = import(&constant_model(t)).unwrap();
    assert_eq!(const_of(&g, "c").data, Storage::F(vec![0.5, -1.25]));

    let mut t = TensorProto::new();
    t.data_type = 8;
    t.dims = vec![2];
    t.string_data = vec![b"ab".to_vec(), b"".to_vec()];
    let g = import(&constant_model(t)).unwrap();
    assert_eq!(
        const_of(&g, "c").data,
        Storage::S(vec!["ab".into(), "".into()])
    );
}

#[test]
fn constant_node_forms() {
    let m = model(
        13,
        vec![
            node(
                "Constant",
                &[],
                &["a"],
                vec![attr_ints("value_ints", &[3, -1])],
            ),
            node(
                "Constant",
                &[],
                &["b"],
                vec![attr_floats("value_floats", &[0.5])],
            ),
            node("Constant", &[], &["c"], vec![attr_int("value_int", 7)]),
        ],
        vec![],
        vec![],
        vec![],
    );
    let g = import(&m).unwrap();
    assert_eq!(
        const_of(&g, "a"),
        Tensor::from_i64(DType::I64, vec![2], vec![3, -1])
    );
    assert_eq!(
        const_of(&g, "b"),
        Tensor::from_f64(DType::F32, vec![1], vec![0.5])
    );
    assert_eq!(const_of(&g, "c"), Tensor::scalar_i64(7));

    let mut a = AttributeProto::new();
    a.name = "sparse_value".into();
    a.type_ = AttributeType::SPARSE_TENSOR.into();
    let m = model(
        13,
        vec![node("Constant", &[], &["s"], vec![a])],
        vec![],
        vec![],
        vec![],
    );
    let e = import(&m).unwrap_err();
    assert!(
        e.to_string().contains("sparse tensors are not supported"),
        "{e}"
    );
    assert!(e.is_unsupported());
}

#[test]
fn unsupported_ops_are_classified() {
    let mut n = node("Frobnicate", &["x"], &["y"], vec![]);
    n.name = "attn/Frob_3".into();
    n.domain = "com.example".into();
    let mut m = model(
        13,
        vec![n],
        vec![vi("x", F32, &[2])],
        vec![vi("y", F32, &[2])],
        vec![],
    );
    let mut o = OperatorSetIdProto::new();
    o.domain = "com.example".into();
    o.version = 2;
    m.opset_import.push(o);
    let e = import(&m).unwrap_err();
    assert!(e.is_unsupported());
    assert_eq!(
        e.to_string(),
        "node \"attn/Frob_3\" (Frobnicate, com.example opset 2) is not supported"
    );

    let mut a = AttributeProto::new();
    a.name = "then_branch".into();
    a.type_ = AttributeType::GRAPH.into();
    a.g = Some(GraphProto::new()).into();
    let m = model(
        13,
        vec![node("If", &["c"], &["y"], vec![a])],
        vec![vi("c", 9, &[])],
        vec![],
        vec![],
    );
    assert!(import(&m).unwrap_err().is_unsupported());
}

#[test]
fn initializer_named_like_an_input_is_an_input() {
    let mut m = add_model(raw_f32("w", &[2], &[1.0, 2.0]));
    if let Some(g) = m.graph.as_mut() {
        g.input.push(vi("w", F32, &[2]));
    }
    let g = import(&m).unwrap();
    assert_eq!(g.inputs.len(), 2);
    assert!(g.consts.is_empty());
}

#[test]
fn symbolic_dims_and_declared_types() {
    let m = model(
        13,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![vi("x", F32, &[-1, 3])],
        vec![vi("y", F32, &[-1, 3])],
        vec![],
    );
    let g = import(&m).unwrap();
    let y = g.find_value("y").unwrap();
    assert_eq!(
        g.value(y).ty.shape,
        Shape(Some(vec![Dim::Sym("N".into()), Dim::Static(3)]))
    );

    // A declared output type that contradicts the op is an error naming it.
    let m = model(
        13,
        vec![node("Relu", &["x"], &["y"], vec![])],
        vec![vi("x", F32, &[2, 3])],
        vec![vi("y", F32, &[3, 2])],
        vec![],
    );
    let e = err(&m);
    assert!(e.contains("output \"y\""), "{e}");
}

#[test]
fn constant_subgraphs_fold_and_outputs_stay() {
    // y = Neg(w) with w constant: folded to a constant that is still the output.
    let m = model(
        13,
        vec![node("Neg", &["w"], &["y"], vec![])],
        vec![],
        vec![vi("y", F32, &[2])],
        vec![raw_f32("w", &[2], &[1.0, -3.0])],
    );
    let g = import(&m).unwrap();
    assert!(g.nodes.is_empty());
    assert_eq!(g.outputs, vec![g.find_value("y").unwrap()]);
    assert_eq!(const_of(&g, "y").data, Storage::F(vec![-1.0, 3.0]));
}

#[test]
fn shape_gather_concat_reshape_folds() {
    if !have(&[
        Op::Shape,
        Op::Gather,
        Op::Unsqueeze,
        Op::Concat,
        Op::Reshape,
    ]) {
        return;
    }
    let idx = {
        let mut t = TensorProto::new();
        t.name = "zero".into();
        t.data_type = I64;
        t.int64_data = vec![0];
        t
    };
    let minus1 = {
        let mut t = TensorProto::new();
        t.name = "m1".into();
        t.data_type = I64;
        t.dims = vec![1];
        t.int64_data = vec![-1];
        t
    };
    let axes = {
        let mut t = TensorProto::new();
        t.name = "axes0".into();
        t.data_type = I64;
        t.dims = vec![1];
        t.int64_data = vec![0];
        t
    };
    let m = model(
        13,
        vec![
            node("Shape", &["x"], &["s"], vec![]),
            node("Gather", &["s", "zero"], &["b"], vec![]),
            node("Unsqueeze", &["b", "axes0"], &["b1"], vec![]),
            node(
                "Concat",
                &["b1", "m1"],
                &["target"],
                vec![attr_int("axis", 0)],
            ),
            node("Reshape", &["x", "target"], &["y"], vec![]),
        ],
        vec![vi("x", F32, &[2, 3, 4])],
        vec![vi("y", F32, &[2, 12])],
        vec![idx, minus1, axes],
    );
    let g = import(&m).unwrap();
    assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
    assert_eq!(g.nodes[0].op, Op::Reshape);
    // Shape [2,3,4] -> dim 0 = 2 -> [2] ++ [-1].
    assert_eq!(const_of(&g, "target").data, Storage::I(vec![2, -1]));
}

#[test]
fn reduce_sum_axes_attribute_becomes_input() {
    if !have(&[Op::ReduceSum]) {
        return;
    }
    let m = model(
        11,
        vec![node(
            "ReduceSum",
            &["x"],
            &["y"],
            vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
        )],
        vec![vi("x", F32, &[2, 2])],
        vec![vi("y", F32, &[2])],
        vec![],
    );
    let g = import(&m).unwrap();
    assert_eq!(g.nodes[0].inputs.len(), 2);
    assert!(g.nodes[0].attr("axes").is_none());
    let x = Tensor::from_f64(DType::F32, vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]);
    let out = smelt_ir::interp::run(&g, vec![x]).unwrap();
    // Row sums of [[1,2],[3,4]].
    assert_eq!(out[0].data, Storage::F(vec![3.0, 7.0]));
}

#[test]
fn old_softmax_normalizes_the_flattened_block() {
    if !have(&[Op::Softmax, Op::Flatten, Op::Shape, Op::Reshape]) {
        return;
    }
    let m = model(
        11,
        vec![node("Softmax", &["x"], &["y"], vec![])],
        vec![vi("x", F32, &[2, 3, 4])],
        vec![vi("y", F32, &[2, 3, 4])],
        vec![],
    );
    let g = import(&m).unwrap();
    let x = Tensor::from_f64(DType::F32, vec![2, 3, 4], vec![0.0; 24]);
    let out = smelt_ir::interp::run(&g, vec![x]).unwrap();
    // Opset < 13 with axis 1: each batch row of 3*4 equal logits gets 1/12
    // (the opset-13 meaning would give 1/3).
    let expect = (1.0f64 / 12.0) as f32 as f64;
    assert_eq!(out[0].data, Storage::F(vec![expect; 24]));
}

#[test]
fn old_slice_attributes_become_inputs() {
    if !have(&[Op::Slice]) {
        return;
    }
    let m = model(
        9,
        vec![node(
            "Slice",
            &["x"],
            &["y"],
            vec![
                attr_ints("starts", &[1]),
                attr_ints("ends", &[3]),
                attr_ints("axes", &[0]),
            ],
        )],
        vec![vi("x", F32, &[4])],
        vec![vi("y", F32, &[2])],
        vec![],
    );
    let g = import(&m).unwrap();
    let x = Tensor::from_f64(DType::F32, vec![4], vec![10.0, 11.0, 12.0, 13.0]);
    let out = smelt_ir::interp::run(&g, vec![x]).unwrap();
    // Elements 1 and 2.
    assert_eq!(out[0].data, Storage::F(vec![11.0, 12.0]));
}

// ---- external data ----

fn external(name: &str, location: &str, offset: Option<u64>, length: Option<u64>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.data_type = F32;
    t.dims = vec![2];
    t.data_location = DataLocation::EXTERNAL.into();
    let mut kv = |k: &str, v: String| {
        let mut e = StringStringEntryProto::new();
        e.key = k.into();
        e.value = v;
        t.external_data.push(e);
    };
    kv("location", location.into());
    if let Some(o) = offset {
        kv("offset", o.to_string());
    }
    if let Some(l) = length {
        kv("length", l.to_string());
    }
    t
}

fn write_weights(dir: &Path, name: &str) {
    let v: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(dir.join(name), v).unwrap();
}

/// Writes a model using two external tensors and imports it from its file.
fn import_external(
    dir: &Path,
    a: TensorProto,
    b: TensorProto,
) -> Result<smelt_ir::Graph, ImportError> {
    let m = model(
        13,
        vec![node("Add", &["a", "b"], &["y"], vec![])],
        vec![],
        vec![vi("y", F32, &[2])],
        vec![a, b],
    );
    let p = dir.join("model.onnx");
    std::fs::write(&p, bytes(&m)).unwrap();
    import_file(&p)
}

#[test]
fn external_data_inside_the_folder_is_mapped_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    write_weights(dir.path(), "w.bin");
    // Add of two constants folds, so keep a graph input to hold the node.
    let m = model(
        13,
        vec![node("Add", &["a", "b"], &["y"], vec![])],
        vec![],
        vec![vi("y", F32, &[2])],
        vec![
            external("a", "w.bin", None, Some(8)),
            external("b", "./w.bin", Some(8), Some(8)),
        ],
    );
    let p = dir.path().join("model.onnx");
    std::fs::write(&p, bytes(&m)).unwrap();
    let g = import_file(&p).unwrap();
    let get = |n: &str| g.consts[&g.find_value(n).unwrap()].clone();
    let (a, b) = (get("a"), get("b"));
    let (Payload::Raw(ra), Payload::Raw(rb)) = (&a.payload, &b.payload) else {
        panic!("raw payloads expected");
    };
    assert!(
        ra.shares_storage_with(rb),
        "both tensors should view one mapping"
    );
    assert_eq!(ra.origin().unwrap().offset, 0);
    assert_eq!(rb.origin().unwrap().offset, 8);
    assert_eq!(rb.origin().unwrap().path, Path::new("./w.bin"));
    assert_eq!(
        Tensor::from_data(&b).unwrap().data,
        Storage::F(vec![3.0, 4.0])
    );
    // 1+3 and 2+4.
    assert_eq!(const_of(&g, "y").data, Storage::F(vec![4.0, 6.0]));

    // Without a folder, external data is refused.
    let e = import_bytes(bytes(&m), None).unwrap_err().to_string();
    assert!(
        e.contains("tensor \"a\"") && e.contains("external data"),
        "{e}"
    );
}

#[test]
fn external_data_outside_the_folder_is_refused() {
    let outer = tempfile::tempdir().unwrap();
    let dir = outer.path().join("model");
    std::fs::create_dir(&dir).unwrap();
    write_weights(outer.path(), "secret.bin");
    write_weights(&dir, "w.bin");
    let ok = || external("b", "w.bin", None, Some(8));

    let abs = outer.path().join("secret.bin").display().to_string();
    let e = import_external(&dir, external("a", &abs, None, Some(8)), ok()).unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");

    let e = import_external(&dir, external("a", "../secret.bin", None, Some(8)), ok()).unwrap_err();
    assert!(e.to_string().contains("\"..\""), "{e}");

    let e = import_external(&dir, external("a", "w.bin", Some(8), Some(16)), ok()).unwrap_err();
    assert!(e.to_string().contains("beyond the file"), "{e}");

    let e =
        import_external(&dir, external("a", "w.bin", Some(u64::MAX), Some(8)), ok()).unwrap_err();
    assert!(e.to_string().contains("beyond the file"), "{e}");

    let e = import_external(&dir, external("a", "w.bin", Some(0), Some(12)), ok()).unwrap_err();
    assert!(e.to_string().contains("tensor \"a\""), "{e}");

    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(outer.path().join("secret.bin"), dir.join("link.bin")).unwrap();
        let e = import_external(&dir, external("a", "link.bin", None, Some(8)), ok()).unwrap_err();
        assert!(e.to_string().contains("outside the model's folder"), "{e}");

        std::fs::hard_link(outer.path().join("secret.bin"), dir.join("hard.bin")).unwrap();
        let e = import_external(&dir, external("a", "hard.bin", None, Some(8)), ok()).unwrap_err();
        assert!(e.to_string().contains("hard links"), "{e}");
    }
}
