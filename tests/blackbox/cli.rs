//! The `maas` command line: client verbs against a running server, and `maas serve`
//! configuration layers (TOML file, `MAAS__…` environment, flags).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// What one `maas` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "maas failed:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        self.ok();
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// Exit code 1 and one `error: …` message on stderr that mentions every one of `words`.
    fn fails_with(&self, words: &[&str]) {
        assert_eq!(
            self.code,
            Some(1),
            "expected failure:\nstdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.starts_with("error: "),
            "stderr: {}",
            self.stderr
        );
        for word in words {
            assert!(
                self.stderr.contains(word),
                "stderr does not mention {word:?}: {}",
                self.stderr
            );
        }
    }
}

fn maas_with(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Run {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("MAAS_URL")
        .env_remove("MAAS_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn maas");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn iris_rows() -> Value {
    expected()["iris_logreg"]["inputs"].clone()
}

fn iris_labels(model: &str) -> Value {
    let names = ["setosa", "versicolor", "virginica"];
    expected()[model]["outputs"]["label"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| json!(names[l.as_u64().unwrap() as usize]))
        .collect()
}

#[test]
fn client_verbs_deploy_list_predict_roll_back_and_undeploy() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let url = server.url.as_str();
    let auth = [("MAAS_TOKEN", server.token.as_str())];
    let maas = |args: &[&str]| maas_with(args, &auth, None);
    let work = tempfile::tempdir().unwrap();
    let logreg = fixture("iris_logreg.onnx");
    let logreg_v2 = fixture("iris_logreg_v2.onnx");

    let v1 = maas(&[
        "deploy",
        "iris",
        path_str(&logreg),
        "--class-names",
        IRIS_CLASSES,
        "--feature-names",
        IRIS_FEATURES,
        "--url",
        url,
    ])
    .json();
    assert_eq!(v1["name"], "iris");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["state"], "deployed");
    assert_eq!(
        v1["class_names"],
        serde_json::from_str::<Value>(IRIS_CLASSES).unwrap()
    );
    // MAAS_URL instead of --url; --append keeps version 1 serving beside it.
    let v2 = maas_with(
        &[
            "deploy",
            "iris",
            path_str(&logreg_v2),
            "--append",
            "--class-names",
            IRIS_CLASSES,
            "--backend",
            "tract",
            "--serving",
            r#"{"instances": 2}"#,
        ],
        &[("MAAS_URL", url), auth[0]],
        None,
    )
    .json();
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["default"], true);
    assert_eq!(v2["serving_options"]["backend"], "tract");
    assert_eq!(v2["serving"]["instances"], 2);

    let models = maas(&["models", "--url", url]);
    models.ok();
    let line = models
        .stdout
        .lines()
        .find(|l| l.starts_with("iris"))
        .unwrap_or_else(|| panic!("no iris in `maas models`: {}", models.stdout));
    assert!(line.contains("v1") && line.contains("v2"), "{line}");

    // Rows from a file, a chosen version.
    let rows_file = work.path().join("rows.json");
    std::fs::write(&rows_file, iris_rows().to_string()).unwrap();
    let answer = maas(&[
        "predict",
        "iris",
        path_str(&rows_file),
        "--version",
        "1",
        "--url",
        url,
    ])
    .json();
    assert_eq!(answer["version"], 1);
    assert_eq!(answer["predictions"], iris_labels("iris_logreg"));
    // A whole request object on stdin, the default version.
    let request = json!({"instances": expected()["iris_logreg_v2"]["inputs"]}).to_string();
    let answer = maas_with(
        &["predict", "iris", "-", "--url", url],
        &auth,
        Some(&request),
    )
    .json();
    assert_eq!(answer["version"], 2);
    assert_eq!(answer["predictions"], iris_labels("iris_logreg_v2"));
    // Records by feature name.
    let records: Vec<Value> = iris_rows()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"sepal_length": r[0], "sepal_width": r[1], "petal_length": r[2], "petal_width": r[3]}))
        .collect();
    let records_file = work.path().join("records.json");
    std::fs::write(&records_file, json!({ "records": records }).to_string()).unwrap();
    let answer = maas(&[
        "predict",
        "iris",
        path_str(&records_file),
        "--version",
        "1",
        "--url",
        url,
    ])
    .json();
    assert_eq!(answer["predictions"], iris_labels("iris_logreg"));

    // Roll back to 1: the only deployed version, and the default.
    maas(&["rollback", "iris", "1", "--url", url]).json();
    let model = server.get_json("/v1/models/iris");
    assert_eq!(model["default_version"], 1, "{model}");
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
    assert!(
        states.contains(&(1, "deployed".into())) && !states.contains(&(2, "deployed".into())),
        "{states:?}"
    );
    let answer = maas(&["predict", "iris", path_str(&rows_file), "--url", url]).json();
    assert_eq!(answer["version"], 1);

    // Without --append (the default), 5 replaces the deployed versions.
    let v5 = maas(&[
        "deploy",
        "iris",
        path_str(&logreg_v2),
        "--version",
        "5",
        "--url",
        url,
    ])
    .json();
    assert_eq!(v5["version"], 5);
    let model = server.get_json("/v1/models/iris");
    assert_eq!(model["default_version"], 5, "{model}");
    let deployed: Vec<u64> = model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "deployed")
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(deployed, [5]);

    // Undeploy the last one: predicting now fails, readably.
    maas(&["undeploy", "iris", "5", "--url", url]).json();
    maas(&["predict", "iris", path_str(&rows_file), "--url", url])
        .fails_with(&["409", "no_deployed_version"]);

    // The OpenAPI document.
    let doc = maas(&["openapi"]).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    assert!(doc["paths"]["/v1/models/{name}/predict"].is_object());
}

