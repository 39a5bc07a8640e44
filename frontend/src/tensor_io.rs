//! Reading and writing single tensors: ONNX TensorProto files (the
//! backend-test `input_0.pb` layout) and NumPy `.npy` files.

use crate::onnx::tensor::{ExternalData, TensorErr, tensor_data};
use onnx_protobuf::{Message, TensorProto};
use smelt_ir::interp::Tensor;
use smelt_ir::semantics::util::dtype_to_onnx;
use smelt_ir::{DType, Payload};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorIoError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("not a valid TensorProto ({0})")]
    Parse(String),
    #[error("tensor \"{name}\": {msg}")]
    Tensor { name: String, msg: String },
    #[error("npy: {0}")]
    Npy(String),
    #[error("{0}")]
    Unsupported(String),
}

/// Reads a tensor file, by content: `.npy` (magic `\x93NUMPY`) or a
/// TensorProto. The name is the TensorProto's, if it has one.
pub fn read_tensor(path: &Path) -> Result<(Option<String>, Tensor), TensorIoError> {
    let io = |e: std::io::Error| TensorIoError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    let bytes = std::fs::read(path).map_err(io)?;
    let wrap = |e: TensorIoError| TensorIoError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    };
    if bytes.starts_with(b"\x93NUMPY") {
        return read_npy(&bytes).map(|t| (None, t)).map_err(wrap);
    }
    tensor_from_proto_bytes(&bytes).map_err(wrap)
}

pub fn tensor_from_proto_bytes(bytes: &[u8]) -> Result<(Option<String>, Tensor), TensorIoError> {
    let mut t = TensorProto::parse_from_bytes(bytes)
        .map_err(|e| TensorIoError::Parse(e.to_string().replace('\n', " ")))?;
    let name = (!t.name.is_empty()).then(|| t.name.clone());
    let label = name.clone().unwrap_or_default();
    let err = |msg: String| TensorIoError::Tensor {
        name: label.clone(),
        msg,
    };
    let data = tensor_data(&mut t, &mut ExternalData::new(None)).map_err(|e| match e {
        TensorErr::Unsupported(m) => TensorIoError::Unsupported(format!("tensor \"{label}\" {m}")),
        TensorErr::Invalid(m) => err(m),
    })?;
    let tensor = Tensor::from_data(&data).map_err(|e| err(e.to_string()))?;
    Ok((name, tensor))
}

/// A TensorProto with `raw_data` (strings in `string_data`).
pub fn tensor_to_proto_bytes(name: &str, t: &Tensor) -> Result<Vec<u8>, TensorIoError> {
    let err = |msg: String| TensorIoError::Tensor {
        name: name.to_string(),
        msg,
    };
    let code = dtype_to_onnx(t.dtype)
        .ok_or_else(|| err(format!("dtype {} has no ONNX number", t.dtype)))?;
    let data = t.to_data().map_err(|e| err(e.to_string()))?;
    let mut p = TensorProto::new();
    p.name = name.to_string();
    p.data_type = code as i32;
    p.dims = t.shape.iter().map(|&d| d as i64).collect();
    match &data.payload {
        Payload::Raw(b) => p.raw_data = b.as_ref().to_vec(),
        Payload::Strings(s) => p.string_data = s.iter().map(|x| x.as_bytes().to_vec()).collect(),
    }
    p.write_to_bytes().map_err(|e| err(e.to_string()))
}

/// Parses a `.npy` file (format versions 1-3, little-endian, C order).
pub fn read_npy(bytes: &[u8]) -> Result<Tensor, TensorIoError> {
    let bad = |m: &str| TensorIoError::Npy(m.to_string());
    if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
        return Err(bad("not an .npy file"));
    }
    let major = bytes[6];
    let (hlen, hstart): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or_else(|| bad("truncated header"))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(TensorIoError::Npy(format!("unknown format version {v}"))),
    };
    let header = bytes
        .get(hstart..hstart.saturating_add(hlen))
        .ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header has no descr"))?;
    let q = descr.chars().next().ok_or_else(|| bad("malformed descr"))?;
    let descr = descr
        .get(1..)
        .and_then(|s| s.split(q).next())
        .ok_or_else(|| bad("malformed descr"))?;
    let fortran =
        dict_value(header, "fortran_order").ok_or_else(|| bad("header has no fortran_order"))?;
    if fortran.starts_with("True") {
        return Err(bad("fortran_order arrays are not supported"));
    }
    let shape_s = dict_value(header, "shape").ok_or_else(|| bad("header has no shape"))?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("malformed shape"))?;
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        shape.push(part.parse::<usize>().map_err(|_| bad("malformed shape"))?);
    }
    let dtype = match descr {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<f2" => DType::F16,
        "<i8" => DType::I64,
        "<i4" => DType::I32,
        "<i2" => DType::I16,
        "|i1" | "<i1" => DType::I8,
        "|u1" | "<u1" => DType::U8,
        "<u2" => DType::U16,
        "<u4" => DType::U32,
        "<u8" => DType::U64,
        "|b1" | "<b1" => DType::Bool,
        d => return Err(TensorIoError::Npy(format!("dtype {d} is not supported"))),
    };
    let n = smelt_ir::shape::checked_numel(&shape).ok_or_else(|| bad("shape overflows"))?;
    let need = dtype
        .storage_bytes(n)
        .ok_or_else(|| bad("shape overflows"))?;
    let body = &bytes[hstart + hlen..];
    if body.len() != need {
        return Err(TensorIoError::Npy(format!(
            "data has {} bytes but {dtype}{shape:?} needs {need}",
            body.len()
        )));
    }
    let data = smelt_ir::TensorData::new(
        dtype,
        shape,
        Payload::Raw(smelt_ir::Bytes::from_vec(body.to_vec())),
    )
    .map_err(|e| TensorIoError::Npy(e.to_string()))?;
    Tensor::from_data(&data).map_err(|e| TensorIoError::Npy(e.to_string()))
}

/// The text after `'key':` in a Python dict literal, up to the end.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}':");
    let pat2 = format!("\"{key}\":");
    let at = header
        .find(&pat1)
        .map(|i| i + pat1.len())
        .or_else(|| header.find(&pat2).map(|i| i + pat2.len()))?;
    Some(header[at..].trim_start())
}
