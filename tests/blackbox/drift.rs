//! Drift detection through the real HTTP API: baselines, per-request and continuous checks,
//! stored events, metrics and webhooks.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

/// A deterministic value in [0, 1).
fn noise(i: usize) -> f64 {
    ((i as f64 * 12.9898).sin() * 43758.5453).fract().abs()
}

/// Iris-like rows: sepal length, sepal width, petal length, petal width.
fn iris_like(n: usize, offset: usize, petal_shift: f64) -> Vec<[f64; 4]> {
    (0..n)
        .map(|i| {
            let k = (i + offset) * 4;
            [
                5.0 + noise(k) * 1.5,
                2.8 + noise(k + 1) * 0.6,
                3.0 + noise(k + 2) * 1.5 + petal_shift,
                1.0 + noise(k + 3) * 0.8,
            ]
        })
        .collect()
}

fn csv(rows: &[[f64; 4]], with_label: bool) -> String {
    let mut text = String::from(if with_label {
        "sepal_length,sepal_width,species,petal_length,petal_width\n"
    } else {
        "sepal_length,sepal_width,petal_length,petal_width\n"
    });
    for (i, r) in rows.iter().enumerate() {
        if with_label {
            text.push_str(&format!("{},{},{},{},{}\n", r[0], r[1], i % 3, r[2], r[3]));
        } else {
            text.push_str(&format!("{},{},{},{}\n", r[0], r[1], r[2], r[3]));
        }
    }
    text
}

fn deploy_with(
    server: &Server,
    model: &str,
    fields: Vec<(&str, Part)>,
    text: &[(&str, &str)],
) -> reqwest::blocking::Response {
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    let mut form = Form::new().part("model", Part::bytes(bytes).file_name("iris.onnx"));
    for (name, part) in fields {
        form = form.part(name.to_owned(), part);
    }
    for (k, v) in text {
        form = form.text(k.to_string(), v.to_string());
    }
    server
        .client
        .post(format!("{}/v1/models/{model}/versions", server.url))
        .multipart(form)
        .send()
        .unwrap()
}

fn csv_part(text: String) -> Part {
    Part::bytes(text.into_bytes()).file_name("data.csv")
}

fn rows_json(rows: &[[f64; 4]]) -> Value {
    json!(rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>())
}

