//! The interpreter must not regress on the ONNX node tests: the pass count
//! may only go up from the committed floor.

use crate::common::{conformance_dir, repo, smelt};

#[test]
fn interp_pass_count_stays_above_floor() {
    let dir = conformance_dir();
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = smelt(&[
        "conformance",
        dir.to_str().unwrap(),
        "--target",
        "interp",
        "--json",
        json.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("conformance: "),
        "summary line missing: {last}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json.path()).unwrap()).unwrap();
    let passed = report["passed"].as_u64().unwrap();
    let total = report["total"].as_u64().unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len() as u64, total);
    // Every failure carries a class and a reason.
    for c in cases {
        let status = c["status"].as_str().unwrap();
        assert!(["pass", "unsupported", "wrong", "error"].contains(&status));
        if status != "pass" {
            assert!(!c["message"].as_str().unwrap().is_empty(), "{c}");
        }
    }
    let floor: u64 = std::fs::read_to_string(repo().join("tests/conformance-floor.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        passed >= floor,
        "conformance regressed: {passed}/{total} pass, floor is {floor}\n{last}"
    );
}

/// Optimizing first must not lose a case: `--passes default` passes at
/// least as many cases as the floor the plain interpreter holds.
#[test]
fn optimized_graphs_pass_as_many_cases() {
    let dir = conformance_dir();
    let out = smelt(&[
        "conformance",
        dir.to_str().unwrap(),
        "--target",
        "interp",
        "--passes",
        "default",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let passed: u64 = last
        .strip_prefix("conformance: ")
        .and_then(|s| s.split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {last}"));
    let floor: u64 = std::fs::read_to_string(repo().join("tests/conformance-floor.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        passed >= floor,
        "with --passes default: {last}; floor {floor}"
    );
}
