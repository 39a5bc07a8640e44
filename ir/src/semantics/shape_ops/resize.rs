//! (in progress)
use super::Pair;
use crate::Op;

pub(super) fn lookup(op: Op) -> Option<Pair> {
    let _ = op;
    None
}
