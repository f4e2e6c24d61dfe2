//! How versions are served: backends (tract, ONNX Runtime, `auto`), dynamic batching, instances,
//! warmup before ready, and the queue's backpressure (429 when full, 503 after waiting too long,
//! abandoned requests skipped), all through real HTTP.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Response};
use serde_json::{json, Value};

use crate::common::*;

/// Whether this run must have ONNX Runtime (CI installs the wheel and says so).
fn ort_required() -> bool {
    std::env::var("MAAS_REQUIRE_ORT").is_ok_and(|v| v == "1")
}

fn ort_available() -> bool {
    let found =
        std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| std::path::Path::new(&p).is_file());
    if !found && ort_required() {
        panic!("MAAS_REQUIRE_ORT=1 but ORT_DYLIB_PATH does not name the ONNX Runtime library");
    }
    found
}

/// The value of one sample in a Prometheus text exposition, 0 when absent.
fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn metrics(server: &Server) -> String {
    server.get("/metrics").text().unwrap()
}

/// A POST to run on another thread (the `Server` itself stays on this one).
fn post(server: &Server, path: &str, body: &Value) -> impl FnOnce() -> Response + Send {
    let client = server.client.clone();
    let url = format!("{}{path}", server.url);
    let body = body.clone();
    move || client.post(url).json(&body).send().unwrap()
}

/// `n` distinct MNIST-shaped images, deterministic.
fn images(n: usize) -> Vec<Value> {
    (0..n)
        .map(|k| {
            let pixels: Vec<Vec<f64>> = (0..28)
                .map(|r| {
                    (0..28)
                        .map(|c| ((r * 28 + c) * 7919 + k * 104_729) % 1000)
                        .map(|v| v as f64 / 1000.0)
                        .collect()
                })
                .collect();
            json!([pixels])
        })
        .collect()
}

