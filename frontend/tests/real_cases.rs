//! Imports every model of the generated ONNX backend node cases, if that
//! cache exists, and checks that no import panics. Prints a tally of the
//! outcomes so progress is visible with `--nocapture`.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn backend_node_models_import_without_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/onnx-node");
    let root = if root.exists() {
        root
    } else {
        Path::new("/work/main/.cache/onnx-node").to_path_buf()
    };
    let Ok(dir) = std::fs::read_dir(&root) else {
        println!("skipped: no conformance cache at {}", root.display());
        return;
    };
    let mut cases: Vec<_> = dir.flatten().map(|e| e.path()).collect();
    cases.sort();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut ok = 0;
    for case in &cases {
        let model = case.join("model.onnx");
        if !model.exists() {
            continue;
        }
        match smelt_frontend::import_file(&model) {
            Ok(_) => ok += 1,
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "multi-line error: {msg}");
                let class = if e.is_unsupported() {
                    if std::env::var_os("SHOW_UNSUPPORTED").is_some() {
                        println!("{}: {msg}", case.display());
                    }
                    "unsupported".to_string()
                } else {
                    println!("{}: {msg}", case.display());
                    "error".to_string()
                };
                *tally.entry(class).or_default() += 1;
            }
        }
    }
    println!(
        "imported {ok} of {} cases; failures: {tally:?}",
        cases.len()
    );
}
