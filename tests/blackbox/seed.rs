//! The seed's deploy and predict variables through the real HTTP API: BASELINE_DATA_URL
//! (`baseline_url`, `training_data_url`), MODEL_METADATA (`training_stats`),
//! DEVIATION_DETECTION (`deviation_enabled`), LOGGING_PREDICTION (`log_predictions`),
//! LABEL_COLUMN on predict, DRIFT_ENABLED on by default, and a `baseline_size` larger than the
//! data refused.

use std::time::Duration;

use reqwest::blocking::multipart::Form;
use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

fn file_url(name: &str) -> String {
    format!("file://{}", fixture(name).canonicalize().unwrap().display())
}

fn versions(server: &Server) -> usize {
    server.get_json("/v1/models/iris")["versions"]
        .as_array()
        .map_or(0, Vec::len)
}

fn saved_total(server: &Server, version: u64) -> u64 {
    server.get_json(&format!("/v1/models/iris/versions/{version}/predictions"))["total"]
        .as_u64()
        .unwrap()
}

const STATS: &str = r#"{"sepal_length": {"mean": 5.5, "std": 0.8}, "sepal_width": {"mean": 3.0, "std": 0.4},
    "petal_length": {"mean": 3.0, "std": 1.5}, "petal_width": {"mean": 1.0, "std": 0.7}}"#;

on_both_stores!(
    baseline_url_training_stats_and_log_predictions_at_deploy,
    |store: &Store| {
        let server = Server::start(store);
        let csv = std::fs::read(fixture("iris_train.csv")).unwrap();
        let url = serve_bytes(csv, true, "/datasets/iris.csv");
        let v1 = server.deploy(
            "iris",
            "iris_logreg.onnx",
            &[
                ("class_names", IRIS_CLASSES),
                ("feature_names", IRIS_FEATURES),
                ("baseline_url", &url),
                ("label_column", "species"),
                ("training_stats", STATS),
                ("log_predictions", "true"),
            ],
        );
        assert_eq!(v1["version"], 1);
        let meta = server.get_json("/v1/models/iris/versions/1");
        let drift = &meta["drift"];
        assert_eq!(drift["source"], "baseline");
        assert_eq!(drift["baseline_rows"], 150);
        // The statistics are the ones given, not the baseline's own (mean 3.76).
        assert_eq!(drift["stats"]["petal_length"]["mean"], 3.0);
        assert_eq!(drift["stats"]["petal_length"]["std"], 1.5);
        assert_eq!(drift["stats"]["petal_length"]["count"], 0);
        // A baseline turns drift on (the seed's DRIFT_ENABLED), deviation check included.
        assert_eq!(drift["settings"]["enabled"], true);
        assert_eq!(drift["settings"]["deviation_enabled"], true);

        // Every predict is checked without asking, against the given statistics ...
        let answer = server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
        assert_eq!(answer["predictions"], json!(["setosa"]));
        assert_eq!(answer["drift"]["mode"], "request");
        assert_eq!(
            answer["drift"]["deviation"]["petal_length"]["train_mean"],
            3.0
        );
        // ... and saved, as the deploy asked.
        wait_for("the predict to be saved", || saved_total(&server, 1) == 1);

        // A new version keeps the model's setting; `false` turns it off.
        server.deploy("iris", "iris_logreg_v2.onnx", &[]);
        server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
        wait_for("version 2's predict to be saved", || {
            saved_total(&server, 2) == 1
        });
        server.deploy("iris", "iris_logreg.onnx", &[("log_predictions", "false")]);
        server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(saved_total(&server, 3), 0);

        // Replace version 3's baseline with training data from a file URL.
        let form = Form::new()
            .text("training_data_url", file_url("iris_train.csv"))
            .text("label_column", "species")
            .text("baseline_size", "40");
        let r = server
            .client
            .put(format!("{}/v1/models/iris/versions/3/baseline", server.url))
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        let meta = server.get_json("/v1/models/iris/versions/3");
        assert_eq!(meta["drift"]["source"], "training_data");
        assert_eq!(meta["drift"]["baseline_rows"], 40);
        assert_eq!(meta["drift"]["stats"]["petal_length"]["count"], 150);
    }
);

