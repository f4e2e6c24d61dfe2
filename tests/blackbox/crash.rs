//! Crash safety: restarts keep everything, a crash at any point of a deploy leaves either the old
//! or the new state (never a half one), and a SIGKILL during an upload leaves nothing behind.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

const NAMES: [&str; 3] = ["setosa", "versicolor", "virginica"];

fn rows() -> Value {
    json!({ "instances": expected()["iris_logreg"]["inputs"] })
}

/// Metadata without what legitimately changes from one process to the next (how long the warmup
/// took, how many requests are queued).
fn without_runtime_facts(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            map.remove("warmup_ms");
            map.remove("queue_depth");
            for v in map.values_mut() {
                *v = without_runtime_facts(v.take());
            }
        }
        Value::Array(items) => {
            for v in items.iter_mut() {
                *v = without_runtime_facts(v.take());
            }
        }
        _ => {}
    }
    value
}

/// Predict on `version` (or the default) and check the answer against `fixture_key`'s reference,
/// with class names.
fn assert_serves(server: &Server, version: Option<u64>, want_version: u64, fixture_key: &str) {
    let answer = server.predict_ok("iris", version, &rows());
    let reference = &expected()[fixture_key]["outputs"];
    assert_eq!(answer["model"], "iris", "{answer}");
    assert_eq!(answer["version"], want_version, "{answer}");
    let labels: Vec<&str> = reference["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| NAMES[l.as_u64().unwrap() as usize])
        .collect();
    assert_eq!(answer["predictions"], json!(labels), "{answer}");
    assert_close(&answer["probabilities"], &reference["probabilities"], 1e-4);
}

fn artifacts_dir(store: &Store) -> PathBuf {
    store.data_dir().join("artifacts")
}

/// Every file under `artifacts/` except staging: relative path → bytes.
fn artifact_files(store: &Store) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".staging" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let root = artifacts_dir(store);
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// Names of whatever is in `artifacts/.staging`.
fn staging_entries(store: &Store) -> Vec<String> {
    std::fs::read_dir(artifacts_dir(store).join(".staging"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// No upload left in staging, and every file of `artifacts/iris/` is a whole copy of the fixture
/// its version was deployed from (`known`: version → fixture). `required` versions must exist.
fn assert_artifacts_whole(store: &Store, known: &[(u64, &str)], required: &[u64]) {
    let staging = staging_entries(store);
    assert!(
        staging.iter().all(|n| !n.ends_with(".part")),
        "a .part file remains in staging: {staging:?}"
    );
    let files = artifact_files(store);
    for (rel, bytes) in &files {
        let version: u64 = rel
            .strip_prefix("iris/")
            .and_then(|r| r.strip_suffix(".onnx"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected file in artifacts: {rel}"));
        let fixture_name = known
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| panic!("artifact for unknown version: {rel}"));
        let want = std::fs::read(fixture(fixture_name)).unwrap();
        assert!(
            *bytes == want,
            "{rel} is not a whole copy of {fixture_name} ({} bytes, want {})",
            bytes.len(),
            want.len()
        );
    }
    for v in required {
        assert!(
            files.contains_key(&format!("iris/{v}.onnx")),
            "artifacts/iris/{v}.onnx is missing: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
}

fn versions(model: &Value) -> Vec<(u64, String)> {
    model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn deployed(v: u64) -> (u64, String) {
    (v, "deployed".to_owned())
}

on_both_stores!(restart_keeps_everything, |store: &Store| {
    let mut server = Server::start(store);
    assert_eq!(
        server.deploy("iris", "iris_logreg.onnx", &[("class_names", IRIS_CLASSES)])["version"],
        1
    );
    assert_eq!(
        server.deploy(
            "iris",
            "iris_logreg_v2.onnx",
            &[
                ("class_names", IRIS_CLASSES),
                ("feature_names", IRIS_FEATURES),
                ("append", "true")
            ]
        )["version"],
        2
    );
    assert_eq!(
        server
            .post_empty("/v1/models/iris/versions/1/undeploy")
            .status(),
        200
    );
    let stored = |server: &Server, path: &str| without_runtime_facts(server.get_json(path));
    let list = stored(&server, "/v1/models");
    let model = stored(&server, "/v1/models/iris");
    let v2_meta = stored(&server, "/v1/models/iris/versions/2");
    let v1_meta = stored(&server, "/v1/models/iris/versions/1");

    server = server.restart();
    assert_eq!(
        stored(&server, "/v1/models"),
        list,
        "the model list survives a restart"
    );
    assert_eq!(stored(&server, "/v1/models/iris"), model);
    assert_eq!(stored(&server, "/v1/models/iris/versions/2"), v2_meta);
    assert_eq!(stored(&server, "/v1/models/iris/versions/1"), v1_meta);
    assert_eq!(model["default_version"], 2);
    assert_eq!(
        versions(&model),
        [(1, "undeployed".to_owned()), deployed(2)]
    );
    assert_serves(&server, None, 2, "iris_logreg_v2");
    assert_serves(&server, Some(2), 2, "iris_logreg_v2");
    assert_error(
        server.predict("iris", Some(1), &rows()),
        409,
        "version_not_deployed",
    );

    // Numbers continue after a restart and are never reused, also across restarts.
    assert_eq!(
        server.deploy(
            "iris",
            "iris_logreg.onnx",
            &[("class_names", IRIS_CLASSES), ("append", "true")]
        )["version"],
        3
    );
    assert_eq!(server.delete("/v1/models/iris/versions/3").status(), 204);
    server = server.restart();
    assert_error(
        server.get("/v1/models/iris/versions/3"),
        404,
        "version_not_found",
    );
    assert_eq!(
        server.deploy(
            "iris",
            "iris_logreg.onnx",
            &[("class_names", IRIS_CLASSES), ("append", "true")]
        )["version"],
        4
    );
    assert_serves(&server, None, 4, "iris_logreg");
    assert_artifacts_whole(
        store,
        &[
            (1, "iris_logreg.onnx"),
            (2, "iris_logreg_v2.onnx"),
            (4, "iris_logreg.onnx"),
        ],
        &[1, 2, 4],
    );
    server = server.restart();
    assert_eq!(
        versions(&server.get_json("/v1/models/iris")),
        [(1, "undeployed".to_owned()), deployed(2), deployed(4)]
    );
    assert_serves(&server, None, 4, "iris_logreg");
    assert_serves(&server, Some(2), 2, "iris_logreg_v2");
});

/// Serve v1, then crash at `point` while deploying v2; restart and check the state is wholly
/// old (`committed == false`) or wholly new.
fn crash_during_deploy(store: &Store, point: &str, committed: bool) {
    {
        let server = Server::start(store);
        server.deploy("iris", "iris_logreg.onnx", &[("class_names", IRIS_CLASSES)]);
    }
    let mut server = Server::start_with(store, Options::default().env("MAAS_CRASH_AT", point));
    let before = server.get_json("/v1/models");
    assert_serves(&server, None, 1, "iris_logreg");

    let bytes = std::fs::read(fixture("iris_logreg_v2.onnx")).unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "model",
            reqwest::blocking::multipart::Part::bytes(bytes).file_name("iris_logreg_v2.onnx"),
        )
        .text("class_names", IRIS_CLASSES)
        .text("append", "true");
    let sent = server
        .client
        .post(format!("{}/v1/models/iris/versions", server.url))
        .multipart(form)
        .send();
    if let Ok(r) = sent {
        let status = r.status();
        let text = r.text().unwrap_or_default();
        panic!(
            "the deploy answered {status} {text} instead of crashing at {point}; log:\n{}",
            server.log()
        );
    }
    assert!(
        server.wait_exit(Duration::from_secs(20)),
        "the server did not exit at {point}"
    );
    let log = server.log();
    assert!(
        log.contains(&format!("MAAS_CRASH_AT={point}")),
        "the crash was not at {point}; log:\n{log}"
    );

    let mut server = server.restart();
    let model = server.get_json("/v1/models/iris");
    if committed {
        assert_eq!(
            versions(&model),
            [deployed(1), deployed(2)],
            "{point}: the committed deploy is kept"
        );
        assert_eq!(model["default_version"], 2);
        assert_serves(&server, None, 2, "iris_logreg_v2");
        assert_serves(&server, Some(2), 2, "iris_logreg_v2");
        assert_serves(&server, Some(1), 1, "iris_logreg");
        assert_artifacts_whole(
            store,
            &[(1, "iris_logreg.onnx"), (2, "iris_logreg_v2.onnx")],
            &[1, 2],
        );
        assert_eq!(
            server.deploy("iris", "iris_logreg.onnx", &[("append", "true")])["version"],
            3
        );
    } else {
        assert_eq!(
            server.get_json("/v1/models"),
            before,
            "{point}: the uncommitted deploy left no trace"
        );
        assert_eq!(versions(&model), [deployed(1)]);
        assert_eq!(model["default_version"], 1);
        assert_serves(&server, None, 1, "iris_logreg");
        assert_error(
            server.predict("iris", Some(2), &rows()),
            404,
            "version_not_found",
        );
        assert_error(
            server.get("/v1/models/iris/versions/2"),
            404,
            "version_not_found",
        );
        // A leftover file of the uncommitted version may exist, but only as a whole file.
        assert_artifacts_whole(
            store,
            &[(1, "iris_logreg.onnx"), (2, "iris_logreg_v2.onnx")],
            &[1],
        );

        // The next deploy takes number 2 and serves the v2 model, not any leftover.
        let record = server.deploy(
            "iris",
            "iris_logreg_v2.onnx",
            &[("class_names", IRIS_CLASSES), ("append", "true")],
        );
        assert_eq!(record["version"], 2, "{record}");
        assert_eq!(record["default"], true, "{record}");
        assert_serves(&server, None, 2, "iris_logreg_v2");
        assert_serves(&server, Some(1), 1, "iris_logreg");
        assert_artifacts_whole(
            store,
            &[(1, "iris_logreg.onnx"), (2, "iris_logreg_v2.onnx")],
            &[1, 2],
        );
        // And it survives one more restart.
        server = server.restart();
        assert_serves(&server, None, 2, "iris_logreg_v2");
    }
    let staging = staging_entries(store);
    assert!(staging.is_empty(), "staging is not empty: {staging:?}");
}

on_both_stores!(crash_after_artifact, |store: &Store| {
    crash_during_deploy(store, "deploy.after_artifact", false)
});

on_both_stores!(crash_before_commit, |store: &Store| {
    crash_during_deploy(store, "deploy.before_commit", false)
});

on_both_stores!(crash_after_commit, |store: &Store| {
    crash_during_deploy(store, "deploy.after_commit", true)
});

on_both_stores!(sigkill_during_upload, |store: &Store| {
    let mut server = Server::start(store);
    server.deploy("iris", "iris_logreg.onnx", &[("class_names", IRIS_CLASSES)]);
    let before_list = server.get_json("/v1/models");
    let before_files = artifact_files(store);
    assert_eq!(before_files.keys().collect::<Vec<_>>(), ["iris/1.onnx"]);

    // A 20 MB upload, of which only the first few MB are sent.
    let address = server.url.trim_start_matches("http://").to_owned();
    let token = server.token.clone();
    let boundary = "maasCrashBoundary5f2a9c";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"big.onnx\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let junk_len = 20 * 1024 * 1024;
    let length = head.len() + junk_len + tail.len();
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/models/iris/versions HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {length}\r\n\r\n{head}"
    )
    .unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    for _ in 0..64 {
        stream.write_all(&chunk).unwrap(); // 4 MB
    }
    stream.flush().unwrap();

    // Wait until the upload is really being staged.
    let staging = artifacts_dir(store).join(".staging");
    let deadline = Instant::now() + Duration::from_secs(15);
    let staged = loop {
        let biggest = std::fs::read_dir(&staging)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok().map(|m| m.len()))
            .max();
        if biggest.is_some_and(|len| len >= 1024 * 1024) {
            break biggest.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the upload never reached staging ({:?}); log:\n{}",
            staging_entries(store),
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(staged < junk_len as u64, "the upload is still in flight");
    assert!(
        staging_entries(store).iter().any(|n| n.ends_with(".part")),
        "staged as a .part file: {:?}",
        staging_entries(store)
    );

    server.kill9();
    drop(stream);
    let server = server.restart();
    assert_eq!(server.get_json("/v1/models"), before_list);
    let model = server.get_json("/v1/models/iris");
    assert_eq!(versions(&model), [deployed(1)]);
    assert_serves(&server, None, 1, "iris_logreg");
    let left = staging_entries(store);
    assert!(
        left.is_empty(),
        "staging is not empty after restart: {left:?}"
    );
    assert!(
        artifact_files(store) == before_files,
        "artifacts changed: {:?}",
        artifact_files(store).keys().collect::<Vec<_>>()
    );
    // The interrupted upload did not take a number.
    assert_eq!(
        server.deploy(
            "iris",
            "iris_logreg_v2.onnx",
            &[("class_names", IRIS_CLASSES)]
        )["version"],
        2
    );
    assert_serves(&server, None, 2, "iris_logreg_v2");
});
