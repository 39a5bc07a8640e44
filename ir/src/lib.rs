//! smelt's tensor IR: element types, shapes, the op set, graphs with weights
//! held by reference, the verifier, the text form and the reference
//! interpreter. Everything else in smelt speaks this IR.

pub mod accel;
pub mod attr;
pub mod data;
pub mod dtype;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod op;
pub mod semantics;
pub mod shape;
pub mod target;
pub mod text;
pub mod verify;

pub use attr::{Attr, Attrs};
pub use data::{Bytes, Payload, TensorData};
pub use dtype::{DClass, DType};
pub use graph::{Graph, Node, Value, ValueId};
pub use op::Op;
pub use shape::{Dim, Shape, TensorType};
pub use verify::{VerifyError, verify};
