//! Every error a client can provoke, through real HTTP: the right status and code, never a 500,
//! and nothing stored or changed by a request that failed.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client, Response};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::on_both_stores;

/// A request body.
enum Body {
    None,
    Json(Value),
    /// A body sent as is, with this Content-Type (`None`: no Content-Type header).
    Raw(Option<&'static str>, Vec<u8>),
    Form(Vec<Field>),
}

/// A part of a multipart form.
enum Field {
    Text(&'static str, String),
    File(&'static str, Vec<u8>),
}

fn text(name: &'static str, value: &str) -> Field {
    Field::Text(name, value.to_owned())
}

fn file(bytes: &[u8]) -> Field {
    Field::File("model", bytes.to_vec())
}

fn json_raw(text: &str) -> Body {
    Body::Raw(Some("application/json"), text.as_bytes().to_vec())
}

fn send_with(client: &Client, base: &str, method: Method, path: &str, body: Body) -> Response {
    let request = client.request(method, format!("{base}{path}"));
    let request = match body {
        Body::None => request,
        Body::Json(value) => request.json(&value),
        Body::Raw(content_type, bytes) => {
            let request = match content_type {
                Some(ct) => request.header("content-type", ct),
                None => request,
            };
            request.body(bytes)
        }
        Body::Form(fields) => {
            let mut form = multipart::Form::new();
            for field in fields {
                form = match field {
                    Field::Text(name, value) => form.text(name, value),
                    Field::File(name, bytes) => {
                        form.part(name, multipart::Part::bytes(bytes).file_name("model.onnx"))
                    }
                };
            }
            request.multipart(form)
        }
    };
    request.send().unwrap()
}

fn send(server: &Server, method: Method, path: &str, body: Body) -> Response {
    send_with(&server.client, &server.url, method, path, body)
}

/// One bad request and the error it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        what,
        method,
        path: path.to_owned(),
        body,
        status,
        code,
    }
}

/// Run every case, checking each with `assert_error`; return every mismatch.
fn run_cases(server: &Server, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let label = format!("{} {} ({})", c.method, c.path, c.what);
        let response = send(server, c.method, &c.path, c.body);
        let got = response.status().as_u16();
        if got >= 500 {
            failures.push(format!("{label}: answered {got}: {:?}", response.text()));
            continue;
        }
        let (status, code) = (c.status, c.code);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_error(response, status, code)
        }));
        match outcome {
            Ok(_) => {}
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!(
                    "{label}: expected {status} {code}, got {got}: {message}"
                ));
            }
        }
    }
    failures
}

