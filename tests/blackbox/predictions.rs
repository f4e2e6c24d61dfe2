//! The prediction log: saved per request or by a model's default, listed as JSON or CSV with
//! time filters and pages, trimmed by count and by age.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

fn saved(server: &Server, query: &str) -> Value {
    server.get_json(&format!("/v1/models/iris/versions/1/predictions?{query}"))
}

/// Saving is asynchronous: wait until `want` records are there.
fn wait_for_total(server: &Server, want: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = saved(server, "");
        if page["total"] == want {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "expected {want} saved predictions, have {page}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

on_both_stores!(
    predictions_are_saved_when_asked_and_listed,
    |store: &Store| {
        let server = Server::start(store);
        let form = reqwest::blocking::multipart::Form::new()
            .part("model", fixture_part("iris_logreg.onnx"))
            .part("training_data", fixture_part("iris_train.csv"))
            .text("label_column", "species")
            .text("class_names", IRIS_CLASSES);
        let r = server.deploy_multipart("iris", form);
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let row = json!([5.1, 3.5, 1.4, 0.2]);
        // Not saved by default.
        server.predict_ok("iris", None, &json!({"instances": [row]}));
        // Saved when the request asks, with a drift check.
        server.predict_ok(
            "iris",
            None,
            &json!({"instances": [row, [6.7, 3.0, 5.2, 2.3]], "save": true, "drift": {"detector": "adwin"}}),
        );
        let page = wait_for_total(&server, 1);
        let record = &page["predictions"][0];
        assert_eq!(record["version"], 1);
        assert_eq!(record["actor"], "admin");
        assert_eq!(
            record["inputs"]["instances"],
            json!([row, [6.7, 3.0, 5.2, 2.3]])
        );
        assert_eq!(
            record["outputs"]["predictions"],
            json!(["setosa", "virginica"])
        );
        assert_eq!(record["drift"]["detector"], "adwin");
        assert!(record["latency_us"].as_u64().unwrap() > 0);
        assert_eq!(record["request_id"].as_str().unwrap().len(), 32);

        // A model can save every predict by default; a request can still opt out.
        let r = server.post_json(
            "/v1/models/iris/actions/update",
            &json!({"log_predictions": true}),
        );
        assert_eq!(r.status(), 200);
        for i in 0..3 {
            server.predict_ok(
                "iris",
                Some(1),
                &json!({"instances": [[5.0 + i as f64, 3.0, 1.5, 0.2]]}),
            );
        }
        server.predict_ok("iris", None, &json!({"instances": [row], "save": false}));
        let page = wait_for_total(&server, 4);
        assert_eq!(
            page["predictions"][0]["inputs"]["instances"],
            json!([[7.0, 3.0, 1.5, 0.2]])
        );

        // Pages, time filters, CSV.
        let second = saved(&server, "limit=2&offset=1");
        assert_eq!(second["predictions"].as_array().unwrap().len(), 2);
        assert_eq!(second["predictions"][0], page["predictions"][1]);
        assert_eq!(saved(&server, "since=2999-01-01T00:00:00Z")["total"], 0);
        assert_eq!(saved(&server, "until=2999-01-01T00:00:00Z")["total"], 4);
        let r = server.get("/v1/models/iris/versions/1/predictions?format=csv");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let text = r.text().unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(reader.records().count(), 4);

        // Errors.
        assert_error(
            server.get("/v1/models/iris/versions/9/predictions"),
            404,
            "version_not_found",
        );
        assert_error(
            server.get("/v1/models/nope/versions/1/predictions"),
            404,
            "model_not_found",
        );
        assert_error(
            server.get("/v1/models/iris/versions/1/predictions?since=soon"),
            422,
            "invalid_argument",
        );
        assert_error(
            server.get("/v1/models/iris/versions/1/predictions?format=xml"),
            422,
            "invalid_argument",
        );
        let audit = server.get_json("/v1/audit?kind=logging_update");
        assert_eq!(audit["total"], 1);
    }
);

#[test]
fn the_log_keeps_at_most_its_limits() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__PREDICTIONS__MAX_ROWS_PER_VERSION", "3")
            .env("MAAS__PREDICTIONS__MAX_AGE_SECS", "2")
            .env("MAAS__PREDICTIONS__RETENTION_INTERVAL_SECS", "0"),
    );
    server.deploy("iris", "iris_logreg.onnx", &[]);
    for i in 0..8 {
        server.predict_ok(
            "iris",
            None,
            &json!({"instances": [[i as f64, 3.0, 1.5, 0.2]], "save": true}),
        );
        // One write (and one trim) at a time.
        std::thread::sleep(Duration::from_millis(30));
    }
    let page = wait_for_total(&server, 3);
    assert_eq!(
        page["predictions"][0]["inputs"]["instances"],
        json!([[7.0, 3.0, 1.5, 0.2]]),
        "the newest are kept"
    );
    // Past the age limit, the next write trims everything older.
    std::thread::sleep(Duration::from_millis(2500));
    server.predict_ok(
        "iris",
        None,
        &json!({"instances": [[9.0, 3.0, 1.5, 0.2]], "save": true}),
    );
    let page = wait_for_total(&server, 1);
    assert_eq!(
        page["predictions"][0]["inputs"]["instances"],
        json!([[9.0, 3.0, 1.5, 0.2]])
    );
}
