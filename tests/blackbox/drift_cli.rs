//! `maas drift`: the offline CLI gives river's flags on every reference case, and reads tables.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::BIN;

pub(crate) fn maas(args: &[String], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A fixed pseudo-random number in [0, 1) for element `i` (the classic shader hash).
fn noise(i: usize, seed: f64) -> f64 {
    ((i as f64 * seed).sin() * 43758.5453).fract().abs()
}

fn stream_output(args: &[&str], stdin: Option<&str>) -> (Vec<u64>, Vec<u64>) {
    let (ok, out, err) = maas(&strings(args), stdin);
    assert!(ok, "{args:?}: {err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let indices = |key: &str| -> Vec<u64> {
        got[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {got}"))
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    (indices("drifts"), indices("warnings"))
}

#[test]
fn stream_flags_an_abrupt_shift_after_it_happens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shift.csv");
    // A header, a blank line and a NaN line that the detector skips but that keeps its index.
    let mut text = String::from("latency_ms\n\n");
    for i in 0..2000 {
        if i == 10 {
            text.push_str("nan\n");
            continue;
        }
        text.push_str(&format!(
            "{}\n",
            noise(i, 12.9898) + if i >= 1000 { 3.0 } else { 0.0 }
        ));
    }
    std::fs::write(&file, text).unwrap();
    let path = file.display().to_string();
    for detector in ["adwin", "page_hinkley"] {
        let (drifts, warnings) =
            stream_output(&["drift", "stream", "--detector", detector, &path], None);
        let first = *drifts
            .first()
            .unwrap_or_else(|| panic!("{detector}: no drift"));
        assert!((1000..1100).contains(&first), "{detector}: {drifts:?}");
        assert!(
            warnings.is_empty(),
            "{detector} has no warning zone: {warnings:?}"
        );
    }
    // River's parameter names: watching only for an increase still catches it.
    let (drifts, _) = stream_output(
        &[
            "drift",
            "stream",
            "--detector",
            "page_hinkley",
            "--param",
            "mode=up",
            "--param",
            "min_instances=50",
            &path,
        ],
        None,
    );
    assert!((1000..1100).contains(&drifts[0]), "{drifts:?}");
}

#[test]
fn hddm_a_flags_a_rising_error_rate_with_warnings_first() {
    // Error bits: 10 % errors, then 60 % from element 1500 on.
    let mut text = String::new();
    for i in 0..3000 {
        let rate = if i < 1500 { 0.1 } else { 0.6 };
        text.push_str(if noise(i, 78.233) < rate {
            "1\n"
        } else {
            "0\n"
        });
    }
    for detector in ["hddm_a", "hddm_w"] {
        let (drifts, warnings) = stream_output(
            &["drift", "stream", "--detector", detector, "-"],
            Some(&text),
        );
        let first = *drifts
            .first()
            .unwrap_or_else(|| panic!("{detector}: no drift"));
        assert!((1500..1700).contains(&first), "{detector}: {drifts:?}");
        assert!(
            warnings.iter().any(|&w| (1500..first).contains(&w)),
            "{detector}: no warning before the drift at {first}: {warnings:?}"
        );
    }
}

#[test]
fn stream_matches_river_on_every_reference_case() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../drift/reference/cases.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = std::collections::HashMap::new();
    for (name, stream) in reference["streams"].as_object().unwrap() {
        let file = dir.path().join(format!("{name}.txt"));
        let mut text = String::from("value\n");
        for v in stream["values"].as_array().unwrap() {
            text.push_str(&format!("{}\n", v.as_f64().unwrap()));
        }
        std::fs::write(&file, text).unwrap();
        files.insert(name.clone(), file);
    }
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() > 400);
    for case in cases {
        let mut args = strings(&[
            "drift",
            "stream",
            "--detector",
            case["detector"].as_str().unwrap(),
        ]);
        for (key, value) in case["params"].as_object().unwrap() {
            args.push("--param".into());
            args.push(format!("{key}={}", value.as_str().unwrap()));
        }
        args.push(
            files[case["stream"].as_str().unwrap()]
                .display()
                .to_string(),
        );
        let (ok, out, err) = maas(&args, None);
        assert!(ok, "{args:?}: {err}");
        let got: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got["drifts"], case["drift"], "drifts of {case}");
        let warnings = case.get("warning").cloned().unwrap_or(json!([]));
        assert_eq!(got["warnings"], warnings, "warnings of {case}");
    }
}