/// Send every body at once, one thread each; answers in the order of `bodies`.
fn concurrently(server: &Server, path: &str, bodies: &[Value]) -> Vec<Value> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let client = server.client.clone();
                let url = format!("{}{path}", server.url);
                scope.spawn(move || {
                    let r = client.post(url).json(body).send().unwrap();
                    assert_eq!(r.status(), 200);
                    r.json::<Value>().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Largest difference allowed between a batched answer and the same request run alone: labels
/// must be identical; float32 scores may differ in their last bits, because a larger matrix
/// product can sum in another order.
const BATCH_TOLERANCE: f64 = 1e-6;

#[test]
fn batched_answers_equal_unbatched_ones() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    // A long queue delay with a batch limit the concurrent requests fill exactly: the requests
    // are joined as soon as they have all arrived.
    server.deploy(
        "cnn-batched",
        "cnn_mnist.onnx",
        &[(
            "serving",
            r#"{"max_batch_size": 8, "max_queue_delay_us": 1000000}"#,
        )],
    );
    server.deploy(
        "cnn-single",
        "cnn_mnist.onnx",
        &[("serving", r#"{"max_batch_size": 1}"#)],
    );
    // Requests of 1, 2 and 3 rows, twice: 12 rows to join and split back.
    server.deploy(
        "iris-batched",
        "iris_logreg.onnx",
        &[
            (
                "serving",
                r#"{"max_batch_size": 12, "max_queue_delay_us": 1000000}"#,
            ),
            ("class_names", IRIS_CLASSES),
        ],
    );
    server.deploy(
        "iris-single",
        "iris_logreg.onnx",
        &[
            ("serving", r#"{"max_batch_size": 1}"#),
            ("class_names", IRIS_CLASSES),
        ],
    );

    let batched = server.get_json("/v1/models/cnn-batched/versions/1");
    assert_eq!(batched["serving"]["batching"], true, "{batched}");
    assert_eq!(batched["serving"]["max_batch_size"], 8);
    assert_eq!(batched["serving"]["max_queue_delay_us"], 1_000_000);
    assert_eq!(batched["serving"]["instances"], 1);
    assert_eq!(batched["serving"]["backend"], "tract");
    assert_eq!(batched["serving"]["execution_provider"], "cpu");
    assert_eq!(batched["serving_options"]["max_batch_size"], 8);
    let single = server.get_json("/v1/models/cnn-single/versions/1");
    assert_eq!(single["serving"]["batching"], false, "{single}");

    let cnn_bodies: Vec<Value> = images(8)
        .into_iter()
        .map(|image| json!({ "instances": [image] }))
        .collect();
    let joined = concurrently(&server, "/v1/models/cnn-batched/predict", &cnn_bodies);
    for (body, answer) in cnn_bodies.iter().zip(&joined) {
        let alone = server.predict_ok("cnn-single", None, body);
        assert_eq!(
            answer["predictions"], alone["predictions"],
            "a batched answer differs from the same request run alone"
        );
        // Float32 sums may round differently in a larger matrix product: equal to 1e-6.
        assert_close(
            &answer["probabilities"],
            &alone["probabilities"],
            BATCH_TOLERANCE,
        );
    }

    let rows = expected()["iris_logreg"]["inputs"].clone();
    let rows = rows.as_array().unwrap();
    let iris_bodies: Vec<Value> = [1, 2, 3, 1, 2, 3]
        .iter()
        .enumerate()
        .map(|(i, n)| json!({ "instances": rows.iter().cycle().skip(i).take(*n).collect::<Vec<_>>() }))
        .collect();
    let joined = concurrently(&server, "/v1/models/iris-batched/predict", &iris_bodies);
    for (body, answer) in iris_bodies.iter().zip(&joined) {
        let alone = server.predict_ok("iris-single", None, body);
        let n = body["instances"].as_array().unwrap().len();
        assert_eq!(answer["predictions"].as_array().unwrap().len(), n);
        assert_eq!(answer["predictions"], alone["predictions"]);
        assert_close(
            &answer["probabilities"],
            &alone["probabilities"],
            BATCH_TOLERANCE,
        );
    }

    // The batched versions ran fewer, larger batches; the single ones one request per run.
    let text = metrics(&server);
    let runs = |m: &str| {
        metric(
            &text,
            &format!("maas_inference_batch_size_count{{model=\"{m}\",version=\"1\"}}"),
        )
    };
    let rows_run = |m: &str| {
        metric(
            &text,
            &format!("maas_inference_batch_size_sum{{model=\"{m}\",version=\"1\"}}"),
        )
    };
    assert_eq!(rows_run("cnn-batched"), 8.0, "{text}");
    assert!(
        runs("cnn-batched") < 8.0,
        "no request was joined to another:\n{text}"
    );
    assert_eq!(runs("cnn-single"), 8.0);
    assert_eq!(rows_run("iris-batched"), 12.0);
    assert!(runs("iris-batched") < 6.0);
    for sample in [
        "maas_model_instances{model=\"cnn-batched\",version=\"1\"} 1",
        "maas_inference_queue_depth{model=\"cnn-batched\",version=\"1\"} 0",
        "maas_inference_queue_duration_seconds_count{model=\"cnn-batched\",version=\"1\"} 8",
        "maas_inference_compute_duration_seconds_count{model=\"cnn-single\",version=\"1\"} 8",
    ] {
        assert!(text.contains(sample), "metrics lack {sample}:\n{text}");
    }
}

#[test]
fn serving_options_are_checked_before_anything_is_stored() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    for (options, needle) in [
        ("{", "JSON"),
        (r#"{"max_batch": 4}"#, "max_batch"),
        (r#"{"instances": 0}"#, "instances"),
        (r#"{"max_batch_size": 5000}"#, "max_batch_size"),
        (r#"{"queue_timeout_ms": 0}"#, "queue_timeout_ms"),
        (r#"{"inline_max_us": 2000000}"#, "inline_max_us"),
        (r#"{"backend": "gpu"}"#, "backend"),
    ] {
        let body = assert_error(
            server.deploy_form("iris", "iris_logreg.onnx", &[("serving", options)]),
            422,
            "invalid_argument",
        );
        assert!(
            body["message"].as_str().unwrap().contains(needle),
            "{options}: {body}"
        );
    }
    assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
}

#[test]
fn several_instances_serve_one_version() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy(
        "iris",
        "iris_logreg.onnx",
        &[("serving", r#"{"instances": 3, "max_batch_size": 1}"#)],
    );
    let meta = server.get_json("/v1/models/iris/versions/1");
    assert_eq!(meta["serving"]["instances"], 3, "{meta}");
    let rows = expected()["iris_logreg"]["inputs"].clone();
    let bodies: Vec<Value> = (0..12).map(|_| json!({ "instances": rows })).collect();
    let answers = concurrently(&server, "/v1/models/iris/predict", &bodies);
    let want = &expected()["iris_logreg"]["outputs"]["label"];
    for answer in answers {
        assert_eq!(&answer["predictions"], want);
    }
    assert!(metrics(&server).contains("maas_model_instances{model=\"iris\",version=\"1\"} 3"));
}

#[test]
fn cheap_requests_answer_the_same_inline_or_queued() {
    // By default a cheap request on an idle queue runs on the HTTP worker; `inline_max_us: 0`
    // always queues. Both give the model's answers, alone and concurrently, and report their
    // runs in the same metrics.
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("inline", "iris_logreg.onnx", &[]);
    server.deploy(
        "queued",
        "iris_logreg.onnx",
        &[("serving", r#"{"inline_max_us": 0}"#)],
    );
    let inline = server.get_json("/v1/models/inline/versions/1");
    assert_eq!(inline["serving"]["inline_max_us"], 200, "{inline}");
    let queued = server.get_json("/v1/models/queued/versions/1");
    assert_eq!(queued["serving"]["inline_max_us"], 0, "{queued}");
    let rows = expected()["iris_logreg"]["inputs"].clone();
    let want = &expected()["iris_logreg"]["outputs"]["label"];
    let bodies: Vec<Value> = (0..16).map(|_| json!({ "instances": rows })).collect();
    for model in ["inline", "queued"] {
        let path = format!("/v1/models/{model}/predict");
        for answer in concurrently(&server, &path, &bodies) {
            assert_eq!(&answer["predictions"], want, "{model}");
        }
    }
    let text = metrics(&server);
    for model in ["inline", "queued"] {
        let rows_run = metric(
            &text,
            &format!("maas_inference_batch_size_sum{{model=\"{model}\",version=\"1\"}}"),
        );
        let want_rows = 16.0 * rows.as_array().unwrap().len() as f64;
        assert_eq!(rows_run, want_rows, "{model}: every row ran once\n{text}");
    }
}

#[test]
fn backends_tract_onnx_runtime_and_auto() {
    let ort = ort_available();
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let reference = expected();

    // The same models answer the same on every backend this machine has.
    let mut backends = vec!["tract"];
    if ort {
        backends.push("ort-cpu");
    } else {
        eprintln!("NOTICE: ORT_DYLIB_PATH not set; ONNX Runtime backends are checked only for their refusal (pip install -r serving/requirements-ort.txt)");
    }
    for backend in &backends {
        let options = format!(r#"{{"backend": "{backend}"}}"#);
        for (fixture, body) in [
            (
                "iris_rf",
                json!({ "instances": reference["iris_rf"]["inputs"] }),
            ),
            (
                "cnn_mnist",
                json!({
                    "instances": reference["cnn_mnist"]["inputs"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|image| image.as_array().unwrap().clone())
                        .collect::<Vec<_>>(),
                    "shape": [1, 28, 28]
                }),
            ),
        ] {
            let name = format!("{fixture}-{backend}");
            let meta = server.deploy(&name, &format!("{fixture}.onnx"), &[("serving", &options)]);
            assert_eq!(meta["backend"], *backend, "{meta}");
            assert_eq!(meta["serving"]["backend"], *backend, "{meta}");
            let answer = server.predict_ok(&name, None, &body);
            let outputs = &reference[fixture]["outputs"];
            if fixture == "iris_rf" {
                assert_eq!(answer["predictions"], outputs["label"], "{backend}");
                assert_close(&answer["probabilities"], &outputs["probabilities"], 1e-4);
            } else {
                assert_close(&answer["probabilities"], &outputs["probabilities"], 1e-4);
            }
        }
    }

    // `auto` takes ONNX Runtime when it loads, else tract, and says why.
    let auto = server.deploy(
        "iris-auto",
        "iris_logreg.onnx",
        &[("serving", r#"{"backend": "auto"}"#)],
    );
    if ort {
        assert!(
            auto["serving"]["backend"]
                .as_str()
                .unwrap()
                .starts_with("ort-"),
            "{auto}"
        );
    } else {
        assert_eq!(auto["serving"]["backend"], "tract", "{auto}");
        let note = auto["serving"]["backend_note"].as_str().unwrap_or_default();
        assert!(note.contains("ONNX Runtime"), "{auto}");
        let body = assert_error(
            server.deploy_form(
                "iris-ort",
                "iris_logreg.onnx",
                &[("serving", r#"{"backend": "ort-cpu"}"#)],
            ),
            422,
            "backend_unavailable",
        );
        assert!(body["message"].as_str().unwrap().contains("ONNX Runtime"));
    }
    assert_eq!(
        server.predict_ok(
            "iris-auto",
            None,
            &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]})
        )["predictions"],
        json!([0])
    );

    // An explicit CUDA request that cannot be honoured fails the deploy and stores nothing.
    let cuda = server.deploy_form(
        "iris-cuda",
        "iris_logreg.onnx",
        &[("serving", r#"{"backend": "ort-cuda"}"#)],
    );
    if cuda.status() == 201 {
        eprintln!("NOTICE: the CUDA execution provider is available here; it served iris");
    } else {
        assert!(
            !std::env::var("MAAS_REQUIRE_CUDA").is_ok_and(|v| v == "1"),
            "MAAS_REQUIRE_CUDA=1 but an ort-cuda deploy was refused"
        );
        let body = assert_error(cuda, 422, "backend_unavailable");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("CUDA") || message.contains("ONNX Runtime"),
            "{body}"
        );
        assert_error(server.get("/v1/models/iris-cuda"), 404, "model_not_found");
    }
}

#[test]
fn an_unavailable_default_backend_stops_the_server_at_start() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let output = std::process::Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(store.data_dir())
        .env("MAAS__SERVING__BACKEND", "ort-cuda")
        .env(
            "MAAS__SERVING__ORT__DYLIB_PATH",
            "/nonexistent/libonnxruntime.so",
        )
        .env("MAAS_ADMIN_PASSWORD", "admin-password-for-tests")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ort-cuda") && stderr.contains("/nonexistent/libonnxruntime.so"),
        "{stderr}"
    );
}

#[test]
fn a_full_queue_answers_429_and_a_long_wait_503() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    // Every inference takes a second: one running request holds the only instance.
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS_TEST_INFERENCE_DELAY_MS", "1000"),
    );
    server.deploy(
        "iris",
        "iris_logreg.onnx",
        &[(
            "serving",
            r#"{"max_batch_size": 1, "queue_capacity": 1, "queue_timeout_ms": 200}"#,
        )],
    );
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    std::thread::scope(|scope| {
        let running = scope.spawn(post(&server, "/v1/models/iris/predict", &body));
        std::thread::sleep(Duration::from_millis(300));
        let waiting = scope.spawn(post(&server, "/v1/models/iris/predict", &body));
        std::thread::sleep(Duration::from_millis(300));
        let refused = server.predict("iris", None, &body);
        assert_eq!(refused.headers()["retry-after"], "1");
        let refused = assert_error(refused, 429, "queue_full");
        assert!(refused["message"].as_str().unwrap().contains("full"));

        let waited = waiting.join().unwrap();
        assert_eq!(waited.headers()["retry-after"], "1");
        assert_error(waited, 503, "queue_timeout");
        assert_eq!(running.join().unwrap().status(), 200);
    });
    let text = metrics(&server);
    for (reason, count) in [("queue_full", 1.0), ("timeout", 1.0)] {
        let sample = format!(
            "maas_inference_dropped_total{{model=\"iris\",reason=\"{reason}\",version=\"1\"}}"
        );
        assert_eq!(metric(&text, &sample), count, "{sample}\n{text}");
    }
    for (outcome, count) in [("ok", 1.0), ("overloaded", 2.0)] {
        let sample =
            format!("maas_predictions_total{{model=\"iris\",outcome=\"{outcome}\",protocol=\"v1\",version=\"1\"}}");
        assert_eq!(metric(&text, &sample), count, "{sample}\n{text}");
    }

    // The Open Inference Protocol answers the same refusals in its own error shape.
    let v2 = json!({"inputs": [{"name": "float_input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});
    std::thread::scope(|scope| {
        let running = scope.spawn(post(&server, "/v2/models/iris/infer", &v2));
        std::thread::sleep(Duration::from_millis(300));
        let waiting = scope.spawn(post(&server, "/v2/models/iris/infer", &v2));
        std::thread::sleep(Duration::from_millis(300));
        let refused = server.post_json("/v2/models/iris/infer", &v2);
        assert_eq!(refused.status(), 429);
        let body: Value = refused.json().unwrap();
        assert!(body["error"].as_str().unwrap().contains("full"), "{body}");
        assert_eq!(waiting.join().unwrap().status(), 503);
        assert_eq!(running.join().unwrap().status(), 200);
    });
}

#[test]
fn a_request_whose_client_left_is_not_run() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS_TEST_INFERENCE_DELAY_MS", "1000"),
    );
    server.deploy(
        "iris",
        "iris_logreg.onnx",
        &[(
            "serving",
            r#"{"max_batch_size": 1, "queue_timeout_ms": 60000}"#,
        )],
    );
    let body = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    let started = Instant::now();
    std::thread::scope(|scope| {
        let running = scope.spawn(post(&server, "/v1/models/iris/predict", &body));
        std::thread::sleep(Duration::from_millis(300));
        // A second request queues behind it, and its client hangs up before it runs.
        let address = server.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        let text = body.to_string();
        write!(
            stream,
            "POST /v1/models/iris/predict HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            server.token,
            text.len()
        )
        .unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(stream);
        assert_eq!(running.join().unwrap().status(), 200);
    });
    // Give the instance the time to reach (and skip) the abandoned request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sample =
        "maas_inference_dropped_total{model=\"iris\",reason=\"client_gone\",version=\"1\"}";
    while metric(&metrics(&server), sample) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the abandoned request was never dropped"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = metrics(&server);
    assert_eq!(
        metric(
            &text,
            "maas_inference_batch_size_count{model=\"iris\",version=\"1\"}"
        ),
        1.0,
        "only the request whose client stayed ran:\n{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_new_version_serves_only_after_its_warmup() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS_TEST_INFERENCE_DELAY_MS", "800"),
    );
    server.deploy("iris", "iris_logreg.onnx", &[]);
    std::thread::scope(|scope| {
        let client = server.client.clone();
        let url = format!("{}/v1/models/iris/versions", server.url);
        let deploying = scope.spawn(move || {
            let form = multipart::Form::new()
                .part("model", fixture_part("iris_logreg_v2.onnx"))
                .text("append", "false");
            let r = client.post(url).multipart(form).send().unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().unwrap()
        });
        std::thread::sleep(Duration::from_millis(200));
        // Version 2 is warming up: version 1 is still the one that answers and the only one
        // reported ready.
        let model = server.get_json("/v1/models/iris");
        assert_eq!(model["default_version"], 1, "{model}");
        assert_eq!(server.get("/v2/models/iris/versions/1/ready").status(), 200);
        assert_ne!(server.get("/v2/models/iris/versions/2/ready").status(), 200);
        let deployed = deploying.join().unwrap();
        assert_eq!(deployed["ready"], true, "{deployed}");
        assert!(
            deployed["serving"]["warmup_ms"].as_f64().unwrap() >= 800.0,
            "{deployed}"
        );
    });
    assert_eq!(server.get_json("/v1/models/iris")["default_version"], 2);
    assert_eq!(server.get("/v2/models/iris/versions/2/ready").status(), 200);
}

#[test]
fn onnx_runtime_threads_share_the_cores_unless_set() {
    if !ort_available() {
        eprintln!("NOTICE: ORT_DYLIB_PATH not set; ONNX Runtime thread defaults are not checked");
        return;
    }
    // The server runs on this machine, in this test's cgroup, with the same cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deploy_ort = |server: &Server, name: &str, instances: usize| {
        let options = format!(r#"{{"backend": "ort-cpu", "instances": {instances}}}"#);
        server.deploy(name, "iris_logreg.onnx", &[("serving", &options)])
    };

    // By default the instances of a version share the cores, one thread each at least.
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut server = Server::start(&store);
    for instances in [1, 2, (cores + 1).min(64)] {
        let meta = deploy_ort(&server, &format!("iris-{instances}"), instances);
        assert_eq!(meta["serving"]["instances"], instances, "{meta}");
        assert_eq!(
            meta["serving"]["intra_op_threads"],
            (cores / instances).max(1),
            "{meta}"
        );
        assert_eq!(meta["serving"]["inter_op_threads"], 1, "{meta}");
    }
    let tract = server.deploy("iris-tract", "iris_logreg.onnx", &[]);
    assert!(
        tract["serving"].get("intra_op_threads").is_none(),
        "{tract}"
    );
    assert!(!server.log().contains("compete for the cores"));

    // An explicit count is honoured, and a version that oversubscribes the cores is logged.
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let explicit = cores + 1;
    let mut server = Server::start_with(
        &store,
        Options::default().env(
            "MAAS__SERVING__ORT__INTRA_OP_THREADS",
            &explicit.to_string(),
        ),
    );
    let meta = deploy_ort(&server, "iris", 2);
    assert_eq!(meta["serving"]["intra_op_threads"], explicit, "{meta}");
    let answer = server.predict_ok("iris", None, &json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}));
    assert_eq!(answer["predictions"], json!([0]));
    let log = server.log();
    assert!(
        log.contains(&format!(
            "2 instance(s) × serving.ort.intra_op_threads = {explicit} is {} threads for {cores} core(s)",
            2 * explicit
        )),
        "{log}"
    );
}

#[test]
fn linear_models_run_on_the_native_kernel_and_answer_as_the_engines_do() {
    // scikit-learn's linear models (ONNX-ML LinearClassifier, + Normalizer, LinearRegressor)
    // are computed by maas's own kernel on tract, after it agreed with tract's plan at load;
    // ONNX Runtime runs them itself. Both give the reference answers, alone and in batches.
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let reference = expected();
    let mut backends = vec!["tract"];
    if ort_available() {
        backends.push("ort-cpu");
    }
    for backend in backends {
        let options = format!(r#"{{"backend": "{backend}"}}"#);
        for fixture in ["iris_logreg", "iris_logreg_v2", "house_linreg", "iris_rf"] {
            let name = format!("{fixture}-{backend}").replace('_', "-");
            let meta = server.deploy(&name, &format!("{fixture}.onnx"), &[("serving", &options)]);
            let linear = backend == "tract" && fixture != "iris_rf";
            let kernel = &meta["serving"]["kernel"];
            if linear {
                assert_eq!(kernel, "linear", "{meta}");
            } else {
                assert!(kernel.is_null(), "{meta}");
            }
            let inputs = reference[fixture]["inputs"].clone();
            let outputs = &reference[fixture]["outputs"];
            let bodies: Vec<Value> = (0..8).map(|_| json!({ "instances": inputs })).collect();
            let path = format!("/v1/models/{name}/predict");
            for answer in concurrently(&server, &path, &bodies) {
                if fixture == "house_linreg" {
                    assert_close(&answer["predictions"], &house_predictions(&reference), 1e-2);
                } else {
                    assert_eq!(answer["predictions"], outputs["label"], "{name}");
                    assert_close(&answer["probabilities"], &outputs["probabilities"], 1e-4);
                }
            }
        }
        // Trained on the species' names: string labels, which tract's plan cannot hold.
        let name = format!("iris-names-{backend}");
        let meta = server.deploy(&name, "iris_logreg_names.onnx", &[("serving", &options)]);
        assert_eq!(meta["outputs"][0]["element_type"], "string", "{meta}");
        let species = ["setosa", "versicolor", "virginica"];
        let want: Vec<Value> = reference["iris_logreg"]["outputs"]["label"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| json!(species[l.as_u64().unwrap() as usize]))
            .collect();
        let body = json!({ "instances": reference["iris_logreg"]["inputs"] });
        let answer = server.predict_ok(&name, None, &body);
        assert_eq!(answer["predictions"], Value::Array(want), "{backend}");
    }
}
