//! Traces: a W3C `traceparent` accepted and returned on HTTP and gRPC, and the spans of one
//! predict (the request, then decode, queue wait, compute, drift, encode and the prediction
//! log's store write) exported over OTLP/HTTP to a small receiver, in one parent-child chain.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

use crate::common::*;

/// An OTLP/HTTP receiver on a free port: every span POSTed to `/v1/traces`, and the paths seen.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { url, spans }
    }

    /// The spans of one trace, once `done` holds for them (15 s at most).
    fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let id = hex(trace_id);
        let mut found = Vec::new();
        wait_for(&format!("the spans of trace {trace_id}"), || {
            found = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == id)
                .cloned()
                .collect();
            done(&found)
        });
        found
    }
}

/// One connection: HTTP/1.1 requests, kept alive, each answered 200.
fn serve(stream: std::net::TcpStream, kept: &Mutex<Vec<Span>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut path = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if path.is_empty() {
                path = line.split(' ').nth(1).unwrap_or("").to_owned();
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        assert_eq!(path, "/v1/traces");
        let request = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .any(|a| a.key == "service.name");
            assert!(service, "spans carry service.name");
            for scope in resource.scope_spans {
                kept.lock().unwrap().extend(scope.spans);
            }
        }
        let _ = writer.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
        );
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `traceparent`'s trace id and span id.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(parts[0], "00");
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Check one request's spans: its server span (named `server`) is the child of the caller's
/// span `caller` and has the id the answer's `traceparent` gave, and each of `phases` is a child
/// of it, in time order where the work is sequential.
fn check_chain(spans: &[Span], server: &str, caller: &str, answered: &str, phases: &[&str]) {
    let by_name: HashMap<&str, &Span> = spans.iter().map(|s| (s.name.as_str(), s)).collect();
    let root = by_name
        .get(server)
        .unwrap_or_else(|| panic!("no span {server} in {:?}", names(spans)));
    assert_eq!(root.parent_span_id, hex(caller), "{server}'s parent");
    assert_eq!(
        root.span_id,
        hex(answered),
        "{server}'s id is the one returned"
    );
    for phase in phases {
        let span = by_name
            .get(phase)
            .unwrap_or_else(|| panic!("no span {phase} in {:?}", names(spans)));
        assert_eq!(span.parent_span_id, root.span_id, "{phase}'s parent");
        assert!(
            span.start_time_unix_nano >= root.start_time_unix_nano,
            "{phase} starts inside"
        );
        assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    }
    let sequential: Vec<&Span> = ["decode", "queue", "compute", "drift", "encode"]
        .iter()
        .filter_map(|n| by_name.get(n).copied())
        .collect();
    for pair in sequential.windows(2) {
        assert!(
            pair[0].end_time_unix_nano <= pair[1].start_time_unix_nano + 1_000,
            "{} ends before {} starts",
            pair[0].name,
            pair[1].name
        );
    }
}

fn names(spans: &[Span]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn one_predicts_spans_reach_an_otlp_receiver_in_one_chain_on_http_and_grpc() {
    let receiver = Receiver::start();
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__TRACING__OTLP_ENDPOINT", &receiver.url)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
    );
    server.deploy_iris_with_training_data();

    // HTTP: the caller's trace goes on through the server's span, returned as `traceparent`.
    let caller = "00f067aa0ba902b7";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = server
        .client
        .post(format!("{}/v2/models/iris/infer", server.url))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .json(&json!({
            "inputs": [{"name": "float_input", "shape": [2, 4], "datatype": "FP32",
                        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}],
            "parameters": {"drift": {"detector": "adwin"}, "save": true}
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (returned_trace, server_span) = ids(r.headers()["traceparent"].to_str().unwrap());
    assert_eq!(returned_trace, trace);
    assert_ne!(server_span, caller);
    let phases = [
        "decode",
        "queue",
        "compute",
        "drift",
        "encode",
        "store.prediction_log",
    ];
    let spans = receiver.trace(trace, |s| {
        phases.iter().all(|p| s.iter().any(|x| x.name == *p))
            && s.iter().any(|x| x.name.starts_with("POST"))
    });
    check_chain(
        &spans,
        "POST /v2/models/{name}/infer",
        caller,
        &server_span,
        &phases,
    );

    // Without a traceparent the request starts a trace of its own, and says which.
    let r = server.predict("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
    let (own_trace, own_span) = ids(r.headers()["traceparent"].to_str().unwrap());
    let spans = receiver.trace(&own_trace, |s| s.iter().any(|x| x.name == "compute"));
    let root = spans
        .iter()
        .find(|s| s.name == "POST /v1/models/{name}/predict")
        .unwrap();
    assert!(root.parent_span_id.is_empty(), "a root span");
    assert_eq!(root.span_id, hex(&own_span));

    // gRPC: the same chain under the RPC's span.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let grpc_trace = "0af7651916cd43dd8448eb211c80319c";
    let grpc_caller = "b7ad6b7169203331";
    let answered = runtime.block_on(async {
        use maas_gateway::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
        use maas_gateway::grpc::proto::model_infer_request::InferInputTensor;
        use maas_gateway::grpc::proto::ModelInferRequest;
        let mut client =
            GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc.clone().unwrap()))
                .await
                .unwrap();
        let bytes: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut request = tonic::Request::new(ModelInferRequest {
            model_name: "iris".into(),
            inputs: vec![InferInputTensor {
                name: "float_input".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..InferInputTensor::default()
            }],
            raw_input_contents: vec![bytes.into()],
            ..ModelInferRequest::default()
        });
        let metadata = request.metadata_mut();
        metadata.insert(
            "authorization",
            format!("Bearer {}", server.token).parse().unwrap(),
        );
        metadata.insert(
            "traceparent",
            format!("00-{grpc_trace}-{grpc_caller}-01").parse().unwrap(),
        );
        let response = client.model_infer(request).await.unwrap();
        response
            .metadata()
            .get("traceparent")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    });
    let (returned, grpc_span) = ids(&answered);
    assert_eq!(returned, grpc_trace);
    let phases = ["decode", "queue", "compute", "encode"];
    let spans = receiver.trace(grpc_trace, |s| {
        phases.iter().all(|p| s.iter().any(|x| x.name == *p))
            && s.iter().any(|x| x.name.starts_with("inference."))
    });
    check_chain(
        &spans,
        "inference.GRPCInferenceService/ModelInfer",
        grpc_caller,
        &grpc_span,
        &phases,
    );
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn traceparent_is_returned_even_when_no_spans_are_exported() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = server
        .client
        .get(format!("{}/v1/models", server.url))
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .send()
        .unwrap();
    let (returned, span) = ids(r.headers()["traceparent"].to_str().unwrap());
    assert_eq!(returned, trace);
    assert_ne!(span, "00f067aa0ba902b7");
    // A malformed one starts nothing and is not echoed; the request itself is unharmed.
    let r = server
        .client
        .get(format!("{}/v1/models", server.url))
        .header("traceparent", "00-nothex-00f067aa0ba902b7-01")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("traceparent").is_none());
    // Off by default: no traceparent asked, none given.
    let r = server.get("/v1/models");
    assert!(r.headers().get("traceparent").is_none());
}