on_both_stores!(
    per_request_drift_reports_stores_events_and_counts,
    |store: &Store| {
        let server = Server::start(store);
        let training = iris_like(300, 0, 0.0);
        let r = deploy_with(
            &server,
            "iris",
            vec![("training_data", csv_part(csv(&training, true)))],
            &[
                ("feature_names", IRIS_FEATURES),
                ("label_column", "species"),
                ("baseline_size", "50"),
                // On by default with a baseline; off here, so only the predicts that ask check.
                ("drift", r#"{"enabled": false}"#),
            ],
        );
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let meta = server.get_json("/v1/models/iris/versions/1");
        assert_eq!(meta["drift"]["source"], "training_data");
        assert_eq!(meta["drift"]["baseline_rows"], 50);
        assert_eq!(
            meta["drift"]["columns"],
            json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
        );
        assert_eq!(meta["drift"]["stats"]["petal_length"]["count"], 300);
        assert_eq!(meta["drift"]["settings"]["enabled"], false);

        // Unshifted rows: a prediction as usual and nothing flagged.
        let calm = server.predict_ok("iris", None, &json!({"instances": rows_json(&iris_like(100, 1000, 0.0)), "drift": {"detector": "adwin"}}));
        assert_eq!(calm["drift"]["detector"], "adwin");
        assert_eq!(calm["drift"]["mode"], "request");
        assert_eq!(calm["drift"]["features"], json!({}));
        let calm_z = calm["drift"]["deviation"]["petal_length"]["z_score"]
            .as_f64()
            .unwrap()
            .abs();
        // Without asking, no drift section.
        assert!(server
            .predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
            .get("drift")
            .is_none());

        // Petal length shifted by +3 on the second half of the request.
        let mut rows = iris_like(60, 2000, 0.0);
        rows.extend(iris_like(60, 3000, 3.0));
        let r = server
        .client
        .post(format!("{}/v1/models/iris/predict", server.url))
        .header("X-Request-Id", "drift-test-1")
        .json(&json!({"instances": rows_json(&rows), "drift": {"detector": "adwin", "delta": 0.002}}))
        .send()
        .unwrap();
        assert_eq!(r.status(), 200);
        let shifted: Value = r.json().unwrap();
        assert_eq!(shifted["predictions"].as_array().unwrap().len(), 120);
        let flagged = shifted["drift"]["features"]["petal_length"]
            .as_array()
            .expect("petal_length drifts");
        assert!(
            flagged.iter().all(|row| row.as_u64().unwrap() >= 60),
            "flags come after the shift: {flagged:?}"
        );
        assert!(shifted["drift"]["features"].get("sepal_width").is_none());
        assert_eq!(
            shifted["drift"]["deviation"]["petal_length"]["flagged"],
            true
        );
        let shifted_z = shifted["drift"]["deviation"]["petal_length"]["z_score"]
            .as_f64()
            .unwrap()
            .abs();
        assert!(
            shifted_z > 10.0 * calm_z.max(1.0),
            "z {shifted_z} vs {calm_z}"
        );

        // Events are stored in the background.
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            let events = server.get_json("/v1/models/iris/drift")["events"]
                .as_array()
                .unwrap()
                .clone();
            if events
                .iter()
                .any(|e| e["request_id"] == "drift-test-1" && e["kind"] == "drift")
            {
                break events;
            }
            assert!(Instant::now() < deadline, "drift events were not stored");
            std::thread::sleep(Duration::from_millis(50));
        };
        let event = events
            .iter()
            .find(|e| e["kind"] == "drift" && e["feature"] == "petal_length")
            .unwrap();
        assert_eq!(event["model"], "iris");
        assert_eq!(event["version"], 1);
        assert_eq!(event["detector"], "adwin");
        assert_eq!(event["request_id"], "drift-test-1");
        assert_eq!(
            &event["rows"],
            &shifted["drift"]["features"]["petal_length"]
        );
        // The audit trail names the request and the caller that scored the drifted rows.
        let audited = server.get_json("/v1/audit?kind=drift_event&model=iris");
        let entry = audited["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["details"]["feature"] == "petal_length" && e["details"]["kind"] == "drift")
            .unwrap_or_else(|| panic!("no audited drift event: {audited}"));
        assert_eq!(entry["request_id"], "drift-test-1", "{entry}");
        assert_eq!(entry["actor"], "admin", "{entry}");
        assert_eq!(entry["version"], 1);
        assert!(events
            .iter()
            .filter(|e| e["kind"] == "drift")
            .all(|e| e["feature"] != "sepal_width"));
        assert_eq!(
            server.get_json("/v1/models/iris/drift?version=2")["events"],
            json!([])
        );
        assert_eq!(
            server.get_json("/v1/models/iris/drift?limit=1")["events"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_error(server.get("/v1/models/ghost/drift"), 404, "model_not_found");

        let metrics = server.get("/metrics").text().unwrap();
        assert!(
        metrics.contains(r#"maas_drift_events_total{detector="adwin",feature="petal_length",model="iris",version="1"} 1"#),
        "{metrics}"
    );
        // Every detector answers.
        for detector in ["page_hinkley", "hddm_a", "hddm_w"] {
            let r = server.predict_ok(
                "iris",
                None,
                &json!({"instances": rows_json(&rows), "drift": {"detector": detector}}),
            );
            assert_eq!(r["drift"]["detector"], detector);
        }
    }
);

#[test]
fn continuous_mode_finds_drift_spread_over_small_requests_and_resets_on_redeploy() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let settings = r#"{"enabled": true, "continuous": true, "detector": {"detector": "adwin"}}"#;
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part(csv(&iris_like(50, 0, 0.0), false)))],
        &[("drift", settings)],
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    // 80 requests of two rows; petal length creeps up from request 20 on.
    let mut found_at = None;
    for request in 0..80 {
        let shift = if request >= 20 {
            (request - 20) as f64 * 0.1
        } else {
            0.0
        };
        let rows = iris_like(2, 500 + request * 2, shift);
        let r = server.predict_ok("iris", None, &json!({ "instances": rows_json(&rows) }));
        assert_eq!(
            r["drift"]["mode"], "continuous",
            "enabled versions check every predict"
        );
        if r["drift"]["features"].get("petal_length").is_some() && found_at.is_none() {
            found_at = Some(request);
        }
        assert!(r["drift"]["features"].get("sepal_width").is_none());
    }
    let found_at = found_at.expect("continuous mode found the slow drift");
    assert!(found_at > 20, "not before the drift began ({found_at})");
    // A single small request, checked on its own, shows nothing: only the continuous view does.
    let r = server.predict_ok(
        "iris",
        None,
        &json!({"instances": rows_json(&iris_like(2, 9000, 1.0)), "drift": {"detector": "adwin"}}),
    );
    assert_eq!(r["drift"]["features"], json!({}));

    // Redeploying the version resets its continuous detectors.
    assert_eq!(
        server
            .post_empty("/v1/models/iris/versions/1/deploy")
            .status(),
        200
    );
    let r = server.predict_ok(
        "iris",
        None,
        &json!({ "instances": rows_json(&iris_like(2, 7000, 0.0)) }),
    );
    assert_eq!(
        r["drift"]["features"],
        json!({}),
        "fresh detectors after a redeploy"
    );
}

/// A webhook receiver that refuses the first call and records every body.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(10).enumerate() {
            let Ok(mut stream) = stream else { continue };
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut data = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(read) = stream.read(&mut buf) {
                if read == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..read]);
                let text = String::from_utf8_lossy(&data);
                if let Some(at) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if data.len() >= at + 4 + length {
                        let body: Value =
                            serde_json::from_slice(&data[at + 4..at + 4 + length]).unwrap();
                        seen.lock().unwrap().push(body);
                        break;
                    }
                }
            }
            let status = if n == 0 {
                "500 Internal Server Error"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

#[test]
fn a_webhook_is_notified_and_retried() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let (url, bodies) = webhook_receiver();
    let settings = json!({"webhook_url": url}).to_string();
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part(csv(&iris_like(50, 0, 0.0), false)))],
        &[("drift", &settings), ("feature_names", IRIS_FEATURES)],
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let mut rows = iris_like(60, 100, 0.0);
    rows.extend(iris_like(60, 200, 3.0));
    let started = Instant::now();
    let r = server.predict_ok(
        "iris",
        None,
        &json!({"instances": rows_json(&rows), "drift": {"detector": "page_hinkley"}}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the webhook never delays the answer"
    );
    assert!(r["drift"]["features"]["petal_length"].is_array());
    let deadline = Instant::now() + Duration::from_secs(10);
    while bodies.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the webhook was not retried after a 500"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = bodies.lock().unwrap().clone();
    assert_eq!(got[0], got[1], "the retry sends the same notification");
    assert_eq!(got[0]["event"], "drift");
    assert_eq!(got[0]["model"], "iris");
    assert_eq!(got[0]["version"], 1);
    assert_eq!(got[0]["detector"], "page_hinkley");
    assert_eq!(
        got[0]["features"]["petal_length"],
        r["drift"]["features"]["petal_length"]
    );
}

