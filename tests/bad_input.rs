//! Hostile and broken models: each gives a one-line error naming the
//! problem and a non-zero exit, never a panic, and writes nothing outside
//! the output folder.

use crate::common::smelt;
use onnx_protobuf::{
    GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, tensor_proto, tensor_shape_proto,
    type_proto,
};
use std::path::Path;

const F32: i32 = 1;

fn vi(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for &d in dims {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(d));
        shape.dim.push(dim);
    }
    let t = type_proto::Tensor {
        elem_type: F32,
        shape: Some(shape).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.into(),
        type_: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(t)),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(g: GraphProto) -> Vec<u8> {
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
            ..Default::default()
        }],
        graph: Some(g).into(),
        ..Default::default()
    };
    m.write_to_bytes().unwrap()
}

/// y = x + w for x, w: f32[2].
fn add_graph(w: TensorProto) -> GraphProto {
    GraphProto {
        name: "g".into(),
        node: vec![node("Add", "add", &["x", "w"], &["y"])],
        input: vec![vi("x", &[2])],
        output: vec![vi("y", &[2])],
        initializer: vec![w],
        ..Default::default()
    }
}

fn weight(dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        name: "w".into(),
        dims: dims.to_vec(),
        data_type: F32,
        raw_data: raw,
        ..Default::default()
    }
}

/// Runs `smelt run` on `file` inside `dir` and checks the failure shape.
fn expect_clean_failure(dir: &Path, file: &str, needle: &str) {
    let before = list(dir.parent().unwrap());
    let model = dir.join(file);
    let outdir = dir.join("out");
    for args in [
        vec!["import", model.to_str().unwrap()],
        vec![
            "run",
            model.to_str().unwrap(),
            "--output-dir",
            outdir.to_str().unwrap(),
        ],
    ] {
        let out = smelt(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on {file}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{args:?} on {file}: error does not mention `{needle}`: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed output for a bad model"
        );
    }
    assert!(
        !outdir.exists(),
        "an output folder was created for a failed run"
    );
    assert_eq!(
        before,
        list(dir.parent().unwrap()),
        "files appeared outside the case folder"
    );
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn case(name: &str, bytes: &[u8], needle: &str) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("case");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    expect_clean_failure(&dir, name, needle);
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn zero_byte_file() {
    case("empty.onnx", b"", "empty");
}

#[test]
fn random_bytes() {
    // A fixed xorshift stream: arbitrary bytes, same every run.
    let mut s: u64 = 0x9E3779B97F4A7C15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    case("random.onnx", &bytes, "random.onnx");
}

#[test]
fn truncated_model() {
    let full = model(add_graph(weight(&[2], f32s(&[1.0, 2.0]))));
    for cut in [full.len() / 3, full.len() / 2, full.len() - 3] {
        case("truncated.onnx", &full[..cut], "truncated.onnx");
    }
}

#[test]
fn graph_with_a_cycle() {
    let g = GraphProto {
        name: "g".into(),
        node: vec![
            node("Add", "a", &["x", "c"], &["b"]),
            node("Relu", "r", &["b"], &["c"]),
        ],
        input: vec![vi("x", &[2])],
        output: vec![vi("c", &[2])],
        ..Default::default()
    };
    case("cycle.onnx", &model(g), "cycle");
}

#[test]
fn dangling_input() {
    let g = GraphProto {
        name: "g".into(),
        node: vec![node("Add", "add", &["x", "nowhere"], &["y"])],
        input: vec![vi("x", &[2])],
        output: vec![vi("y", &[2])],
        ..Default::default()
    };
    case("dangling.onnx", &model(g), "nowhere");
}

#[test]
fn element_count_overflowing_i64() {
    let w = weight(&[1 << 40, 1 << 40], vec![]);
    case("overflow.onnx", &model(add_graph(w)), "w");
}

#[test]
fn raw_data_length_disagrees_with_shape() {
    let w = weight(&[2], f32s(&[1.0, 2.0, 3.0]));
    case("length.onnx", &model(add_graph(w)), "w");
}

fn external(location: &str) -> TensorProto {
    let mut w = weight(&[2], vec![]);
    w.data_location = tensor_proto::DataLocation::EXTERNAL.into();
    for (k, v) in [("location", location), ("offset", "0"), ("length", "8")] {
        w.external_data.push(StringStringEntryProto {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        });
    }
    w
}

#[test]
fn external_data_outside_the_model_folder() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("case");
    std::fs::create_dir(&dir).unwrap();
    let secret = root.path().join("secret.bin");
    std::fs::write(&secret, f32s(&[1.0, 2.0])).unwrap();
    std::os::unix::fs::symlink(&secret, dir.join("link.bin")).unwrap();
    let abs = secret.to_str().unwrap().to_string();
    for (file, loc) in [
        ("dotdot.onnx", "../secret.bin"),
        ("absolute.onnx", abs.as_str()),
        ("symlink.onnx", "link.bin"),
    ] {
        std::fs::write(dir.join(file), model(add_graph(external(loc)))).unwrap();
        expect_clean_failure(&dir, file, "outside");
    }
}

