//! Kernel IR snapshots: every graph under tests/kernels/ is lowered for the
//! cpu target (no optimizer passes, so the snapshot shows the lowering
//! alone) and its scheduled kernels are compared with the committed
//! snapshot. Bless changes with `INSTA_UPDATE=always`.

use crate::common::{repo, smelt};

#[test]
fn kernel_ir_snapshots() {
    let dir = repo().join("tests/kernels");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "smelt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no graphs in {}", dir.display());
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir.join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for f in &files {
            let out = smelt(&[
                "compile",
                f.to_str().unwrap(),
                "--target",
                "cpu",
                "--passes",
                "none",
                "--print-kernels",
            ]);
            assert!(
                out.status.success(),
                "{}: {}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let name = f.file_stem().unwrap().to_string_lossy().into_owned();
            insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
        }
    });
}