#[test]
fn baselines_are_checked_replaced_and_required() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("plain", "iris_logreg.onnx", &[]);
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]], "drift": {"detector": "adwin"}});
    assert_error(server.predict("plain", None, &body), 422, "invalid_input");
    let bad =
        json!({"instances": [[5.1, 3.5, 1.4, 0.2]], "drift": {"detector": "adwin", "delta": 5}});
    let no_such = json!({"instances": [[5.1, 3.5, 1.4, 0.2]], "drift": {"detector": "kswin"}});
    assert_error(
        server.predict("plain", None, &no_such),
        400,
        "invalid_request",
    );

    // Bad baselines are refused and store nothing.
    let before = server.get_json("/v1/models");
    let three_columns = "a,b,c\n1,2,3\n".to_string();
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part(three_columns))],
        &[],
    );
    assert_error(r, 422, "invalid_argument");
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part("1,2,3,x\n".into()))],
        &[],
    );
    assert_error(r, 422, "invalid_argument");
    let r = deploy_with(
        &server,
        "iris",
        vec![],
        &[("drift", r#"{"enabled": true}"#)],
    );
    assert_error(r, 422, "invalid_argument");
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part(csv(&iris_like(5, 0, 0.0), false)))],
        &[("drift", "{nope")],
    );
    assert_error(r, 422, "invalid_argument");
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part(csv(&iris_like(5, 0, 0.0), false)))],
        &[(
            "drift",
            r#"{"detector": {"detector": "adwin", "delta": 7}}"#,
        )],
    );
    assert_error(r, 422, "invalid_argument");
    assert_eq!(server.get_json("/v1/models"), before);

    // Replace a baseline: the version now has one, and the shifted data is its new normal.
    let put = |fields: Form| {
        server
            .client
            .put(format!(
                "{}/v1/models/plain/versions/1/baseline",
                server.url
            ))
            .multipart(fields)
            .send()
            .unwrap()
    };
    let shifted = csv(&iris_like(50, 0, 3.0), false);
    let r = put(Form::new().part("baseline", csv_part(shifted)));
    assert_eq!(r.status(), 200);
    let info: Value = r.json().unwrap();
    assert_eq!(info["drift"]["source"], "baseline");
    assert_eq!(info["drift"]["baseline_rows"], 50);
    assert_error(server.predict("plain", None, &bad), 422, "invalid_input");
    let r = server.predict_ok(
        "plain",
        None,
        &json!({"instances": rows_json(&iris_like(40, 500, 3.0)), "drift": {"detector": "adwin"}}),
    );
    assert_eq!(r["drift"]["features"], json!({}));
    assert_eq!(r["drift"]["deviation"]["petal_length"]["flagged"], false);
    // Bad updates change nothing.
    assert_error(
        put(Form::new().text("nonsense", "1")),
        422,
        "invalid_argument",
    );
    assert_error(
        put(Form::new().text("label_column", "x")),
        422,
        "invalid_argument",
    );
    let r = server
        .client
        .put(format!(
            "{}/v1/models/plain/versions/9/baseline",
            server.url
        ))
        .multipart(Form::new().part("baseline", csv_part(csv(&iris_like(5, 0, 0.0), false))))
        .send()
        .unwrap();
    assert_error(r, 404, "version_not_found");
    assert_eq!(
        server.get_json("/v1/models/plain/versions/1")["drift"]["baseline_rows"],
        50
    );
}

