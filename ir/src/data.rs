//! Constant tensor payloads held by reference. Weights are either a slice of
//! a memory-mapped file or a shared, reference-counted buffer (for example
//! the `raw_data` vector taken out of a parsed protobuf): cloning a graph or
//! a constant never copies the bytes.

use crate::DType;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a byte range came from, kept so that the text form can refer to an
/// external weight file instead of inlining it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileOrigin {
    /// Path as written in the model (relative to the model's folder).
    pub path: PathBuf,
    pub offset: u64,
}

#[derive(Clone)]
pub struct Bytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
    origin: Option<FileOrigin>,
}

impl Bytes {
    pub fn from_vec(v: Vec<u8>) -> Self {
        let len = v.len();
        Bytes {
            owner: Arc::new(v),
            range: 0..len,
            origin: None,
        }
    }

    /// A window into a shared owner (such as a memory map). Returns `None`
    /// if the range does not lie inside the owner.
    pub fn slice_of(
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        range: Range<usize>,
        origin: Option<FileOrigin>,
    ) -> Option<Self> {
        let len = (*owner).as_ref().len();
        (range.start <= range.end && range.end <= len).then_some(Bytes {
            owner,
            range,
            origin,
        })
    }

    pub fn origin(&self) -> Option<&FileOrigin> {
        self.origin.as_ref()
    }

    pub fn len(&self) -> usize {
        self.range.len()
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Whether two handles share the same underlying storage (used by tests
    /// that check weights are not copied).
    pub fn shares_storage_with(&self, other: &Bytes) -> bool {
        Arc::ptr_eq(&self.owner, &other.owner)
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes", self.len())?;
        if let Some(o) = &self.origin {
            write!(f, " from {}@{}", o.path.display(), o.offset)?;
        }
        f.write_str(")")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Little-endian elements, sub-byte types packed low nibble first, bool as
    /// one byte per element (the layout of ONNX `raw_data`).
    Raw(Bytes),
    Strings(Arc<Vec<String>>),
}

/// A constant tensor: a weight, an initializer or a folded value.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorData {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("shape {shape:?} has more elements than i64 can count")]
    Overflow { shape: Vec<usize> },
    #[error("{dtype}{shape:?} needs {expected} bytes but {actual} were given")]
    Length {
        dtype: DType,
        shape: Vec<usize>,
        expected: usize,
        actual: usize,
    },
    #[error("{count} strings given for shape {shape:?}")]
    StringCount { shape: Vec<usize>, count: usize },
}

impl TensorData {
    /// Checks that the payload length agrees with dtype and shape.
    pub fn new(dtype: DType, shape: Vec<usize>, payload: Payload) -> Result<Self, DataError> {
        let n = crate::shape::checked_numel(&shape).ok_or(DataError::Overflow {
            shape: shape.clone(),
        })?;
        match &payload {
            Payload::Raw(b) => {
                let expected = dtype.storage_bytes(n).ok_or(DataError::Overflow {
                    shape: shape.clone(),
                })?;
                if b.len() != expected || dtype == DType::String {
                    return Err(DataError::Length {
                        dtype,
                        shape,
                        expected,
                        actual: b.len(),
                    });
                }
            }
            Payload::Strings(s) => {
                if s.len() != n {
                    return Err(DataError::StringCount {
                        shape,
                        count: s.len(),
                    });
                }
            }
        }
        Ok(TensorData {
            dtype,
            shape,
            payload,
        })
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn raw(&self) -> Option<&[u8]> {
        match &self.payload {
            Payload::Raw(b) => Some(b.as_ref()),
            Payload::Strings(_) => None,
        }
    }

    pub fn ty(&self) -> crate::TensorType {
        crate::TensorType::of_static(self.dtype, &self.shape)
    }
}

/// A memory map as a `Bytes` owner.
pub struct MappedFile(pub memmap2::Mmap);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps a whole file read-only. The caller is responsible for checking that
/// `path` is one it is allowed to read.
pub fn map_file(path: &Path) -> std::io::Result<Arc<MappedFile>> {
    let f = std::fs::File::open(path)?;
    // SAFETY: the map is read-only; a concurrent truncation of a model file
    // by another process is outside what smelt defends against, as for any
    // memory-mapped loader.
    let m = unsafe { memmap2::Mmap::map(&f)? };
    Ok(Arc::new(MappedFile(m)))
}
