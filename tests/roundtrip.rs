//! Every model the importer accepts prints, parses back and prints the same.

use crate::common::conformance_dir;

#[test]
fn every_conformance_model_round_trips_through_text() {
    let dir = conformance_dir();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    cases.sort();
    let mut imported = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let Ok(g) = smelt_frontend::import_file(&case.join("model.onnx")) else {
            continue;
        };
        imported += 1;
        let text = smelt_ir::text::print(&g);
        match smelt_ir::text::parse_with(&text, Some(case)) {
            Ok(back) => {
                if let Err(e) = smelt_ir::verify(&back) {
                    failures.push(format!(
                        "{}: reparsed graph does not verify: {e}",
                        case.display()
                    ));
                }
                let again = smelt_ir::text::print(&back);
                if again != text {
                    failures.push(format!("{}: print/parse/print differs", case.display()));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(imported > 0, "no model imported from {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} of {imported} models fail to round-trip:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{imported} models round-trip through the text form");
}