/// Every file under `dir` (relative path → SHA-256), `.staging` excluded.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == ".staging" {
                continue;
            }
            if path.is_dir() {
                out.insert(format!("{rel}/"), String::new());
                walk(root, &path, out);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn artifacts(store: &Store) -> PathBuf {
    store.data_dir().join("artifacts")
}

fn staging_entries(store: &Store) -> Vec<String> {
    match std::fs::read_dir(artifacts(store).join(".staging")) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn assert_staging_empty(store: &Store) {
    // Staged files of a failed upload are dropped as the request ends; allow it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = staging_entries(store);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            ".staging still holds {left:?} after a failed upload"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sorted_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    files
}

fn iris_form(extra: Vec<Field>) -> Body {
    let mut fields = vec![file(&std::fs::read(fixture("iris_logreg.onnx")).unwrap())];
    fields.extend(extra);
    Body::Form(fields)
}

/// A multipart body that stops in the middle of the file part, with no closing boundary.
fn truncated_multipart(boundary: &str) -> Vec<u8> {
    let model = std::fs::read(fixture("iris_rf.onnx")).unwrap();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"version\"\r\n\r\n7\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m.onnx\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&model[..model.len() / 2]);
    body
}

on_both_stores!(
    bad_requests_get_the_right_error_and_change_nothing,
    |store: &Store| {
        let server = Server::start(store);
        // iris: v1 deployed (class and feature names), v2 undeployed, v3 deleted.
        server.deploy(
            "iris",
            "iris_logreg.onnx",
            &[
                ("class_names", IRIS_CLASSES),
                ("feature_names", IRIS_FEATURES),
            ],
        );
        server.deploy("iris", "iris_logreg_v2.onnx", &[("append", "true")]);
        server.deploy("iris", "iris_rf.onnx", &[("append", "true")]);
        assert_eq!(
            server
                .post_empty("/v1/models/iris/versions/2/undeploy")
                .status(),
            200
        );
        assert_eq!(
            server
                .post_empty("/v1/models/iris/versions/3/undeploy")
                .status(),
            200
        );
        assert!(server
            .delete("/v1/models/iris/versions/3")
            .status()
            .is_success());
        // forest: deployed, no feature names. idle: nothing deployed.
        server.deploy("forest", "iris_rf.onnx", &[]);
        server.deploy("idle", "house_linreg.onnx", &[]);
        assert_eq!(
            server
                .post_empty("/v1/models/idle/versions/1/undeploy")
                .status(),
            200
        );

        let models_before = server.get_json("/v1/models");
        let versions_before = server.get_json("/v1/models/iris/versions");
        let tree_before = tree(&artifacts(store));
        assert_eq!(
            sorted_files(&artifacts(store).join("iris")),
            ["1.onnx", "2.onnx"],
            "the deleted version's file is gone"
        );
        assert_staging_empty(store);

        let iris = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
        let rows = json!([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]);
        let (get, post, put, delete, patch) = (
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        );
        let versions = "/v1/models/iris/versions";
        let predict = "/v1/models/iris/predict";
        let unreachable_url = "http://127.0.0.1:1/model.onnx";
        let missing_url = format!("{}/no/such/model.onnx", server.url);
        let not_onnx_url = format!("file://{}", fixture("expected.json").display());

        #[rustfmt::skip]
    let cases = vec![
        // Bodies that are not JSON.
        case("truncated JSON", post.clone(), predict, json_raw(r#"{"instances": [[1, 2"#), 400, "invalid_json"),
        case("empty body", post.clone(), predict, json_raw(""), 400, "invalid_json"),
        case("NaN literal", post.clone(), predict, json_raw(r#"{"instances": [[NaN, 3.5, 1.4, 0.2]]}"#), 400, "invalid_json"),
        case("not JSON at all", post.clone(), predict, json_raw("instances=1,2,3,4"), 400, "invalid_json"),
        case("redeploy with broken JSON", post.clone(), "/v1/models/iris/versions/1/deploy", json_raw(r#"{"append": "#), 400, "invalid_json"),
        // JSON of the wrong structure.
        case("unknown top-level field", post.clone(), predict, Body::Json(json!({"instances": rows, "bogus": 1})), 400, "invalid_request"),
        case("shape of the wrong type", post.clone(), predict, Body::Json(json!({"instances": [5.1, 3.5, 1.4, 0.2], "shape": "1x4"})), 400, "invalid_request"),
        case("records of the wrong type", post.clone(), predict, Body::Json(json!({"records": 5})), 400, "invalid_request"),
        case("top-level array", post.clone(), predict, Body::Json(rows.clone()), 400, "invalid_request"),
        case("redeploy with unknown field", post.clone(), "/v1/models/iris/versions/1/deploy", Body::Json(json!({"bogus": true})), 400, "invalid_request"),
        case("redeploy with append of the wrong type", post.clone(), "/v1/models/iris/versions/1/deploy", Body::Json(json!({"append": "no"})), 400, "invalid_request"),
        // Bad multipart.
        case("multipart cut short in the file part", post.clone(), versions, Body::Raw(Some("multipart/form-data; boundary=cutshort"), truncated_multipart("cutshort")), 400, "invalid_request"),
        case("multipart without a boundary", post.clone(), versions, Body::Raw(Some("multipart/form-data"), b"garbage".to_vec()), 400, "invalid_request"),
        case("multipart that is not multipart", post.clone(), versions, Body::Raw(Some("multipart/form-data; boundary=zzz"), b"no parts here, just text".to_vec()), 400, "invalid_request"),
        // Bad path parameters.
        case("version abc", get.clone(), "/v1/models/iris/versions/abc", Body::None, 400, "invalid_path"),
        case("version -1", get.clone(), "/v1/models/iris/versions/-1", Body::None, 400, "invalid_path"),
        case("version over u64", get.clone(), "/v1/models/iris/versions/99999999999999999999999", Body::None, 400, "invalid_path"),
        case("predict version abc", post.clone(), "/v1/models/iris/versions/abc/predict", Body::Json(json!({"instances": rows})), 400, "invalid_path"),
        case("delete version -1", delete.clone(), "/v1/models/iris/versions/-1", Body::None, 400, "invalid_path"),
        case("undeploy version 1.5", post.clone(), "/v1/models/iris/versions/1.5/undeploy", Body::None, 400, "invalid_path"),
        // Wrong media types.
        case("predict as text/plain", post.clone(), predict, Body::Raw(Some("text/plain"), rows.to_string().into_bytes()), 415, "unsupported_media_type"),
        case("predict without a content type", post.clone(), predict, Body::Raw(None, json!({"instances": rows}).to_string().into_bytes()), 415, "unsupported_media_type"),
        case("deploy as JSON", post.clone(), versions, Body::Json(json!({"model_url": not_onnx_url})), 415, "unsupported_media_type"),
        case("deploy as urlencoded", post.clone(), versions, Body::Raw(Some("application/x-www-form-urlencoded"), b"version=4".to_vec()), 415, "unsupported_media_type"),
        case("deploy without a body", post.clone(), versions, Body::None, 415, "unsupported_media_type"),
        // Routes and methods.
        case("unknown route", get.clone(), "/v1/nothing", Body::None, 404, "route_not_found"),
        case("unknown API version", get.clone(), "/v2/models", Body::None, 404, "route_not_found"),
        case("unknown action", post.clone(), "/v1/models/iris/versions/1/explode", Body::None, 404, "route_not_found"),
        case("PUT models", put.clone(), "/v1/models", Body::Json(json!({})), 405, "method_not_allowed"),
        case("DELETE models", delete.clone(), "/v1/models", Body::None, 405, "method_not_allowed"),
        case("PATCH a model", patch.clone(), "/v1/models/iris", Body::None, 405, "method_not_allowed"),
        case("GET predict", get.clone(), predict, Body::None, 405, "method_not_allowed"),
        case("PUT a version", put.clone(), "/v1/models/iris/versions/1", Body::None, 405, "method_not_allowed"),
        // Things that do not exist.
        case("get unknown model", get.clone(), "/v1/models/ghost", Body::None, 404, "model_not_found"),
        case("versions of unknown model", get.clone(), "/v1/models/ghost/versions", Body::None, 404, "model_not_found"),
        case("version of unknown model", get.clone(), "/v1/models/ghost/versions/1", Body::None, 404, "model_not_found"),
        case("predict unknown model", post.clone(), "/v1/models/ghost/predict", Body::Json(json!({"instances": rows})), 404, "model_not_found"),
        case("predict version of unknown model", post.clone(), "/v1/models/ghost/versions/1/predict", Body::Json(json!({"instances": rows})), 404, "model_not_found"),
        case("deploy version of unknown model", post.clone(), "/v1/models/ghost/versions/1/deploy", Body::None, 404, "model_not_found"),
        case("undeploy version of unknown model", post.clone(), "/v1/models/ghost/versions/1/undeploy", Body::None, 404, "model_not_found"),
        case("delete unknown model", delete.clone(), "/v1/models/ghost", Body::None, 404, "model_not_found"),
        case("delete version of unknown model", delete.clone(), "/v1/models/ghost/versions/1", Body::None, 404, "model_not_found"),
        case("get unknown version", get.clone(), "/v1/models/iris/versions/99", Body::None, 404, "version_not_found"),
        case("get deleted version", get.clone(), "/v1/models/iris/versions/3", Body::None, 404, "version_not_found"),
        case("predict unknown version", post.clone(), "/v1/models/iris/versions/99/predict", Body::Json(json!({"instances": rows})), 404, "version_not_found"),
        case("predict deleted version", post.clone(), "/v1/models/iris/versions/3/predict", Body::Json(json!({"instances": rows})), 404, "version_not_found"),
        case("deploy unknown version", post.clone(), "/v1/models/iris/versions/99/deploy", Body::None, 404, "version_not_found"),
        case("redeploy deleted version", post.clone(), "/v1/models/iris/versions/3/deploy", Body::Json(json!({"append": false})), 404, "version_not_found"),
        case("undeploy unknown version", post.clone(), "/v1/models/iris/versions/99/undeploy", Body::None, 404, "version_not_found"),
        case("delete unknown version", delete.clone(), "/v1/models/iris/versions/99", Body::None, 404, "version_not_found"),
        case("delete deleted version", delete.clone(), "/v1/models/iris/versions/3", Body::None, 404, "version_not_found"),
        // Conflicts.
        case("explicit version in use", post.clone(), versions, iris_form(vec![text("version", "1")]), 409, "version_exists"),
        case("explicit version of an undeployed version", post.clone(), versions, iris_form(vec![text("version", "2")]), 409, "version_exists"),
        case("explicit version of a deleted version", post.clone(), versions, iris_form(vec![text("version", "3")]), 409, "version_exists"),
        case("predict undeployed version", post.clone(), "/v1/models/iris/versions/2/predict", Body::Json(json!({"instances": rows})), 409, "version_not_deployed"),
        case("predict model with nothing deployed", post.clone(), "/v1/models/idle/predict", Body::Json(json!({"instances": [[1.0, 2.0, 3.0]]})), 409, "no_deployed_version"),
        // Bad model names.
        case("name with a space and !", post.clone(), "/v1/models/bad%20name!/versions", iris_form(vec![]), 422, "invalid_model_name"),
        case("name starting with a dot", post.clone(), "/v1/models/.hidden/versions", iris_form(vec![]), 422, "invalid_model_name"),
        case("name .staging", post.clone(), "/v1/models/.staging/versions", iris_form(vec![]), 422, "invalid_model_name"),
        case("name starting with -", post.clone(), "/v1/models/-dash/versions", iris_form(vec![]), 422, "invalid_model_name"),
        case("name of 129 characters", post.clone(), &format!("/v1/models/{}/versions", "a".repeat(129)), iris_form(vec![]), 422, "invalid_model_name"),
        // Bad form fields.
        case("unknown form field", post.clone(), versions, iris_form(vec![text("colour", "blue")]), 422, "invalid_argument"),
        case("model and model_url", post.clone(), versions, iris_form(vec![text("model_url", &not_onnx_url)]), 422, "invalid_argument"),
        case("neither model nor model_url", post.clone(), versions, Body::Form(vec![text("version", "4")]), 422, "invalid_argument"),
        case("two model files", post.clone(), versions, Body::Form(vec![file(&iris), file(&iris)]), 422, "invalid_argument"),
        case("version twice", post.clone(), versions, iris_form(vec![text("version", "4"), text("version", "5")]), 422, "invalid_argument"),
        case("version abc", post.clone(), versions, iris_form(vec![text("version", "abc")]), 422, "invalid_argument"),
        case("version 0", post.clone(), versions, iris_form(vec![text("version", "0")]), 422, "invalid_argument"),
        case("version -1", post.clone(), versions, iris_form(vec![text("version", "-1")]), 422, "invalid_argument"),
        case("version 1.5", post.clone(), versions, iris_form(vec![text("version", "1.5")]), 422, "invalid_argument"),
        case("append maybe", post.clone(), versions, iris_form(vec![text("append", "maybe")]), 422, "invalid_argument"),
        case("class_names not JSON", post.clone(), versions, iris_form(vec![text("class_names", "setosa,versicolor,virginica")]), 422, "invalid_argument"),
        case("class_names not strings", post.clone(), versions, iris_form(vec![text("class_names", "[1, 2, 3]")]), 422, "invalid_argument"),
        case("class_names an object", post.clone(), versions, iris_form(vec![text("class_names", r#"{"a": 1}"#)]), 422, "invalid_argument"),
        case("2 class names for 3 classes", post.clone(), versions, iris_form(vec![text("class_names", r#"["a", "b"]"#)]), 422, "invalid_argument"),
        case("4 class names for 3 classes", post.clone(), versions, iris_form(vec![text("class_names", r#"["a", "b", "c", "d"]"#)]), 422, "invalid_argument"),
        case("feature_names not JSON", post.clone(), versions, iris_form(vec![text("feature_names", "a b c d")]), 422, "invalid_argument"),
        case("3 feature names for 4 features", post.clone(), versions, iris_form(vec![text("feature_names", r#"["a", "b", "c"]"#)]), 422, "invalid_argument"),
        case("5 feature names for 4 features", post.clone(), versions, iris_form(vec![text("feature_names", r#"["a", "b", "c", "d", "e"]"#)]), 422, "invalid_argument"),
        // Files that are not models.
        case("text file", post.clone(), versions, Body::Form(vec![file(b"this is not an ONNX model")]), 422, "invalid_model"),
        case("empty file", post.clone(), versions, Body::Form(vec![file(b"")]), 422, "invalid_model"),
        case("truncated ONNX", post.clone(), versions, Body::Form(vec![file(&iris[..iris.len() / 2])]), 422, "invalid_model"),
        case("random bytes", post.clone(), versions, Body::Form(vec![file(&(0..2048u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<u8>>())]), 422, "invalid_model"),
        case("model_url to a JSON file", post.clone(), versions, Body::Form(vec![text("model_url", &not_onnx_url)]), 422, "invalid_model"),
        // Model URLs that cannot be fetched.
        case("unreachable URL", post.clone(), versions, Body::Form(vec![text("model_url", unreachable_url)]), 422, "model_url_failed"),
        case("URL answering 404", post.clone(), versions, Body::Form(vec![text("model_url", &missing_url)]), 422, "model_url_failed"),
        case("ftp URL", post.clone(), versions, Body::Form(vec![text("model_url", "ftp://127.0.0.1/model.onnx")]), 422, "model_url_failed"),
        case("file URL to nothing", post.clone(), versions, Body::Form(vec![text("model_url", "file:///no/such/model.onnx")]), 422, "model_url_failed"),
        case("file URL to a folder", post.clone(), versions, Body::Form(vec![text("model_url", "file:///tmp")]), 422, "model_url_failed"),
        case("not a URL", post.clone(), versions, Body::Form(vec![text("model_url", "not a url")]), 422, "model_url_failed"),
        // Inputs the model cannot take.
        case("3 features instead of 4", post.clone(), predict, Body::Json(json!({"instances": [[5.1, 3.5, 1.4]]})), 422, "invalid_input"),
        case("5 features instead of 4", post.clone(), predict, Body::Json(json!({"instances": [[5.1, 3.5, 1.4, 0.2, 9.9]]})), 422, "invalid_input"),
        case("ragged rows", post.clone(), predict, Body::Json(json!({"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0]]})), 422, "invalid_input"),
        case("too deep", post.clone(), predict, Body::Json(json!({"instances": [[[5.1, 3.5, 1.4, 0.2]]]})), 422, "invalid_input"),
        case("strings for numbers", post.clone(), predict, Body::Json(json!({"instances": [["5.1", 3.5, 1.4, 0.2]]})), 422, "invalid_input"),
        case("null for a number", post.clone(), predict, Body::Json(json!({"instances": [[null, 3.5, 1.4, 0.2]]})), 422, "invalid_input"),
        case("1e300 overflows float32", post.clone(), predict, json_raw(r#"{"instances": [[1e300, 3.5, 1.4, 0.2]]}"#), 422, "invalid_input"),
        case("empty instances", post.clone(), predict, Body::Json(json!({"instances": []})), 422, "invalid_input"),
        case("instances a string", post.clone(), predict, Body::Json(json!({"instances": "5.1,3.5,1.4,0.2"})), 422, "invalid_input"),
        case("instances and records", post.clone(), predict, Body::Json(json!({"instances": rows, "records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]})), 422, "invalid_input"),
        case("flat instances with a wrong shape", post.clone(), predict, Body::Json(json!({"instances": [5.1, 3.5, 1.4, 0.2, 6.7], "shape": [2, 4]})), 422, "invalid_input"),
        case("records without feature names", post.clone(), "/v1/models/forest/predict", Body::Json(json!({"records": [{"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}]})), 422, "invalid_input"),
        case("record missing a column", post.clone(), predict, Body::Json(json!({"records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4}]})), 422, "invalid_input"),
        case("record with an extra column", post.clone(), predict, Body::Json(json!({"records": [{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2, "colour": 1.0}]})), 422, "invalid_input"),
        case("record with a string value", post.clone(), predict, Body::Json(json!({"records": [{"sepal_length": "long", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}]})), 422, "invalid_input"),
        case("empty records", post.clone(), predict, Body::Json(json!({"records": []})), 422, "invalid_input"),
    ];
        // Mismatches are reported at the end, after the state checks have run too.
        let failures = run_cases(&server, cases);

        // A request id sent by the client comes back on the error.
        let response = server
            .client
            .get(format!("{}/v1/models/ghost", server.url))
            .header("x-request-id", "errors-test-42")
            .send()
            .unwrap();
        let body = assert_error(response, 404, "model_not_found");
        assert_eq!(body["request_id"], "errors-test-42");

        // Nothing changed: the same models, versions and files; no staged leftovers.
        assert_eq!(server.get_json("/v1/models"), models_before);
        assert_eq!(server.get_json("/v1/models/iris/versions"), versions_before);
        assert_eq!(tree(&artifacts(store)), tree_before);
        assert_eq!(
            sorted_files(&artifacts(store).join("iris")),
            ["1.onnx", "2.onnx"]
        );
        assert_staging_empty(store);
        // And it still serves.
        let answer = server.predict_ok("iris", None, &json!({"instances": rows}));
        assert_eq!(answer["version"], 1);
        assert_eq!(answer["predictions"], json!(["setosa", "virginica"]));

        assert!(
            failures.is_empty(),
            "{} bad requests were answered wrongly:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
);

#[test]
fn oversized_models_and_predict_bodies_get_413() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__LIMITS__MAX_MODEL_BYTES", "1000")
            .env("MAAS__LIMITS__MAX_PREDICT_BYTES", "2000"),
    );
    // iris_logreg.onnx (528 bytes) fits.
    server.deploy("iris", "iris_logreg.onnx", &[("class_names", IRIS_CLASSES)]);
    let before = server.get_json("/v1/models");
    let tree_before = tree(&artifacts(&store));

    let rf_size = std::fs::metadata(fixture("iris_rf.onnx")).unwrap().len();
    assert!(rf_size > 1000);
    assert_error(
        server.deploy_form("iris", "iris_rf.onnx", &[]),
        413,
        "payload_too_large",
    );
    assert_error(
        server.deploy_form("big", "iris_rf.onnx", &[]),
        413,
        "payload_too_large",
    );
    let url = format!("file://{}", fixture("iris_rf.onnx").display());
    assert_error(
        send(
            &server,
            Method::POST,
            "/v1/models/iris/versions",
            Body::Form(vec![text("model_url", &url)]),
        ),
        413,
        "payload_too_large",
    );

    // Predict: a small body is fine, one over 2000 bytes is refused, on both predict routes.
    let small = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    server.predict_ok("iris", None, &small);
    let big = json!({"instances": vec![[5.1, 3.5, 1.4, 0.2]; 200]});
    assert!(big.to_string().len() > 2000);
    assert_error(server.predict("iris", None, &big), 413, "payload_too_large");
    assert_error(
        server.predict("iris", Some(1), &big),
        413,
        "payload_too_large",
    );
    // Without a Content-Length (chunked), the limit holds as well.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .to_string()
        .into_bytes()
        .chunks(500)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let response = server
        .client
        .post(format!("{}/v1/models/iris/predict", server.url))
        .header("content-type", "application/json")
        .body(reqwest::blocking::Body::new(ChunkedReader(
            chunks.into_iter(),
        )))
        .send()
        .unwrap();
    assert_error(response, 413, "payload_too_large");

    assert_eq!(server.get_json("/v1/models"), before);
    assert_eq!(tree(&artifacts(&store)), tree_before);
    assert!(!artifacts(&store).join("big").exists());
    assert_staging_empty(&store);
    server.predict_ok("iris", None, &small);
}

/// A reader of unknown length, so that reqwest sends the body chunked.
struct ChunkedReader<I>(I);

impl<I: Iterator<Item = Result<Vec<u8>, std::io::Error>>> Read for ChunkedReader<I> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.0.next() {
            None => Ok(0),
            Some(Err(e)) => Err(e),
            Some(Ok(chunk)) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[test]
fn cut_short_and_abandoned_uploads_store_nothing() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);

    // A body whose Content-Length is right but which stops inside the file part.
    let body = truncated_multipart("XyZzy");
    let response = server
        .client
        .post(format!("{}/v1/models/upload/versions", server.url))
        .header("content-type", "multipart/form-data; boundary=XyZzy")
        .header("content-length", body.len().to_string())
        .body(body)
        .send()
        .unwrap();
    assert_error(response, 400, "invalid_request");
    assert_staging_empty(&store);
    assert_error(server.get("/v1/models/upload"), 404, "model_not_found");

    // A client that announces 5 MB, sends 64 KiB of the file, and goes away.
    let address = host_port(&server.url);
    let mut socket = TcpStream::connect(&address).unwrap();
    let boundary = "DropOut";
    let mut start = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"; filename=\"big.onnx\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    start.extend((0..64 * 1024u32).map(|i| (i % 251) as u8));
    let head = format!(
        "POST /v1/models/upload/versions HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\n\r\n",
        server.token, 5_000_000
    );
    socket.write_all(head.as_bytes()).unwrap();
    socket.write_all(&start).unwrap();
    socket.flush().unwrap();
    // Wait until the server is writing the upload to staging, so the test means something.
    let deadline = Instant::now() + Duration::from_secs(10);
    while staging_entries(&store).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the server never staged the upload"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(socket);

    assert_staging_empty(&store);
    assert_eq!(server.get_json("/v1/models"), json!({"models": []}));
    assert_error(server.get("/v1/models/upload"), 404, "model_not_found");
    let upload_dir = artifacts(&store).join("upload");
    assert!(
        !upload_dir.exists() || sorted_files(&upload_dir).is_empty(),
        "artifacts/upload holds {:?}",
        sorted_files(&upload_dir)
    );

    // The server still works, and no version number was used up.
    let deployed = server.deploy("upload", "iris_logreg.onnx", &[]);
    assert_eq!(deployed["version"], 1);
    assert_eq!(sorted_files(&upload_dir), ["1.onnx"]);
    assert_staging_empty(&store);
}

#[test]
fn huge_declared_upload_is_refused_before_the_body() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__LIMITS__MAX_MODEL_BYTES", "1000"),
    );
    // Declare 1 GB and send nothing of the body: the answer must come anyway.
    let address = host_port(&server.url);
    let mut socket = TcpStream::connect(&address).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let head = format!(
        "POST /v1/models/huge/versions HTTP/1.1\r\nHost: {address}\r\n\
         Authorization: Bearer {}\r\n\
         Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1000000000\r\n\r\n",
        server.token
    );
    socket.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("request_id") {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer to a huge upload: {e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");
    drop(socket);
    assert_staging_empty(&store);
    assert_eq!(server.get_json("/v1/models"), json!({"models": []}));
}

/// Deploy with a shared client (the `Server` itself stays on the test's thread).
fn deploy_with(client: &Client, base: &str, model: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = send_with(
        client,
        base,
        Method::POST,
        &format!("/v1/models/{model}/versions"),
        Body::Form(vec![Field::File("model", bytes)]),
    );
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

on_both_stores!(concurrent_deploys_get_distinct_versions, |store: &Store| {
    let server = Server::start(store);
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    let (client, base) = (server.client.clone(), server.url.clone());
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (client, base, bytes, barrier) = (&client, &base, bytes.clone(), &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    deploy_with(client, base, "race", bytes)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (status, body) in &results {
        assert_eq!(*status, 201, "concurrent deploy: {body}");
    }
    let mut versions: Vec<u64> = results
        .iter()
        .map(|(_, body)| body["version"].as_u64().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=8).collect::<Vec<u64>>(),
        "no duplicates, no gaps"
    );

    let listed = server.get_json("/v1/models/race/versions");
    let mut stored: Vec<u64> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    stored.sort_unstable();
    assert_eq!(stored, versions);
    let files = sorted_files(&artifacts(store).join("race"));
    let mut want: Vec<String> = (1..=8).map(|v| format!("{v}.onnx")).collect();
    want.sort();
    assert_eq!(files, want);
    assert_staging_empty(store);
    // Appended deploys: the newest is the default.
    assert_eq!(server.get_json("/v1/models/race")["default_version"], 8);
});

/// The mistakes a new user makes get a message that names the field and the fix, in JSON's words
/// and never in a parser's (no Rust type names, no "struct", no "sequence").
#[test]
fn common_mistakes_get_messages_that_name_the_field_and_the_fix() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let message = |r: Response, status: u16, code: &str| -> String {
        let body = assert_error(r, status, code);
        let message = body["message"].as_str().unwrap().to_owned();
        for internal in [
            "struct ",
            "sequence",
            "usize",
            "u64",
            "f64",
            "line 1 column",
            "invalid type",
            "invalid length",
        ] {
            assert!(
                !message.contains(internal),
                "'{message}' shows the parser's '{internal}'"
            );
        }
        message
    };

    // A bare list as the predict body.
    let m = message(
        server.post_json("/v1/models/iris/predict", &json!([[5.1, 3.5, 1.4, 0.2]])),
        400,
        "invalid_request",
    );
    assert!(
        m.contains("got a list") && m.contains(r#"{"instances": "#),
        "{m}"
    );

    // A detector name where drift settings (an object) go.
    let m = message(
        server.post_json("/v1/models/iris/actions/update", &json!({"drift": "adwin"})),
        400,
        "invalid_request",
    );
    assert!(
        m.contains("`drift`") && m.contains("expected a JSON object"),
        "{m}"
    );
    let m = message(
        server.post_json(
            "/v1/models/iris/actions/update",
            &json!({"serving": {"instances": "two"}}),
        ),
        400,
        "invalid_request",
    );
    assert!(
        m.contains("`serving.instances`") && m.contains("non-negative integer"),
        "{m}"
    );

    // An unknown field in an action body names it and the fields there are.
    let m = message(
        server.post_json(
            "/v1/models/iris/actions/update",
            &json!({"log_prediction": true}),
        ),
        400,
        "invalid_request",
    );
    assert!(
        m.contains("'log_prediction'") && m.contains("log_predictions"),
        "{m}"
    );

    // The Open Inference Protocol's body names the field too.
    let r = server
        .client
        .post(format!("{}/v2/models/iris/infer", server.url))
        .json(&json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": 5, "data": [1, 2, 3, 4]}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v2: Value = r.json().unwrap();
    let m = v2["error"].as_str().unwrap();
    assert!(
        m.contains("`inputs[0].datatype`") && !m.contains("line 1"),
        "{m}"
    );

    // class_names on a regressor.
    let r = server.deploy_form(
        "house",
        "house_linreg.onnx",
        &[("class_names", r#"["cheap", "dear"]"#)],
    );
    let m = message(r, 422, "invalid_argument");
    assert!(
        m.contains("regressor") && m.contains("without class_names"),
        "{m}"
    );

    // A pickled scikit-learn model.
    let mut pickle = vec![0x80, 0x04, 0x95];
    pickle.extend_from_slice(b"\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x15sklearn.linear_model");
    let r = server.deploy_multipart(
        "pickled",
        reqwest::blocking::multipart::Form::new().part(
            "model",
            reqwest::blocking::multipart::Part::bytes(pickle).file_name("model.pkl"),
        ),
    );
    let m = message(r, 422, "invalid_model");
    assert!(
        m.contains("maas serves ONNX") && m.contains("skl2onnx"),
        "{m}"
    );
    // Nothing of them was stored.
    assert_eq!(
        server.get("/v1/models/house").status(),
        404,
        "the refused deploy created no model"
    );
    assert_eq!(server.get("/v1/models/pickled").status(), 404);
}

/// A form's optional fields sent empty (as HTML forms and Swagger UI send them) count as absent.
#[test]
fn empty_optional_form_fields_count_as_absent() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let empty = [
        "model_url",
        "version",
        "class_names",
        "feature_names",
        "append",
        "serving",
        "baseline_size",
        "label_column",
        "drift",
    ];
    let mut form = multipart::Form::new().part("model", fixture_part("iris_logreg.onnx"));
    for name in empty {
        form = form.text(name, "");
    }
    // File inputs left empty: a nameless, empty part.
    form = form.part("training_data", multipart::Part::bytes(Vec::new()));
    let r = server.deploy_multipart("iris", form);
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let info = server.get_json("/v1/models/iris/versions/1");
    assert_eq!(info["version"], 1);
    assert!(info["class_names"].is_null(), "{info}");
}
