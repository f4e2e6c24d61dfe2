//! Slow and numerous clients, through real sockets: a body that trickles in is cut off with 408
//! `body_timeout` and its connection closed, while other clients are served at once; connections
//! beyond `server.max_connections` are answered 503 `too_many_connections` and closed; and with a
//! low file descriptor limit, a flood of connections is refused cleanly while the store keeps the
//! descriptors it needs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{multipart, Client};
use serde_json::Value;

use crate::common::*;

fn address(server_url: &str) -> SocketAddr {
    server_url.trim_start_matches("http://").parse().unwrap()
}

/// Send a request head announcing `length` body bytes (with a bearer when `token` is given),
/// then the body's first byte.
fn start_slow_request(
    to: SocketAddr,
    path: &str,
    content_type: &str,
    length: usize,
    token: Option<&str>,
) -> TcpStream {
    let mut stream = TcpStream::connect(to).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: maas\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {length}\r\n\r\n{{"
    )
    .unwrap();
    stream
}

/// Everything the server sends until it closes the connection (or `limit` passes).
fn read_to_close(stream: &mut TcpStream, limit: Duration) -> String {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn a_trickled_body_is_cut_off_and_other_clients_are_served_meanwhile() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__SERVER__BODY_TIMEOUT_SECS", "2")
            .env("MAAS__SERVER__UPLOAD_TIMEOUT_SECS", "3"),
    );
    let to = address(&server.url);

    // 300 clients trickling a login body, a byte every 200 ms.
    let mut slow: Vec<TcpStream> = (0..300)
        .map(|_| start_slow_request(to, "/v1/auth/token", "application/json", 200, None))
        .collect();
    let started = Instant::now();
    let trickle_until = started + Duration::from_millis(1500);
    while Instant::now() < trickle_until {
        for stream in &mut slow {
            let _ = stream.write_all(b" ");
        }
        // Meanwhile, a new client is served at once.
        let asked = Instant::now();
        let r = server
            .anonymous
            .get(format!("{}/health/live", server.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "a new client waited {:?} behind the trickling ones",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let token = login(&server.anonymous, &server.url, "admin", ADMIN_PASSWORD);
    assert!(!token.is_empty());

    // Each trickling client gets 408 and a closed connection once 2 s have passed.
    for stream in &mut slow {
        let answer = read_to_close(stream, Duration::from_secs(10));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"code\":\"body_timeout\""), "{answer}");
        assert!(answer.contains("server.body_timeout_secs"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(8),
        "cut off after {waited:?}"
    );

    // An upload has its own, longer limit, and a cut-off upload records nothing.
    let mut upload = start_slow_request(
        to,
        "/v1/models/iris/versions",
        "multipart/form-data; boundary=b",
        1_000_000,
        Some(&server.token),
    );
    let started = Instant::now();
    let answer = read_to_close(&mut upload, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.upload_timeout_secs"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(2900));
    assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
    // A body that arrives in time is unaffected.
    server.deploy("iris", "iris_logreg.onnx", &[]);
}

#[test]
fn connections_beyond_the_limit_are_answered_503_and_closed() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__SERVER__MAX_CONNECTIONS", "8")
            .env("MAAS__SERVER__WORKERS", "1"),
    );
    let to = address(&server.url);
    let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(to).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));

    let fresh = Client::new();
    let r = fresh
        .get(format!("{}/health/live", server.url))
        .send()
        .unwrap();
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["connection"], "close");
    let body = assert_error(r, 503, "too_many_connections");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("server.max_connections"),
        "{body}"
    );

    drop(idle);
    wait_for("a connection once others closed", || {
        Client::new()
            .get(format!("{}/health/live", server.url))
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    let metrics = server.get("/metrics").text().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("maas_http_requests_total") && l.contains("status=\"503\"")),
        "the refusal is counted: {metrics}"
    );
}

#[test]
fn with_few_file_descriptors_a_connection_flood_is_refused_and_the_store_keeps_working() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("NOTICE: prlimit is not installed; skipping the file descriptor test");
        return;
    }
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--grpc-bind", ""])
        .arg("--data-dir")
        .arg(store.data_dir())
        .env("MAAS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("MAAS__SERVER__WORKERS", "2")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let url = loop {
        let line = lines.next().expect("maas exited").unwrap();
        log.push(line.clone());
        if let Some(url) = line.split("listening on ").nth(1) {
            break url.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let limit_line = log
        .iter()
        .find(|l| l.contains("connection limit"))
        .expect("the connection limit is logged");
    // (1024 descriptors - 512 kept - 2 workers x 64 for refusals) / 2 per connection.
    assert!(
        limit_line.contains("max_connections=192") && limit_line.contains("file_descriptors=1024"),
        "{limit_line}"
    );

    // A client that connected before the flood keeps its connection.
    let client = Client::builder().pool_max_idle_per_host(1).build().unwrap();
    let token = login(&client, &url, "admin", ADMIN_PASSWORD);
    let to = address(&url);
    // Past the limit of 192, within the 128 kept for answering refusals.
    let flood: Vec<TcpStream> = (0..250)
        .filter_map(|_| TcpStream::connect(to).ok())
        .collect();
    assert_eq!(flood.len(), 250);
    std::thread::sleep(Duration::from_millis(500));

    let fresh = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = fresh.get(format!("{url}/health/live")).send().unwrap();
    assert_error(r, 503, "too_many_connections");
    // The store still opens what it needs: a deploy writes the database and a model file.
    let form = multipart::Form::new().part("model", fixture_part("iris_logreg.onnx"));
    let r = client
        .post(format!("{url}/v1/models/iris/versions"))
        .bearer_auth(&token)
        .multipart(form)
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 201, "{body}");
    drop(flood);
    let _ = child.kill();
    let _ = child.wait();
}

/// A form whose last field ends in CRLF where the body ends, with no closing boundary, once left
/// actix-multipart waiting forever (found by fuzzing; fuzz/README.md). It is answered 400 at once,
/// on the deploy form and the baseline form alike, and nothing is recorded.
#[test]
fn a_form_cut_before_its_closing_boundary_is_answered_at_once() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let to = address(&server.url);
    let body = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/multipart/known/field-ends-in-crlf-at-eof"),
    )
    .unwrap();
    for path in [
        "/v1/models/cut/versions",
        "/v1/models/cut/versions/1/baseline",
    ] {
        let (method, body) = if path.ends_with("baseline") {
            // The same cut, on a field the baseline form takes.
            let text = String::from_utf8(body.clone()).unwrap();
            (
                "PUT",
                text.replace("name=\"version\"", "name=\"baseline_size\"")
                    .into_bytes(),
            )
        } else {
            ("POST", body.clone())
        };
        let mut stream = TcpStream::connect(to).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: maas\r\nAuthorization: Bearer {}\r\n\
             Content-Type: multipart/form-data; boundary=maas-fuzz-boundary\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            server.token,
            body.len()
        )
        .unwrap();
        stream.write_all(&body).unwrap();
        let started = Instant::now();
        let answer = read_to_close(&mut stream, Duration::from_secs(20));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path}: {answer}"
        );
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(
            answer.contains("invalid_request") && answer.contains("closing boundary"),
            "{path}: {answer}"
        );
    }
    assert_error(server.get("/v1/models/cut"), 404, "model_not_found");
}
