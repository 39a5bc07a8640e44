//! Importers into the tensor IR.

pub mod checkpoint;
pub mod onnx;
pub mod tensor_io;

pub use onnx::{ImportError, import_bytes, import_file};
