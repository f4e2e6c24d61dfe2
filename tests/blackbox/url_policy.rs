//! URLs in deploy forms cannot reach what their sender could not: `file://` only below the roots
//! of `limits.allow_file_urls` (none by default), and http(s) only to public addresses and the
//! networks of `limits.allow_url_networks`, after every DNS answer and redirect. Every failure to
//! fetch says the same thing, so the answers cannot map a network or a disk.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::blocking::multipart;
use serde_json::Value;

use crate::common::*;

/// A loopback server answering every request with `head` (and `body`), counting connections.
fn serve(head: String, body: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 {head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (format!("http://{address}"), hits)
}

fn model_server() -> (String, Arc<AtomicUsize>) {
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    serve("200 OK".into(), bytes)
}

fn redirect_to(location: &str) -> String {
    serve(format!("302 Found\r\nLocation: {location}"), Vec::new()).0
}

fn deploy_url(server: &Server, field: &str, url: &str) -> reqwest::blocking::Response {
    let mut form = multipart::Form::new().text(field.to_owned(), url.to_owned());
    if field != "model_url" {
        form = form.part("model", fixture_part("iris_logreg.onnx"));
    }
    server.deploy_multipart("iris", form)
}

fn refused(server: &Server, field: &str, url: &str, code: &str) -> String {
    let body: Value = assert_error(deploy_url(server, field, url), 422, code);
    body["message"].as_str().unwrap().to_owned()
}

fn file_url(name: &str) -> String {
    format!("file://{}", fixture(name).canonicalize().unwrap().display())
}

#[test]
fn by_default_urls_reach_neither_the_servers_disk_nor_its_network() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__LIMITS__ALLOW_FILE_URLS", "[]")
            .env("MAAS__LIMITS__ALLOW_URL_NETWORKS", "[]"),
    );
    let message = refused(
        &server,
        "model_url",
        &file_url("iris_logreg.onnx"),
        "model_url_failed",
    );
    assert!(
        message.contains("turned off") && message.contains("limits.allow_file_urls"),
        "{message}"
    );

    let (model, hits) = model_server();
    let port = model.rsplit(':').next().unwrap();
    let mut messages = Vec::new();
    for url in [
        format!("{model}/iris.onnx"),
        format!("http://localhost:{port}/iris.onnx"),
        format!("http://[::ffff:127.0.0.1]:{port}/iris.onnx"),
        format!("http://[::1]:{port}/iris.onnx"),
        format!("http://0.0.0.0:{port}/iris.onnx"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/model.onnx".to_owned(),
        "https://192.168.0.1/model.onnx".to_owned(),
    ] {
        messages.push((
            url.clone(),
            refused(&server, "model_url", &url, "model_url_failed"),
        ));
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused address was connected to"
    );
    let first = &messages[0].1;
    assert!(first.contains("could not be fetched"), "{first}");
    for (url, message) in &messages {
        assert_eq!(message, first, "{url} got another message");
    }
    // The drift CSV URLs follow the same rules.
    let message = refused(
        &server,
        "baseline_url",
        &format!("{model}/baseline.csv"),
        "baseline_url_failed",
    );
    assert!(
        message.contains("`baseline_url` could not be fetched"),
        "{message}"
    );
    let log = server.log();
    assert!(
        log.contains("a URL field could not be fetched") && log.contains("not allowed"),
        "the reason is logged: {log}"
    );
    // Nothing was recorded by any refusal.
    assert_error(server.get("/v1/models/iris"), 404, "model_not_found");
}

#[test]
fn every_failure_to_fetch_gives_the_same_message_and_redirects_are_checked() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__LIMITS__ALLOW_FILE_URLS", "[]")
            .env("MAAS__LIMITS__ALLOW_URL_NETWORKS", "[\"127.0.0.1/32\"]"),
    );
    let (model, hits) = model_server();
    // Allowed: the network is configured, and a redirect within it is followed.
    let r = deploy_url(&server, "model_url", &format!("{model}/iris.onnx"));
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let r = deploy_url(
        &server,
        "model_url",
        &redirect_to(&format!("{model}/iris.onnx")),
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{address}/iris.onnx")
    };
    let missing = serve("404 Not Found".into(), b"missing".to_vec()).0;
    let mut messages = Vec::new();
    for url in [
        closed,
        format!("{missing}/iris.onnx"),
        // Outside the allowed /32, and a name that resolves there.
        format!(
            "http://127.0.0.2:{}/iris.onnx",
            model.rsplit(':').next().unwrap()
        ),
        "http://no-such-host.invalid/iris.onnx".to_owned(),
        // Redirects are checked like the first URL.
        redirect_to("http://169.254.169.254/latest/meta-data/"),
        redirect_to("http://[::1]:9/iris.onnx"),
        redirect_to("file:///etc/passwd"),
    ] {
        messages.push((
            url.clone(),
            refused(&server, "model_url", &url, "model_url_failed"),
        ));
    }
    let first = &messages[0].1;
    for (url, message) in &messages {
        assert_eq!(message, first, "{url} got another message");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "a refused URL reached the model server"
    );
    // The log keeps each reason for the operator.
    let log = server.log();
    assert!(log.contains("not allowed"), "{log}");
    assert!(log.contains("404"), "{log}");
    assert_eq!(
        server.get_json("/v1/models/iris")["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn file_urls_read_only_below_the_allowed_roots() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let root = tempfile::tempdir().unwrap();
    let root_path = root.path().canonicalize().unwrap();
    std::fs::copy(
        fixture("iris_logreg.onnx"),
        root_path.join("iris_logreg.onnx"),
    )
    .unwrap();
    // A link inside the root to a file outside it.
    std::os::unix::fs::symlink(
        fixture("iris_logreg_v2.onnx").canonicalize().unwrap(),
        root_path.join("outside.onnx"),
    )
    .unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env(
            "MAAS__LIMITS__ALLOW_FILE_URLS",
            &format!("[\"{}\"]", root_path.display()),
        ),
    );
    let inside = format!("file://{}/iris_logreg.onnx", root_path.display());
    let r = deploy_url(&server, "model_url", &inside);
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());

    let mut messages = Vec::new();
    for url in [
        file_url("iris_logreg_v2.onnx"),
        format!("file://{}/outside.onnx", root_path.display()),
        format!("file://{}/../etc/passwd", root_path.display()),
        format!("file://{}/no-such.onnx", root_path.display()),
        format!("file://{}", root_path.display()),
        "file:///etc/passwd".to_owned(),
    ] {
        messages.push((
            url.clone(),
            refused(&server, "model_url", &url, "model_url_failed"),
        ));
    }
    let first = &messages[0].1;
    for (url, message) in &messages {
        assert_eq!(message, first, "{url} got another message");
    }
}

#[test]
fn a_bad_url_policy_is_refused_at_start() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    for (key, value, expected) in [
        (
            "MAAS__LIMITS__ALLOW_URL_NETWORKS",
            "[\"ten-dot-something\"]",
            "limits.allow_url_networks: 'ten-dot-something' is not a network",
        ),
        (
            "MAAS__LIMITS__ALLOW_FILE_URLS",
            "[\"models\"]",
            "limits.allow_file_urls: 'models' is not an absolute path",
        ),
    ] {
        let out = std::process::Command::new(BIN)
            .args(["serve", "--bind", "127.0.0.1:0", "--grpc-bind", ""])
            .arg("--data-dir")
            .arg(store.data_dir())
            .env(key, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }
}