#[test]
fn deploy_log_predictions_flag_saves_the_models_predicts() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let url = server.url.as_str();
    let auth = [("MAAS_TOKEN", server.token.as_str())];
    let maas = |args: &[&str]| maas_with(args, &auth, None);
    let logreg = fixture("iris_logreg.onnx");
    let saved = |version: u64| {
        server.get_json(&format!("/v1/models/iris/versions/{version}/predictions"))["total"]
            .as_u64()
            .unwrap()
    };
    let row = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});

    let v1 = maas(&[
        "deploy",
        "iris",
        path_str(&logreg),
        "--log-predictions",
        "--url",
        url,
    ])
    .json();
    assert_eq!(v1["version"], 1);
    server.predict_ok("iris", None, &row);
    wait_for("the predict to be saved", || saved(1) == 1);
    // Left out, the model keeps its setting; `=false` turns it off.
    maas(&["deploy", "iris", path_str(&logreg), "--url", url]).json();
    server.predict_ok("iris", None, &row);
    wait_for("version 2's predict to be saved", || saved(2) == 1);
    maas(&[
        "deploy",
        "iris",
        path_str(&logreg),
        "--log-predictions=false",
        "--url",
        url,
    ])
    .json();
    server.predict_ok("iris", None, &row);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(saved(3), 0);
    let bad = maas(&[
        "deploy",
        "iris",
        path_str(&logreg),
        "--log-predictions=maybe",
        "--url",
        url,
    ]);
    assert_eq!(bad.code, Some(2), "{}", bad.stderr);
    assert!(bad.stderr.contains("--log-predictions"), "{}", bad.stderr);
}

