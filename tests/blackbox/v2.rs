//! The Open Inference Protocol (KServe V2) through real HTTP, and the real `tritonclient`.

use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;

fn v2_error(response: reqwest::blocking::Response, status: u16, needle: &str) {
    let got = response.status().as_u16();
    let body: Value = response.json().unwrap();
    assert_eq!(got, status, "{body}");
    let message = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not a V2 error body: {body}"));
    assert!(message.contains(needle), "{message} lacks {needle}");
}

#[test]
fn metadata_infer_and_errors_follow_the_protocol() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    server.deploy("house", "house_linreg.onnx", &[]);
    let url = |path: &str| format!("{}{path}", server.url);

    assert_eq!(server.get("/v2/health/live").status(), 200);
    assert_eq!(server.get("/v2/health/ready").status(), 200);
    assert_eq!(
        server.get_json("/v2")["extensions"],
        json!(["model_repository"])
    );
    let meta = server.get_json("/v2/models/iris");
    assert_eq!(meta["name"], "iris");
    assert_eq!(meta["versions"], json!(["1"]));
    assert_eq!(meta["platform"], "onnx");
    assert_eq!(
        meta["inputs"],
        json!([{"name": "float_input", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(
        meta["outputs"][0],
        json!({"name": "label", "datatype": "INT64", "shape": [-1]})
    );
    assert_eq!(
        server.get_json("/v2/models/iris/versions/1")["versions"],
        json!(["1"])
    );
    assert_eq!(server.get("/v2/models/iris/ready").status(), 200);
    assert_eq!(server.get("/v2/models/iris/versions/1/ready").status(), 200);

    let reference = &expected()["iris_logreg"];
    let rows = reference["inputs"].as_array().unwrap();
    let request = json!({
        "id": "abc-1",
        "parameters": {"trace": true},
        "inputs": [{"name": "float_input", "shape": [rows.len(), 4], "datatype": "FP32", "data": rows}],
    });
    let answer: Value = server
        .client
        .post(url("/v2/models/iris/infer"))
        .json(&request)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["model_name"], "iris");
    assert_eq!(answer["model_version"], "1");
    assert_eq!(answer["id"], "abc-1");
    assert_eq!(answer["outputs"][0]["name"], "label");
    assert_eq!(answer["outputs"][0]["datatype"], "INT64");
    assert_eq!(answer["outputs"][0]["shape"], json!([rows.len()]));
    assert_eq!(answer["outputs"][0]["data"], reference["outputs"]["label"]);
    assert_eq!(answer["outputs"][1]["shape"], json!([rows.len(), 3]));
    let flat: Vec<Value> = reference["outputs"]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    assert_close(&answer["outputs"][1]["data"], &Value::Array(flat), 1e-4);

    // Requested outputs only; flat data; a given version.
    let one = json!({
        "inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}],
        "outputs": [{"name": "probabilities"}],
    });
    let answer: Value = server
        .client
        .post(url("/v2/models/iris/versions/1/infer"))
        .json(&one)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(answer["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(answer["outputs"][0]["name"], "probabilities");

    // The binary tensor extension, by hand: JSON header, then little-endian floats.
    let header = json!({
        "inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}],
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in [7.0f32, 3.2, 4.7, 1.4] {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let r = server
        .client
        .post(url("/v2/models/iris/infer"))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().unwrap();
    let head: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(i64::from_le_bytes(bytes[json_len..].try_into().unwrap()), 1);

    // Errors: the protocol's {"error": ...} body, the usual statuses.
    let post = |path: &str, body: &Value| server.client.post(url(path)).json(body).send().unwrap();
    v2_error(server.get("/v2/models/nope"), 404, "does not exist");
    v2_error(
        post("/v2/models/nope/infer", &request),
        404,
        "does not exist",
    );
    v2_error(
        server.get("/v2/models/iris/versions/7"),
        404,
        "no version 7",
    );
    v2_error(
        server.get("/v2/models/iris/versions/x"),
        400,
        "not a positive integer",
    );
    let wrong = |input: Value| json!({"inputs": [input]});
    v2_error(
        post(
            "/v2/models/iris/infer",
            &wrong(
                json!({"name": "float_input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}),
            ),
        ),
        422,
        "shape",
    );
    v2_error(
        post(
            "/v2/models/iris/infer",
            &wrong(
                json!({"name": "float_input", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}),
            ),
        ),
        422,
        "FP32",
    );
    v2_error(
        post(
            "/v2/models/iris/infer",
            &wrong(
                json!({"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}),
            ),
        ),
        422,
        "elements",
    );
    v2_error(
        post(
            "/v2/models/iris/infer",
            &wrong(
                json!({"name": "other", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}),
            ),
        ),
        422,
        "float_input",
    );
    v2_error(
        post(
            "/v2/models/iris/infer",
            &json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "nope"}]}),
        ),
        422,
        "no output",
    );
    let row =
        json!({"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]});
    v2_error(
        post("/v2/models/iris/infer", &json!({"inputs": [row, row]})),
        422,
        "input 'float_input' is sent twice",
    );
    v2_error(
        post("/v2/models/iris/infer", &json!({"inputs": "x"})),
        400,
        "not valid",
    );
    let r = server
        .client
        .post(url("/v2/models/iris/infer"))
        .header("Content-Type", "application/json")
        .body("{oops")
        .send()
        .unwrap();
    v2_error(r, 400, "not valid");
    let r = server
        .client
        .post(url("/v2/models/iris/infer"))
        .header("Content-Type", "text/plain")
        .body("hi")
        .send()
        .unwrap();
    v2_error(r, 415, "JSON");
    let r = server
        .client
        .post(url("/v2/models/iris/infer"))
        .header("Inference-Header-Content-Length", "9999")
        .body("{}")
        .send()
        .unwrap();
    v2_error(r, 400, "inference-header-content-length");
    v2_error(
        server.anonymous.get(url("/v2/models/iris")).send().unwrap(),
        401,
        "Bearer",
    );

    // Repository extension: unload and load are undeploy and deploy.
    let index: Value = server
        .client
        .post(url("/v2/repository/index"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(index
        .as_array()
        .unwrap()
        .contains(&json!({"name": "iris", "version": "1", "state": "READY", "reason": ""})));
    assert_eq!(
        server
            .client
            .post(url("/v2/repository/models/iris/unload"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        server.get_json("/v1/models/iris")["default_version"],
        Value::Null
    );
    // Not ready is a 4xx, as the protocol says (tritonclient's is_model_ready reads False).
    v2_error(server.get("/v2/models/iris/ready"), 400, "not ready");
    assert_eq!(
        server
            .client
            .post(url("/v2/repository/models/iris/load"))
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(server.get_json("/v1/models/iris")["default_version"], 1);
    assert_eq!(server.get("/v2/models/iris/ready").status(), 200);
    let metrics = server.get("/metrics").text().unwrap();
    assert!(metrics.contains(r#"route="/v2/models/{name}/infer""#));
}

/// The Python that has `tritonclient[http]`: `MAAS_TRITONCLIENT_PYTHON`, else `python3` if it can
/// import it.
fn tritonclient_python() -> Option<String> {
    let candidates = std::env::var("MAAS_TRITONCLIENT_PYTHON")
        .into_iter()
        .chain(["python3".to_string()]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import tritonclient.http, numpy"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    None
}

/// The tritonclient Python, or `None` (with a notice) when it is missing and not required;
/// missing while `MAAS_REQUIRE_TRITONCLIENT=1` fails the test.
pub(crate) fn tritonclient_or_skip() -> Option<String> {
    let found = tritonclient_python();
    if found.is_none() {
        if std::env::var("MAAS_REQUIRE_TRITONCLIENT").is_ok_and(|v| v == "1") {
            panic!("tritonclient is required (MAAS_REQUIRE_TRITONCLIENT=1) but no Python can import it");
        }
        eprintln!("NOTICE: tritonclient[http] not installed; skipping (pip install -r tests/v2/requirements.txt)");
    }
    found
}

#[test]
fn the_real_tritonclient_works_unchanged() {
    let Some(python) = tritonclient_or_skip() else {
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/v2/tritonclient_check.py");
    let out = Command::new(python)
        .arg(script)
        .arg(server.url.trim_start_matches("http://"))
        .arg(&server.token)
        .arg(fixture("expected.json"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("all checks passed"),
        "{text}"
    );
}

/// A value a client sent is never echoed back whole: a megabyte where a number or a datatype
/// belongs gets the usual status and an error of a couple of kilobytes, on both protocols.
#[test]
fn errors_do_not_echo_huge_values() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let huge = "x".repeat(1 << 20);
    let mut unknown_field = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    unknown_field[huge.as_str()] = json!(1);
    let cases = [
        (
            "/v1/models/iris/predict",
            json!({"instances": [[5.1, 3.5, 1.4, huge]]}),
        ),
        ("/v1/models/iris/predict", unknown_field),
        (
            "/v2/models/iris/infer",
            json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": huge,
                               "data": [5.1, 3.5, 1.4, 0.2]}]}),
        ),
    ];
    for (path, body) in cases {
        let r = server.post_json(path, &body);
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        assert!(
            (400..500).contains(&status),
            "{path}: {status} {}",
            &text[..text.len().min(300)]
        );
        assert!(text.len() < 4096, "{path}: {} bytes", text.len());
        assert!(text.contains("bytes not shown"), "{path}: {text}");
    }
}

/// A shape whose element count overflows is refused as invalid, not wrapped to a count an empty
/// body matches (which reached the backend and failed there as a server error).
#[test]
fn a_shape_too_large_to_address_is_invalid_input() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let huge = json!([4611686018427387904u64, 4]);
    let header = json!({"inputs": [{"name": "float_input", "shape": huge, "datatype": "FP32",
                                    "parameters": {"binary_data_size": 0}}]})
    .to_string();
    let r = server
        .client
        .post(format!("{}/v2/models/iris/infer", server.url))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .header("Content-Type", "application/octet-stream")
        .body(header)
        .send()
        .unwrap();
    v2_error(r, 422, "addressed");
    let r = server.post_json(
        "/v2/models/iris/infer",
        &json!({"inputs": [{"name": "float_input", "shape": huge, "datatype": "FP32", "data": []}]}),
    );
    v2_error(r, 422, "addressed");
    server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
}
