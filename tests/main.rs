//! Integration tests: one binary, one module per area. They drive the
//! `smelt` binary and the public crate APIs with real model files.

mod bad_input;
mod checkpoint;
mod common;
mod conformance;
mod cpu;
mod filetests;
mod fixtures;
mod gpu;
mod hip;
mod kernel_snapshots;
mod maia_target;
mod models;
mod optimizer_models;
mod ptx;
mod roundtrip;
