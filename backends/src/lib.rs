//! Code generation targets (PTX, HIP, command stream, cpu), each one implementation of a `Target` trait. Arrives with the backend issues; its place in the dependency order is fixed here: backends see `smelt-ir` and `smelt-passes`.
pub mod maia;
