//! GPU artifact folders (`compile --target sm_90a|sm_80|gfx942|gfx90a -o
//! DIR`) and their runtime, on a machine without a GPU: what is written,
//! that it is deterministic, that damaged folders are refused, and that
//! running says clearly why it cannot.

use crate::common::{repo, smelt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TARGETS: [(&str, &str); 4] = [
    ("sm_80", "ptx"),
    ("sm_90a", "ptx"),
    ("gfx90a", "hip"),
    ("gfx942", "hip"),
];

fn example(name: &str) -> PathBuf {
    repo().join("examples").join(name).join("model.onnx")
}

fn compile(model: &Path, target: &str, out: &Path) -> Output {
    smelt(&[
        "compile",
        model.to_str().unwrap(),
        "--target",
        target,
        "-o",
        out.to_str().unwrap(),
    ])
}

fn smelt_rt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_smelt-rt"))
        .args(args)
        .output()
        .expect("the smelt-rt binary runs")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn gpu_artifact_folders_are_complete_and_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    for (target, ext) in TARGETS {
        let (a, b) = (
            tmp.path().join(format!("{target}-a")),
            tmp.path().join(format!("{target}-b")),
        );
        for dir in [&a, &b] {
            let r = compile(&example("transformer_block"), target, dir);
            let err = String::from_utf8_lossy(&r.stderr);
            assert!(r.status.success(), "{target}: {err}");
            assert!(err.contains("tensor-core"), "{target}: {err}");
        }
        let fa = files(&a);
        let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"manifest.json"), "{target}: {names:?}");
        assert!(names.contains(&"weights.bin"), "{target}: {names:?}");
        assert!(
            names.contains(&format!("kernels.{ext}").as_str()),
            "{target}: {names:?}"
        );
        assert!(fa == files(&b), "{target}: two compiles differ");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(m["target"], target);
        assert_eq!(m["format"], "smelt-gpu");
        // The transformer block's weights (Q/K/V/O and FFN matrices) all
        // travel in weights.bin.
        assert!(m["weights_bytes"].as_u64().unwrap() > 30_000, "{target}");
    }
}

