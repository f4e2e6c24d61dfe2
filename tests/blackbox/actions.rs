//! Service actions: the created → running ⇄ paused → finished state machine through HTTP and the
//! CLI, 409 on invalid transitions, pause surviving restarts and reaching other replicas.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

fn act(server: &Server, model: &str, action: &str, body: &Value) -> reqwest::blocking::Response {
    server.post_json(&format!("/v1/models/{model}/actions/{action}"), body)
}

fn act_ok(server: &Server, model: &str, action: &str, body: &Value) -> Value {
    let r = act(server, model, action, body);
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 200, "{action}: {body}");
    body
}

fn row() -> Value {
    json!({"instances": [[5.1, 3.5, 1.4, 0.2]]})
}

on_both_stores!(a_model_goes_through_its_service_states, |store: &Store| {
    let mut server = Server::start(store);

    // created: a model with no version allows no action.
    let r = server.post_json("/v1/models", &json!({"name": "iris"}));
    assert_eq!(r.status(), 201);
    let created: Value = r.json().unwrap();
    assert_eq!(created["state"], "created");
    assert_error(
        server.post_json("/v1/models", &json!({"name": "iris"})),
        409,
        "model_exists",
    );
    let info = server.get_json("/v1/models/iris/actions");
    assert_eq!(
        info,
        json!({"model": "iris", "state": "created", "actions": []})
    );
    let refused = assert_error(
        act(&server, "iris", "deploy", &json!({})),
        409,
        "invalid_action",
    );
    assert!(
        refused["message"].as_str().unwrap().contains("created"),
        "{refused}"
    );

    // running: after an upload.
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let info = server.get_json("/v1/models/iris/actions");
    assert_eq!(info["state"], "running");
    assert_eq!(
        info["actions"],
        json!(["deploy", "update", "pause", "finish"])
    );

    // paused: predicts answer 503 model_paused on both protocols; nothing is unloaded.
    let paused = act_ok(&server, "iris", "pause", &json!({}));
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["actions"], json!(["update", "resume", "finish"]));
    assert_error(server.predict("iris", None, &row()), 503, "model_paused");
    assert_error(server.predict("iris", Some(1), &row()), 503, "model_paused");
    let v2 = server.post_json(
            "/v2/models/iris/infer",
            &json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}),
        );
    assert_eq!(v2.status(), 503);
    assert!(v2.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("paused"));
    assert_eq!(server.get_json("/v1/models/iris/versions/1")["ready"], true);
    // Loaded, but not ready for the Open Inference Protocol: it answers no inference.
    assert_eq!(server.get("/v2/models/iris/ready").status(), 400);
    assert_eq!(server.get("/v2/models/iris/versions/1/ready").status(), 400);
    assert_eq!(server.get_json("/v1/models/iris")["state"], "paused");
    let refused = assert_error(
        act(&server, "iris", "pause", &json!({})),
        409,
        "invalid_action",
    );
    assert!(
        refused["message"].as_str().unwrap().contains("paused"),
        "{refused}"
    );
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("maas_model_paused{model=\"iris\"} 1"),
        "{metrics}"
    );

    // A pause survives a restart.
    server = server.restart();
    assert_error(server.predict("iris", None, &row()), 503, "model_paused");

    // resume.
    assert_eq!(
        act_ok(&server, "iris", "resume", &json!({}))["state"],
        "running"
    );
    assert_eq!(server.get("/v2/models/iris/ready").status(), 200);
    assert_eq!(
        server.predict_ok("iris", None, &row())["predictions"],
        json!([0])
    );
    // The gauge drops to 0 rather than vanishing: graphs and alerts see the resume.
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics.contains("maas_model_paused{model=\"iris\"} 0")
            && !metrics.contains("maas_model_paused{model=\"iris\"} 1"),
        "{metrics}"
    );

    // update: serving options change at run time, fields not given keep their value.
    server.deploy(
        "iris",
        "iris_logreg_v2.onnx",
        &[("serving", r#"{"queue_capacity": 64}"#), ("append", "true")],
    );
    let updated = act_ok(
        &server,
        "iris",
        "update",
        &json!({"serving": {"instances": 2, "max_batch_size": 4}}),
    );
    assert_eq!(updated["state"], "running");
    for v in [1, 2] {
        let meta = server.get_json(&format!("/v1/models/iris/versions/{v}"));
        assert_eq!(meta["serving"]["instances"], 2, "{meta}");
        assert_eq!(meta["serving"]["max_batch_size"], 4, "{meta}");
        assert_eq!(meta["serving_options"]["instances"], 2, "{meta}");
    }
    let v2_meta = server.get_json("/v1/models/iris/versions/2");
    assert_eq!(v2_meta["serving"]["queue_capacity"], 64, "kept: {v2_meta}");
    assert_eq!(server.predict_ok("iris", Some(1), &row())["version"], 1);
    // An update needs something to change, and only its own fields.
    assert_error(
        act(&server, "iris", "update", &json!({})),
        422,
        "invalid_argument",
    );
    assert_error(
        act(&server, "iris", "update", &json!({"version": 1})),
        422,
        "invalid_argument",
    );
    assert_error(
        act(&server, "iris", "pause", &json!({"serving": {}})),
        422,
        "invalid_argument",
    );
    assert_error(
        act(
            &server,
            "iris",
            "update",
            &json!({"serving": {"instances": 0}}),
        ),
        422,
        "invalid_argument",
    );
    // All of an update or nothing: no baseline for drift, so logging is not turned on either.
    assert_error(
        act(
            &server,
            "iris",
            "update",
            &json!({"drift": {"enabled": true}, "log_predictions": true}),
        ),
        422,
        "invalid_argument",
    );
    assert_eq!(
        server.get_json("/v1/audit?model=iris&kind=logging_update")["total"],
        0
    );
    assert_error(
        act(&server, "iris", "update", &json!({"nope": 1})),
        400,
        "invalid_request",
    );
    assert_error(
        act(&server, "iris", "explode", &json!({})),
        400,
        "invalid_path",
    );
    assert_error(
        act(&server, "ghost", "pause", &json!({})),
        404,
        "model_not_found",
    );

    // finish: every version undeployed, history kept.
    let finished = act_ok(&server, "iris", "finish", &json!({}));
    assert_eq!(finished["state"], "finished");
    assert_eq!(finished["actions"], json!(["deploy"]));
    let model = server.get_json("/v1/models/iris");
    let states: Vec<&str> = model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["undeployed", "undeployed"]);
    assert_error(
        server.predict("iris", None, &row()),
        409,
        "no_deployed_version",
    );
    assert_error(
        act(&server, "iris", "resume", &json!({})),
        409,
        "invalid_action",
    );

    // deploy: the newest kept version serves again, or the one asked for.
    let running = act_ok(&server, "iris", "deploy", &json!({}));
    assert_eq!(running["state"], "running");
    assert_eq!(server.predict_ok("iris", None, &row())["version"], 2);
    act_ok(&server, "iris", "deploy", &json!({"version": 1}));
    assert_eq!(server.get_json("/v1/models/iris")["default_version"], 1);
    assert_error(
        act(&server, "iris", "deploy", &json!({"version": 9})),
        404,
        "version_not_found",
    );
});

