//! The Open Inference Protocol over gRPC: the real tritonclient.grpc, a generated Rust client
//! (tonic, from the same proto the server uses), and h2load for a short load run; the same
//! tokens, roles, limits, queue and pipeline as HTTP, and gRPC status codes for every refusal.

use std::process::Command;
use std::time::{Duration, Instant};

use maas_gateway::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use maas_gateway::grpc::proto::model_infer_request::InferInputTensor;
use maas_gateway::grpc::proto::*;
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::auth::add_user;
use crate::common::*;

/// A blocking wrapper around the generated client.
struct Grpc {
    runtime: tokio::runtime::Runtime,
    client: GrpcInferenceServiceClient<Channel>,
}

impl Grpc {
    fn connect(address: &str) -> Grpc {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(GrpcInferenceServiceClient::connect(format!(
                "http://{address}"
            )))
            .unwrap()
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        Grpc { runtime, client }
    }

    fn of(server: &Server) -> Grpc {
        Grpc::connect(
            server
                .grpc
                .as_deref()
                .expect("the server logs its gRPC address"),
        )
    }

    fn infer(
        &self,
        message: ModelInferRequest,
        token: Option<&str>,
    ) -> Result<tonic::Response<ModelInferResponse>, Status> {
        let mut client = self.client.clone();
        self.runtime
            .block_on(client.model_infer(request(message, token)))
    }

    fn infer_with(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<ModelInferResponse, Status> {
        let mut client = self.client.clone();
        self.runtime
            .block_on(client.model_infer(request))
            .map(tonic::Response::into_inner)
    }

    fn metadata(&self, name: &str, token: Option<&str>) -> Result<ModelMetadataResponse, Status> {
        let mut client = self.client.clone();
        let message = ModelMetadataRequest {
            name: name.into(),
            version: String::new(),
        };
        self.runtime
            .block_on(client.model_metadata(request(message, token)))
            .map(tonic::Response::into_inner)
    }

    /// The model names RepositoryIndex lists to this caller.
    fn index(&self, token: Option<&str>) -> Result<Vec<String>, Status> {
        let mut client = self.client.clone();
        let message = RepositoryIndexRequest {
            repository_name: String::new(),
            ready: false,
        };
        self.runtime
            .block_on(client.repository_index(request(message, token)))
            .map(|r| r.into_inner().models.into_iter().map(|m| m.name).collect())
    }

    fn live(&self, token: Option<&str>) -> Result<bool, Status> {
        let mut client = self.client.clone();
        self.runtime
            .block_on(client.server_live(request(ServerLiveRequest {}, token)))
            .map(|r| r.into_inner().live)
    }
}

fn request<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// The iris rows and answers of tests/fixtures/expected.json.
fn iris_expected() -> (Vec<f32>, usize, Vec<i64>) {
    let e = &expected()["iris_logreg"];
    let rows = e["inputs"].as_array().unwrap();
    let flat: Vec<f32> = rows
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
        })
        .collect();
    let labels = e["outputs"]["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    (flat, rows.len(), labels)
}

fn iris_input(rows: usize) -> InferInputTensor {
    InferInputTensor {
        name: "float_input".into(),
        datatype: "FP32".into(),
        shape: vec![rows as i64, 4],
        ..InferInputTensor::default()
    }
}

/// Rows sent as raw little-endian bytes, as tritonclient sends them.
fn raw_request(values: &[f32], rows: usize) -> ModelInferRequest {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![iris_input(rows)],
        raw_input_contents: vec![bytes.into()],
        ..ModelInferRequest::default()
    }
}

/// Rows sent as typed contents.
fn typed_request(values: &[f32], rows: usize) -> ModelInferRequest {
    let mut input = iris_input(rows);
    input.contents = Some(InferTensorContents {
        fp32_contents: values.to_vec(),
        ..InferTensorContents::default()
    });
    ModelInferRequest {
        model_name: "iris".into(),
        inputs: vec![input],
        ..ModelInferRequest::default()
    }
}

