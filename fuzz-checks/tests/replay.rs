//! Every committed fuzz input, replayed through its target's checks on
//! stable Rust: the seeds (`fuzz/seeds/<target>/`) and the corpus the
//! fuzzers grew, minimised (`fuzz/corpus-min/<target>/`). A target with no
//! input at all fails: the replay must never pass by finding nothing.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["seeds", "corpus-min"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((p.display().to_string(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_committed_input_passes_its_targets_checks() {
    for (target, check) in ringfan_fuzz_checks::TARGETS {
        let inputs = inputs(target);
        assert!(
            !inputs.is_empty(),
            "no committed inputs for fuzz target {target}"
        );
        for (name, bytes) in &inputs {
            // A failing input names itself before the check's own panic.
            eprintln!("replay {target}: {name}");
            check(bytes);
        }
        println!("{target}: {} inputs replayed", inputs.len());
    }
}
