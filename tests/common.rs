//! Shared helpers: running the CLI, locating generated data.

use std::path::PathBuf;
use std::process::{Command, Output};

pub fn smelt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt"))
        .args(args)
        .output()
        .expect("the smelt binary runs")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The generated ONNX node-test cases. `make test` generates them; running
/// `cargo test` alone without them is a setup error, said loudly.
pub fn conformance_dir() -> PathBuf {
    let dir = std::env::var_os("SMELT_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/onnx-node"));
    assert!(
        dir.join("VERSION").is_file(),
        "no conformance cases at {}: run `make test` (or `python scripts/gen_conformance.py`) first",
        dir.display()
    );
    dir
}
