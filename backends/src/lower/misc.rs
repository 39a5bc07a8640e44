//! Small ops without a family of their own: BitCast, Dropout (inference),
//! Swish, SwiGLU, Shrink, Binarizer.

use super::{LResult, Lower};

pub fn lower(l: &mut Lower) -> Option<LResult<()>> {
    let _ = l;
    None
}
