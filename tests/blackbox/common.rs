//! The harness: start the real `maas` binary on port 0 against a fresh SQLite folder or a fresh
//! PostgreSQL database, talk to it over real HTTP, kill it (politely or with SIGKILL), restart it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::{multipart, Client, Response};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_maas");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

/// A fixture file as a multipart file part, named after the file.
pub fn fixture_part(name: &str) -> multipart::Part {
    multipart::Part::bytes(std::fs::read(fixture(name)).unwrap()).file_name(name.to_owned())
}

/// Serve `body` over HTTP (200, or 404 when `found` is false) to the next few connections, on a
/// free port; the URL of `path` there.
pub fn serve_bytes(body: Vec<u8>, found: bool, path: &str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = if found { "200 OK" } else { "404 Not Found" };
            let payload: &[u8] = if found { &body } else { b"missing" };
            let _ = write!(
                stream,
                "HTTP/1.1 {head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                payload.len()
            );
            let _ = stream.write_all(payload);
        }
    });
    format!("http://{address}{path}")
}

/// Poll `check` every 50 ms until it holds; fail after 15 s naming `what`.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

pub const IRIS_CLASSES: &str = r#"["setosa","versicolor","virginica"]"#;
pub const IRIS_FEATURES: &str = r#"["sepal_length","sepal_width","petal_length","petal_width"]"#;

/// Where a test server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// A fresh store for one test: a temporary folder, plus a PostgreSQL database when asked.
pub struct Store {
    pub dir: tempfile::TempDir,
    pub database_url: Option<String>,
    admin_url: Option<String>,
    db_name: Option<String>,
}

static DB_COUNTER: AtomicU32 = AtomicU32::new(0);

