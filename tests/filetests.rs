//! Snapshot filetests of the optimizer: every `tests/filetests/<family>/
//! *.smelt` file is an input graph in IR text form whose header names the
//! passes and target (`# passes: canon`, `# target: cpu`). The snapshot is
//! the rules that fired plus the printed optimized graph. Each file is also
//! run on the interpreter before and after optimization (same results), and
//! optimized twice (byte-identical output).

use smelt_ir::interp::{self, Tensor};
use smelt_ir::target::Target;
use smelt_ir::{DClass, Graph};
use std::path::{Path, PathBuf};

fn files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut v = Vec::new();
    for fam in std::fs::read_dir(&root).unwrap().flatten() {
        if !fam.path().is_dir() || fam.file_name() == "snapshots" {
            continue;
        }
        for f in std::fs::read_dir(fam.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "smelt") {
                v.push(f.path());
            }
        }
    }
    v.sort();
    v
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix('#'))
        .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix(':'))
        .map(str::trim)
}

fn optimize(path: &Path) -> (Graph, Graph, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let passes = header(&text, "passes").unwrap_or("default");
    let target = Target::builtin(header(&text, "target").unwrap_or("cpu")).unwrap();
    let g = smelt_ir::text::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let extract = header(&text, "extract").unwrap_or("greedy");
    let opts = smelt_passes::Options {
        passes: smelt_passes::parse_passes(passes).unwrap(),
        extract: extract.parse().unwrap(),
        ..Default::default()
    };
    let (out, report) = smelt_passes::optimize(&g, &target, &opts)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut s = format!(
        "# passes: {passes}\n# target: {}\n# rules fired:",
        target.name
    );
    if report.rules_fired.is_empty() {
        s.push_str(" none");
    }
    for (r, n) in &report.rules_fired {
        s.push_str(&format!(" {r}={n}"));
    }
    s.push('\n');
    // With ILP, which extraction won and both costs are part of the result.
    if extract != "greedy" {
        for p in &report.passes {
            let x = &p.extraction;
            s.push_str(&format!(
                "# extraction ({}): used {:?}, greedy cost {:.4e}, ilp cost {}\n",
                p.pass,
                x.used,
                x.greedy_cost,
                x.ilp_cost.map_or("none".into(), |c| format!("{c:.4e}"))
            ));
        }
    }
    s.push_str(&smelt_ir::text::print(&out));
    (g, out, s)
}

fn snapshot_name(path: &Path) -> String {
    let fam = path
        .parent()
        .and_then(|p| p.file_name())
        .unwrap()
        .to_string_lossy();
    let stem = path.file_stem().unwrap().to_string_lossy();
    format!("{fam}__{stem}")
}

#[test]
fn snapshots() {
    let files = files();
    assert!(files.len() >= 60, "only {} filetests", files.len());
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("filetests/snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for f in &files {
            let (_, _, s) = optimize(f);
            insta::assert_snapshot!(snapshot_name(f), s);
        }
    });
}

#[test]
fn output_is_deterministic() {
    for f in files() {
        let (_, _, a) = optimize(&f);
        let (_, _, b) = optimize(&f);
        assert_eq!(a, b, "{}", f.display());
    }
}

/// Deterministic pseudo-random inputs in [-2, 2) (a fixed LCG, so runs agree).
fn inputs(g: &Graph) -> Option<Vec<Tensor>> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut v = Vec::new();
    for &i in &g.inputs {
        let ty = &g.value(i).ty;
        let shape = ty.shape.as_static()?;
        let n: usize = shape.iter().product();
        let data: Vec<f64> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f64 / (1u64 << 24) as f64) * 4.0 - 2.0
            })
            .collect();
        v.push(match ty.dtype.class() {
            DClass::Float => Tensor::from_f64(ty.dtype, shape, data),
            DClass::Bool => Tensor::from_bool(shape, data.iter().map(|x| *x > 0.0).collect()),
            _ => Tensor::from_i64(
                ty.dtype,
                shape,
                data.iter().map(|x| (*x * 3.0) as i64).collect(),
            ),
        });
    }
    Some(v)
}

#[test]
fn optimized_graphs_compute_the_same() {
    for f in files() {
        let (g, out, _) = optimize(&f);
        if g.nodes.iter().any(|n| smelt_passes::lang::is_random(n.op)) {
            continue;
        }
        let Some(ins) = inputs(&g) else { continue };
        let want = interp::run(&g, ins.clone()).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let got = interp::run(&out, ins).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(want.len(), got.len());
        for (w, o) in want.iter().zip(&got) {
            assert_eq!(w.shape, o.shape, "{}", f.display());
            match (w.to_f64_vec(), o.to_f64_vec()) {
                (Some(a), Some(b)) => {
                    for (x, y) in a.iter().zip(&b) {
                        // Recognized GELU differs from its decomposition by rounding.
                        let ok =
                            (x.is_nan() && y.is_nan()) || (x - y).abs() <= 1e-5 + 1e-5 * x.abs();
                        assert!(ok, "{}: {x} vs {y}", f.display());
                    }
                }
                _ => assert_eq!(w, o, "{}", f.display()),
            }
        }
    }
}