#[test]
fn client_errors_exit_1_with_a_readable_message() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let url = server.url.as_str();
    let auth = [("MAAS_TOKEN", server.token.as_str())];
    let maas = |args: &[&str]| maas_with(args, &auth, None);
    let work = tempfile::tempdir().unwrap();
    let rows_file = work.path().join("rows.json");
    std::fs::write(&rows_file, iris_rows().to_string()).unwrap();

    // Unknown model.
    maas(&["predict", "ghost", path_str(&rows_file), "--url", url]).fails_with(&[
        "404",
        "model_not_found",
        "ghost",
    ]);
    maas(&["rollback", "ghost", "1", "--url", url]).fails_with(&["model_not_found", "ghost"]);
    // Files that are missing or not what they should be.
    let missing = work.path().join("no-such-model.onnx");
    maas(&["deploy", "iris", path_str(&missing), "--url", url]).fails_with(&["no-such-model.onnx"]);
    let missing_rows = work.path().join("no-such-rows.json");
    maas(&["predict", "iris", path_str(&missing_rows), "--url", url])
        .fails_with(&["no-such-rows.json"]);
    let not_json = work.path().join("rows.txt");
    std::fs::write(&not_json, "5.1 3.5 1.4 0.2").unwrap();
    maas(&["predict", "iris", path_str(&not_json), "--url", url])
        .fails_with(&["rows.txt", "not JSON"]);
    // A file the server refuses.
    maas(&["deploy", "iris", path_str(&rows_file), "--url", url])
        .fails_with(&["422", "invalid_model"]);
    maas(&[
        "deploy",
        "iris",
        path_str(&fixture("iris_logreg.onnx")),
        "--class-names",
        "[\"a\"]",
        "--url",
        url,
    ])
    .fails_with(&["invalid_argument", "class_names"]);
    // Nothing was stored by any of it.
    assert_eq!(server.get_json("/v1/models"), json!({"models": []}));
    let listed = maas(&["models", "--url", url]);
    listed.ok();
    assert!(!listed.stdout.contains("iris"), "{}", listed.stdout);

    // No server on that port.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed = format!("http://127.0.0.1:{port}");
    // No credentials: refused, readably.
    maas_with(&["models", "--url", url], &[], None).fails_with(&["401"]);
    maas(&["models", "--url", &closed]).fails_with(&["cannot reach maas", &closed]);
    maas_with(
        &["predict", "iris", path_str(&rows_file)],
        &[("MAAS_URL", &closed)],
        None,
    )
    .fails_with(&["cannot reach maas", &closed]);
}

/// A `maas serve` started by hand (the harness always passes `--bind`).
struct Serve {
    child: Child,
    url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `maas serve ARGS`; `Ok` once it is listening, `Err(log)` if it exits first.
fn serve(args: &[&str], envs: &[(&str, &str)]) -> Result<Serve, (Option<i32>, String)> {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(args)
        .env("MAAS__SERVER__GRPC_BIND", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn maas serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let url = line
                    .split("listening on ")
                    .nth(1)
                    .map(|u| u.trim().to_owned());
                log.push(line);
                if let Some(url) = url {
                    return Ok(Serve { child, url });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                return Err((status.code(), log.join("\n")));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "maas serve neither listened nor exited; its log:\n{}",
                log.join("\n")
            );
        }
    }
}

fn serve_fails(args: &[&str], envs: &[(&str, &str)], words: &[&str]) {
    match serve(args, envs) {
        Ok(s) => panic!("maas serve {args:?} {envs:?} started on {}", s.url),
        Err((code, log)) => {
            assert!(code.is_some_and(|c| c != 0), "exit {code:?}: {log}");
            for word in words {
                assert!(
                    log.contains(word),
                    "the message does not name {word:?}: {log}"
                );
            }
        }
    }
}

#[test]
fn serve_refuses_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = path_str(&data);
    let config = dir.path().join("maas.toml");
    let config_arg = path_str(&config);

    std::fs::write(
        &config,
        "[server]\nbind = \"127.0.0.1:0\"\nbind_adress = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    serve_fails(
        &["--config", config_arg, "--data-dir", data],
        &[],
        &["bind_adress"],
    );

    std::fs::write(&config, "[limitz]\nmax_predict_bytes = 100\n").unwrap();
    serve_fails(
        &[
            "--config",
            config_arg,
            "--data-dir",
            data,
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
        &["limitz"],
    );

    std::fs::write(&config, "[limits]\nmax_predict_bytes = \"lots\"\n").unwrap();
    serve_fails(
        &[
            "--config",
            config_arg,
            "--data-dir",
            data,
            "--bind",
            "127.0.0.1:0",
        ],
        &[],
        &["max_predict_bytes"],
    );

    // Unknown keys in the environment are refused as well.
    serve_fails(
        &["--data-dir", data, "--bind", "127.0.0.1:0"],
        &[("MAAS__SERVER__COLOUR", "blue")],
        &["colour"],
    );
    serve_fails(
        &["--data-dir", data],
        &[("MAAS__SERVER__BIND", "not-an-address")],
        &["server.bind", "not-an-address"],
    );
    // A trusted proxy that is not an address or a network is named.
    serve_fails(
        &["--data-dir", data, "--bind", "127.0.0.1:0"],
        &[("MAAS__AUTH__TRUSTED_PROXIES", "10.0.0.0/8, proxy.local")],
        &["TRUSTED_PROXIES", "'proxy.local' is not an IP address"],
    );
    let missing = dir.path().join("missing.toml");
    serve_fails(
        &["--config", path_str(&missing), "--data-dir", data],
        &[],
        &["missing.toml"],
    );
}