fn labels(response: &ModelInferResponse) -> Vec<i64> {
    let ix = response
        .outputs
        .iter()
        .position(|o| o.name == "label")
        .unwrap();
    match response.raw_output_contents.get(ix) {
        Some(raw) => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        None => response.outputs[ix]
            .contents
            .as_ref()
            .unwrap()
            .int64_contents
            .clone(),
    }
}

fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn assert_status<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    needle: &str,
) -> Status {
    let status = result.expect_err("the call was refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
    status
}

#[test]
fn the_real_tritonclient_grpc_works_unchanged_and_the_proto_is_tritons() {
    let Some(python) = crate::v2::tritonclient_or_skip() else {
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    // With training data, so that a request may ask for a drift check.
    server.deploy_iris_with_training_data();
    let viewer = add_user(&server, "vera", "viewer");
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/grpc");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(&python).args(args).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let text = run(&[
        scripts.join("tritonclient_grpc_check.py").as_os_str(),
        server.grpc.as_deref().unwrap().as_ref(),
        server.token.as_ref(),
        viewer.as_ref(),
        fixture("expected.json").as_os_str(),
    ]);
    assert!(text.contains("all checks passed"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let descriptors = dir.path().join("grpc_service.bin");
    std::fs::write(&descriptors, maas_gateway::grpc::proto::FILE_DESCRIPTOR_SET).unwrap();
    let text = run(&[
        scripts.join("check_proto.py").as_os_str(),
        descriptors.as_os_str(),
    ]);
    assert!(text.contains("proto: matches Triton's"), "{text}");
}

#[test]
fn grpc_runs_the_one_pipeline_typed_and_raw() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let grpc = Grpc::of(&server);
    let (values, rows, want) = iris_expected();

    let raw = grpc
        .infer(raw_request(&values, rows), Some(&server.token))
        .unwrap();
    assert!(raw.metadata().get("x-request-id").is_some());
    let raw = raw.into_inner();
    assert_eq!(raw.model_version, "1");
    assert_eq!(raw.raw_output_contents.len(), 2);
    assert_eq!(labels(&raw), want);

    // Typed in, typed out; saved in the prediction log as a REST request would be.
    let mut typed = typed_request(&values, rows);
    typed.id = "typed-1".into();
    typed.parameters.insert(
        "save".into(),
        InferParameter {
            parameter_choice: Some(infer_parameter::ParameterChoice::BoolParam(true)),
        },
    );
    let mut call = request(typed, Some(&server.token));
    call.metadata_mut()
        .insert("x-request-id", "grpc-request-1".parse().unwrap());
    let typed = grpc.infer_with(call).unwrap();
    assert!(typed.raw_output_contents.is_empty());
    assert_eq!(typed.id, "typed-1");
    assert_eq!(labels(&typed), want);
    let probabilities = &typed.outputs[1];
    assert_eq!(probabilities.shape, vec![rows as i64, 3]);
    assert_eq!(
        probabilities.contents.as_ref().unwrap().fp32_contents.len(),
        rows * 3
    );
    wait_for("the gRPC request in the prediction log", || {
        let page = server.get_json("/v1/models/iris/versions/1/predictions");
        page["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["request_id"] == "grpc-request-1" && p["actor"] == "admin")
    });

    // The same request over REST answers the same.
    let rest: Value = server
        .post_json(
            "/v2/models/iris/infer",
            &json!({"inputs": [{"name": "float_input", "shape": [rows, 4], "datatype": "FP32", "data": values}]}),
        )
        .json()
        .unwrap();
    let rest_labels: Vec<i64> = rest["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(rest_labels, want);

    let text = server.get("/metrics").text().unwrap();
    for (sample, want) in [
        (
            r#"maas_predictions_total{model="iris",outcome="ok",protocol="grpc",version="1"}"#,
            2.0,
        ),
        (
            r#"maas_predictions_total{model="iris",outcome="ok",protocol="v2",version="1"}"#,
            1.0,
        ),
        (
            r#"maas_grpc_requests_total{code="OK",method="ModelInfer"}"#,
            2.0,
        ),
        (
            r#"maas_grpc_request_duration_seconds_count{method="ModelInfer"}"#,
            2.0,
        ),
    ] {
        assert_eq!(metric(&text, sample), want, "{sample}\n{text}");
    }
}

#[test]
fn grpc_refusals_are_status_codes() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__LIMITS__MAX_PREDICT_BYTES", "100000"),
    );
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let grpc = Grpc::of(&server);
    let (values, rows, _) = iris_expected();
    let token = Some(server.token.as_str());

    // Auth: none, a bad token, a role too small, an API key scoped to other models.
    assert_status(grpc.live(None), Code::Unauthenticated, "Bearer");
    assert_status(
        grpc.infer(raw_request(&values, rows), Some("nope")),
        Code::Unauthenticated,
        "",
    );
    let viewer = add_user(&server, "vic", "viewer");
    assert!(grpc.live(Some(&viewer)).unwrap());
    assert_eq!(grpc.metadata("iris", Some(&viewer)).unwrap().name, "iris");
    assert_status(
        grpc.infer(raw_request(&values, rows), Some(&viewer)),
        Code::PermissionDenied,
        "predict",
    );
    let key = server.post_json(
        "/v1/api-keys",
        &json!({"username": "admin", "role": "predictor", "models": ["house*"]}),
    );
    assert_eq!(key.status(), 201, "{}", key.text().unwrap());
    let key: Value = key.json().unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    assert_status(
        grpc.infer(raw_request(&values, rows), Some(&key)),
        Code::PermissionDenied,
        "limited to other models",
    );
    // A key limited to other models does not learn that iris exists.
    assert!(grpc.index(Some(&key)).unwrap().is_empty());
    assert!(grpc.index(token).unwrap().contains(&"iris".to_owned()));

    // Bad requests.
    let mut unknown = raw_request(&values, rows);
    unknown.model_name = "ghost".into();
    assert_status(grpc.infer(unknown, token), Code::NotFound, "does not exist");
    let mut version = raw_request(&values, rows);
    version.model_version = "seven".into();
    assert_status(
        grpc.infer(version, token),
        Code::InvalidArgument,
        "positive integer",
    );
    assert_status(
        grpc.infer(raw_request(&values[..values.len() - 1], rows), token),
        Code::InvalidArgument,
        "do not hold",
    );
    let mut both = raw_request(&values, rows);
    both.inputs[0].contents = typed_request(&values, rows).inputs[0].contents.clone();
    assert_status(grpc.infer(both, token), Code::InvalidArgument, "both");
    let mut twice = typed_request(&values, rows);
    twice.inputs.push(twice.inputs[0].clone());
    assert_status(
        grpc.infer(twice, token),
        Code::InvalidArgument,
        "sent twice",
    );
    let mut wrong_field = typed_request(&values, rows);
    wrong_field.inputs[0].contents = Some(InferTensorContents {
        fp64_contents: vec![1.0; rows * 4],
        ..InferTensorContents::default()
    });
    assert_status(
        grpc.infer(wrong_field, token),
        Code::InvalidArgument,
        "fp32_contents has 0",
    );
    let mut huge = raw_request(&[], 1);
    huge.inputs[0].shape = vec![1 << 62, 4];
    assert_status(grpc.infer(huge, token), Code::InvalidArgument, "addressed");
    let mut drift = raw_request(&values, rows);
    drift.parameters.insert(
        "drift".into(),
        InferParameter {
            parameter_choice: Some(infer_parameter::ParameterChoice::StringParam(
                "{\"detector\": \"magic\"}".into(),
            )),
        },
    );
    assert_status(
        grpc.infer(drift, token),
        Code::InvalidArgument,
        "parameters.drift",
    );

    // A message over limits.max_predict_bytes: RESOURCE_EXHAUSTED naming the setting.
    let big = vec![1.0f32; 40_000];
    let refused = assert_status(
        grpc.infer(raw_request(&big, 10_000), token),
        Code::ResourceExhausted,
        "limits.max_predict_bytes",
    );
    assert_eq!(
        refused.metadata().get("maas-error-code").unwrap(),
        "payload_too_large"
    );

    // A paused model is UNAVAILABLE, with a retry hint.
    assert_eq!(
        server.post_empty("/v1/models/iris/actions/pause").status(),
        200
    );
    let paused = assert_status(
        grpc.infer(raw_request(&values, rows), token),
        Code::Unavailable,
        "paused",
    );
    assert_eq!(paused.metadata().get("retry-after").unwrap(), "1");
    assert_eq!(
        paused.metadata().get("maas-error-code").unwrap(),
        "model_paused"
    );
    assert_eq!(
        server.post_empty("/v1/models/iris/actions/resume").status(),
        200
    );
    grpc.infer(raw_request(&values, rows), token).unwrap();

    let text = server.get("/metrics").text().unwrap();
    for (sample, at_least) in [
        (
            r#"maas_grpc_requests_total{code="UNAUTHENTICATED",method="ServerLive"}"#,
            1.0,
        ),
        (
            r#"maas_grpc_requests_total{code="PERMISSION_DENIED",method="ModelInfer"}"#,
            2.0,
        ),
        (
            r#"maas_grpc_requests_total{code="INVALID_ARGUMENT",method="ModelInfer"}"#,
            6.0,
        ),
        (
            r#"maas_grpc_requests_total{code="UNAVAILABLE",method="ModelInfer"}"#,
            1.0,
        ),
    ] {
        assert!(metric(&text, sample) >= at_least, "{sample}\n{text}");
    }
}

#[test]
fn a_full_queue_is_resource_exhausted_and_a_passed_deadline_is_not_computed() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    // Every inference takes 800 ms: one running request holds the only instance.
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS_TEST_INFERENCE_DELAY_MS", "800"),
    );
    server.deploy(
        "iris",
        "iris_logreg.onnx",
        &[("serving", r#"{"max_batch_size": 1, "queue_capacity": 1}"#)],
    );
    let address = server.grpc.clone().unwrap();
    let token = server.token.clone();
    let (values, rows, want) = iris_expected();
    let runs = r#"maas_inference_batch_size_count{model="iris",version="1"}"#;
    let runs_before = metric(&server.get("/metrics").text().unwrap(), runs);
    let one = |deadline: Option<Duration>| {
        let address = address.clone();
        let token = token.clone();
        let values = values.clone();
        move || {
            let grpc = Grpc::connect(&address);
            let mut call = request(raw_request(&values, rows), Some(&token));
            if let Some(d) = deadline {
                call.set_timeout(d);
            }
            grpc.infer_with(call)
        }
    };
    std::thread::scope(|scope| {
        let running = scope.spawn(one(None));
        std::thread::sleep(Duration::from_millis(250));
        // Waits behind it, past its 300 ms deadline: the client gives up, and the server drops
        // it before compute rather than run it for nobody.
        let late = scope.spawn(one(Some(Duration::from_millis(300))));
        std::thread::sleep(Duration::from_millis(100));
        let refused = assert_status(one(None)(), Code::ResourceExhausted, "full");
        assert_eq!(refused.metadata().get("retry-after").unwrap(), "1");
        assert_eq!(
            refused.metadata().get("maas-error-code").unwrap(),
            "queue_full"
        );
        assert_eq!(labels(&running.join().unwrap().unwrap()), want);
        // The client's own timer ends the call (tonic reports it as CANCELLED, grpc-core as
        // DEADLINE_EXCEEDED).
        let late = late.join().unwrap().unwrap_err();
        assert!(
            matches!(late.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{late:?}"
        );
    });
    // One batch ran (the first request's); the late one was dropped, not computed.
    let started = Instant::now();
    let text = loop {
        let text = server.get("/metrics").text().unwrap();
        if metric(
            &text,
            r#"maas_inference_dropped_total{model="iris",reason="client_gone",version="1"}"#,
        ) >= 1.0
            || started.elapsed() > Duration::from_secs(5)
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(metric(&text, runs) - runs_before, 1.0, "{text}");
    assert_eq!(
        metric(
            &text,
            r#"maas_inference_dropped_total{model="iris",reason="client_gone",version="1"}"#
        ),
        1.0,
        "{text}"
    );
}

#[test]
fn grpc_can_be_turned_off_and_a_taken_port_stops_the_start() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options {
            args: vec!["--grpc-bind".into(), String::new()],
            ..Options::default()
        },
    );
    assert!(server.grpc.is_none(), "{:?}", server.lines);
    drop(server);

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--grpc-bind",
            &port,
            "--data-dir",
        ])
        .arg(store.data_dir())
        .env("MAAS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen for gRPC on {port}")),
        "{stderr}"
    );
}

