//! The limits of README's "Limits" table, each tried at its edge through the real API: just
//! within it works, just past it gets the documented error, and a hostile input is refused fast
//! without holding the server (the other limits are tested beside their features: body sizes in
//! `errors.rs`, queues in `serving.rs`, connections and body timeouts in `connections.rs`).

use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::common::*;

/// A JSON array nested `depth` deep around one row of iris.
fn nested(depth: usize) -> String {
    format!(
        "{{\"instances\": {}[5.1, 3.5, 1.4, 0.2]{}}}",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[test]
fn json_nesting_is_limited_on_predict_bodies() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let post = |body: String| {
        server
            .client
            .post(format!("{}/v1/models/iris/predict", server.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap()
    };
    // Within the parser's 128 levels: parsed, then refused for its shape, not its depth.
    let r = post(nested(100));
    assert_eq!(r.status(), 422, "{}", r.text().unwrap());
    // Past them: refused as JSON at once, however deep.
    let started = Instant::now();
    assert_error(post(nested(200)), 400, "invalid_json");
    assert_error(post(nested(500_000)), 400, "invalid_json");
    assert!(started.elapsed() < Duration::from_secs(2));
    let v2 = server
        .client
        .post(format!("{}/v2/models/iris/infer", server.url))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"inputs\": [{{\"name\": \"float_input\", \"shape\": [1, 4], \"datatype\": \"FP32\", \"data\": {}1{}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ))
        .send()
        .unwrap();
    assert_eq!(v2.status(), 400);
}

#[test]
fn workflows_are_limited_in_depth_and_size_and_never_hold_a_worker() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(&store, Options::default().env("MAAS__SERVER__WORKERS", "1"));
    // The attack: 100k nested brackets, with one HTTP worker to hold.
    let hostile = format!("name: deep\ntasks: {}", "[".repeat(100_000));
    let started = Instant::now();
    let body = assert_error(
        server.post_json("/v1/jobs", &json!({"workflow": hostile})),
        422,
        "invalid_workflow",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nests deeper than 32 levels"),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused after {:?}",
        started.elapsed()
    );
    let deep_json = format!("{{\"name\": \"deep\", \"tasks\": {}", "[".repeat(50_000));
    assert_error(
        server.post_json("/v1/workflows", &json!({"workflow": deep_json})),
        422,
        "invalid_workflow",
    );
    // Size: at the limit's edge.
    let padded = |bytes: usize| {
        let head = "name: padded\ntasks:\n  - name: a\n    kind: script\n    script: \"true\"\n# ";
        format!("{head}{}\n", "x".repeat(bytes - head.len() - 1))
    };
    let r = server.post_json("/v1/workflows", &json!({"workflow": padded(256 * 1024)}));
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let body = assert_error(
        server.post_json(
            "/v1/workflows",
            &json!({"workflow": padded(256 * 1024 + 1)}),
        ),
        422,
        "invalid_workflow",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("the limit is 262144"),
        "{body}"
    );
    assert_eq!(server.get("/health/live").status(), 200);
}

#[test]
fn a_baseline_holds_at_most_10000_rows() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let csv = |rows: usize| {
        let mut text = String::from("a,b,c,d\n");
        for i in 0..rows {
            text.push_str(&format!("{}.1,3.5,1.4,0.2\n", i % 7));
        }
        text
    };
    let deploy = |rows: usize| {
        let form = Form::new()
            .part("model", fixture_part("iris_logreg.onnx"))
            .part(
                "baseline",
                Part::bytes(csv(rows).into_bytes()).file_name("baseline.csv"),
            );
        server.deploy_multipart("iris", form)
    };
    let r = deploy(10_000);
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let body: Value = assert_error(deploy(10_001), 422, "invalid_argument");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at most 10000 rows"),
        "{body}"
    );
}

#[test]
fn a_deploy_form_text_field_holds_at_most_one_mebibyte() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let deploy = |bytes: usize| {
        // A JSON array of strings of the given length: class names, refused or not on size alone.
        let names = format!("[\"{}\"]", "x".repeat(bytes - 4));
        let form = Form::new()
            .part("model", fixture_part("iris_logreg.onnx"))
            .text("class_names", names);
        server.deploy_multipart("iris", form)
    };
    // Within the limit the field is read, then found wrong for the model (one name, three classes).
    assert_error(deploy(1024 * 1024), 422, "invalid_argument");
    let body = assert_error(deploy(1024 * 1024 + 1), 413, "payload_too_large");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("`class_names` is longer than 1048576 bytes"),
        "{body}"
    );
    assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
}

/// A task may write `scheduler.max_task_file_bytes` to one file, its log included: exactly that
/// much finishes, one byte more stops the task, which fails saying so, its log cut at the limit.
#[test]
fn a_task_log_stops_at_the_file_size_limit() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__SCHEDULER__MAX_TASK_FILE_BYTES", "100000"),
    );
    let workflow = |bytes: usize| {
        format!(
            "name: chatty\ntasks:\n  - name: talk\n    kind: script\n    script: yes | head -c {bytes}\n"
        )
    };
    let log_size = |id: &str| {
        let r = server.get(&format!("/v1/jobs/{id}/tasks/talk/logs"));
        assert_eq!(r.status(), 200);
        r.headers()["X-Log-Offset"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let within = crate::jobs::submit(&server, &workflow(100_000), json!({}));
    crate::jobs::wait_job(&server, &within, "finished", 60);
    assert_eq!(log_size(&within), 100_000);

    let past = crate::jobs::submit(&server, &workflow(300_000), json!({}));
    let job = crate::jobs::wait_job(&server, &past, "failed", 60);
    let error = job["tasks"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("more than 100000 bytes") && error.contains("scheduler.max_task_file_bytes"),
        "{job:#}"
    );
    assert_eq!(log_size(&past), 100_000);
}

/// At most `scheduler.max_active_jobs` jobs are not over at once: one more submit is answered
/// 429 `queue_full` with `Retry-After` and records nothing; once one ends, a submit is taken.
#[test]
fn jobs_beyond_the_active_limit_are_refused_until_one_ends() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__SCHEDULER__MAX_ACTIVE_JOBS", "2"),
    );
    let nap = "name: nap\ntasks:\n  - name: sleep\n    kind: script\n    script: sleep 60\n";
    let first = crate::jobs::submit(&server, nap, json!({}));
    crate::jobs::submit(&server, nap, json!({}));
    let r = server.post_json("/v1/jobs", &json!({"workflow": nap}));
    assert_eq!(r.headers()["Retry-After"], "5");
    let body = assert_error(r, 429, "queue_full");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("scheduler.max_active_jobs"),
        "{body}"
    );
    assert_eq!(server.get_json("/v1/jobs")["total"], 2);
    let r = server.post_empty(&format!("/v1/jobs/{first}/kill"));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    crate::jobs::wait_job(&server, &first, "killed", 30);
    crate::jobs::submit(&server, nap, json!({}));
}