#[test]
fn training_data_may_name_its_classes_in_the_label_column() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let names = ["setosa", "versicolor", "virginica"];
    let mut text = String::from("sepal_length,sepal_width,petal_length,petal_width,species\n");
    for (i, row) in iris_like(90, 0, 0.0).iter().enumerate() {
        text.push_str(&format!(
            "{},{},{},{},{}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            names[i % 3]
        ));
    }
    let r = deploy_with(
        &server,
        "iris",
        vec![("training_data", csv_part(text.clone()))],
        &[("label_column", "species"), ("baseline_size", "20")],
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let meta = server.get_json("/v1/models/iris/versions/1");
    assert_eq!(meta["drift"]["baseline_rows"], 20);
    assert_eq!(
        meta["drift"]["columns"],
        json!(["sepal_length", "sepal_width", "petal_length", "petal_width"])
    );
    // Without naming the label column, the class names are an error that says where (the
    // line and the column, never the cell).
    let r = deploy_with(
        &server,
        "iris",
        vec![("training_data", csv_part(text))],
        &[],
    );
    let body = assert_error(r, 422, "invalid_argument");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("training_data: line 2, column 'species': not a number"),
        "{body}"
    );
    assert!(!message.contains("setosa"), "{body}");
}

/// Version 1's saved predictions once `total` are there (saving is asynchronous), or as they
/// are after 10 s.
fn saved_page(server: &Server, total: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = server.get_json("/v1/models/iris/versions/1/predictions?limit=1000");
        if page["total"] == total || Instant::now() > deadline {
            return page;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Iris with a baseline, continuous ADWIN on every predict, and every predict saved.
fn watched_and_logged_iris(server: &Server) {
    let settings = r#"{"enabled": true, "continuous": true, "detector": {"detector": "adwin"}}"#;
    let r = deploy_with(
        server,
        "iris",
        vec![("baseline", csv_part(csv(&iris_like(50, 0, 0.0), false)))],
        &[("drift", settings)],
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let r = server.post_json(
        "/v1/models/iris/actions/update",
        &json!({"log_predictions": true}),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

/// The Open Inference Protocol goes through the same pipeline as v1: continuous and per-request
/// drift checks, drift events, and the prediction log.
#[test]
fn v2_infer_gets_the_drift_checks_and_the_prediction_log_of_v1() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    watched_and_logged_iris(&server);
    let body = |rows: &[[f64; 4]], parameters: Value| {
        let data: Vec<f64> = rows.iter().flatten().copied().collect();
        json!({
            "inputs": [{"name": "float_input", "shape": [rows.len(), 4], "datatype": "FP32", "data": data}],
            "parameters": parameters,
        })
    };
    let infer = |rows: &[[f64; 4]], parameters: Value| {
        let r = server.post_json("/v2/models/iris/infer", &body(rows, parameters));
        assert_eq!(r.status(), 200);
        r.json::<Value>().unwrap()
    };

    // The same slow drift as the v1 test, sent through V2.
    let mut found_at = None;
    for request in 0..80 {
        let shift = if request >= 20 {
            (request - 20) as f64 * 0.1
        } else {
            0.0
        };
        let r = infer(&iris_like(2, 500 + request * 2, shift), json!({}));
        let drift = &r["parameters"]["drift"];
        assert_eq!(drift["mode"], "continuous", "{r}");
        if drift["features"].get("petal_length").is_some() && found_at.is_none() {
            found_at = Some(request);
        }
    }
    let found_at = found_at.expect("continuous mode found the drift in V2 traffic");
    assert!(found_at > 20, "not before the drift began ({found_at})");

    // A per-request check, asked for in the request's parameters.
    let r = infer(
        &iris_like(40, 3000, 3.0),
        json!({"drift": {"detector": "adwin"}}),
    );
    assert_eq!(r["parameters"]["drift"]["mode"], "request", "{r}");
    assert!(r["parameters"]["drift"]["features"]
        .get("petal_length")
        .is_some());
    let r = server.post_json(
        "/v2/models/iris/infer",
        &body(
            &iris_like(2, 0, 0.0),
            json!({"drift": {"detector": "nope"}}),
        ),
    );
    assert_eq!(r.status(), 422);
    let error = r.json::<Value>().unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("parameters.drift"),
        "{error}"
    );

    // Drift found in V2 traffic is stored as events.
    let events = server.get_json("/v1/models/iris/drift");
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["feature"] == "petal_length"),
        "{events}"
    );

    // Every V2 predict is in the prediction log, inputs and outputs as JSON; `save: false` opts
    // one out.
    infer(&iris_like(1, 0, 0.0), json!({"save": false}));
    let page = saved_page(&server, 81);
    assert_eq!(page["total"], 81, "80 continuous and 1 per-request check");
    let newest = &page["predictions"][0];
    assert_eq!(newest["inputs"]["inputs"][0]["name"], "float_input");
    assert_eq!(newest["inputs"]["inputs"][0]["shape"], json!([40, 4]));
    assert_eq!(newest["outputs"]["outputs"][0]["name"], "label");
    assert_eq!(newest["drift"]["detector"], "adwin");
}

/// The same through the real tritonclient, binary tensors both ways: its traffic is watched for
/// drift and logged like any other.
#[test]
fn tritonclient_traffic_is_watched_for_drift_and_logged() {
    let Some(python) = crate::v2::tritonclient_or_skip() else {
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    watched_and_logged_iris(&server);
    let mut requests: Vec<Value> = (0..60)
        .map(|request| {
            let shift = if request >= 20 {
                (request - 20) as f64 * 0.1
            } else {
                0.0
            };
            json!({"rows": iris_like(2, 500 + request * 2, shift)})
        })
        .collect();
    requests.push(json!({
        "rows": iris_like(40, 3000, 3.0),
        "parameters": {"drift": {"detector": "adwin"}, "save": false},
    }));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("requests.json");
    std::fs::write(&file, serde_json::to_vec(&requests).unwrap()).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/v2/tritonclient_drift.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(server.url.trim_start_matches("http://"))
        .arg(&server.token)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), 61);
    assert!(answers[..60]
        .iter()
        .all(|a| a["drift"]["mode"] == "continuous"));
    let found_at = answers
        .iter()
        .position(|a| a["drift"]["features"].get("petal_length").is_some())
        .expect("continuous drift found in tritonclient traffic");
    assert!(found_at > 20, "not before the drift began ({found_at})");
    assert_eq!(answers[60]["drift"]["mode"], "request");
    assert_eq!(answers[60]["labels"].as_array().unwrap().len(), 40);

    // The 60 continuous requests are saved, the one that said `save: false` is not.
    let page = saved_page(&server, 60);
    assert_eq!(page["total"], 60);
    // Binary inputs are logged as JSON values.
    assert_eq!(
        page["predictions"][0]["inputs"]["inputs"][0]["data"]
            .as_array()
            .unwrap()
            .len(),
        8
    );
}

