//! Code generation targets (cpu now; PTX, HIP and the command stream share
//! the same shape): graph lowering to kernel IR (`lower`), and per target the
//! program builder and artifact writer.

pub mod cpu;
pub mod expand;
pub mod gpu;
pub mod lower;
pub mod maia;
