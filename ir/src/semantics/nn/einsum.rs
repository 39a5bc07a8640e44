//! (see nn/mod.rs)

use crate::Op;
use crate::semantics::OpImpl;

pub fn lookup(op: Op) -> Option<OpImpl> {
    let _ = op;
    None
}