#[test]
fn stream_reads_stdin_and_table_reports_the_shifted_feature() {
    let mut text = String::from("x\n");
    for i in 0..400 {
        let base = ((i as f64 * 12.9898).sin() * 43758.5453).fract().abs();
        text.push_str(&format!("{}\n", base + if i >= 200 { 5.0 } else { 0.0 }));
    }
    let (ok, out, err) = maas(
        &strings(&["drift", "stream", "--detector", "page_hinkley", "-"]),
        Some(&text),
    );
    assert!(ok, "{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let first = got["drifts"][0].as_u64().expect("a drift");
    assert!((200..260).contains(&first), "{got}");

    let dir = tempfile::tempdir().unwrap();
    let mut baseline = String::from("stable,shifted\n");
    let mut fresh = String::from("stable,shifted\n");
    for i in 0..100 {
        let a = ((i as f64 * 7.13).sin() * 1000.0).fract().abs();
        let b = ((i as f64 * 3.77).sin() * 1000.0).fract().abs();
        baseline.push_str(&format!("{a},{b}\n"));
        // An empty cell is a missing value, skipped like NaN.
        let stable = if i == 7 {
            String::new()
        } else {
            ((i as f64 * 5.31).sin() * 1000.0).fract().abs().to_string()
        };
        fresh.push_str(&format!(
            "{stable},{}\n",
            b + if i >= 50 { 4.0 } else { 0.0 }
        ));
    }
    std::fs::write(dir.path().join("base.csv"), baseline).unwrap();
    std::fs::write(dir.path().join("new.csv"), fresh).unwrap();
    let base = dir.path().join("base.csv").display().to_string();
    let new = dir.path().join("new.csv").display().to_string();
    let (ok, out, err) = maas(
        &strings(&[
            "drift",
            "table",
            "--detector",
            "adwin",
            "--baseline",
            &base,
            &new,
        ]),
        None,
    );
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["features"]["shifted"][0].as_u64().unwrap() >= 50,
        "{report}"
    );
    assert!(report["features"].get("stable").is_none(), "{report}");
}

#[test]
fn bad_invocations_exit_1_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let numbers = dir.path().join("n.txt");
    std::fs::write(&numbers, "1\n2\nthree\n").unwrap();
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "a,b,c\n1,2,3\n").unwrap();
    let base = dir.path().join("base.csv");
    std::fs::write(&base, "a,b\n1,2\n").unwrap();
    let ragged = dir.path().join("ragged.csv");
    std::fs::write(&ragged, "a,b\n1,2\n3\n").unwrap();
    let words = dir.path().join("words.csv");
    std::fs::write(&words, "a,b\n1,2\n3,four\n").unwrap();
    let table = |new: &std::path::Path| {
        strings(&[
            "drift",
            "table",
            "--detector",
            "adwin",
            "--baseline",
            &base.display().to_string(),
            &new.display().to_string(),
        ])
    };
    let n = numbers.display().to_string();
    for (args, needle) in [
        (
            strings(&["drift", "stream", "--detector", "kswin", &n]),
            "kswin",
        ),
        (
            strings(&[
                "drift",
                "stream",
                "--detector",
                "adwin",
                "--param",
                "delta",
                &n,
            ]),
            "KEY=VALUE",
        ),
        (
            strings(&[
                "drift",
                "stream",
                "--detector",
                "hddm_a",
                "--param",
                "drift_confidence=2",
                &n,
            ]),
            "drift_confidence",
        ),
        (
            strings(&["drift", "stream", "--detector", "adwin", &n]),
            "line 3",
        ),
        (
            strings(&["drift", "stream", "--detector", "adwin", "/does/not/exist"]),
            "/does/not/exist",
        ),
        (table(&other), "columns"),
        (
            table(&ragged),
            "line 3 has 1 field but the header has 2 columns",
        ),
        (table(&words), "line 3, column 'b': not a number"),
    ] {
        let (ok, _, err) = maas(&args, None);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        // A refused file is never quoted back.
        assert!(
            !err.contains("four") && !err.contains("three"),
            "{args:?}: {err}"
        );
    }
}
