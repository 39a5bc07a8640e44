//! The Maia-style backend end to end: compiled programs follow the target
//! file (halving tile SRAM or HBM bandwidth changes tiling and simulated
//! time the expected way).

use crate::common::{repo, smelt};
use std::path::Path;

const MATMUL: &str = r#"graph "g"(%x: f32[1024,1024], %w: f32[1024,1024]) {
  %y: f32[1024,1024] = MatMul(%x, %w)
  return %y
}
"#;

/// Compiles `graph` for the target file `target` and returns (matmul
/// commands, HBM bytes read, simulated cycles).
fn compile_and_time(dir: &Path, graph: &Path, target: &Path, tag: &str) -> (usize, u64, f64) {
    let smx = dir.join(format!("{tag}.smx"));
    let out = smelt(&[
        "compile",
        graph.to_str().unwrap(),
        "--target-file",
        target.to_str().unwrap(),
        "--passes",
        "none",
        "-o",
        smx.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dis = smelt(&["disasm", smx.to_str().unwrap()]);
    assert!(dis.status.success());
    let text = String::from_utf8_lossy(&dis.stdout);
    let matmuls = text.lines().filter(|l| l.contains(" matmul ")).count();
    let sim = smelt(&["simulate", smx.to_str().unwrap(), "--timing-only", "--json"]);
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&sim.stdout).unwrap();
    (
        matmuls,
        r["bytes"]["hbm_read"].as_u64().unwrap(),
        r["cycles"].as_f64().unwrap(),
    )
}

#[test]
fn halving_sram_or_hbm_bandwidth_changes_tiling_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(repo().join("targets/tiny-npu.toml")).unwrap();
    let graph = dir.path().join("g.smelt");
    std::fs::write(&graph, MATMUL).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let half_sram = base.replace("sram_bytes = 262144", "sram_bytes = 131072");
    let half_hbm = base.replace("bandwidth = 1.0e11 # hbm", "bandwidth = 5.0e10 # hbm");
    assert_ne!(half_sram, base);
    assert_ne!(half_hbm, base);
    let t0 = write("base.toml", base);
    let t1 = write("sram.toml", half_sram);
    let t2 = write("hbm.toml", half_hbm);
    let (mm0, hbm0, c0) = compile_and_time(dir.path(), &graph, &t0, "base");
    let (mm1, hbm1, c1) = compile_and_time(dir.path(), &graph, &t1, "sram");
    let (_, _, c2) = compile_and_time(dir.path(), &graph, &t2, "hbm");
    // Less SRAM: smaller tiles, so more matmul commands, more operand
    // re-reads from HBM, and a slower program.
    assert!(mm1 > mm0, "matmul commands: {mm1} with half SRAM vs {mm0}");
    assert!(
        hbm1 > hbm0,
        "HBM bytes read: {hbm1} with half SRAM vs {hbm0}"
    );
    assert!(c1 > c0, "cycles: {c1} with half SRAM vs {c0}");
    // Less HBM bandwidth: the same bytes take longer.
    assert!(c2 > c0, "cycles: {c2} with half HBM bandwidth vs {c0}");
}
