//! Attention (to come).

use super::Error;
use super::lower::{Lw, unsup};
use smelt_ir::Node;

pub fn lower(_lw: &mut Lw, n: &Node) -> Result<(), Error> {
    Err(unsup(n.op, ""))
}
