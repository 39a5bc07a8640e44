//! Tensor files written by numpy/onnx (tests/data/make.py, which lists the
//! arrays the expectations below come from).

use smelt_frontend::tensor_io::{read_tensor, tensor_from_proto_bytes, tensor_to_proto_bytes};
use smelt_ir::DType;
use smelt_ir::interp::{Storage, Tensor};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn read(name: &str) -> (Option<String>, Tensor) {
    read_tensor(&data(name)).unwrap()
}

#[test]
fn npy_files() {
    let (n, t) = read("f32_2x3.npy");
    assert_eq!(n, None);
    assert_eq!(
        t,
        Tensor::from_f64(
            DType::F32,
            vec![2, 3],
            vec![1.5, -2.0, 0.0, 3.25, 4.0, -0.5]
        )
    );
    let (_, t) = read("i64_3.npy");
    assert_eq!(
        t,
        Tensor::from_i64(DType::I64, vec![3], vec![-1, 0, 1 << 40])
    );
    let (_, t) = read("bool_2.npy");
    assert_eq!(t, Tensor::from_bool(vec![2], vec![true, false]));
    let (_, t) = read("u8_scalar.npy");
    assert_eq!(t, Tensor::from_u64(DType::U8, vec![], vec![200]));
    let (_, t) = read("f16_2.npy");
    assert_eq!(t, Tensor::from_f64(DType::F16, vec![2], vec![1.0, -0.5]));
    let (_, t) = read("v2.npy");
    assert_eq!(t, Tensor::from_i64(DType::I32, vec![2], vec![7, 8]));
}

#[test]
fn npy_refusals() {
    let e = read_tensor(&data("fortran.npy")).unwrap_err().to_string();
    assert!(e.contains("fortran"), "{e}");
    let e = read_tensor(&data("big_endian.npy"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(">f4"), "{e}");
    let mut bytes = std::fs::read(data("f32_2x3.npy")).unwrap();
    bytes.pop();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.npy");
    std::fs::write(&p, &bytes).unwrap();
    let e = read_tensor(&p).unwrap_err().to_string();
    assert!(e.contains("cut.npy") && e.contains("bytes"), "{e}");
}

#[test]
fn tensor_proto_files() {
    let (n, t) = read("raw_f32.pb");
    assert_eq!(n.as_deref(), Some("x"));
    assert_eq!(t, Tensor::from_f64(DType::F32, vec![2], vec![0.25, -1.0]));
    let (n, t) = read("typed_i32.pb");
    assert_eq!(n.as_deref(), Some("y"));
    assert_eq!(
        t,
        Tensor::from_i64(DType::I32, vec![2, 2], vec![1, -2, 3, -4])
    );
    let (_, t) = read("strings.pb");
    assert_eq!(t.data, Storage::S(vec!["hello".into(), "".into()]));
}

#[test]
fn proto_round_trip() {
    for t in [
        Tensor::from_f64(DType::BF16, vec![2], vec![1.0, -3.0]),
        Tensor::from_i64(DType::I4, vec![3], vec![-8, 7, 1]),
        Tensor::from_u64(DType::U32, vec![1, 1], vec![4_000_000_000]),
        Tensor::from_bool(vec![2], vec![false, true]),
        Tensor {
            dtype: DType::String,
            shape: vec![1],
            data: Storage::S(vec!["é".into()]),
        },
    ] {
        let b = tensor_to_proto_bytes("t", &t).unwrap();
        let (n, back) = tensor_from_proto_bytes(&b).unwrap();
        assert_eq!(n.as_deref(), Some("t"));
        assert_eq!(back, t);
    }
    assert!(tensor_from_proto_bytes(&[0xff, 0xff, 0xff]).is_err());
}
