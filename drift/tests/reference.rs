//! Replays `reference/cases.json` (river 0.26's flags, made by `reference/make_reference.py`)
//! through the Rust detectors: every case must give exactly river's drift and warning indices.
// A test binary: a failed read or parse is a test failure, so panicking helpers are fine.
#![allow(clippy::expect_used)]

use std::collections::BTreeMap;

use maas_drift::{DetectorConfig, DriftDetector};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    river_version: String,
    streams: BTreeMap<String, Stream>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Stream {
    /// Left-to-right f64 sum of `values`, as Python's shortest repr (parsed with `str::parse`,
    /// which rounds correctly; serde_json's default number parser does not for 17 digits).
    sum: String,
    values: Vec<f64>,
}

#[derive(Deserialize)]
struct Case {
    detector: String,
    params: BTreeMap<String, String>,
    stream: String,
    drift: Vec<usize>,
    /// Present for the detectors that warn.
    warning: Option<Vec<usize>>,
}

fn load() -> Reference {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/reference/cases.json");
    let text = std::fs::read_to_string(path).expect("reference/cases.json is committed");
    serde_json::from_str(&text).expect("cases.json parses")
}

#[test]
fn every_reference_case_matches_river() {
    let reference = load();
    assert!(reference.river_version.starts_with("0.26."));
    for (name, stream) in &reference.streams {
        // Python's left-to-right sum: equal only if every value parsed to the same f64.
        let sum = stream.values.iter().fold(0.0_f64, |acc, &x| acc + x);
        let expected: f64 = stream.sum.parse().expect("sum is a float literal");
        assert_eq!(sum, expected, "stream {name} did not parse bit for bit");
    }
    assert!(
        reference.cases.len() >= 400,
        "{} cases",
        reference.cases.len()
    );

    let mut failures = Vec::new();
    let mut flags = 0usize;
    for case in &reference.cases {
        let config = DetectorConfig::from_params(&case.detector, &case.params)
            .unwrap_or_else(|e| panic!("{} {:?}: {e}", case.detector, case.params));
        let mut detector = config.build().expect("validated config builds");
        let stream = &reference.streams[&case.stream].values;
        let (mut drift, mut warning) = (Vec::new(), Vec::new());
        for (i, &x) in stream.iter().enumerate() {
            let signal = detector.update(x);
            if signal.drift {
                drift.push(i);
            }
            if signal.warning {
                warning.push(i);
            }
        }
        assert_eq!(detector.skipped(), 0);
        let expected_warning = case.warning.clone().unwrap_or_default();
        flags += case.drift.len() + expected_warning.len();
        if drift != case.drift || warning != expected_warning {
            failures.push(format!(
                "{} {:?} on {}:\n  drift   river {:?}\n          rust  {:?}\n  warning river {:?}\n          rust  {:?}",
                case.detector, case.params, case.stream, case.drift, drift, expected_warning, warning
            ));
        }
    }
    assert!(
        flags > 1000,
        "the cases should exercise many flags, got {flags}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from river:\n{}",
        failures.len(),
        reference.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_reference_covers_every_detector_and_its_defaults() {
    let reference = load();
    for name in DetectorConfig::NAMES {
        assert!(
            reference
                .cases
                .iter()
                .any(|c| c.detector == name && c.params.is_empty()),
            "no default-parameter case for {name}"
        );
        let warns = matches!(name, "hddm_a" | "hddm_w");
        assert!(reference
            .cases
            .iter()
            .filter(|c| c.detector == name)
            .all(|c| c.warning.is_some() == warns));
    }
}
