//! Detection ops: NonMaxSuppression, RoiAlign, DeformConv.

use crate::Op;
use crate::semantics::OpImpl;

pub fn lookup(op: Op) -> Option<OpImpl> {
    let _ = op;
    None
}