on_both_stores!(a_pause_reaches_every_replica, |store: &Store| {
    let a = Server::start(store);
    let b = Server::start(store);
    a.deploy("iris", "iris_logreg.onnx", &[]);
    wait_for("replica b to serve", || {
        b.predict("iris", None, &row()).status() == 200
    });
    act_ok(&a, "iris", "pause", &json!({}));
    wait_for("replica b to refuse", || {
        b.predict("iris", None, &row()).status() == 503
    });
    act_ok(&a, "iris", "resume", &json!({}));
    wait_for("replica b to answer again", || {
        b.predict("iris", None, &row()).status() == 200
    });
});

#[test]
fn the_cli_runs_service_actions() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let maas = |args: &[&str]| -> Value {
        let out = Command::new(BIN)
            .args(args)
            .env("MAAS_URL", &server.url)
            .env("MAAS_TOKEN", &server.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "maas {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(maas(&["model", "pause", "iris"])["state"], "paused");
    assert_error(server.predict("iris", None, &row()), 503, "model_paused");
    assert_eq!(maas(&["model", "actions", "iris"])["state"], "paused");
    assert_eq!(
        maas(&[
            "model",
            "update",
            "iris",
            "--serving",
            r#"{"max_batch_size": 8}"#
        ])["state"],
        "paused"
    );
    assert_eq!(maas(&["model", "resume", "iris"])["state"], "running");
    assert_eq!(maas(&["model", "finish", "iris"])["state"], "finished");
    assert_eq!(
        maas(&["model", "deploy", "iris", "--version", "1"])["state"],
        "running"
    );
    assert_eq!(maas(&["model", "create", "empty"])["state"], "created");
    // An invalid transition exits non-zero with the server's message.
    let out = Command::new(BIN)
        .args(["model", "resume", "iris"])
        .env("MAAS_URL", &server.url)
        .env("MAAS_TOKEN", &server.token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("running"));
}