#[test]
fn grpc_shares_the_https_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let Some(options) = crate::auth::tls_options(dir.path()) else {
        eprintln!("NOTICE: openssl not found; skipping the gRPC TLS test");
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let ca = dir.path().join("ca.pem");
    let server = crate::auth::start_tls(&store, options, &ca.display().to_string());
    let address = server.grpc.clone().expect("gRPC is on");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(&ca).unwrap(),
            ))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://{address}"))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = GrpcInferenceServiceClient::new(channel);
        // The TLS handshake worked and the service answered: without a token, UNAUTHENTICATED.
        let refused = client
            .server_live(Request::new(ServerLiveRequest {}))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        // Plain text to the TLS port does not get through.
        let plain = format!("http://{}", address.replace("localhost", "127.0.0.1"));
        if let Ok(mut c) = GrpcInferenceServiceClient::connect(plain).await {
            assert!(c
                .server_live(Request::new(ServerLiveRequest {}))
                .await
                .is_err());
        }
    });
}

/// h2load, if installed (Debian's nghttp2-client; `MAAS_REQUIRE_H2LOAD=1` makes its absence a
/// failure): `None` to skip.
fn h2load_or_skip() -> Option<&'static str> {
    let found = Command::new("h2load")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("MAAS_REQUIRE_H2LOAD").is_ok_and(|v| v == "1") {
            panic!("h2load is required (MAAS_REQUIRE_H2LOAD=1) but not installed");
        }
        eprintln!("NOTICE: h2load not installed; skipping the gRPC load run (apt-get install nghttp2-client)");
        return None;
    }
    Some("h2load")
}

