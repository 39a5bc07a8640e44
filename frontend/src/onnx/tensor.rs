//! TensorProto -> `TensorData`: inline typed fields, `raw_data` (moved, not
//! copied) and external data (memory-mapped, confined to the model folder).

use onnx_protobuf::TensorProto;
use onnx_protobuf::tensor_proto::DataLocation;
use smelt_ir::data::{FileOrigin, MappedFile, map_file};
use smelt_ir::semantics::util::dtype_from_onnx;
use smelt_ir::{Bytes, DType, Payload, TensorData};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Why a tensor could not be converted; the caller names the tensor.
#[derive(Debug)]
pub(crate) enum TensorErr {
    /// Well-formed but outside what smelt handles (complex, segments, ...).
    Unsupported(String),
    Invalid(String),
}

impl TensorErr {
    fn invalid(s: impl Into<String>) -> Self {
        TensorErr::Invalid(s.into())
    }
}

/// Resolves external data inside one folder, mapping each file once.
pub(crate) struct ExternalData {
    base: Option<PathBuf>,
    canonical_base: Option<PathBuf>,
    maps: HashMap<PathBuf, Arc<MappedFile>>,
}

impl ExternalData {
    pub(crate) fn new(base: Option<&Path>) -> Self {
        ExternalData {
            base: base.map(Path::to_path_buf),
            canonical_base: None,
            maps: HashMap::new(),
        }
    }

    fn resolve(
        &mut self,
        t: &TensorProto,
        dtype: DType,
        expected: usize,
    ) -> Result<Bytes, TensorErr> {
        let Some(base) = self.base.clone() else {
            return Err(TensorErr::invalid(
                "uses external data, which needs the model's folder (import from a file)",
            ));
        };
        let mut location = None;
        let mut offset: u64 = 0;
        let mut length: Option<u64> = None;
        for e in &t.external_data {
            let num = |v: &str| {
                v.trim().parse::<u64>().map_err(|_| {
                    TensorErr::invalid(format!("external data {} \"{v}\" is not a number", e.key))
                })
            };
            match e.key.as_str() {
                "location" => location = Some(e.value.clone()),
                "offset" => offset = num(&e.value)?,
                "length" => length = Some(num(&e.value)?),
                _ => {}
            }
        }
        let Some(location) = location.filter(|l| !l.is_empty()) else {
            return Err(TensorErr::invalid("external data has no location"));
        };
        let rel = Path::new(&location);
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(TensorErr::invalid(format!(
                        "external data location \"{location}\" points outside the model's folder (it contains \"..\")"
                    )));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(TensorErr::invalid(format!(
                        "external data location \"{location}\" points outside the model's folder (it is an absolute path)"
                    )));
                }
            }
        }
        let io = |what: &str, e: std::io::Error| {
            TensorErr::invalid(format!("external data \"{location}\": {what}: {e}"))
        };
        if self.canonical_base.is_none() {
            let cb = base
                .canonicalize()
                .map_err(|e| io("cannot resolve the model folder", e))?;
            self.canonical_base = Some(cb);
        }
        let cbase = self.canonical_base.clone().unwrap_or_default();
        let full = base
            .join(rel)
            .canonicalize()
            .map_err(|e| io("cannot open", e))?;
        if !full.starts_with(&cbase) {
            return Err(TensorErr::invalid(format!(
                "external data location \"{location}\" points outside the model's folder"
            )));
        }
        let meta = std::fs::metadata(&full).map_err(|e| io("cannot open", e))?;
        if !meta.is_file() {
            return Err(TensorErr::invalid(format!(
                "external data location \"{location}\" is not a regular file"
            )));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            // A hard link may be a second name for a file anywhere on the
            // volume; nothing tells where, so refuse them all.
            if meta.nlink() > 1 {
                return Err(TensorErr::invalid(format!(
                    "external data file \"{location}\" may point outside the model's folder (it has several hard links)"
                )));
            }
        }
        let size = meta.len();
        let length = length.unwrap_or(size.saturating_sub(offset));
        let end = offset.checked_add(length).filter(|&e| e <= size).ok_or_else(|| {
            TensorErr::invalid(format!(
                "external data \"{location}\": offset {offset} + length {length} is beyond the file's {size} bytes"
            ))
        })?;
        if length != expected as u64 {
            return Err(TensorErr::invalid(format!(
                "external data \"{location}\" holds {length} bytes but {dtype}{:?} needs {expected}",
                dims_of(t)
            )));
        }
        let origin = Some(FileOrigin {
            path: PathBuf::from(&location),
            offset,
        });
        if length == 0 {
            // Zero-length files cannot be mapped everywhere; nothing to share.
            return Ok(Bytes::from_vec(Vec::new()));
        }
        let map = match self.maps.get(&full) {
            Some(m) => m.clone(),
            None => {
                let m = map_file(&full).map_err(|e| io("cannot map", e))?;
                self.maps.insert(full.clone(), m.clone());
                m
            }
        };
        let (start, end) = (
            usize::try_from(offset).map_err(|_| TensorErr::invalid("offset too large"))?,
            usize::try_from(end).map_err(|_| TensorErr::invalid("length too large"))?,
        );
        Bytes::slice_of(map, start..end, origin).ok_or_else(|| {
            TensorErr::invalid(format!(
                "external data \"{location}\" changed while reading"
            ))
        })
    }
}

fn dims_of(t: &TensorProto) -> &[i64] {
    &t.dims
}