/// Iris-like rows on a 1/64 grid: exact in f32 (what the model's input tensor holds, and so
/// what the server's drift check sees) and in f64 (what the CLI reads), so both see the same
/// numbers.
fn on_grid(rows: Vec<[f64; 4]>) -> Vec<[f64; 4]> {
    rows.into_iter()
        .map(|r| r.map(|x| (x * 64.0).round() / 64.0))
        .collect()
}

/// A CSV of `rows` under the iris header, each cell through `cell(row, column, value)`.
fn csv_with(rows: &[[f64; 4]], cell: impl Fn(usize, usize, f64) -> String) -> String {
    let mut text = String::from("sepal_length,sepal_width,petal_length,petal_width\n");
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = (0..4).map(|c| cell(i, c, r[c])).collect();
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    text
}

on_both_stores!(
    a_missing_cell_means_the_same_to_the_server_and_the_cli,
    |store: &Store| {
        use crate::drift_cli::{maas, strings};
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.csv");
        let new = dir.path().join("new.csv");
        let drift_table = |baseline: &str| {
            std::fs::write(&base, baseline).unwrap();
            maas(
                &strings(&[
                    "drift",
                    "table",
                    "--detector",
                    "adwin",
                    "--baseline",
                    &base.display().to_string(),
                    &new.display().to_string(),
                ]),
                None,
            )
        };

        // A baseline with missing cells spelled three ways, a byte-order mark and a blank line.
        let base_rows = on_grid(iris_like(80, 0, 0.0));
        let mut baseline = String::from("\u{feff}");
        baseline.push_str(&csv_with(&base_rows, |i, c, x| match (i, c) {
            (3, 2) => String::new(),
            (10, 1) => "NA".into(),
            (20, 2) => " n/a ".into(),
            _ => x.to_string(),
        }));
        baseline.push('\n');
        let mut fresh = on_grid(iris_like(60, 1000, 0.0));
        fresh.extend(on_grid(iris_like(60, 2000, 3.0)));
        std::fs::write(&new, csv_with(&fresh, |_, _, x| x.to_string())).unwrap();

        let (ok, out, err) = drift_table(&baseline);
        assert!(ok, "{err}");
        let cli: Value = serde_json::from_str(&out).unwrap();
        let cli = &cli["features"];
        assert!(
            cli["petal_length"]
                .as_array()
                .is_some_and(|rows| !rows.is_empty()),
            "{cli}"
        );

        let server = Server::start(store);
        let r = deploy_with(
            &server,
            "iris",
            vec![("baseline", csv_part(baseline.clone()))],
            &[],
        );
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let meta = server.get_json("/v1/models/iris/versions/1");
        assert_eq!(meta["drift"]["baseline_rows"], 80);
        // The statistics skip what is missing.
        assert_eq!(meta["drift"]["stats"]["petal_length"]["count"], 78);
        assert_eq!(meta["drift"]["stats"]["sepal_width"]["count"], 79);
        assert_eq!(meta["drift"]["stats"]["petal_width"]["count"], 80);
        let report = server.predict_ok(
            "iris",
            None,
            &json!({"instances": rows_json(&fresh), "drift": {"detector": "adwin"}}),
        );
        assert_eq!(&report["drift"]["features"], cli, "server and CLI agree");

        // What one refuses, the other refuses, for the same reason, without quoting the cell.
        let refused = [
            (
                csv_with(
                    &base_rows,
                    |_, c, x| {
                        if c == 3 {
                            "?".into()
                        } else {
                            x.to_string()
                        }
                    },
                ),
                "column 'petal_width' has no value: every cell is missing",
            ),
            (
                csv_with(&base_rows, |i, c, x| {
                    if (i, c) == (2, 1) {
                        "s3cr3t".into()
                    } else {
                        x.to_string()
                    }
                }),
                "line 4, column 'sepal_width': not a number",
            ),
        ];
        for (text, reason) in refused {
            let (ok, _, err) = drift_table(&text);
            assert!(!ok && err.contains(reason), "CLI: {err}");
            assert!(!err.contains("s3cr3t"), "CLI: {err}");
            let r = server
                .client
                .put(format!("{}/v1/models/iris/versions/1/baseline", server.url))
                .multipart(Form::new().part("baseline", csv_part(text)))
                .send()
                .unwrap();
            let body = assert_error(r, 422, "invalid_argument");
            let message = body["message"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("baseline: {reason}")),
                "server: {message}"
            );
            assert!(!message.contains("s3cr3t"), "server: {message}");
        }
        // The refusals left the baseline as it was.
        let again = server.predict_ok(
            "iris",
            None,
            &json!({"instances": rows_json(&fresh), "drift": {"detector": "adwin"}}),
        );
        assert_eq!(&again["drift"]["features"], cli);
    }
);

