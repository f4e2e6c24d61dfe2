//! Issue #13's escapes, tried as a hostile deployer would: a job must never hand its submitter
//! the server's secrets (the JWT secret in the data folder, the admin password in the server's
//! environment), and a viewer must never read another user's job outputs.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::*;

/// A secret the server holds in its environment, which no task may see.
const SERVER_SECRET: &str = "server-env-secret-5f1c";

fn start(store: &Store, envs: &[(&str, &str)]) -> Server {
    let mut options = Options::default().env("MAAS_TEST_SERVER_SECRET", SERVER_SECRET);
    for (k, v) in envs {
        options = options.env(k, v);
    }
    Server::start_with(store, options)
}

fn user(server: &Server, name: &str, role: &str) -> Client {
    let password = format!("{name}-password-1");
    let r = server.post_json(
        "/v1/users",
        &json!({"username": name, "password": password, "role": role}),
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    authorized_client(&login(&server.anonymous, &server.url, name, &password))
}

fn submit_as(client: &Client, server: &Server, workflow: &str) -> String {
    let r = client
        .post(format!("{}/v1/jobs", server.url))
        .json(&json!({"workflow": workflow}))
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 202, "submit: {body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Wait for the job to end; returns it as `client` sees it.
fn ended(client: &Client, server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job: Value = client
            .get(format!("{}/v1/jobs/{id}", server.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        let state = job["state"].as_str().unwrap_or("").to_owned();
        if ["finished", "failed", "canceled", "killed"].contains(&state.as_str()) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {job:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get_text(client: &Client, url: String) -> (u16, String) {
    let r = client.get(url).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

/// Everything a job's owner can read about it: the job, its logs, its results and artifacts.
fn everything(client: &Client, server: &Server, id: &str, job: &Value) -> String {
    let mut all = job.to_string();
    for task in job["tasks"].as_array().unwrap() {
        let name = task["name"].as_str().unwrap();
        for stream in ["stdout", "stderr"] {
            let url = format!(
                "{}/v1/jobs/{id}/tasks/{name}/logs?stream={stream}",
                server.url
            );
            all.push_str(&get_text(client, url).1);
        }
    }
    let (_, results) = get_text(client, format!("{}/v1/jobs/{id}/results", server.url));
    let results: Value = serde_json::from_str(&results).unwrap();
    all.push_str(&results.to_string());
    for task in results["tasks"].as_array().unwrap() {
        for artifact in task["artifacts"].as_array().unwrap() {
            let url = format!(
                "{}/v1/jobs/{id}/tasks/{}/artifacts/{}",
                server.url,
                task["name"].as_str().unwrap(),
                artifact["path"].as_str().unwrap()
            );
            all.push_str(&get_text(client, url).1);
        }
    }
    all
}

fn jwt_secret(store: &Store) -> String {
    let secret = std::fs::read_to_string(store.data_dir().join("jwt-secret")).unwrap();
    assert!(secret.trim().len() >= 16);
    secret.trim().to_owned()
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn builtin_tasks_cannot_read_the_data_folder() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    // No script tasks at all: the built-in kinds are the only way in.
    let server = start(&store, &[("MAAS__SCHEDULER__SCRIPTS", "false")]);
    let secret = jwt_secret(&store);
    let data = store.data_dir().canonicalize().unwrap();
    let deployer = user(&server, "mallory", "deployer");
    let attempts = [
        format!("kind: load_csv, params: {{path: \"{}/jwt-secret\", label: x}}", data.display()),
        // From the attempt's folder (data/jobs/<job>/<task>/attempt-1) up to the data folder.
        "kind: load_csv, params: {path: \"../../../../jwt-secret\", label: x}".to_owned(),
        format!("kind: load_csv, params: {{path: \"{}/maas.db\", label: x}}", data.display()),
        format!(
            "kind: deploy, params: {{model_name: stolen, model: \"{}/jwt-secret\"}}",
            data.display()
        ),
        format!(
            "kind: evaluate, params: {{model: \"{0}/jwt-secret\", test: \"{0}/jwt-secret\", label: x}}",
            data.display()
        ),
    ];
    for attempt in attempts {
        let workflow = format!("name: steal\ntasks:\n  - {{name: t, {attempt}}}\n");
        let id = submit_as(&deployer, &server, &workflow);
        let job = ended(&deployer, &server, &id);
        assert_eq!(job["state"], "failed", "{attempt}: {job:#}");
        let error = job["tasks"][0]["error"].as_str().unwrap();
        assert!(error.contains("scheduler.data_roots"), "{attempt}: {error}");
        let all = everything(&deployer, &server, &id, &job);
        assert!(
            !all.contains(&secret),
            "{attempt} leaked the JWT secret: {all}"
        );
    }
    // Task logs are the server's alone on disk, like the secret and the database.
    let log = std::fs::read_dir(data.join("jobs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
        .join("t/attempt-1/stdout.log");
    assert_eq!(mode(&log), 0o600, "{}", log.display());
    assert_eq!(mode(&data.join("maas.db")), 0o600);
    assert_eq!(mode(&data.join("jwt-secret")), 0o600);
}

/// The script a hostile deployer runs: everything it can find goes into artifacts.
const SNOOP: &str = r#"
name: snoop
tasks:
  - name: snoop
    kind: script
    script: |
      env > "$MAAS_ARTIFACTS/env.txt"
      cat ../../../../jwt-secret > "$MAAS_ARTIFACTS/relative.txt" 2>&1 || true
      cat "$DATA_DIR/jwt-secret" > "$MAAS_ARTIFACTS/absolute.txt" 2>&1 || true
      cat "$DATA_DIR/maas.db" > "$MAAS_ARTIFACTS/db.txt" 2>&1 || true
      for f in /proc/[0-9]*/environ; do cat "$f"; echo; done 2>/dev/null | tr '\0' '\n' > "$MAAS_ARTIFACTS/environs.txt"
      id > "$MAAS_ARTIFACTS/id.txt"
      echo "SNOOPED=yes" >> "$MAAS_EXPORTS"
"#;

/// What [`SNOOP`] found, as its owner reads it.
struct Snooped {
    /// Everything: job, logs, results, artifacts.
    all: String,
    /// The JWT secret it was after.
    secret: String,
    /// `id` in the task.
    id: String,
    /// `env` in the task.
    env: String,
}

/// Run [`SNOOP`] under `sandbox`.
fn snoop(sandbox: &str) -> Snooped {
    snoop_with(sandbox, &[])
}

/// Run [`SNOOP`] under `sandbox`, with more server settings.
fn snoop_with(sandbox: &str, envs: &[(&str, &str)]) -> Snooped {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut envs = envs.to_vec();
    envs.push(("MAAS__SCHEDULER__SANDBOX", sandbox));
    let server = start(&store, &envs);
    let secret = jwt_secret(&store);
    let data = store.data_dir().canonicalize().unwrap();
    let deployer = user(&server, "mallory", "deployer");
    let workflow = SNOOP.replace("$DATA_DIR", &data.display().to_string());
    let id = submit_as(&deployer, &server, &workflow);
    let job = ended(&deployer, &server, &id);
    assert_eq!(job["state"], "finished", "{sandbox}: {job:#}");
    let all = everything(&deployer, &server, &id, &job);
    assert!(all.contains("SNOOPED"), "{all}");
    // Confined, a script reads no other process's environment either (unconfined, it can read
    // the server's /proc/PID/environ: that is what `none` means).
    if sandbox != "none" {
        assert!(!all.contains(SERVER_SECRET), "{sandbox}: {all}");
        assert!(!all.contains(ADMIN_PASSWORD), "{sandbox}: {all}");
    }
    let artifact = |name: &str| {
        get_text(
            &deployer,
            format!("{}/v1/jobs/{id}/tasks/snoop/artifacts/{name}", server.url),
        )
        .1
    };
    Snooped {
        id: artifact("id.txt"),
        env: artifact("env.txt"),
        all,
        secret,
    }
}

fn sandbox_required(what: &str) -> bool {
    let required = std::env::var("MAAS_REQUIRE_BWRAP").is_ok_and(|v| v == "1");
    let present = std::process::Command::new("bwrap")
        .args(["--ro-bind", "/", "/", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            !required,
            "MAAS_REQUIRE_BWRAP=1 but bubblewrap does not work here (apt-get install bubblewrap)"
        );
        eprintln!("NOTICE: skipping {what}: bubblewrap does not work here; set MAAS_REQUIRE_BWRAP=1 to fail instead");
    }
    present
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// What a confined script must not get, whatever the mode; `denied` is how the data folder
/// refused it.
fn assert_confined(sandbox: &str, denied: &str) {
    let Snooped {
        all, secret, id, ..
    } = snoop(sandbox);
    assert!(
        !all.contains(&secret),
        "{sandbox}: the JWT secret leaked: {all}"
    );
    assert!(
        !all.contains(ADMIN_PASSWORD),
        "{sandbox}: the admin password leaked: {all}"
    );
    assert!(all.contains(denied), "{sandbox}: {all}");
    if is_root() {
        assert!(id.contains("uid=65534"), "{sandbox}: runs as nobody: {id}");
    }
}

#[test]
fn scripts_in_bubblewrap_see_neither_the_data_folder_nor_the_server() {
    if sandbox_required("the bubblewrap escape test") {
        // The data folder is not there at all.
        assert_confined("bwrap", "No such file");
    }
}

#[test]
fn scripts_as_the_task_user_cannot_read_the_data_folder() {
    if !is_root() {
        eprintln!("NOTICE: skipping the task-user escape test: it needs a server running as root");
        return;
    }
    assert_confined("user", "Permission denied");
}

#[test]
fn unconfined_scripts_still_start_with_a_clean_environment() {
    let env = snoop("none").env;
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    let allowed = [
        "PATH", "LANG", "LC_ALL", "TZ", "HOME", "PWD", "SHLVL", "OLDPWD", "_",
    ];
    for name in &names {
        assert!(
            allowed.contains(name) || name.starts_with("MAAS_") && !name.contains("ADMIN"),
            "the task sees the server's {name}: {env}"
        );
    }
    assert!(names.contains(&"MAAS_EXPORTS"), "{env}");
    assert!(
        !env.contains(SERVER_SECRET) && !env.contains(ADMIN_PASSWORD),
        "{env}"
    );
}

#[test]
fn only_owners_and_admins_read_job_outputs() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = start(&store, &[("MAAS__SCHEDULER__SANDBOX", "none")]);
    let owner = user(&server, "olive", "deployer");
    let other = user(&server, "dan", "deployer");
    let viewer = user(&server, "vera", "viewer");
    let workflow = r#"
name: private
tasks:
  - name: work
    kind: script
    script: |
      echo "private stdout line"
      echo "TOKEN_OUT=private-value" >> "$MAAS_EXPORTS"
      echo data > "$MAAS_ARTIFACTS/out.txt"
      echo "private failure detail" >&2
      exit 3
"#;
    let id = submit_as(&owner, &server, workflow);
    let job = ended(&owner, &server, &id);
    assert_eq!(job["state"], "failed");
    assert!(job["tasks"][0]["error"].is_string(), "{job:#}");
    let reason = job["reason"].clone();
    for reader in [&owner, &server.client] {
        let (status, log) = get_text(
            reader,
            format!("{}/v1/jobs/{id}/tasks/work/logs", server.url),
        );
        assert_eq!(status, 200);
        assert!(log.contains("private stdout line"));
        let (status, _) = get_text(reader, format!("{}/v1/jobs/{id}/results", server.url));
        assert_eq!(status, 200);
        let job: Value = reader
            .get(format!("{}/v1/jobs/{id}", server.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(job["reason"], reason);
    }
    for reader in [&viewer, &other] {
        for path in [
            format!("/v1/jobs/{id}/tasks/work/logs"),
            format!("/v1/jobs/{id}/tasks/work/logs?stream=stderr"),
            format!("/v1/jobs/{id}/results"),
            format!("/v1/jobs/{id}/tasks/work/artifacts/out.txt"),
        ] {
            let r = reader.get(format!("{}{path}", server.url)).send().unwrap();
            let body = assert_error(r, 403, "forbidden");
            assert!(
                body["message"].as_str().unwrap().contains("olive"),
                "{body}"
            );
        }
        // The job itself: state and timings, not its errors.
        let job: Value = reader
            .get(format!("{}/v1/jobs/{id}", server.url))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(job["state"], "failed");
        let text = job.to_string();
        assert!(job["reason"].is_null(), "{job:#}");
        assert!(job["tasks"][0]["error"].is_null(), "{job:#}");
        assert!(!text.contains("exited with code 3"), "{text}");
        let list = reader
            .get(format!("{}/v1/jobs", server.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(!list.contains("exited with code 3"), "{list}");
        let csv = reader
            .get(format!("{}/v1/jobs?format=csv", server.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(csv.contains(&id), "{csv}");
        assert!(
            !csv.contains("private-value") && !csv.contains("exited with code 3"),
            "{csv}"
        );
    }
}

#[test]
fn model_url_credentials_are_redacted() {
    use std::io::{Read, Write};
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let body = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    let url = format!(
        "http://alice:hunter2-pass@{address}/iris.onnx?version=3&access_token=tok-abc-123&X-Amz-Signature=sig-xyz"
    );
    let form = reqwest::blocking::multipart::Form::new().text("model_url", url);
    let r = server.deploy_multipart("iris", form);
    let status = r.status();
    let deployed: Value = r.json().unwrap();
    assert_eq!(status, 201, "{deployed}");
    let viewer = user(&server, "vic", "viewer");
    let mut seen = deployed.to_string();
    for path in [
        "/v1/models/iris/versions/1".to_owned(),
        "/v1/models/iris".to_owned(),
        "/v1/audit?model=iris".to_owned(),
    ] {
        for client in [&server.client, &viewer] {
            let (status, text) = get_text(client, format!("{}{path}", server.url));
            if status == 200 {
                seen.push_str(&text);
            }
        }
    }
    assert!(seen.contains("REDACTED"), "{seen}");
    for secret in ["hunter2-pass", "tok-abc-123", "sig-xyz", "alice"] {
        assert!(!seen.contains(secret), "{secret} is shown: {seen}");
    }
    assert!(seen.contains("version=3"), "{seen}");
}

/// Task folders under a private folder (a 0700 home, /root) that the task user cannot pass
/// through: `auto` keeps bubblewrap, as root without capabilities; an explicit `user` refuses to
/// start and says which folder is in the way.
#[test]
fn a_private_task_folder_keeps_the_data_folder_hidden() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() || !sandbox_required("the private task folder test") {
        return;
    }
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let work = private.path().join("jobs");
    let work_text = work.display().to_string();

    let store = Store::new(StoreKind::Sqlite).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(store.data_dir())
        .env("MAAS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("MAAS__SCHEDULER__SANDBOX", "user")
        .env("MAAS__SCHEDULER__WORK_DIR", &work_text)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("scheduler.work_dir")
            && stderr.contains(&private.path().display().to_string()),
        "{stderr}"
    );

    // auto: bubblewrap, as root without capabilities; the data folder is still hidden.
    let Snooped { all, secret, .. } =
        snoop_with("auto", &[("MAAS__SCHEDULER__WORK_DIR", &work_text)]);
    assert!(!all.contains(&secret), "the JWT secret leaked: {all}");
    assert!(
        !all.contains(ADMIN_PASSWORD),
        "the admin password leaked: {all}"
    );
    assert!(all.contains("No such file"), "{all}");
}
