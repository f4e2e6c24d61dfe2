//! What happens around a login (#15): a password or role change, or a delete, ends the tokens
//! issued before it on every replica.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
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
