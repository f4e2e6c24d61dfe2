//! Tokens, users, roles and API keys, attacked through the real HTTP API.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn bearer(
    server: &Server,
    token: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::blocking::RequestBuilder {
    server
        .anonymous
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(token)
}

pub(crate) fn add_user(server: &Server, name: &str, role: &str) -> String {
    let password = format!("{name}-password-1");
    let r = server.post_json(
        "/v1/users",
        &json!({"username": name, "password": password, "role": role}),
    );
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    login(&server.anonymous, &server.url, name, &password)
}

fn claims(username: &str, role: &str, exp_offset: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": username, "role": role, "iss": "maas", "aud": "maas", "iat": now, "exp": now + exp_offset})
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &key,
    )
    .unwrap()
}

fn server_secret(store: &Store) -> Vec<u8> {
    hex::decode(
        std::fs::read_to_string(store.data_dir().join("jwt-secret"))
            .unwrap()
            .trim(),
    )
    .unwrap()
}

#[test]
fn every_protected_route_needs_a_valid_bearer() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let row = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});

    let anonymous = |method: reqwest::Method, path: &str| {
        server
            .anonymous
            .request(method, format!("{}{path}", server.url))
            .json(&row)
            .send()
            .unwrap()
    };
    for (method, path) in [
        (reqwest::Method::GET, "/v1/models"),
        (reqwest::Method::GET, "/v1/models/iris"),
        (reqwest::Method::GET, "/v1/models/iris/versions/1"),
        (reqwest::Method::POST, "/v1/models/iris/predict"),
        (reqwest::Method::POST, "/v1/models/iris/versions/1/undeploy"),
        (reqwest::Method::DELETE, "/v1/models/iris"),
        (reqwest::Method::GET, "/v1/users"),
        (reqwest::Method::GET, "/v1/api-keys"),
        (reqwest::Method::GET, "/v1/auth/me"),
    ] {
        let r = anonymous(method.clone(), path);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"maas\"",
            "{method} {path}"
        );
        assert_error(r, 401, "unauthorized");
    }
    // Open routes stay open.
    for path in ["/health/live", "/health/ready", "/openapi.json", "/metrics"] {
        assert_eq!(
            server
                .anonymous
                .get(format!("{}{path}", server.url))
                .send()
                .unwrap()
                .status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        server
            .anonymous
            .get(format!("{}/docs/", server.url))
            .send()
            .unwrap()
            .status(),
        200
    );

    // Malformed, garbage, badly signed, expired, alg none, tampered: all 401.
    let secret = server_secret(&store);
    // A token names the credentials generation of its user; a forged one must too.
    let issued: Value =
        serde_json::from_slice(&B64.decode(server.token.split('.').nth(1).unwrap()).unwrap())
            .unwrap();
    let generation = issued["gen"].as_i64().expect("a login token carries `gen`");
    let good = hs256(&secret, &{
        let mut c = claims("admin", "admin", 600);
        c["gen"] = generation.into();
        c
    });
    let with_nbf = |offset: i64| {
        hs256(&secret, &{
            let mut c = claims("admin", "admin", 600);
            c["gen"] = generation.into();
            c["nbf"] = (chrono::Utc::now().timestamp() + offset).into();
            c
        })
    };
    for token in [&good, &with_nbf(-60)] {
        assert_eq!(
            bearer(&server, token, reqwest::Method::GET, "/v1/models")
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    let parts: Vec<&str> = good.split('.').collect();
    let mut tampered_claims: Value =
        serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    tampered_claims["sub"] = "someone-else".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64.encode(tampered_claims.to_string()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let attacks = [
        ("garbage", "not-a-token".to_string()),
        (
            "wrong signature",
            hs256(
                b"0123456789abcdef0123456789abcdef",
                &claims("admin", "admin", 600),
            ),
        ),
        ("expired", hs256(&secret, &claims("admin", "admin", -600))),
        ("not valid before ten minutes from now", with_nbf(600)),
        (
            "no exp",
            hs256(
                &secret,
                &json!({"sub": "admin", "role": "admin", "iss": "maas", "aud": "maas"}),
            ),
        ),
        (
            "wrong issuer",
            hs256(&secret, &{
                let mut c = claims("admin", "admin", 600);
                c["iss"] = "evil".into();
                c
            }),
        ),
        (
            "wrong audience",
            hs256(&secret, &{
                let mut c = claims("admin", "admin", 600);
                c["aud"] = "other".into();
                c
            }),
        ),
        ("alg none", none),
        ("tampered claims", tampered),
        (
            "another credentials generation",
            hs256(&secret, &{
                let mut c = claims("admin", "admin", 600);
                c["gen"] = (generation - 1).into();
                c
            }),
        ),
        (
            "no credentials generation",
            hs256(&secret, &claims("admin", "admin", 600)),
        ),
        (
            "unknown user",
            hs256(&secret, &claims("ghost", "admin", 600)),
        ),
        ("fake api key", "maas_0123456789abcdef_deadbeef".to_string()),
    ];
    for (what, token) in attacks {
        let r = bearer(&server, &token, reqwest::Method::GET, "/v1/models")
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert_error(r, 401, "unauthorized");
    }
    let r = server
        .anonymous
        .get(format!("{}/v1/models", server.url))
        .header("Authorization", format!("Basic {good}"))
        .send()
        .unwrap();
    assert_error(r, 401, "unauthorized");
}

#[test]
fn roles_limit_what_each_user_may_do() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    let row = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
    let viewer = add_user(&server, "vera", "viewer");
    let predictor = add_user(&server, "paul", "predictor");
    let deployer = add_user(&server, "dana", "deployer");
    let me: Value = bearer(&server, &predictor, reqwest::Method::GET, "/v1/auth/me")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        me,
        json!({"username": "paul", "role": "predictor", "credential": "token", "models": null})
    );

    let status = |token: &str, method: reqwest::Method, path: &str, body: Option<&Value>| {
        let mut request = bearer(&server, token, method, path);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().unwrap().status().as_u16()
    };
    use reqwest::Method as M;
    assert_eq!(status(&viewer, M::GET, "/v1/models/iris", None), 200);
    assert_eq!(
        status(&viewer, M::POST, "/v1/models/iris/predict", Some(&row)),
        403
    );
    assert_eq!(
        status(&predictor, M::POST, "/v1/models/iris/predict", Some(&row)),
        200
    );
    assert_eq!(
        status(
            &predictor,
            M::POST,
            "/v1/models/iris/versions/1/undeploy",
            None
        ),
        403
    );
    let bytes = std::fs::read(fixture("iris_logreg.onnx")).unwrap();
    let form = || {
        reqwest::blocking::multipart::Form::new().part(
            "model",
            reqwest::blocking::multipart::Part::bytes(bytes.clone()),
        )
    };
    let r = bearer(&server, &predictor, M::POST, "/v1/models/iris/versions")
        .multipart(form())
        .send()
        .unwrap();
    assert_error(r, 403, "forbidden");
    let r = bearer(&server, &deployer, M::POST, "/v1/models/iris/versions")
        .multipart(form())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        status(
            &deployer,
            M::POST,
            "/v1/models/iris/versions/2/undeploy",
            None
        ),
        200
    );
    assert_eq!(status(&deployer, M::GET, "/v1/users", None), 403);
    assert_eq!(
        status(
            &deployer,
            M::POST,
            "/v1/api-keys",
            Some(&json!({"username": "dana", "role": "deployer"}))
        ),
        403
    );
    // The refused deploy stored nothing.
    assert_eq!(
        server.get_json("/v1/models/iris")["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A role change ends the tokens issued before it (#15); a new login holds the new role.
    let r = server
        .client
        .patch(format!("{}/v1/users/paul", server.url))
        .json(&json!({"role": "viewer"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        status(&predictor, M::POST, "/v1/models/iris/predict", Some(&row)),
        401
    );
    let demoted = login(&server.anonymous, &server.url, "paul", "paul-password-1");
    assert_eq!(
        status(&demoted, M::POST, "/v1/models/iris/predict", Some(&row)),
        403
    );

    // A deleted user's token stops working at once.
    assert_eq!(server.delete("/v1/users/dana").status(), 204);
    assert_error(
        bearer(&server, &deployer, M::GET, "/v1/models")
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    // The last admin cannot be removed or demoted.
    assert_error(server.delete("/v1/users/admin"), 422, "invalid_argument");
    let r = server
        .client
        .patch(format!("{}/v1/users/admin", server.url))
        .json(&json!({"role": "viewer"}))
        .send()
        .unwrap();
    assert_error(r, 422, "invalid_argument");
    // Bad user requests.
    let r = server.post_json(
        "/v1/users",
        &json!({"username": "vera", "password": "another-password", "role": "viewer"}),
    );
    assert_error(r, 409, "user_exists");
    let r = server.post_json(
        "/v1/users",
        &json!({"username": "short", "password": "short", "role": "viewer"}),
    );
    assert_error(r, 422, "invalid_argument");
    let r = server.post_json(
        "/v1/users",
        &json!({"username": "x", "password": "long-enough", "role": "root"}),
    );
    assert_error(r, 400, "invalid_request");
    assert_error(server.delete("/v1/users/nobody"), 404, "user_not_found");
}

on_both_stores!(
    api_keys_are_scoped_shown_once_and_revoked_everywhere,
    |store: &Store| {
        let a = Server::start(store);
        let b = Server::start(store);
        a.deploy("iris", "iris_logreg.onnx", &[]);
        a.deploy("house", "house_linreg.onnx", &[]);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while b.get_json("/v1/models/house/versions/1")["ready"] != true {
            assert!(
                std::time::Instant::now() < deadline,
                "replica b never loaded the models"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let iris_row = json!({"instances": [[5.1, 3.5, 1.4, 0.2]]});
        let house_row = json!({"instances": [[120, 3, 15]]});
        add_user(&a, "client", "predictor");

        let r = a.post_json(
        "/v1/api-keys",
        &json!({"username": "client", "role": "predictor", "models": ["iris*"], "description": "the iris app"}),
    );
        assert_eq!(r.status(), 201);
        let created: Value = r.json().unwrap();
        let key = created["key"].as_str().unwrap().to_owned();
        assert!(key.starts_with("maas_"));
        let id = created["id"].as_str().unwrap().to_owned();
        assert_eq!(created["models"], json!(["iris*"]));

        let with_key = |server: &Server, method: reqwest::Method, path: &str, body: &Value| {
            bearer(server, &key, method, path)
                .json(body)
                .send()
                .unwrap()
        };
        use reqwest::Method as M;
        assert_eq!(
            with_key(&a, M::POST, "/v1/models/iris/predict", &iris_row).status(),
            200
        );
        let on_b = with_key(&b, M::POST, "/v1/models/iris/predict", &iris_row);
        assert_eq!(on_b.status(), 200, "{}", on_b.text().unwrap());
        assert_error(
            with_key(&a, M::POST, "/v1/models/house/predict", &house_row),
            403,
            "forbidden",
        );
        assert_error(
            with_key(
                &a,
                M::POST,
                "/v1/models/iris/versions/1/undeploy",
                &json!({}),
            ),
            403,
            "forbidden",
        );
        let listed: Value = with_key(&a, M::GET, "/v1/models", &json!({}))
            .json()
            .unwrap();
        let names: Vec<&str> = listed["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["iris"], "a scoped key sees only its models");
        let index: Value = with_key(&a, M::POST, "/v2/repository/index", &json!({}))
            .json()
            .unwrap();
        let names: Vec<&str> = index
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["iris"],
            "the V2 index shows a scoped key its models only"
        );

        // Stored only as a hash: the listing never shows the secret.
        let keys = a.get("/v1/api-keys").text().unwrap();
        assert!(keys.contains(&id));
        let secret = key.rsplit('_').next().unwrap();
        assert!(!keys.contains(secret));

        // A key may not outrank its user.
        let r = a.post_json(
            "/v1/api-keys",
            &json!({"username": "client", "role": "admin"}),
        );
        assert_error(r, 422, "invalid_argument");
        let r = a.post_json(
            "/v1/api-keys",
            &json!({"username": "nobody", "role": "viewer"}),
        );
        assert_error(r, 404, "user_not_found");

        // Revoked on a: refused at once on a, and on b once b's cached copy of the key is older
        // than auth.cache_ttl_ms (1 s by default).
        assert_eq!(a.delete(&format!("/v1/api-keys/{id}")).status(), 204);
        let revoked_at = std::time::Instant::now();
        assert_error(
            with_key(&a, M::POST, "/v1/models/iris/predict", &iris_row),
            401,
            "unauthorized",
        );
        loop {
            let r = with_key(&b, M::POST, "/v1/models/iris/predict", &iris_row);
            if r.status() == 401 {
                assert_error(r, 401, "unauthorized");
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_millis(1500),
                "replica b still accepts a key revoked {:?} ago",
                revoked_at.elapsed()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_error(
            a.delete("/v1/api-keys/0000000000000000"),
            404,
            "key_not_found",
        );

        // An expiring key stops working when it expires.
        let r = a.post_json(
            "/v1/api-keys",
            &json!({"username": "client", "role": "viewer", "expires_in_secs": 1}),
        );
        let short: Value = r.json().unwrap();
        let short_key = short["key"].as_str().unwrap();
        assert_eq!(
            bearer(&a, short_key, M::GET, "/v1/models")
                .send()
                .unwrap()
                .status(),
            200
        );
        std::thread::sleep(Duration::from_millis(1200));
        assert_error(
            bearer(&a, short_key, M::GET, "/v1/models").send().unwrap(),
            401,
            "unauthorized",
        );

        // A tampered secret with a real id is refused.
        let r = a.post_json(
            "/v1/api-keys",
            &json!({"username": "client", "role": "viewer"}),
        );
        let real: Value = r.json().unwrap();
        let real_key = real["key"].as_str().unwrap();
        let forged = format!("{}0", &real_key[..real_key.len() - 1]);
        let forged = if forged == real_key {
            format!("{}1", &real_key[..real_key.len() - 1])
        } else {
            forged
        };
        assert_error(
            bearer(&a, &forged, M::GET, "/v1/models").send().unwrap(),
            401,
            "unauthorized",
        );
    }
);

#[test]
fn a_random_admin_password_is_printed_once_and_secrets_never_logged() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    // Start without MAAS_ADMIN_PASSWORD, by hand, to read the generated password.
    let output = std::process::Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(store.data_dir())
        .env_remove("MAAS_ADMIN_PASSWORD")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = output;
    let stderr = child.stderr.take().unwrap();
    let mut reader = std::io::BufReader::new(stderr);
    let (mut password, mut url) = (None, None);
    let mut line = String::new();
    while url.is_none() {
        line.clear();
        if std::io::BufRead::read_line(&mut reader, &mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.split("with password ").nth(1) {
            password = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            url = Some(rest.trim().to_owned());
        }
    }
    let (password, url) = (
        password.expect("the admin password is printed"),
        url.unwrap(),
    );
    assert_eq!(password.len(), 24);
    let client = Client::new();
    let token = login(&client, &url, "admin", &password);
    assert!(!token.is_empty());
    child.kill().unwrap();
    child.wait().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(store.data_dir().join("jwt-secret"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // Started again, the admin exists: no new password is printed, and the old one still works.
    let mut again = Server::start_with(
        &store,
        Options::default().env("MAAS_ADMIN_PASSWORD", &password),
    );
    let r = again.post_json(
        "/v1/api-keys",
        &json!({"username": "admin", "role": "viewer"}),
    );
    let key: Value = r.json().unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    assert_eq!(
        bearer(&again, &key, reqwest::Method::GET, "/v1/models")
            .send()
            .unwrap()
            .status(),
        200
    );
    let log = again.log();
    assert!(
        !log.contains("with password"),
        "printed only on first start"
    );
    assert!(!log.contains(&password));
    assert!(!log.contains(&again.token));
    assert!(!log.contains(&key));
}

#[test]
fn metrics_can_be_protected() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env("MAAS__AUTH__PROTECT_METRICS", "true"),
    );
    assert_error(
        server
            .anonymous
            .get(format!("{}/metrics", server.url))
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    assert_eq!(server.get("/metrics").status(), 200);
}

fn openssl(args: &[&str], dir: &Path) -> bool {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) if out.status.success() => true,
        Ok(out) => panic!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => false,
    }
}

#[test]
fn rs256_tokens_work_and_hs256_forged_with_the_public_key_is_refused() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let dir = store.data_dir();
    if !openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
        dir,
    ) {
        eprintln!("NOTICE: openssl not found; skipping the RS256 test");
        return;
    }
    openssl(
        &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"],
        dir,
    );
    let options = Options::default()
        .env("MAAS__AUTH__JWT_ALGORITHM", "RS256")
        .env(
            "MAAS__AUTH__JWT_PRIVATE_KEY",
            &dir.join("rsa.pem").display().to_string(),
        )
        .env(
            "MAAS__AUTH__JWT_PUBLIC_KEY",
            &dir.join("rsa.pub.pem").display().to_string(),
        );
    let server = Server::start_with(&store, options);
    let header: Value =
        serde_json::from_slice(&B64.decode(server.token.split('.').next().unwrap()).unwrap())
            .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(server.get("/v1/models").status(), 200);
    // The classic confusion attack: HS256 keyed with the public key.
    let public = std::fs::read(dir.join("rsa.pub.pem")).unwrap();
    let forged = hs256(&public, &claims("admin", "admin", 600));
    assert_error(
        bearer(&server, &forged, reqwest::Method::GET, "/v1/models")
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
}

#[test]
fn https_with_rustls() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let dir = store.data_dir();
    let Some(options) = tls_options(dir) else {
        eprintln!("NOTICE: openssl not found; skipping the TLS test");
        return;
    };
    // The harness logs in over the URL the server prints, which is https here; trust the test
    // certificate for that.
    let server = start_tls(&store, options, &dir.join("ca.pem").display().to_string());
    assert!(server.url.starts_with("https://"));
    let plain = server.url.replacen("https://", "http://", 1);
    assert!(Client::new()
        .get(format!("{plain}/health/live"))
        .send()
        .map(|r| r.status().as_u16() != 200)
        .unwrap_or(true));
}

/// A small CA (`dir/ca.pem`) and a certificate for localhost it signs (webpki refuses a CA
/// used as the server's); the `serve` options that use them. None without openssl.
pub(crate) fn tls_options(dir: &Path) -> Option<Options> {
    let steps: [&[&str]; 4] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=maas test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
        &["x509", "-in", "cert.pem", "-noout"],
    ];
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for step in steps {
        if !openssl(step, dir) {
            return None;
        }
    }
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    Some(Options {
        args: vec!["--tls-cert".into(), cert, "--tls-key".into(), key],
        ..Options::default()
    })
}

/// `maas serve` over HTTPS, checked with a client that trusts `ca`; its URL names localhost.
pub(crate) fn start_tls(store: &Store, options: Options, ca: &str) -> TlsServer {
    let pem = std::fs::read(ca).unwrap();
    let ca = reqwest::Certificate::from_pem(&pem).unwrap();
    let client = Client::builder().add_root_certificate(ca).build().unwrap();
    let mut args = vec![
        "serve".to_string(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
    ];
    args.push(store.data_dir().display().to_string());
    args.extend(options.args);
    let mut child = Command::new(BIN)
        .args(&args)
        .env("MAAS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("MAAS__SERVER__GRPC_BIND", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut grpc = None;
    let url = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap() > 0,
            "maas exited"
        );
        if let Some(rest) = line.split("gRPC listening at ").nth(1) {
            grpc = Some(rest.trim().replace("127.0.0.1", "localhost"));
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().replace("127.0.0.1", "localhost");
        }
    };
    let r = client.get(format!("{url}/health/live")).send().unwrap();
    assert_eq!(r.status(), 200);
    let token = login(&client, &url, "admin", ADMIN_PASSWORD);
    let r = client
        .get(format!("{url}/v1/models"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    TlsServer { child, url, grpc }
}

pub(crate) struct TlsServer {
    child: std::process::Child,
    pub(crate) url: String,
    /// `localhost:PORT` of the gRPC service, which shares the certificate.
    pub(crate) grpc: Option<String>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn user_cli_manages_the_store_directly() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let data = store.data_dir().display().to_string();
    // The server's first start creates the admin; the CLI then works beside it.
    let server = Server::start(&store);
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--data-dir", &data])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(
        &[
            "user",
            "add",
            "ops",
            "--role",
            "deployer",
            "--password-stdin",
        ],
        Some("ops-password-1\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("added ops (deployer)"));
    let (ok, out, _) = run(&["user", "add", "bot", "--role", "predictor"], None);
    assert!(ok);
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    let (ok, _, err) = run(&["user", "add", "ops", "--role", "viewer"], None);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["user", "add", "x", "--role", "root"], None);
    assert!(!ok && err.contains("unknown role"), "{err}");

    let (ok, out, _) = run(&["user", "list"], None);
    assert!(ok);
    assert!(
        out.contains("ops\tdeployer")
            && out.contains("bot\tpredictor")
            && out.contains("admin\tadmin"),
        "{out}"
    );
    login(&server.anonymous, &server.url, "bot", &generated);
    let token = login(&server.anonymous, &server.url, "ops", "ops-password-1");

    let (ok, _, _) = run(
        &["user", "passwd", "ops", "--password-stdin"],
        Some("new-ops-password\n"),
    );
    assert!(ok);
    login(&server.anonymous, &server.url, "ops", "new-ops-password");
    let (ok, _, _) = run(&["user", "remove", "ops"], None);
    assert!(ok);
    assert_error(
        bearer(&server, &token, reqwest::Method::GET, "/v1/models")
            .send()
            .unwrap(),
        401,
        "unauthorized",
    );
    let (ok, _, err) = run(&["user", "remove", "admin"], None);
    assert!(!ok && err.contains("last admin"), "{err}");

    // `maas token` logs in for the client verbs.
    let out = Command::new(BIN)
        .args(["token", "--username", "bot", "--url", &server.url])
        .env("MAAS_PASSWORD", &generated)
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = Command::new(BIN)
        .args(["models", "--url", &server.url])
        .env("MAAS_TOKEN", &token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