/// Detector names are read in any case and with the seed's spellings; a bare name is the
/// detector with river's defaults.
#[test]
fn detectors_take_the_seeds_names_in_any_case() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let r = deploy_with(
        &server,
        "iris",
        vec![("baseline", csv_part(csv(&iris_like(50, 0, 0.0), false)))],
        &[(
            "drift",
            r#"{"enabled": false, "detector": {"detector": "HDDM"}}"#,
        )],
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let meta = server.get_json("/v1/models/iris/versions/1");
    assert_eq!(meta["drift"]["settings"]["detector"]["detector"], "hddm_a");
    let rows = rows_json(&iris_like(20, 100, 0.0));
    for (asked, name) in [
        (json!("ADWIN"), "adwin"),
        (
            json!({"detector": "Page Hinkley", "threshold": 20}),
            "page_hinkley",
        ),
        (json!({"detector": "hddm-w"}), "hddm_w"),
    ] {
        let r = server.predict_ok("iris", None, &json!({"instances": rows, "drift": asked}));
        assert_eq!(r["drift"]["detector"], name, "{asked}: {r}");
    }
    let r = server.predict(
        "iris",
        None,
        &json!({"instances": rows, "drift": {"detector": "kswin"}}),
    );
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown detector 'kswin'"),
        "{body}"
    );
}