#[test]
fn serve_takes_its_address_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve(
        &["--data-dir", path_str(&data)],
        &[("MAAS__SERVER__BIND", "127.0.0.1:0")],
    )
    .unwrap_or_else(|(code, log)| panic!("maas serve exited {code:?}: {log}"));
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    assert!(!server.url.ends_with(":0"), "{}", server.url);
    let health: Value = reqwest::blocking::get(format!("{}/health/live", server.url))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "live");
    assert!(data.join("artifacts").is_dir(), "the data folder was used");
}

#[test]
fn serve_honours_the_config_file_and_flags_override_it() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("maas.toml");
    // 192.0.2.1 (TEST-NET-1) is on no interface here: had the file's bind won, it could not
    // listen. The harness passes `--bind 127.0.0.1:0`, which must win.
    std::fs::write(
        &config,
        "[server]\nbind = \"192.0.2.1:9\"\n\n[limits]\nmax_predict_bytes = 100\n",
    )
    .unwrap();
    let options = Options {
        args: vec!["--config".into(), path_str(&config).into()],
        ..Options::default()
    };
    let server = Server::start_with(&store, options.clone());
    assert!(
        server.url.starts_with("http://127.0.0.1:"),
        "{}",
        server.url
    );
    server.deploy("iris", "iris_logreg.onnx", &[]);

    let small = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    assert!(small.to_string().len() < 100);
    server.predict_ok("iris", None, &small);
    let bigger = json!({"instances": vec![[5.1, 3.5, 1.4, 0.2]; 8]});
    assert!(bigger.to_string().len() > 100);
    assert_error(
        server.predict("iris", None, &bigger),
        413,
        "payload_too_large",
    );
    drop(server);

    // The environment overrides the file.
    let server = Server::start_with(
        &store,
        options.env("MAAS__LIMITS__MAX_PREDICT_BYTES", "100000"),
    );
    let answer = server.predict_ok("iris", None, &bigger);
    assert_eq!(answer["predictions"].as_array().unwrap().len(), 8);
}

#[test]
fn token_reads_stdin_and_client_verbs_trust_a_private_ca() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let dir = store.data_dir();
    let Some(options) = crate::auth::tls_options(dir) else {
        eprintln!("NOTICE: openssl not found; skipping the private CA test");
        return;
    };
    let ca = dir.join("ca.pem");
    let server = crate::auth::start_tls(&store, options, path_str(&ca));
    let url = server.url.as_str();
    let password = format!("{ADMIN_PASSWORD}\n");

    // Not a terminal: the password is stdin's first line.
    let run = maas_with(
        &["token", "--url", url, "--cacert", path_str(&ca)],
        &[],
        Some(password.as_str()),
    );
    let token = run.ok().stdout.trim().to_owned();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    // The CA from the environment, and the token works for the other verbs.
    let listed = maas_with(
        &["models", "--url", url],
        &[
            ("MAAS_CACERT", path_str(&ca)),
            ("MAAS_TOKEN", token.as_str()),
        ],
        None,
    )
    .ok()
    .stdout
    .clone();
    assert_eq!(listed.trim(), "no models");

    // Without the CA the server's certificate is not trusted.
    maas_with(&["token", "--url", url], &[], Some(password.as_str()))
        .fails_with(&["cannot reach maas at", url]);
    // A file that is not a PEM certificate, a file that is not there: refused before the
    // password is read.
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    maas_with(
        &["token", "--url", url, "--cacert", path_str(&not_pem)],
        &[],
        None,
    )
    .fails_with(&["--cacert", "holds no PEM certificate"]);
    maas_with(
        &["token", "--url", url, "--cacert", "/nonexistent/ca.pem"],
        &[],
        None,
    )
    .fails_with(&["--cacert: cannot read /nonexistent/ca.pem"]);
    // A wrong password, and none at all.
    maas_with(
        &["token", "--url", url, "--cacert", path_str(&ca)],
        &[],
        Some("wrong password\n"),
    )
    .fails_with(&["401"]);
    maas_with(
        &["token", "--url", url, "--cacert", path_str(&ca)],
        &[],
        Some(""),
    )
    .fails_with(&["no password"]);
}