/// The dtype of a TensorProto by number (the generated enum is proto3, so
/// codes newer than the bundled schema still come through as integers).
pub(crate) fn dtype_of_code(code: i32) -> Result<DType, TensorErr> {
    dtype_from_onnx(code as i64).ok_or_else(|| {
        let name = match code {
            0 => "undefined",
            14 => "complex64",
            15 => "complex128",
            _ => "",
        };
        if code == 0 {
            TensorErr::invalid("has no data type")
        } else {
            TensorErr::Unsupported(
                format!("has data type {code} {name}, which smelt does not support")
                    .replace("  ", " ")
                    .replace(" ,", ","),
            )
        }
    })
}

/// Converts a tensor, taking `raw_data` out of the proto without copying.
pub(crate) fn tensor_data(
    t: &mut TensorProto,
    ext: &mut ExternalData,
) -> Result<TensorData, TensorErr> {
    let dtype = dtype_of_code(t.data_type)?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(TensorErr::invalid(format!(
                "has negative dimension {d} in {:?}",
                t.dims
            )));
        }
        shape.push(
            usize::try_from(d).map_err(|_| {
                TensorErr::invalid(format!("dimension {d} does not fit this machine"))
            })?,
        );
    }
    let n = smelt_ir::shape::checked_numel(&shape).ok_or_else(|| {
        TensorErr::invalid(format!(
            "dims {:?} have more elements than i64 can count",
            t.dims
        ))
    })?;
    if t.segment.is_some() {
        return Err(TensorErr::Unsupported(
            "is segmented, which smelt does not support".into(),
        ));
    }
    if dtype.class() == smelt_ir::DClass::Block {
        return Err(TensorErr::Unsupported(format!(
            "has dtype {dtype}, which has no ONNX encoding"
        )));
    }
    let mk = |payload| {
        TensorData::new(dtype, shape.clone(), payload)
            .map_err(|e| TensorErr::invalid(e.to_string()))
    };
    let external = t.data_location.value() == DataLocation::EXTERNAL as i32;
    if dtype == DType::String {
        if external || !t.raw_data.is_empty() {
            return Err(TensorErr::invalid(
                "is a string tensor with raw or external data",
            ));
        }
        let mut v = Vec::with_capacity(t.string_data.len());
        for s in std::mem::take(&mut t.string_data) {
            v.push(
                String::from_utf8(s)
                    .map_err(|_| TensorErr::invalid("holds a string that is not UTF-8"))?,
            );
        }
        if v.len() != n {
            return Err(TensorErr::invalid(format!(
                "has {} strings but dims {:?} need {n}",
                v.len(),
                t.dims
            )));
        }
        return mk(Payload::Strings(Arc::new(v)));
    }
    let expected = dtype
        .storage_bytes(n)
        .ok_or_else(|| TensorErr::invalid("is too large"))?;
    if external {
        let b = ext.resolve(t, dtype, expected)?;
        return mk(Payload::Raw(b));
    }
    if !t.raw_data.is_empty() || n == 0 {
        if t.raw_data.len() != expected {
            return Err(TensorErr::invalid(format!(
                "raw_data has {} bytes but {dtype}{:?} needs {expected}",
                t.raw_data.len(),
                t.dims
            )));
        }
        return mk(Payload::Raw(Bytes::from_vec(std::mem::take(
            &mut t.raw_data,
        ))));
    }
    let bytes = typed_bytes(t, dtype, n)?;
    mk(Payload::Raw(Bytes::from_vec(bytes)))
}

/// Encodes the typed repeated field that holds `dtype` as raw bytes.
fn typed_bytes(t: &TensorProto, dtype: DType, n: usize) -> Result<Vec<u8>, TensorErr> {
    let count = |field: &str, got: usize, want: usize| {
        if got == want {
            Ok(())
        } else {
            Err(TensorErr::invalid(format!(
                "{field} has {got} values but dims {:?} need {want}",
                t.dims
            )))
        }
    };
    let mut out = Vec::new();
    match dtype {
        DType::F32 => {
            count("float_data", t.float_data.len(), n)?;
            t.float_data
                .iter()
                .for_each(|x| out.extend(x.to_le_bytes()));
        }
        DType::F64 => {
            count("double_data", t.double_data.len(), n)?;
            t.double_data
                .iter()
                .for_each(|x| out.extend(x.to_le_bytes()));
        }
        DType::I64 => {
            count("int64_data", t.int64_data.len(), n)?;
            t.int64_data
                .iter()
                .for_each(|x| out.extend(x.to_le_bytes()));
        }
        DType::U64 | DType::U32 => {
            count("uint64_data", t.uint64_data.len(), n)?;
            let w = dtype.bits() as usize / 8;
            t.uint64_data
                .iter()
                .for_each(|x| out.extend(&x.to_le_bytes()[..w]));
        }
        DType::I4 | DType::U4 | DType::F4E2M1 | DType::I2 | DType::U2 => {
            // One packed byte per int32 element: two 4-bit or four 2-bit
            // values, from the low bits up.
            let per = 8 / dtype.bits() as usize;
            count("int32_data", t.int32_data.len(), n.div_ceil(per))?;
            t.int32_data.iter().for_each(|&x| out.push(x as u8));
        }
        _ => {
            // Everything else narrower than 32 bits (ints, bool, and the bit
            // patterns of f16/bf16/f8) travels one element per int32.
            let w = dtype.bits() as usize / 8;
            if !(1..=4).contains(&w) {
                return Err(TensorErr::Unsupported(format!(
                    "has dtype {dtype} with inline data"
                )));
            }
            count("int32_data", t.int32_data.len(), n)?;
            t.int32_data
                .iter()
                .for_each(|x| out.extend(&x.to_le_bytes()[..w]));
        }
    }
    Ok(out)
}
