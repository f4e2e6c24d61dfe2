//! Models that would cost the server more than a model may: a few hundred bytes asking for
//! gigabytes (`ConstantOfShape`, `Expand`), a graph of too many nodes, and a load that takes too
//! long. Each is refused with 422 `invalid_model` naming the limit, and nothing is recorded. The
//! files are written here with a small protobuf encoder, so the test needs no ONNX tooling.

use serde_json::json;

use crate::common::*;

/// Protobuf wire format, just enough for ONNX.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn int(mut self, field: u64, v: i64) -> Self {
        self.varint(field << 3);
        self.varint(v as u64);
        self
    }
    fn bytes(mut self, field: u64, b: &[u8]) -> Self {
        self.varint((field << 3) | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    fn text(self, field: u64, s: &str) -> Self {
        self.bytes(field, s.as_bytes())
    }
    fn message(self, field: u64, m: Message) -> Self {
        self.bytes(field, &m.0)
    }
}

const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// A float tensor's name and shape (ValueInfoProto).
fn value_info(name: &str, shape: &[i64]) -> Message {
    let mut dims = Message::default();
    for &d in shape {
        dims = dims.message(1, Message::default().int(1, d));
    }
    let tensor_type = Message::default().int(1, FLOAT).message(2, dims);
    Message::default()
        .text(1, name)
        .message(2, Message::default().message(1, tensor_type))
}

/// An int64 initializer (TensorProto) holding `values`.
fn int64_tensor(name: &str, values: &[i64]) -> Message {
    let mut raw = Vec::new();
    for v in values {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    Message::default()
        .int(1, values.len() as i64)
        .int(2, INT64)
        .text(8, name)
        .bytes(9, &raw)
}

fn node(op: &str, inputs: &[&str], output: &str) -> Message {
    let mut n = Message::default();
    for i in inputs {
        n = n.text(1, i);
    }
    n.text(2, output).text(4, op)
}

/// A model of `nodes`, with graph input `x` [1, 4] and output `y` [1, 4].
fn model(nodes: Vec<Message>, initializers: Vec<Message>, output_shape: &[i64]) -> Vec<u8> {
    let mut graph = Message::default().text(2, "bomb");
    for n in nodes {
        graph = graph.message(1, n);
    }
    for t in initializers {
        graph = graph.message(5, t);
    }
    graph = graph
        .message(11, value_info("x", &[1, 4]))
        .message(12, value_info("y", output_shape));
    Message::default()
        .int(1, 8)
        .message(8, Message::default().text(1, "").int(2, 13))
        .message(7, graph)
        .0
}

fn deploy_bytes(server: &Server, model_name: &str, bytes: Vec<u8>) -> reqwest::blocking::Response {
    let form = reqwest::blocking::multipart::Form::new().part(
        "model",
        reqwest::blocking::multipart::Part::bytes(bytes).file_name("model.onnx"),
    );
    server.deploy_multipart(model_name, form)
}

fn identity_chain(length: usize) -> Vec<u8> {
    let nodes = (0..length)
        .map(|i| {
            let input = if i == 0 {
                "x".to_owned()
            } else {
                format!("t{i}")
            };
            let output = if i + 1 == length {
                "y".to_owned()
            } else {
                format!("t{}", i + 1)
            };
            node("Identity", &[&input], &output)
        })
        .collect();
    model(nodes, Vec::new(), &[1, 4])
}

#[test]
fn models_asking_for_too_much_memory_or_too_many_nodes_are_refused_before_loading() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__LIMITS__MAX_GRAPH_NODES", "1000"),
    );
    // 10^10 elements from a constant shape: tens of gigabytes, from a file of a few hundred bytes.
    let constant_of_shape = model(
        vec![node("ConstantOfShape", &["shape"], "y")],
        vec![int64_tensor("shape", &[100_000, 100_000])],
        &[100_000, 100_000],
    );
    let expand = model(
        vec![node("Expand", &["x", "shape"], "y")],
        vec![int64_tensor("shape", &[100_000, 100_000, 4])],
        &[100_000, 100_000, 4],
    );
    for (what, bytes) in [("ConstantOfShape", constant_of_shape), ("Expand", expand)] {
        assert!(bytes.len() < 400, "{what}: {} bytes", bytes.len());
        let body = assert_error(deploy_bytes(&server, "bomb", bytes), 422, "invalid_model");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("limits.max_load_bytes") && message.contains("bytes of memory"),
            "{what}: {message}"
        );
    }
    // Nodes, at the edge of the limit.
    let r = deploy_bytes(&server, "chain", identity_chain(1000));
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let answer = server.predict_ok("chain", None, &json!({"instances": [[1.0, 2.0, 3.0, 4.0]]}));
    assert_eq!(answer["predictions"], json!([[1.0, 2.0, 3.0, 4.0]]));
    let body = assert_error(
        deploy_bytes(&server, "chain", identity_chain(1001)),
        422,
        "invalid_model",
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("1001 nodes") && message.contains("limits.max_graph_nodes"),
        "{message}"
    );
    // Nothing of the refused ones was recorded.
    assert_error(server.get("/v1/models/bomb"), 404, "model_not_found");
    assert_eq!(
        server.get_json("/v1/models/chain")["versions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_load_that_takes_too_long_is_abandoned_and_records_nothing() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__LIMITS__LOAD_TIMEOUT_SECS", "1")
            // The test inference of every load sleeps this long first.
            .env("MAAS_TEST_INFERENCE_DELAY_MS", "3000"),
    );
    let started = std::time::Instant::now();
    let body = assert_error(
        server.deploy_form("iris", "iris_logreg.onnx", &[]),
        422,
        "invalid_model",
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("limits.load_timeout_secs"),
        "{body}"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(2500));
    // The abandoned load finishes on its thread later; nothing of it is ever recorded.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
}

/// A deploy whose client gives up while the model loads is abandoned: nothing is recorded, no
/// version number is used, and the next deploy is version 1.
#[test]
fn a_deploy_whose_client_left_is_abandoned() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut server = Server::start_with(
        &store,
        Options::default().env("MAAS_TEST_INFERENCE_DELAY_MS", "2000"),
    );
    let impatient = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_millis(500))
        .build()
        .unwrap();
    let form = reqwest::blocking::multipart::Form::new().part(
        "model",
        reqwest::blocking::multipart::Part::bytes(
            std::fs::read(fixture("iris_logreg.onnx")).unwrap(),
        )
        .file_name("iris_logreg.onnx"),
    );
    let gave_up = impatient
        .post(format!("{}/v1/models/iris/versions", server.url))
        .bearer_auth(&server.token)
        .multipart(form)
        .send();
    assert!(gave_up.is_err(), "the client should have timed out");
    // Past the load's own time: had it gone on, it would be recorded by now.
    std::thread::sleep(std::time::Duration::from_millis(3000));
    assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
    assert!(
        server.log().contains("deploy abandoned"),
        "{}",
        server.log()
    );
    let r = server.deploy_form("iris", "iris_logreg.onnx", &[]);
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<serde_json::Value>().unwrap()["version"], 1);
}