#[test]
fn external_data_inside_the_folder_runs() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    std::fs::write(dir.join("w.bin"), f32s(&[10.0, 20.0])).unwrap();
    std::fs::write(dir.join("m.onnx"), model(add_graph(external("w.bin")))).unwrap();
    let x = TensorProto {
        name: "x".into(),
        dims: vec![2],
        data_type: F32,
        raw_data: f32s(&[1.0, 2.0]),
        ..Default::default()
    };
    std::fs::write(dir.join("x.pb"), x.write_to_bytes().unwrap()).unwrap();
    let out = dir.join("out");
    let res = smelt(&[
        "run",
        dir.join("m.onnx").to_str().unwrap(),
        "--input",
        dir.join("x.pb").to_str().unwrap(),
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        res.status.success(),
        "{}",
        String::from_utf8_lossy(&res.stderr)
    );
    let (_, y) = smelt_frontend::tensor_io::read_tensor(&out.join("output_0.pb")).unwrap();
    assert_eq!(y.to_f64_vec().unwrap(), vec![11.0, 22.0]);
}

/// Byte-level mutations of real models (flips, truncations, splices) must
/// never panic the importer or the interpreter: each either imports or
/// fails with an error. Deterministic (fixed xorshift seed).
#[test]
fn mutated_models_never_panic() {
    let dir = crate::common::conformance_dir();
    let picks = [
        "test_conv_with_strides_padding",
        "test_layer_normalization_4d_axis0_expanded",
        "test_gather_0",
        "test_reshape_reordered_all_dims",
        "test_resize_downsample_scales_linear",
        "test_softmax_example_expanded",
    ];
    let mut s: u64 = 0x2545F4914F6CDD1D;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut imported = 0;
    for name in picks {
        let case = dir.join(name);
        let model = std::fs::read(case.join("model.onnx")).unwrap();
        let input =
            smelt_frontend::tensor_io::read_tensor(&case.join("test_data_set_0/input_0.pb"))
                .map(|(_, t)| t);
        for _ in 0..300 {
            let mut m = model.clone();
            match next() % 3 {
                0 => {
                    for _ in 0..1 + next() % 4 {
                        let i = (next() as usize) % m.len();
                        m[i] ^= 1 << (next() % 8);
                    }
                }
                1 => m.truncate((next() as usize) % m.len()),
                _ => {
                    let i = (next() as usize) % m.len();
                    let j = (next() as usize) % m.len();
                    let b = m[j];
                    m[i] = b.wrapping_add(next() as u8);
                }
            }
            let result = std::panic::catch_unwind(|| {
                if let Ok(g) = smelt_frontend::import_bytes(m, None) {
                    if let (Ok(x), 1) = (&input, g.inputs.len()) {
                        let _ = smelt_ir::interp::run(&g, vec![x.clone()]);
                    }
                    let _ = smelt_ir::text::parse(&smelt_ir::text::print(&g));
                    return true;
                }
                false
            });
            match result {
                Ok(ok) => imported += usize::from(ok),
                Err(_) => panic!("a mutation of {name} panicked"),
            }
        }
    }
    eprintln!("{imported} of 1800 mutated models still imported");
}
