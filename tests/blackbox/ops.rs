//! Health, metrics, the OpenAPI document, Swagger UI, and replicas sharing one store.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

#[test]
fn health_routes_answer() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    assert_eq!(server.get_json("/health/live")["status"], "live");
    assert_eq!(server.get_json("/health/ready")["status"], "ready");
}

#[test]
fn request_ids_are_echoed_or_generated() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let r = server
        .client
        .get(format!("{}/v1/models/nope", server.url))
        .header("X-Request-Id", "trace-42")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    assert_eq!(
        assert_error(r, 404, "model_not_found")["request_id"],
        "trace-42"
    );
    let generated = server.get("/health/live");
    assert_eq!(generated.headers()["x-request-id"].len(), 32);
}

#[test]
fn openapi_document_is_committed_served_and_complete() {
    let printed = Command::new(BIN).arg("openapi").output().unwrap();
    assert!(printed.status.success());
    let printed = String::from_utf8(printed.stdout).unwrap();
    let committed_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        printed.trim_end() == committed.trim_end(),
        "openapi/openapi.json is stale: run `cargo run --release --bin maas -- openapi > openapi/openapi.json`"
    );
    let doc: Value = serde_json::from_str(&printed).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    // Every operation has its own operationId (clients generate one function per id).
    let mut ids = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str() {
                if let Some(other) = ids.insert(id.to_owned(), format!("{method} {path}")) {
                    panic!("operationId '{id}' is used by {other} and {method} {path}");
                }
            }
        }
    }
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v1/models",
        "/v1/models/{name}",
        "/v1/models/{name}/versions",
        "/v1/models/{name}/versions/{version}",
        "/v1/models/{name}/versions/{version}/deploy",
        "/v1/models/{name}/versions/{version}/undeploy",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/versions/{version}/predict",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    let predict = &doc["paths"]["/v1/models/{name}/predict"]["post"]["responses"];
    for status in ["200", "400", "404", "413", "415", "422"] {
        assert!(predict[status].is_object(), "predict documents {status}");
    }

    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let served: Value = server.get_json("/openapi.json");
    assert_eq!(served, doc);
    let docs = server.get("/docs");
    assert_eq!(docs.status(), 200);
    let html = docs.text().unwrap();
    assert!(html.contains("swagger"), "Swagger UI page");
    assert!(
        !html.contains("https://"),
        "Swagger UI loads nothing from the internet"
    );
}

#[test]
fn metrics_count_requests_by_route_and_predictions_by_model() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    for _ in 0..3 {
        server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
    }
    assert_error(
        server.predict("iris", None, &json!({"instances": [[1, 2]]})),
        422,
        "invalid_input",
    );
    assert_error(server.get("/v1/models/ghost"), 404, "model_not_found");
    let r = server.get("/metrics");
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().unwrap();
    let has = |needle: &str| assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    has(
        r#"maas_http_requests_total{method="POST",route="/v1/models/{name}/predict",status="200"} 3"#,
    );
    has(r#"maas_http_requests_total{method="GET",route="/v1/models/{name}",status="404"} 1"#);
    has(
        r#"maas_http_request_duration_seconds_bucket{method="POST",route="/v1/models/{name}/predict",le="+Inf"} 4"#,
    );
    has(r#"maas_predictions_total{model="iris",outcome="ok",protocol="v1",version="1"} 3"#);
    has(
        r#"maas_predictions_total{model="iris",outcome="invalid_input",protocol="v1",version="1"} 1"#,
    );
    has(r#"maas_prediction_duration_seconds_count{model="iris",version="1"} 3"#);
    has(r#"maas_model_versions_loaded{model="iris"} 1"#);
    assert!(
        !text.contains("ghost"),
        "unknown model names never become labels"
    );

    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = match Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            if std::env::var("MAAS_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1") {
                panic!("promtool is required (MAAS_REQUIRE_PROMTOOL=1) but could not run: {e}");
            }
            eprintln!("NOTICE: promtool not found ({e}); skipping `promtool check metrics`");
            return;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

on_both_stores!(
    replicas_sharing_a_store_see_each_others_changes,
    |store: &Store| {
        let a = Server::start(store);
        let b = Server::start(store);
        let row = json!({"instances": [[7.0, 3.2, 4.7, 1.4]]});
        a.deploy("iris", "iris_logreg.onnx", &[]);
        wait_for("replica b to serve v1", || {
            b.predict("iris", None, &row).status() == 200
        });
        b.deploy("iris", "iris_logreg_v2.onnx", &[("append", "false")]);
        wait_for("replica a to switch to v2", || {
            let r = a.predict("iris", None, &row);
            r.status() == 200 && r.json::<Value>().unwrap()["version"] == 2
        });
        assert_error(
            a.predict("iris", Some(1), &row),
            409,
            "version_not_deployed",
        );
        a.delete("/v1/models/iris");
        wait_for("replica b to drop the model", || {
            b.predict("iris", None, &row).status() == 404
        });
    }
);