/// Sum of a JSON list of counts.
fn total(counts: &Value) -> u64 {
    counts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .sum()
}

on_both_stores!(
    the_distribution_compares_the_baseline_with_the_rows_scored,
    |store: &Store| {
        let server = Server::start(store);
        let training = std::fs::read_to_string(fixture("iris_train.csv")).unwrap();
        let r = deploy_with(
            &server,
            "iris",
            vec![("training_data", csv_part(training))],
            &[
                ("label_column", "species"),
                ("feature_names", IRIS_FEATURES),
                // Checked only when a predict asks, so an unchecked one can be told apart.
                ("drift", r#"{"enabled": false}"#),
            ],
        );
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let path = "/v1/models/iris/versions/1/drift/distribution";

        // Before any drift-checked predict: the baseline, and an empty recent side.
        let empty = server.get_json(path);
        assert_eq!(empty["model"], "iris");
        assert_eq!(empty["version"], 1);
        assert_eq!(empty["bins"], 20);
        assert_eq!(empty["baseline_rows"], 50);
        assert_eq!(empty["recent_rows"], 0);
        let features = empty["features"].as_array().unwrap();
        let names: Vec<&str> = features
            .iter()
            .map(|f| f["feature"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        );
        for f in features {
            assert_eq!(f["edges"].as_array().unwrap().len(), 21, "{f}");
            assert_eq!(total(&f["baseline"]["counts"]), 50, "{f}");
            assert_eq!(f["recent"]["count"], 0, "{f}");
            assert_eq!(total(&f["recent"]["counts"]), 0, "{f}");
            assert!(f["recent"]["quantiles"]["p50"].is_null(), "{f}");
        }

        // A predict without a drift check leaves the window alone.
        server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
        assert_eq!(server.get_json(path)["recent_rows"], 0);

        // The shifted rows, checked for drift: every one lands in the recent side.
        let shifted: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("iris_shifted.json")).unwrap())
                .unwrap();
        let scored = shifted["instances"].as_array().unwrap().len() as u64;
        let answer = server.predict_ok("iris", None, &shifted);
        assert!(answer["drift"].is_object(), "{answer}");
        let d = server.get_json(path);
        assert_eq!(d["recent_rows"], scored);
        assert_eq!(d["recent_seen"], scored);
        assert_eq!(d["baseline_rows"], 50);
        for (f, column) in d["features"].as_array().unwrap().iter().zip(0..) {
            let edges: Vec<f64> = f["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_f64().unwrap())
                .collect();
            assert_eq!(edges.len(), 21, "{f}");
            assert!(edges.windows(2).all(|w| w[0] < w[1]), "increasing: {f}");
            // One set of edges for both sides, spanning both. The recent values are what the
            // model scored: its float input holds them as f32.
            let values: Vec<f64> = shifted["instances"]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| f64::from(row[column].as_f64().unwrap() as f32))
                .collect();
            let (lo, hi) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
            // (Within a rounding: serde_json's default float parsing may be one ulp off.)
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            assert!(edges[0] <= lo + 1e-9 && edges[20] >= hi - 1e-9, "{f}");
            assert_eq!(f["baseline"]["counts"].as_array().unwrap().len(), 20);
            assert_eq!(total(&f["baseline"]["counts"]), 50, "{f}");
            assert_eq!(f["recent"]["count"], scored, "{f}");
            assert_eq!(total(&f["recent"]["counts"]), scored, "{f}");
            assert!(close(f["recent"]["min"].as_f64().unwrap(), lo), "{f}");
            assert!(close(f["recent"]["max"].as_f64().unwrap(), hi), "{f}");
            let q = &f["recent"]["quantiles"];
            let p: Vec<f64> = ["p5", "p25", "p50", "p75", "p95"]
                .iter()
                .map(|k| q[k].as_f64().unwrap())
                .collect();
            assert!(p.windows(2).all(|w| w[0] <= w[1]), "{q}");
        }
        // The shift shows: petal length's recent median is above the baseline's.
        let petal = &d["features"][2];
        assert!(
            petal["recent"]["quantiles"]["p50"].as_f64().unwrap()
                > petal["baseline"]["quantiles"]["p50"].as_f64().unwrap(),
            "{petal}"
        );

        // Fewer bins on request; bad requests are refused and change nothing.
        let five = server.get_json(&format!("{path}?bins=5"));
        assert_eq!(five["features"][0]["edges"].as_array().unwrap().len(), 6);
        assert_eq!(total(&five["features"][0]["recent"]["counts"]), scored);
        for bad in ["0", "201"] {
            let e = assert_error(
                server.get(&format!("{path}?bins={bad}")),
                422,
                "invalid_argument",
            );
            assert!(e["message"].as_str().unwrap().contains("`bins`"), "{e}");
        }
        assert_error(
            server.get(&format!("{path}?bins=x")),
            400,
            "invalid_request",
        );
        assert_error(server.get(&format!("{path}?bin=5")), 400, "invalid_request");
        assert_error(
            server.get("/v1/models/iris/versions/9/drift/distribution"),
            404,
            "version_not_found",
        );
        assert_error(
            server.get("/v1/models/nope/versions/1/drift/distribution"),
            404,
            "model_not_found",
        );
        server.deploy("plain", "iris_logreg.onnx", &[]);
        let e = assert_error(
            server.get("/v1/models/plain/versions/1/drift/distribution"),
            404,
            "baseline_not_found",
        );
        assert!(
            e["message"].as_str().unwrap().contains("training_data"),
            "{e}"
        );
        assert_eq!(server.get_json(path)["recent_rows"], scored);
    }
);
