//! Deploy, inspect, predict, roll back and delete through the real HTTP API.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::on_both_stores;

fn iris_rows() -> Value {
    expected()["iris_logreg"]["inputs"].clone()
}

on_both_stores!(deploy_inspect_and_predict_iris, |store: &Store| {
    let server = Server::start(store);
    let deployed = server.deploy(
        "iris",
        "iris_logreg.onnx",
        &[
            ("class_names", IRIS_CLASSES),
            ("feature_names", IRIS_FEATURES),
        ],
    );
    assert_eq!(deployed["name"], "iris");
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["state"], "deployed");
    assert_eq!(deployed["default"], true);
    assert_eq!(deployed["ready"], true);

    let meta = server.get_json("/v1/models/iris/versions/1");
    assert_eq!(meta["backend"], "tract");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "float_input", "element_type": "float32", "shape": ["N", 4]}])
    );
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "label", "element_type": "int64", "shape": ["N"]})
    );
    assert_eq!(
        meta["outputs"][1],
        json!({"name": "probabilities", "element_type": "float32", "shape": ["N", 3]})
    );
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    assert_eq!(meta["size_bytes"], bytes.len());
    assert_eq!(meta["sha256"], hex::encode(Sha256::digest(&bytes)));
    assert_eq!(meta["source"], "upload:iris_logreg.onnx");
    assert!(meta["created_at"].as_str().unwrap().ends_with('Z'));

    let reference = &expected()["iris_logreg"];
    let answer = server.predict_ok("iris", None, &json!({"instances": iris_rows()}));
    assert_eq!(answer["model"], "iris");
    assert_eq!(answer["version"], 1);
    let names = ["setosa", "versicolor", "virginica"];
    let want: Vec<&str> = reference["outputs"]["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| names[l.as_u64().unwrap() as usize])
        .collect();
    assert_eq!(answer["predictions"], json!(want));
    assert_close(
        &answer["probabilities"],
        &reference["outputs"]["probabilities"],
        1e-4,
    );
    assert!(
        answer.get("outputs").is_none(),
        "label and probabilities are not repeated: {answer}"
    );

    // Named columns, in any order, give the same answer.
    let records: Vec<Value> = iris_rows()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"petal_width": r[3], "sepal_length": r[0], "petal_length": r[2], "sepal_width": r[1]}))
        .collect();
    let by_name = server.predict_ok("iris", Some(1), &json!({ "records": records }));
    assert_eq!(by_name["predictions"], answer["predictions"]);
});

#[test]
fn every_fixture_model_predicts_through_http() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let reference = expected();

    server.deploy("forest", "iris_rf.onnx", &[]);
    let rf = server.predict_ok(
        "forest",
        None,
        &json!({"instances": reference["iris_rf"]["inputs"]}),
    );
    assert_eq!(
        rf["predictions"], reference["iris_rf"]["outputs"]["label"],
        "labels stay numbers without class names"
    );
    assert_close(
        &rf["probabilities"],
        &reference["iris_rf"]["outputs"]["probabilities"],
        1e-4,
    );

    server.deploy("house", "house_linreg.onnx", &[]);
    let house = server.predict_ok(
        "house",
        None,
        &json!({"instances": reference["house_linreg"]["inputs"]}),
    );
    assert_close(&house["predictions"], &house_predictions(&reference), 1e-2);
    assert!(house.get("probabilities").is_none());

    server.deploy("digits", "cnn_mnist.onnx", &[]);
    let images = reference["cnn_mnist"]["inputs"].as_array().unwrap();
    let probabilities = &reference["cnn_mnist"]["outputs"]["probabilities"];
    // Flat values with the shape of one instance.
    let flat: Vec<Value> = images
        .iter()
        .flat_map(|i| i.as_array().unwrap().clone())
        .collect();
    let a = server.predict_ok(
        "digits",
        None,
        &json!({"instances": flat, "shape": [1, 28, 28]}),
    );
    assert_close(&a["probabilities"], probabilities, 1e-4);
    // Flat values with the whole tensor's shape.
    let b = server.predict_ok(
        "digits",
        None,
        &json!({"instances": flat, "shape": [2, 1, 28, 28]}),
    );
    assert_eq!(a, b);
    // Nested arrays: [N][1][28][28].
    let nested: Vec<Value> = images
        .iter()
        .map(|img| {
            let px = img.as_array().unwrap();
            json!([px
                .chunks(28)
                .map(|row| Value::Array(row.to_vec()))
                .collect::<Vec<_>>()])
        })
        .collect();
    let c = server.predict_ok("digits", None, &json!({ "instances": nested }));
    assert_eq!(a, c);
    // No label output: the prediction is the most probable class.
    for (row, p) in c["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(probabilities.as_array().unwrap())
    {
        let p: Vec<f64> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let best = (0..p.len()).max_by(|&i, &j| p[i].total_cmp(&p[j])).unwrap();
        assert_eq!(row, best);
    }
}