on_both_stores!(
    bad_seed_fields_are_refused_and_change_nothing,
    |store: &Store| {
        let server = Server::start(store);
        server.deploy(
            "iris",
            "iris_logreg.onnx",
            &[("feature_names", IRIS_FEATURES)],
        );
        let csv = std::fs::read(fixture("iris_train.csv")).unwrap();
        let deploy =
            |fields: &[(&str, &str)]| server.deploy_form("iris", "iris_logreg.onnx", fields);
        let with_label = |fields: &[(&str, &str)]| {
            let mut all = vec![("label_column", "species")];
            all.extend_from_slice(fields);
            deploy(&all)
        };

        // baseline_url follows model_url's rules, with its own code.
        let missing = serve_bytes(Vec::new(), false, "/datasets/iris.csv");
        let body = assert_error(
            with_label(&[("baseline_url", &missing)]),
            422,
            "baseline_url_failed",
        );
        // Every failure to fetch says the same (the log has the 404): no network mapping.
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("`baseline_url` could not be fetched"),
            "{body}"
        );
        let body = assert_error(
            deploy(&[("baseline_url", "ftp://127.0.0.1/iris.csv")]),
            422,
            "baseline_url_failed",
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("`baseline_url` scheme 'ftp'"),
            "{body}"
        );
        assert_error(
            deploy(&[("training_data_url", "not a url")]),
            422,
            "baseline_url_failed",
        );
        assert_error(
            deploy(&[("baseline_url", "file:///no/such/baseline.csv")]),
            422,
            "baseline_url_failed",
        );
        // One source of rows.
        let url = serve_bytes(csv.clone(), true, "/datasets/iris.csv");
        let both = Form::new()
            .part("model", fixture_part("iris_logreg.onnx"))
            .part("baseline", fixture_part("iris_train.csv"))
            .text("baseline_url", url.clone())
            .text("label_column", "species");
        let body = assert_error(
            server.deploy_multipart("iris", both),
            422,
            "invalid_argument",
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("not both `baseline` and `baseline_url`"),
            "{body}"
        );

        // baseline_size over the training rows: refused, naming both numbers.
        let body = assert_error(
            with_label(&[
                ("training_data_url", &file_url("iris_train.csv")),
                ("baseline_size", "151"),
            ]),
            422,
            "invalid_argument",
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("151") && message.contains("150 rows"),
            "{message}"
        );

        // training_stats: every feature, finite, std > 0; not with training_data.
        let file = file_url("iris_train.csv");
        for (stats, words) in [
            (
                r#"{"sepal_length": {"mean": 5.5, "std": 0.8}}"#,
                "for 'sepal_width'",
            ),
            (
                r#"[[1, 2, 3, 4], [1, 1, 0, 1]]"#,
                "the std of 'petal_length' must be greater than 0",
            ),
            (
                r#"{"sepal_length": {"mean": 5.5, "std": 0.8}, "species": {"mean": 1, "std": 1}}"#,
                "'species', which is not a feature",
            ),
            ("mean 5.5", "`training_stats` must be JSON"),
        ] {
            let body = assert_error(
                with_label(&[("baseline_url", &file), ("training_stats", stats)]),
                422,
                "invalid_argument",
            );
            assert!(body["message"].as_str().unwrap().contains(words), "{body}");
        }
        let body = assert_error(
            with_label(&[("training_data_url", &file), ("training_stats", STATS)]),
            422,
            "invalid_argument",
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("goes with a `baseline`"),
            "{body}"
        );
        let body = assert_error(
            deploy(&[("log_predictions", "maybe")]),
            422,
            "invalid_argument",
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("`log_predictions` must be true or false"),
            "{body}"
        );

        // Nothing was recorded.
        assert_eq!(versions(&server), 1);
        assert!(server.get_json("/v1/models/iris/versions/1")["drift"].is_null());
        let put = |form: Form| {
            server
                .client
                .put(format!("{}/v1/models/iris/versions/1/baseline", server.url))
                .multipart(form)
                .send()
                .unwrap()
        };
        assert_error(
            put(Form::new().text("baseline_url", missing)),
            422,
            "baseline_url_failed",
        );
        assert!(server.get_json("/v1/models/iris/versions/1")["drift"].is_null());
    }
);

on_both_stores!(
    label_column_is_dropped_and_checks_can_be_switched_off,
    |store: &Store| {
        let server = Server::start(store);
        let rows = [
            [5.1, 3.5, 1.4, 0.2],
            [6.7, 3.0, 5.2, 2.3],
            [5.9, 3.0, 4.2, 1.5],
        ];
        let names = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
        let records = |label: bool| -> Value {
            rows.iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut record: serde_json::Map<String, Value> = names
                        .iter()
                        .zip(r)
                        .map(|(n, v)| (n.to_string(), json!(v)))
                        .collect();
                    // The first record has no label: fine.
                    if label && i > 0 {
                        record.insert("species".into(), json!(i));
                    }
                    Value::Object(record)
                })
                .collect()
        };
        // Drift explicitly off: the baseline waits for predicts that ask.
        server.deploy(
            "iris",
            "iris_logreg.onnx",
            &[
                ("class_names", IRIS_CLASSES),
                ("feature_names", IRIS_FEATURES),
                ("baseline_url", &file_url("iris_train.csv")),
                ("label_column", "species"),
                ("drift", r#"{"enabled": false}"#),
            ],
        );
        let plain = server.predict_ok("iris", None, &json!({"records": records(false)}));
        assert!(plain.get("drift").is_none(), "{plain}");
        let labelled = server.predict_ok(
            "iris",
            None,
            &json!({"records": records(true), "label_column": "species"}),
        );
        assert_eq!(labelled["predictions"], plain["predictions"]);
        assert_eq!(plain["predictions"].as_array().unwrap().len(), 3);

        // Without naming it, the label is an unknown column; it goes with records only, and
        // cannot be a feature.
        let body = assert_error(
            server.predict("iris", None, &json!({"records": records(true)})),
            422,
            "invalid_input",
        );
        assert!(
            body["message"].as_str().unwrap().contains("'species'"),
            "{body}"
        );
        assert_error(
            server.predict(
                "iris",
                None,
                &json!({"instances": [rows[0]], "label_column": "species"}),
            ),
            422,
            "invalid_input",
        );
        let body = assert_error(
            server.predict(
                "iris",
                None,
                &json!({"records": records(false), "label_column": "petal_length"}),
            ),
            422,
            "invalid_input",
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("one of the model's features"),
            "{body}"
        );

        // The deviation check switched off on its own: the detector still runs.
        let r = server
            .client
            .post(format!("{}/v1/models/iris/actions/update", server.url))
            .json(&json!({"drift": {"deviation_enabled": false, "detector": "adwin"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        let answer = server.predict_ok("iris", None, &json!({"records": records(false)}));
        assert_eq!(answer["drift"]["detector"], "adwin");
        assert_eq!(answer["drift"]["deviation"], json!({}));
        let asked = server.predict_ok(
            "iris",
            None,
            &json!({"instances": [[9.0, 3.0, 9.0, 3.0]], "drift": {"detector": "page_hinkley"}}),
        );
        assert_eq!(asked["drift"]["deviation"], json!({}));
    }
);
