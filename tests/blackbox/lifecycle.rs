//! The one deploy operation, through the real HTTP API: one default for "alone or alongside"
//! at every entry point, and what a new version carries forward from the one it replaces.

use reqwest::blocking::multipart::{Form, Part};
use serde_json::{json, Value};

use crate::common::*;

const CLASSES: &str = r#"["setosa","versicolor","virginica"]"#;
const FEATURES: &str = r#"["sepal_length","sepal_width","petal_length","petal_width"]"#;

fn baseline_csv(shift: f64) -> String {
    let mut text = String::from("sepal_length,sepal_width,petal_length,petal_width\n");
    for i in 0..60 {
        let x = f64::from(i % 10) / 10.0;
        text.push_str(&format!(
            "{},{},{},{}\n",
            5.0 + x,
            3.0 + x / 2.0,
            1.5 + x + shift,
            0.2 + x / 4.0
        ));
    }
    text
}

fn deployed(server: &Server, model: &str) -> Vec<u64> {
    server.get_json(&format!("/v1/models/{model}"))["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "deployed")
        .map(|v| v["version"].as_u64().unwrap())
        .collect()
}

fn upload(
    server: &Server,
    model: &str,
    fields: &[(&str, &str)],
    csv: Option<(&str, String)>,
) -> Value {
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    let mut form = Form::new().part("model", Part::bytes(bytes).file_name("iris.onnx"));
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    if let Some((name, text)) = csv {
        form = form.part(
            name.to_owned(),
            Part::bytes(text.into_bytes()).file_name("data.csv"),
        );
    }
    let r = server.deploy_multipart(model, form);
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

#[test]
fn every_entry_point_deploys_alone_unless_asked_to_append() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    // An upload replaces the deployed versions by default; they stay kept.
    server.deploy("iris", "iris_logreg.onnx", &[]);
    assert_eq!(deployed(&server, "iris"), [2]);
    // `append=true` keeps them serving.
    server.deploy("iris", "iris_logreg.onnx", &[("append", "true")]);
    assert_eq!(deployed(&server, "iris"), [2, 3]);
    // Redeploy: alone by default (a rollback), beside the others with `append`.
    let r = server.post_empty("/v1/models/iris/versions/1/deploy");
    assert_eq!(r.status(), 200);
    assert_eq!(deployed(&server, "iris"), [1]);
    let r = server.post_json(
        "/v1/models/iris/versions/3/deploy",
        &json!({"append": true}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(deployed(&server, "iris"), [1, 3]);
    // The `deploy` service action follows the same default.
    let r = server.post_json("/v1/models/iris/actions/deploy", &json!({"version": 2}));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(deployed(&server, "iris"), [2]);
    let r = server.post_json(
        "/v1/models/iris/actions/deploy",
        &json!({"version": 1, "append": true}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(deployed(&server, "iris"), [1, 2]);
}

#[test]
fn a_new_version_carries_forward_what_the_deploy_leaves_out() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let drift = r#"{"enabled": true, "continuous": true, "detector": {"detector": "adwin"}, "webhook_url": "http://127.0.0.1:9/hook"}"#;
    let v1 = upload(
        &server,
        "iris",
        &[
            ("class_names", CLASSES),
            ("feature_names", FEATURES),
            ("serving", r#"{"instances": 2, "max_batch_size": 8}"#),
            ("drift", drift),
        ],
        Some(("baseline", baseline_csv(0.0))),
    );
    assert_eq!(v1["version"], 1);

    // A bare upload: names, serving options, baseline and drift settings come from version 1.
    upload(&server, "iris", &[], None);
    let v2 = server.get_json("/v1/models/iris/versions/2");
    assert_eq!(
        v2["class_names"],
        serde_json::from_str::<Value>(CLASSES).unwrap()
    );
    assert_eq!(
        v2["feature_names"],
        serde_json::from_str::<Value>(FEATURES).unwrap()
    );
    assert_eq!(
        v2["serving_options"],
        json!({"instances": 2, "max_batch_size": 8})
    );
    assert_eq!(v2["drift"]["settings"]["continuous"], true, "{v2}");
    assert_eq!(
        v2["drift"]["settings"]["webhook_url"],
        "http://127.0.0.1:9/hook"
    );
    assert_eq!(v2["drift"]["baseline_rows"], 60);
    // Its predicts are checked like version 1's were, with its class names.
    let r = server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
    assert_eq!(r["version"], 2);
    assert_eq!(r["predictions"], json!(["setosa"]));
    assert_eq!(r["drift"]["mode"], "continuous");

    // New training data without settings: a new baseline, the settings carried.
    upload(
        &server,
        "iris",
        &[("serving", r#"{"instances": 1}"#)],
        Some(("training_data", baseline_csv(1.0))),
    );
    let v3 = server.get_json("/v1/models/iris/versions/3");
    assert_eq!(v3["drift"]["source"], "training_data");
    assert_eq!(v3["drift"]["settings"]["continuous"], true);
    // A field the caller sends wins; the others still carry.
    assert_eq!(
        v3["serving_options"],
        json!({"instances": 1, "max_batch_size": 8})
    );

    // New settings alone apply to the carried baseline.
    upload(&server, "iris", &[("drift", r#"{"enabled": false}"#)], None);
    let v4 = server.get_json("/v1/models/iris/versions/4");
    assert_eq!(v4["drift"]["settings"]["enabled"], false);
    assert_eq!(v4["drift"]["source"], "training_data");

    // A new baseline through PUT keeps the version's drift settings when it sends none.
    let form = Form::new().part(
        "baseline",
        Part::bytes(baseline_csv(0.5).into_bytes()).file_name("b.csv"),
    );
    let r = server
        .client
        .put(format!("{}/v1/models/iris/versions/2/baseline", server.url))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let v2 = server.get_json("/v1/models/iris/versions/2");
    assert_eq!(v2["drift"]["source"], "baseline");
    assert_eq!(v2["drift"]["settings"]["continuous"], true);
    assert_eq!(
        v2["drift"]["settings"]["webhook_url"],
        "http://127.0.0.1:9/hook"
    );
}
