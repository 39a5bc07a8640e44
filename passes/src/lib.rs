//! smelt's optimizer: equality saturation over the tensor IR with egg.
//!
//! - `lang`: the e-graph language (IR ops + attribute, input, constant,
//!   projection and root nodes); `analysis`: types and small constant
//!   values per class (constant folding by the reference kernels);
//!   `convert`: Graph <-> e-graph.
//! - `run`: the saturation driver with budgets and per-iteration stats.
//! - `cost`: roofline cost on a `smelt_ir::target::Target`.
//! - `rules`: rewrite rules, one file per family.
//! - `manager`: pass lists, verification, reports.
//!
//! This crate sees `smelt-ir` and nothing above it.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod extract;
pub mod lang;
pub mod manager;
pub mod rules;
pub mod run;

pub use manager::{Options, Report, optimize, parse_passes};

#[cfg(test)]
mod tests;
