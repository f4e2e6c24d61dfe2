//! Replays the committed fuzz corpora and crash regressions (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the same target functions the fuzzer ran, on stable:
//! any input that panics fails the test, named. Inputs under `fuzz/regressions/<target>/known/`
//! are bugs not fixed yet and are left out (see fuzz/README.md).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use maas_gateway::fuzz_targets;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 7] = [
    ("onnx", fuzz_targets::onnx),
    ("csv", fuzz_targets::csv),
    ("json_tensor", fuzz_targets::json_tensor),
    ("v2_binary", fuzz_targets::v2_binary),
    ("multipart", fuzz_targets::multipart),
    ("workflow", fuzz_targets::workflow),
    ("jwt", fuzz_targets::jwt),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fuzz")
}

/// The files directly in `dir` (not in its subfolders, so `known/` stays out), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_runs_without_a_panic() {
    let root = fuzz_dir();
    let mut failures = Vec::new();
    let mut replayed = 0usize;
    for (name, target) in TARGETS {
        let corpus = inputs(&root.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{name} is missing or empty: every target keeps its seeds there"
        );
        let regressions = inputs(&root.join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap();
            replayed += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failures.push(format!("{name}: {}", file.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {replayed} fuzz inputs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
