//! Loads compiled artifacts and executes them. Depends on the artifact format only, never on the IR, so that it links no compiler.

pub mod compare;
pub mod cpu;
pub mod gpu;
pub mod maia;
pub mod npy;