fn postgres_admin_url() -> String {
    std::env::var("MAAS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use sqlx::Connection;
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(url))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

impl Store {
    /// `None` when the test should be skipped (PostgreSQL unreachable and not required).
    pub fn new(kind: StoreKind) -> Option<Store> {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            StoreKind::Sqlite => Some(Store {
                dir,
                database_url: None,
                admin_url: None,
                db_name: None,
            }),
            StoreKind::Postgres => {
                let admin = postgres_admin_url();
                let name = format!(
                    "maas_test_{}_{}",
                    std::process::id(),
                    DB_COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                if let Err(e) = run_sql(&admin, &format!("CREATE DATABASE {name}")) {
                    if std::env::var("MAAS_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                        panic!("PostgreSQL is required (MAAS_REQUIRE_POSTGRES=1) but {admin} failed: {e}");
                    }
                    eprintln!("NOTICE: skipping a PostgreSQL test: {admin} is not reachable ({e}); set MAAS_REQUIRE_POSTGRES=1 to fail instead");
                    return None;
                }
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
                Some(Store {
                    dir,
                    database_url: Some(format!("{base}/{name}")),
                    admin_url: Some(admin),
                    db_name: Some(name),
                })
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let (Some(admin), Some(name)) = (&self.admin_url, &self.db_name) {
            let _ = run_sql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// The bootstrap admin's password on every test server.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Log in over HTTP and return the bearer token.
pub fn login(client: &Client, url: &str, username: &str, password: &str) -> String {
    let r = client
        .post(format!("{url}/v1/auth/token"))
        .json(&serde_json::json!({"username": username, "password": password}))
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 200, "login as {username}: {body}");
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A client that sends `Authorization: Bearer <token>` on every request.
pub fn authorized_client(token: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Client::builder()
        .timeout(Duration::from_secs(60))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// A running `maas serve`.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    /// Sends the admin's bearer on every request.
    pub client: Client,
    /// Sends no credentials.
    pub anonymous: Client,
    /// The admin's bearer token.
    pub token: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: mpsc::Receiver<String>,
    pub lines: Vec<String>,
    /// `127.0.0.1:PORT` of the gRPC service, when it is on.
    pub grpc: Option<String>,
}

/// Start options beyond the store.
#[derive(Default, Clone)]
pub struct Options {
    pub envs: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Options {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }
}

impl Server {
    pub fn start(store: &Store) -> Server {
        Server::start_with(store, Options::default())
    }

    pub fn start_with(store: &Store, options: Options) -> Server {
        let mut args = vec![
            "serve".to_string(),
            "--bind".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            store.data_dir().display().to_string(),
        ];
        if let Some(url) = &store.database_url {
            args.push("--database-url".into());
            args.push(url.clone());
        }
        // gRPC on a free port too (its default, 8081, would be shared by every test server);
        // a test that sets its own keeps it.
        if !options.args.iter().any(|a| a == "--grpc-bind") {
            args.push("--grpc-bind".into());
            args.push("127.0.0.1:0".into());
        }
        args.extend(options.args);
        let mut envs = options.envs;
        envs.push(("MAAS__SERVING__SYNC_INTERVAL_MS".into(), "200".into()));
        // Tests deploy from fixtures on disk and from small servers on loopback, which the
        // defaults refuse; `url_policy.rs` tests the defaults themselves.
        for (key, value) in [
            ("MAAS__LIMITS__ALLOW_FILE_URLS", "[\"/\"]"),
            ("MAAS__LIMITS__ALLOW_URL_NETWORKS", "[\"127.0.0.0/8\"]"),
        ] {
            if !envs.iter().any(|(k, _)| k == key) {
                envs.push((key.into(), value.into()));
            }
        }
        if !envs.iter().any(|(k, _)| k == "MAAS_ADMIN_PASSWORD") {
            envs.push(("MAAS_ADMIN_PASSWORD".into(), ADMIN_PASSWORD.into()));
        }
        Server::spawn(args, envs)
    }

    fn spawn(args: Vec<String>, envs: Vec<(String, String)>) -> Server {
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        for (k, v) in &envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn maas");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let url = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    let found = line
                        .split("listening on ")
                        .nth(1)
                        .map(|u| u.trim().to_owned());
                    lines.push(line);
                    if let Some(url) = found {
                        break url;
                    }
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    panic!(
                        "maas did not start ({status:?}); its log:\n{}",
                        lines.join("\n")
                    );
                }
            }
        };
        let anonymous = Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let password = envs
            .iter()
            .find(|(k, _)| k == "MAAS_ADMIN_PASSWORD")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| ADMIN_PASSWORD.into());
        let token = login(&anonymous, &url, "admin", &password);
        let client = authorized_client(&token);
        let grpc = lines.iter().find_map(|l| {
            l.split("gRPC listening at ")
                .nth(1)
                .map(|a| a.trim().to_owned())
        });
        Server {
            child: Some(child),
            url,
            client,
            anonymous,
            token,
            args,
            envs,
            log: rx,
            lines,
            grpc,
        }
    }

    /// Everything the server logged so far.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.log.try_recv() {
            self.lines.push(line);
        }
        self.lines.join("\n")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Wait for the process to exit on its own (after a crash point), returning whether it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kill with SIGKILL and start again on the same store, flags and environment.
    pub fn restart(&mut self) -> Server {
        self.kill9();
        let envs = self
            .envs
            .iter()
            .filter(|(k, _)| k != "MAAS_CRASH_AT")
            .cloned()
            .collect();
        Server::spawn(self.args.clone(), envs)
    }

    pub fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap()
    }

    pub fn get_json(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().unwrap()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .unwrap()
    }

    pub fn post_empty(&self, path: &str) -> Response {
        self.client
            .post(format!("{}{path}", self.url))
            .send()
            .unwrap()
    }

    pub fn delete(&self, path: &str) -> Response {
        self.client
            .delete(format!("{}{path}", self.url))
            .send()
            .unwrap()
    }

    /// Deploy a fixture with extra text fields, returning the raw response.
    pub fn deploy_form(
        &self,
        model: &str,
        fixture_name: &str,
        fields: &[(&str, &str)],
    ) -> Response {
        let bytes = std::fs::read(fixture(fixture_name)).unwrap();
        let mut form = multipart::Form::new().part(
            "model",
            multipart::Part::bytes(bytes).file_name(fixture_name.to_owned()),
        );
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        self.client
            .post(format!("{}/v1/models/{model}/versions", self.url))
            .multipart(form)
            .send()
            .unwrap()
    }

    /// Deploy iris with its training data as the drift baseline (label column `species`), so
    /// that a request may ask for a drift check.
    pub fn deploy_iris_with_training_data(&self) {
        let form = multipart::Form::new()
            .part("model", fixture_part("iris_logreg.onnx"))
            .part("training_data", fixture_part("iris_train.csv"))
            .text("label_column", "species");
        let r = self.deploy_multipart("iris", form);
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    }

    /// Deploy with a form of the caller's making (file parts beside the model), raw response.
    pub fn deploy_multipart(&self, model: &str, form: multipart::Form) -> Response {
        self.client
            .post(format!("{}/v1/models/{model}/versions", self.url))
            .multipart(form)
            .send()
            .unwrap()
    }

    /// Deploy a fixture and expect 201; returns the version record.
    pub fn deploy(&self, model: &str, fixture_name: &str, fields: &[(&str, &str)]) -> Value {
        let r = self.deploy_form(model, fixture_name, fields);
        let status = r.status();
        let body: Value = r.json().unwrap();
        assert_eq!(status, 201, "deploy {model} from {fixture_name}: {body}");
        body
    }

    pub fn predict(&self, model: &str, version: Option<u64>, body: &Value) -> Response {
        let path = match version {
            Some(v) => format!("/v1/models/{model}/versions/{v}/predict"),
            None => format!("/v1/models/{model}/predict"),
        };
        self.post_json(&path, body)
    }

    pub fn predict_ok(&self, model: &str, version: Option<u64>, body: &Value) -> Value {
        let r = self.predict(model, version, body);
        let status = r.status();
        let body: Value = r.json().unwrap();
        assert_eq!(status, 200, "predict {model}: {body}");
        body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Assert an error response: status, code, and the one error body shape.
pub fn assert_error(response: Response, status: u16, code: &str) -> Value {
    let got = response.status().as_u16();
    let header_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().unwrap();
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("error body is not JSON: {text}"));
    assert_eq!(got, status, "status for {body}");
    assert_eq!(body["code"], code, "code in {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message in {body}"
    );
    let id = body["request_id"].as_str().expect("request_id");
    assert!(!id.is_empty());
    assert_eq!(
        Some(id.to_owned()),
        header_id,
        "request id header and body agree"
    );
    body
}

/// house_linreg's reference values, one per row, as v1 `predictions` show them.
pub fn house_predictions(reference: &Value) -> Value {
    reference["house_linreg"]["outputs"]["variable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].clone())
        .collect()
}

pub fn assert_close(got: &Value, want: &Value, tolerance: f64) {
    match (got, want) {
        (Value::Array(g), Value::Array(w)) => {
            assert_eq!(g.len(), w.len(), "{got} vs {want}");
            g.iter()
                .zip(w)
                .for_each(|(g, w)| assert_close(g, w, tolerance));
        }
        _ => {
            let (g, w) = (got.as_f64().unwrap(), want.as_f64().unwrap());
            assert!((g - w).abs() <= tolerance, "{g} vs {w}");
        }
    }
}

/// Generate `#[test]`s named `sqlite` and `postgres` inside a module named after the test.
#[macro_export]
macro_rules! on_both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn sqlite() {
                let store = $crate::common::Store::new($crate::common::StoreKind::Sqlite).unwrap();
                ($body)(&store);
            }
            #[test]
            fn postgres() {
                if let Some(store) = $crate::common::Store::new($crate::common::StoreKind::Postgres)
                {
                    ($body)(&store);
                }
            }
        }
    };
}