/// Every `…_at` value in a JSON document, with where it is.
fn times(value: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let place = format!("{at}.{k}");
                if k.ends_with("_at") {
                    out.push((place.clone(), v.clone()));
                }
                times(v, &place, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                times(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn job_submit_wait_tells_why_a_task_failed_and_show_has_one_time_format() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let auth = [
        ("MAAS_URL", server.url.as_str()),
        ("MAAS_TOKEN", server.token.as_str()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("failing.yaml");
    std::fs::write(
        &file,
        r#"name: failing
tasks:
  - name: fine
    kind: script
    script: echo fine
  - name: boom
    kind: script
    depends_on: [fine]
    retries: {max_attempts: 2, backoff_secs: 0}
    script: |
      for i in $(seq 1 30); do echo "noise line $i" >&2; done
      echo "the real cause: input.csv is missing" >&2
      exit 3
"#,
    )
    .unwrap();
    let run = maas_with(&["job", "submit", path_str(&file), "--wait"], &auth, None);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let id = run.stdout.trim().to_owned();
    assert_eq!(id.len(), 32, "{}", run.stdout);
    let job = server.get_json(&format!("/v1/jobs/{id}"));
    let boom = &job["tasks"][1];
    let error = boom["error"].as_str().unwrap();
    for needle in [
        format!("task 'boom' failed (attempt 2 of 2): {error}"),
        "--- the last 20 lines of its stderr ---".to_owned(),
        "noise line 30\nthe real cause: input.csv is missing".to_owned(),
        format!("error: job {id} is failed"),
    ] {
        assert!(
            run.stderr.contains(&needle),
            "no {needle:?} in {}",
            run.stderr
        );
    }
    // The tail, not the whole log; the task that finished is not mentioned.
    assert!(!run.stderr.contains("noise line 5\n"), "{}", run.stderr);
    assert!(!run.stderr.contains("task 'fine'"), "{}", run.stderr);

    // `job show`: every time, the attempts' too, is RFC 3339 in UTC.
    let shown = maas_with(&["job", "show", &id], &auth, None).json();
    let mut found = Vec::new();
    times(&shown, "", &mut found);
    let attempts: Vec<&(String, Value)> = found
        .iter()
        .filter(|(p, _)| p.contains("attempts"))
        .collect();
    assert_eq!(
        attempts.len(),
        6,
        "three attempts (one of fine, two of boom), each started and finished: {found:?}"
    );
    for (place, value) in &found {
        if value.is_null() {
            continue;
        }
        let text = value
            .as_str()
            .unwrap_or_else(|| panic!("{place} is {value}"));
        assert!(
            text.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            "{place} is {text}"
        );
    }
}

/// A PostgreSQL that refuses the connection is named at once, with its address and the reason,
/// not as the pool's "timed out" after its 10 s of retries.
#[test]
fn an_unreachable_postgres_is_named_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, so the connection is refused.
    maas_with(
        &[
            "user",
            "list",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--database-url",
            "postgres://maas@127.0.0.1:1/test",
        ],
        &[],
        None,
    )
    .fails_with(&["cannot connect to PostgreSQL at 127.0.0.1:1: connection refused"]);
}