/// A short load run over gRPC: h2load sends unary ModelInfer calls (HTTP/2 POSTs with the
/// 5-byte gRPC prefix) on 4 connections; every call is answered and every one is a prediction.
#[test]
fn a_short_grpc_load_run_with_h2load() {
    let Some(h2load) = h2load_or_skip() else {
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let message = prost::Message::encode_to_vec(&raw_request(&[5.1, 3.5, 1.4, 0.2], 1));
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(&message);
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("infer.bin");
    std::fs::write(&payload, framed).unwrap();
    let address = server.grpc.clone().unwrap();
    let out = Command::new(h2load)
        .args(["-c", "4", "-m", "1", "-n", "2000", "-d"])
        .arg(&payload)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .args(["-H", &format!("authorization: Bearer {}", server.token)])
        .arg(format!(
            "http://{address}/inference.GRPCInferenceService/ModelInfer"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("2000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    // h2load counts HTTP 200s; the gRPC status is in the trailers, so the server's own count
    // says whether each call was an answer.
    let metrics = server.get("/metrics").text().unwrap();
    assert_eq!(
        metric(
            &metrics,
            r#"maas_grpc_requests_total{code="OK",method="ModelInfer"}"#
        ),
        2000.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            r#"maas_predictions_total{model="iris",outcome="ok",protocol="grpc",version="1"}"#
        ),
        2000.0
    );
}