/// No driver here: `smelt run DIR`, `smelt-rt DIR` and `conformance
/// --target` fail with a message naming what is missing, never a panic.
#[test]
fn running_without_a_gpu_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let input = repo().join("examples/transformer_block/input_0.pb");
    for target in ["sm_90a", "gfx942"] {
        let dir = tmp.path().join(target);
        assert!(
            compile(&example("transformer_block"), target, &dir)
                .status
                .success()
        );
        let out = tmp.path().join(format!("out-{target}"));
        let r = smelt(&[
            "run",
            dir.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{target}: {err}");
        assert!(err.contains("cannot run a"), "{target}: {err}");
        let why = if target == "sm_90a" { "NVIDIA" } else { "AMD" };
        assert!(err.contains(why), "{target}: {err}");
        assert!(!err.contains("panicked"), "{target}: {err}");
        assert!(!out.exists());
    }
    // smelt-rt checks inputs before it looks for a device.
    let dir = tmp.path().join("sm_90a");
    let r = smelt_rt(&[dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("input \"x\" was not given"), "{err}");
    let npy = tmp.path().join("x.npy");
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let mut h = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 8, 32), }".to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 256 * 4));
    std::fs::write(&npy, bytes).unwrap();
    let r = smelt_rt(&[dir.to_str().unwrap(), "--input", npy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("no NVIDIA driver"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let r = smelt(&[
        "conformance",
        repo().join("examples").to_str().unwrap(),
        "--target",
        "sm_90a",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("--bundle"), "{err}");
}

/// Every kind of damage to a folder is named, with the file, before any
/// device is touched.
#[test]
fn damaged_gpu_artifacts_are_rejected_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("good");
    assert!(
        compile(&example("resnet_mini"), "sm_90a", &good)
            .status
            .success()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(good.join("manifest.json")).unwrap()).unwrap();
    type Damage = fn(&Path, &serde_json::Value);
    let edit = |dir: &Path, m: serde_json::Value| {
        std::fs::write(dir.join("manifest.json"), m.to_string()).unwrap()
    };
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "module-edited",
            |d, _| {
                let p = d.join("kernels.ptx");
                let mut t = std::fs::read(&p).unwrap();
                t.extend_from_slice(b"// edited\n");
                std::fs::write(p, t).unwrap();
            },
            "checksum mismatch",
        ),
        (
            "weights-truncated",
            |d, _| {
                let p = d.join("weights.bin");
                let t = std::fs::read(&p).unwrap();
                std::fs::write(p, &t[..t.len() / 2]).unwrap();
            },
            "weights.bin: size or checksum mismatch",
        ),
        (
            "module-missing",
            |d, _| std::fs::remove_file(d.join("gemm_0.ptx")).unwrap(),
            "gemm_0.ptx",
        ),
        (
            "manifest-garbage",
            |d, _| std::fs::write(d.join("manifest.json"), "{").unwrap(),
            "not JSON",
        ),
        ("version", |_, _| {}, "version 99"),
        ("escape", |_, _| {}, "bad module file name"),
        ("buffer-range", |_, _| {}, "does not exist"),
        ("arena-range", |_, _| {}, "outside the arena"),
        ("shared-memory", |_, _| {}, "bytes of dynamic shared memory"),
    ];
    for (name, damage, want) in cases {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        for (f, bytes) in files(&good) {
            std::fs::write(dir.join(f), bytes).unwrap();
        }
        damage(&dir, &manifest);
        let mut m = manifest.clone();
        match name {
            "version" => m["version"] = 99.into(),
            "escape" => m["modules"][0]["file"] = "../../etc/passwd".into(),
            "buffer-range" => m["outputs"][0]["buffer"] = 100_000.into(),
            "arena-range" => m["arena_bytes"] = 16.into(),
            "shared-memory" => {
                m["steps"][0]["Launch"]["launch"]["shared_bytes"] = (1u64 << 20).into()
            }
            _ => {}
        }
        if m != manifest {
            edit(&dir, m);
        }
        let out = tmp.path().join(format!("out-{name}"));
        let r = smelt(&[
            "run",
            dir.to_str().unwrap(),
            "--input",
            repo()
                .join("examples/resnet_mini/input_0.pb")
                .to_str()
                .unwrap(),
            "--output-dir",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!out.exists(), "{name}");
    }
}

/// `-o DIR` never overwrites a folder that is not a smelt artifact.
#[test]
fn gpu_compile_refuses_to_clobber_other_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mine");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "keep me").unwrap();
    let r = compile(&example("resnet_mini"), "gfx942", &dir);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("not a smelt GPU artifact"), "{err}");
    assert_eq!(files(&dir).len(), 1);
    // Recompiling over an artifact replaces it.
    let art = tmp.path().join("art");
    assert!(
        compile(&example("resnet_mini"), "gfx942", &art)
            .status
            .success()
    );
    assert!(
        compile(&example("transformer_block"), "gfx942", &art)
            .status
            .success()
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(art.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["name"], "transformer_block");
}

/// `--bundle` writes each case as a folder with its inputs, expected
/// outputs and tolerances, which is what `smelt-rt --check` reads.
#[test]
fn conformance_bundle_holds_cases_for_smelt_rt() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = crate::common::conformance_dir();
    let bundle = tmp.path().join("bundle");
    let r = smelt(&[
        "conformance",
        cases.to_str().unwrap(),
        "--target",
        "sm_90a",
        "--filter",
        "test_relu",
        "--bundle",
        bundle.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success(), "{out}");
    assert!(out.contains("cases compiled for sm_90a"), "{out}");
    let set = bundle.join("test_relu/test_data_set_0");
    for f in [
        "manifest.json",
        "kernels.ptx",
        "input_0.bin",
        "expected_0.bin",
        "check.json",
    ] {
        assert!(set.join(f).is_file(), "{f} missing in {}", set.display());
    }
    // The expected output is the case's own: 3x4x5 f32.
    assert_eq!(
        std::fs::metadata(set.join("expected_0.bin")).unwrap().len(),
        60 * 4
    );
    let r = smelt_rt(&["--check", bundle.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("no NVIDIA driver"), "{err}");
}

/// The deployment runtime links no compiler.
#[test]
fn smelt_rt_links_no_llvm() {
    let rt = std::fs::read(env!("CARGO_BIN_EXE_smelt-rt")).unwrap();
    let smelt = std::fs::read(env!("CARGO_BIN_EXE_smelt")).unwrap();
    let has = |b: &[u8], s: &[u8]| b.windows(s.len()).any(|w| w == s);
    // LLVM's fatal-error prefix is in every binary that links LLVM.
    assert!(has(&smelt, b"LLVM ERROR"));
    assert!(!has(&rt, b"LLVM ERROR"));
}
