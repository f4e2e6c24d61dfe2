//! What happens around a login (#15): a password or role change, or a delete, ends the tokens
//! issued before it on every replica; failed logins back off without ever locking a user out,
//! counted per address as a trusted proxy reports it; the bootstrap admin's password is never
//! lost and never silently replaced.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

/// `GET /v1/auth/me` with `token`.
fn me(server: &Server, token: &str) -> Response {
    server
        .anonymous
        .get(format!("{}/v1/auth/me", server.url))
        .bearer_auth(token)
        .send()
        .unwrap()
}

fn assert_accepted(server: &Server, token: &str, what: &str) -> Value {
    let r = me(server, token);
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 200, "{what}: {body}");
    body
}

/// The token is refused with a message that says to log in again.
fn assert_ended(r: Response) {
    let body = assert_error(r, 401, "unauthorized");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("log in again"), "{message}");
}

/// On a replica other than the one that made the change, the token may live on for as long as
/// the replica trusts its cached copy of the user (`auth.cache_ttl_ms`, 1 s by default), and no
/// longer.
fn assert_ended_within_the_cache_ttl(server: &Server, token: &str, since: Instant) {
    loop {
        let r = me(server, token);
        if r.status() == 401 {
            assert_ended(r);
            return;
        }
        assert_eq!(r.status(), 200);
        assert!(
            since.elapsed() < Duration::from_millis(1500),
            "{} still accepts a token {:?} after the change",
            server.url,
            since.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

on_both_stores!(
    a_password_or_role_change_or_a_delete_ends_older_tokens_on_every_replica,
    |store: &Store| {
        let a = Server::start(store);
        let b = Server::start(store);
        let r = a.post_json(
            "/v1/users",
            &json!({"username": "carol", "password": "carol-password-1", "role": "deployer"}),
        );
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let first = login(&a.anonymous, &a.url, "carol", "carol-password-1");
        assert_accepted(&a, &first, "a fresh token on a");
        assert_accepted(&b, &first, "a fresh token on b");

        // A new password, set on a: the old token ends at once on a, within the TTL on b.
        let r = a
            .client
            .patch(format!("{}/v1/users/carol", a.url))
            .json(&json!({"password": "carol-password-2"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        let changed = Instant::now();
        assert_ended(me(&a, &first));
        assert_ended_within_the_cache_ttl(&b, &first, changed);
        let second = login(&b.anonymous, &b.url, "carol", "carol-password-2");
        assert_accepted(&a, &second, "a token issued after the change");
        assert_accepted(&b, &second, "a token issued after the change");

        // A new role, set on b.
        let r = b
            .client
            .patch(format!("{}/v1/users/carol", b.url))
            .json(&json!({"role": "viewer"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        let changed = Instant::now();
        assert_ended(me(&b, &second));
        assert_ended_within_the_cache_ttl(&a, &second, changed);
        let third = login(&a.anonymous, &a.url, "carol", "carol-password-2");
        assert_eq!(
            assert_accepted(&b, &third, "after the role change")["role"],
            "viewer"
        );

        // Deleted, then created again under the same name with the same password: the old
        // user's token never works for the new one.
        assert_eq!(a.delete("/v1/users/carol").status(), 204);
        let r = a.post_json(
            "/v1/users",
            &json!({"username": "carol", "password": "carol-password-2", "role": "viewer"}),
        );
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        let changed = Instant::now();
        assert_ended(me(&a, &third));
        assert_ended_within_the_cache_ttl(&b, &third, changed);
        let fourth = login(&b.anonymous, &b.url, "carol", "carol-password-2");
        assert_accepted(&a, &fourth, "the new carol's token");

        // Other users' tokens are untouched.
        assert_accepted(&a, &a.token, "the admin's token on a");
        assert_accepted(&b, &b.token, "the admin's token on b");
    }
);

/// `maas user …` on the store of a running server.
fn user_cli(store: &Store, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(BIN)
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(store.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "maas user {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn maas_user_passwd_ends_older_tokens_on_a_running_server() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    user_cli(
        &store,
        &["add", "dave", "--role", "predictor", "--password-stdin"],
        "dave-password-1\n",
    );
    let old = login(&server.anonymous, &server.url, "dave", "dave-password-1");
    assert_accepted(&server, &old, "dave's first token");

    let out = user_cli(
        &store,
        &["passwd", "dave", "--password-stdin"],
        "dave-password-2\n",
    );
    assert!(out.contains("password of dave changed"), "{out}");
    // The CLI writes the store directly: the server sees it once its cached copy is stale.
    assert_ended_within_the_cache_ttl(&server, &old, Instant::now());
    assert_error(
        server
            .anonymous
            .post(format!("{}/v1/auth/token", server.url))
            .json(&json!({"username": "dave", "password": "dave-password-1"}))
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    let new = login(&server.anonymous, &server.url, "dave", "dave-password-2");
    assert_accepted(&server, &new, "a token with the new password");

    // Removed and added again with the same password: still a different user.
    user_cli(&store, &["remove", "dave"], "");
    user_cli(
        &store,
        &["add", "dave", "--role", "predictor", "--password-stdin"],
        "dave-password-2\n",
    );
    assert_ended_within_the_cache_ttl(&server, &new, Instant::now());
    login(&server.anonymous, &server.url, "dave", "dave-password-2");
}

/// A login as if from `client`: the test server trusts 127.0.0.1 as a proxy, so
/// `X-Forwarded-For` names the address the attempt counts under.
fn attempt_from(server: &Server, client: &str, username: &str, password: &str) -> Response {
    server
        .anonymous
        .post(format!("{}/v1/auth/token", server.url))
        .header("X-Forwarded-For", client)
        .json(&json!({"username": username, "password": password}))
        .send()
        .unwrap()
}

fn retry_after(r: &Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A 429, with its `Retry-After` and the message naming the reason.
fn assert_throttled(r: Response, reason: &str) -> u64 {
    let wait = retry_after(&r);
    let body = assert_error(r, 429, "too_many_requests");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(reason), "{message}");
    assert!(
        message.contains(&format!("try again in {wait} s")),
        "{message}"
    );
    wait
}

const ATTACKER: &str = "203.0.113.66";
const OFFICE: &str = "192.0.2.10";

#[test]
fn failed_logins_back_off_and_never_lock_the_user_out_from_another_address() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__AUTH__LOGIN_MAX_FAILURES", "3")
            .env("MAAS__AUTH__LOGIN_MAX_BACKOFF_SECS", "30")
            .env("MAAS__AUTH__TRUSTED_PROXIES", "127.0.0.1"),
    );
    for guess in ["guess-1", "guess-2", "guess-3"] {
        assert_error(
            attempt_from(&server, ATTACKER, "admin", guess),
            401,
            "unauthorized",
        );
    }
    // Back-off: 1 s after the third failure; even the right password waits, unchecked.
    let wait = assert_throttled(
        attempt_from(&server, ATTACKER, "admin", ADMIN_PASSWORD),
        "for this user name",
    );
    assert_eq!(wait, 1);
    std::thread::sleep(Duration::from_millis(1100));
    assert_error(
        attempt_from(&server, ATTACKER, "admin", "guess-4"),
        401,
        "unauthorized",
    );
    // ... then 2 s: each further failure doubles the wait.
    assert_eq!(
        assert_throttled(
            attempt_from(&server, ATTACKER, "admin", "guess-5"),
            "for this user name"
        ),
        2
    );
    // A flood of retries changes nothing and is answered at once.
    for _ in 0..20 {
        assert_throttled(
            attempt_from(&server, ATTACKER, "admin", "guess"),
            "for this user name",
        );
    }

    // The real admin, from another address, logs in at once.
    let r = attempt_from(&server, OFFICE, "admin", ADMIN_PASSWORD);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // From a third address, a typo costs a short wait (the name has failed 4 times in all), and
    // then the right password works: slowed down, never locked out.
    let laptop = "198.51.100.5";
    assert_error(
        attempt_from(&server, laptop, "admin", "typo-password"),
        401,
        "unauthorized",
    );
    let wait = assert_throttled(
        attempt_from(&server, laptop, "admin", ADMIN_PASSWORD),
        "for this user name",
    );
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    std::thread::sleep(Duration::from_secs(wait) + Duration::from_millis(100));
    let r = attempt_from(&server, laptop, "admin", ADMIN_PASSWORD);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // The attacker's address may still try other names: its failures were for `admin`.
    assert_error(
        attempt_from(&server, ATTACKER, "someone", "guess"),
        401,
        "unauthorized",
    );

    // The audit trail records the address the trusted proxy reported.
    let page = server.get_json("/v1/audit?kind=token_issued");
    let clients: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["client"].as_str().unwrap())
        .collect();
    assert!(
        clients.contains(&OFFICE) && clients.contains(&laptop),
        "{page}"
    );
    // Tokens issued before still work: only logins are limited. No password reaches the log.
    assert_eq!(server.get("/v1/models").status(), 200);
    let log = server.log();
    for secret in ["guess-1", "guess-4", "typo-password", ADMIN_PASSWORD] {
        assert!(!log.contains(secret), "the log shows a password");
    }
}

#[test]
fn an_address_trying_many_names_backs_off_alone() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default()
            .env("MAAS__AUTH__LOGIN_ADDRESS_MAX_FAILURES", "4")
            .env(
                "MAAS__AUTH__TRUSTED_PROXIES",
                "[\"10.0.0.0/8\", \"127.0.0.1\"]",
            ),
    );
    for name in ["ann", "ben", "cat"] {
        assert_error(
            attempt_from(&server, ATTACKER, name, "password-1"),
            401,
            "unauthorized",
        );
    }
    // A success from the address does not reset it: one valid account cannot clear a flood.
    let r = attempt_from(&server, ATTACKER, "admin", ADMIN_PASSWORD);
    assert_eq!(r.status(), 200);
    assert_error(
        attempt_from(&server, ATTACKER, "dan", "password-1"),
        401,
        "unauthorized",
    );
    assert_throttled(
        attempt_from(&server, ATTACKER, "eve", "password-1"),
        "from this address",
    );
    // Proxies listed by network: the right-most address that is not a proxy is the client.
    assert_throttled(
        attempt_from(
            &server,
            &format!("{ATTACKER}, 10.1.2.3"),
            "fay",
            "password-1",
        ),
        "from this address",
    );
    // Other addresses are not slowed by it.
    assert_error(
        attempt_from(&server, OFFICE, "eve", "password-1"),
        401,
        "unauthorized",
    );
}

#[test]
fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__AUTH__LOGIN_MAX_FAILURES", "2"),
    );
    for guess in ["guess-1", "guess-2"] {
        assert_error(
            attempt_from(&server, ATTACKER, "admin", guess),
            401,
            "unauthorized",
        );
    }
    // Both "addresses" are really 127.0.0.1, which no trusted proxy vouches for: a client
    // cannot escape its back-off by naming another address.
    assert_throttled(
        attempt_from(&server, OFFICE, "admin", ADMIN_PASSWORD),
        "for this user name",
    );
    let page = server.get_json("/v1/audit?kind=token_issued");
    for event in page["events"].as_array().unwrap() {
        assert_eq!(event["client"], "127.0.0.1", "{event}");
    }
}

/// A `maas serve` started by hand, without the harness's `MAAS_ADMIN_PASSWORD`: `Ok` with its
/// URL and log so far once it listens, `Err` with its log if it exits first.
struct Started {
    child: Child,
    url: String,
    log: Vec<String>,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_by_hand(
    store: &Store,
    bind: &str,
    admin_password: Option<&str>,
) -> Result<Started, String> {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--bind", bind, "--data-dir"])
        .arg(store.data_dir())
        .env("RUST_LOG", "info")
        .env("MAAS__SERVER__GRPC_BIND", "127.0.0.1:0")
        .env_remove("MAAS_ADMIN_PASSWORD")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = admin_password {
        command.env("MAAS_ADMIN_PASSWORD", password);
    }
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut log = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let url = line
                    .split("listening on ")
                    .nth(1)
                    .map(|u| u.trim().to_owned());
                log.push(line);
                if let Some(url) = url {
                    return Ok(Started { child, url, log });
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                assert!(!status.success(), "maas serve exited 0: {}", log.join("\n"));
                return Err(log.join("\n"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("maas serve neither listened nor exited: {}", log.join("\n"));
            }
        }
    }
}

fn printed_password(log: &[String]) -> Option<String> {
    log.iter().find_map(|line| {
        line.split("with password ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    })
}

#[test]
fn a_first_start_that_fails_does_not_lose_the_generated_password() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    // Another listener holds the port: the first start fails after opening the store and loading
    // everything, at the last step that can fail.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = taken.local_addr().unwrap().to_string();
    let log = match start_by_hand(&store, &bind, None) {
        Ok(started) => panic!("started on a port in use: {}", started.url),
        Err(log) => log,
    };
    assert!(log.contains("cannot listen on"), "{log}");
    drop(taken);

    // The next start prints a password, and it is the admin's.
    let started = start_by_hand(&store, "127.0.0.1:0", None).unwrap();
    let printed = printed_password(&started.log);
    let password = printed.unwrap_or_else(|| {
        panic!(
            "the start after a failed first start shows no admin password:\n{}",
            started.log.join("\n")
        )
    });
    login(&Client::new(), &started.url, "admin", &password);
    if let Some(earlier) = log.split("with password ").nth(1) {
        // Had the failed start shown one, it would have to be this same one.
        assert!(earlier.starts_with(&password), "{log}");
    }
}

#[test]
fn maas_admin_password_after_the_first_start_is_ignored_and_the_log_says_so() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    drop(Server::start(&store));
    let started = start_by_hand(&store, "127.0.0.1:0", Some("a-newer-admin-password")).unwrap();
    let log = started.log.join("\n");
    assert!(
        log.contains("admin exists; MAAS_ADMIN_PASSWORD ignored; change it with maas user passwd"),
        "{log}"
    );
    assert!(!log.contains("a-newer-admin-password"), "{log}");
    let client = Client::new();
    let r = client
        .post(format!("{}/v1/auth/token", started.url))
        .json(&json!({"username": "admin", "password": "a-newer-admin-password"}))
        .send()
        .unwrap();
    assert_error(r, 401, "unauthorized");
    login(&client, &started.url, "admin", ADMIN_PASSWORD);
}