on_both_stores!(
    versions_numbering_append_rollback_delete,
    |store: &Store| {
        let server = Server::start(store);
        assert_eq!(server.deploy("iris", "iris_logreg.onnx", &[])["version"], 1);
        assert_eq!(
            server.deploy("iris", "iris_logreg_v2.onnx", &[("append", "true")])["version"],
            2
        );
        // Explicit numbers may skip ahead; the counter follows.
        assert_eq!(
            server.deploy(
                "iris",
                "iris_logreg.onnx",
                &[("version", "10"), ("append", "true")]
            )["version"],
            10
        );
        assert_eq!(
            server.deploy("iris", "iris_logreg.onnx", &[("append", "true")])["version"],
            11
        );
        assert_error(
            server.deploy_form("iris", "iris_logreg.onnx", &[("version", "2")]),
            409,
            "version_exists",
        );

        let model = server.get_json("/v1/models/iris");
        assert_eq!(model["default_version"], 11);
        let states: Vec<(u64, String)> = model["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().unwrap(),
                    v["state"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(states, [1, 2, 10, 11].map(|v| (v, "deployed".to_string())));

        // Every deployed version answers on its own route.
        let row = json!({"instances": [[7.0, 3.2, 4.7, 1.4]]});
        assert_eq!(
            server.predict_ok("iris", Some(1), &row)["predictions"],
            json!([1])
        );
        assert_eq!(
            server.predict_ok("iris", Some(2), &row)["predictions"],
            json!([2])
        );

        // Undeploy: kept, not served; the default falls back to the newest deployed.
        let undeployed = server.post_empty("/v1/models/iris/versions/11/undeploy");
        assert_eq!(undeployed.status(), 200);
        assert_eq!(undeployed.json::<Value>().unwrap()["state"], "undeployed");
        assert_eq!(server.get_json("/v1/models/iris")["default_version"], 10);
        assert_error(
            server.predict("iris", Some(11), &row),
            409,
            "version_not_deployed",
        );
        assert_eq!(server.predict_ok("iris", None, &row)["version"], 10);

        // Rollback: version 2 becomes the only deployed one, hence the default.
        let rollback = server.post_json(
            "/v1/models/iris/versions/2/deploy",
            &json!({"append": false}),
        );
        assert_eq!(rollback.status(), 200);
        let model = server.get_json("/v1/models/iris");
        assert_eq!(model["default_version"], 2);
        let deployed: Vec<u64> = model["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["state"] == "deployed")
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        assert_eq!(deployed, [2]);
        assert_eq!(server.predict_ok("iris", None, &row)["version"], 2);

        // Redeploy next to the others (append, the default).
        assert_eq!(
            server
                .post_empty("/v1/models/iris/versions/11/deploy")
                .status(),
            200
        );
        assert_eq!(server.get_json("/v1/models/iris")["default_version"], 11);

        // append=false on a new deploy also leaves one deployed version.
        assert_eq!(
            server.deploy("iris", "iris_logreg.onnx", &[("append", "false")])["version"],
            12
        );
        let model = server.get_json("/v1/models/iris");
        assert_eq!(
            model["versions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["state"] == "deployed")
                .count(),
            1
        );

        // Delete: gone, its file too, and its number is never reused.
        let artifact = store.data_dir().join("artifacts/iris/12.onnx");
        assert!(artifact.exists());
        assert_eq!(server.delete("/v1/models/iris/versions/12").status(), 204);
        assert!(!artifact.exists());
        assert_error(
            server.get("/v1/models/iris/versions/12"),
            404,
            "version_not_found",
        );
        assert_error(
            server.deploy_form("iris", "iris_logreg.onnx", &[("version", "12")]),
            409,
            "version_exists",
        );
        assert_eq!(
            server.deploy("iris", "iris_logreg.onnx", &[])["version"],
            13
        );
        assert_error(
            server.predict("iris", Some(12), &row),
            404,
            "version_not_found",
        );

        // Deleting the model removes it; deploying the name again continues the numbering.
        assert_eq!(server.delete("/v1/models/iris").status(), 204);
        assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
        assert_error(server.predict("iris", None, &row), 404, "model_not_found");
        assert!(!store.data_dir().join("artifacts/iris").exists());
        assert_eq!(server.get_json("/v1/models")["models"], json!([]));
        assert_eq!(
            server.deploy("iris", "iris_logreg.onnx", &[])["version"],
            14
        );
    }
);

on_both_stores!(a_failed_deploy_changes_nothing, |store: &Store| {
    let server = Server::start(store);
    server.deploy("iris", "iris_logreg.onnx", &[("class_names", IRIS_CLASSES)]);
    let before = server.get_json("/v1/models");
    let garbage = store.data_dir().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not an onnx model").unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .file("model", &garbage)
        .unwrap();
    let r = server
        .client
        .post(format!("{}/v1/models/iris/versions", server.url))
        .multipart(form)
        .send()
        .unwrap();
    assert_error(r, 422, "invalid_model");
    assert_error(
        server.deploy_form(
            "iris",
            "iris_logreg.onnx",
            &[("class_names", r#"["a","b"]"#)],
        ),
        422,
        "invalid_argument",
    );
    assert_eq!(server.get_json("/v1/models"), before);
    let files: Vec<String> = std::fs::read_dir(store.data_dir().join("artifacts/iris"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["1.onnx"]);
    assert_eq!(
        std::fs::read_dir(store.data_dir().join("artifacts/.staging"))
            .unwrap()
            .count(),
        0
    );
    // The next good deploy takes the next number: the failures used none.
    assert_eq!(
        server.deploy("iris", "iris_logreg_v2.onnx", &[])["version"],
        2
    );
});

#[test]
fn deploy_from_a_url() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let text = |fields: &[(&str, &str)]| {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        server
            .client
            .post(format!("{}/v1/models/iris/versions", server.url))
            .multipart(form)
            .send()
            .unwrap()
    };
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();

    let url = serve_bytes(bytes.clone(), true, "/models/iris.onnx");
    let r = text(&[("model_url", &url), ("class_names", IRIS_CLASSES)]);
    assert_eq!(r.status(), 201);
    let body: Value = r.json().unwrap();
    assert_eq!(body["source"], url);
    assert_eq!(body["sha256"], hex::encode(Sha256::digest(&bytes)));

    let file_url = format!(
        "file://{}",
        fixture("iris_logreg_v2.onnx")
            .canonicalize()
            .unwrap()
            .display()
    );
    let r = text(&[("model_url", &file_url)]);
    assert_eq!(r.status(), 201);
    let answer = server.predict_ok("iris", None, &json!({"instances": [[7.0, 3.2, 4.7, 1.4]]}));
    assert_eq!(answer["version"], 2);
    // The class names of version 1 carry forward to the version that replaces it.
    assert_eq!(answer["predictions"], json!(["virginica"]));

    assert_error(
        text(&[(
            "model_url",
            &serve_bytes(Vec::new(), false, "/models/iris.onnx"),
        )]),
        422,
        "model_url_failed",
    );
    assert_error(
        text(&[("model_url", "ftp://example.invalid/m.onnx")]),
        422,
        "model_url_failed",
    );
    assert_error(
        text(&[("model_url", "file:///does/not/exist.onnx")]),
        422,
        "model_url_failed",
    );
    assert_error(text(&[("model_url", "not a url")]), 422, "model_url_failed");
    assert_eq!(
        server.get_json("/v1/models/iris")["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
