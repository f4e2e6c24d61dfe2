//! `maas drift`: the offline CLI gives river's flags on every reference case, and reads tables.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::BIN;

fn maas(args: &[String], stdin: Option<&str>) -> (bool, String, String) {
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

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
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
        fresh.push_str(&format!(
            "{},{}\n",
            ((i as f64 * 5.31).sin() * 1000.0).fract().abs(),
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
        (
            strings(&[
                "drift",
                "table",
                "--detector",
                "adwin",
                "--baseline",
                &base.display().to_string(),
                &other.display().to_string(),
            ]),
            "columns",
        ),
    ] {
        let (ok, _, err) = maas(&args, None);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}
