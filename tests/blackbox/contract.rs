//! The contract: schemathesis generates requests for every operation of the live server's
//! `/openapi.json` and checks that no answer is a server error and that every status, content
//! type and body is one the document declares. Three passes: everything but DELETE with the
//! admin's token, the same with no token, and DELETE on its own (it removes what the others use).

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// The checks the contract is held to.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance";

/// The `st` command of schemathesis: `MAAS_SCHEMATHESIS`, else `st` on the PATH; `None` (with a
/// notice) when missing, a failure when `MAAS_REQUIRE_SCHEMATHESIS=1`.
fn schemathesis_or_skip() -> Option<String> {
    let candidates = std::env::var("MAAS_SCHEMATHESIS")
        .into_iter()
        .chain(["st".to_string()]);
    for st in candidates {
        let ok = Command::new(&st)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(st);
        }
    }
    if std::env::var("MAAS_REQUIRE_SCHEMATHESIS").is_ok_and(|v| v == "1") {
        panic!("schemathesis is required (MAAS_REQUIRE_SCHEMATHESIS=1) but `st` cannot be run");
    }
    eprintln!(
        "NOTICE: schemathesis not installed; skipping (pip install -r tests/contract/requirements.txt, \
         then MAAS_SCHEMATHESIS=path/to/st)"
    );
    None
}

/// Run one pass; fails the test with schemathesis's report unless every check held on every
/// selected operation.
fn pass(st: &str, config: &Path, server: &Server, name: &str, extra: &[&str]) {
    let mut command = Command::new(st);
    // schemathesis keeps a cache folder where it runs: the store's folder, not the checkout.
    command
        .current_dir(config.parent().unwrap())
        .arg("--config-file")
        .arg(config)
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["--checks", CHECKS])
        .args(["--max-examples", "25", "--seed", "42", "--workers", "1"])
        .args(["--no-color"])
        .args(extra)
        .env("NO_COLOR", "1");
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis pass '{name}' found failures:\n{text}"
    );
    // Every selected operation was exercised.
    let count = |label: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .map(|rest| rest.trim().split('/').next().unwrap_or("").to_owned())
    };
    let selected = count("Selected:").expect("schemathesis printed no summary");
    let tested = count("Tested:").expect("schemathesis printed no summary");
    assert_eq!(
        selected, tested,
        "pass '{name}' left operations untested:\n{text}"
    );
    assert_ne!(
        selected, "0",
        "pass '{name}' selected no operation:\n{text}"
    );
}

#[test]
fn every_operation_keeps_the_documented_contract() {
    let Some(st) = schemathesis_or_skip() else {
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    server.deploy("iris", "iris_logreg.onnx", &[]);
    // Without a token schemathesis would try to sign up through POST /v1/users on its own.
    let config = store.data_dir().join("schemathesis.toml");
    std::fs::write(&config, "[auth]\nauto-signup = false\n").unwrap();
    // An API key rather than the login's token: the generated requests may change the admin's
    // password, which ends the tokens issued before it.
    let key = server
        .post_json(
            "/v1/api-keys",
            &serde_json::json!({"username": "admin", "role": "admin", "description": "schemathesis"}),
        )
        .json::<serde_json::Value>()
        .unwrap()["key"]
        .as_str()
        .expect("an API key")
        .to_owned();
    let bearer = format!("Authorization: Bearer {key}");

    pass(
        &st,
        &config,
        &server,
        "token",
        &["--header", &bearer, "--exclude-method", "DELETE"],
    );
    pass(
        &st,
        &config,
        &server,
        "no token",
        &["--exclude-method", "DELETE"],
    );
    pass(
        &st,
        &config,
        &server,
        "delete",
        &["--header", &bearer, "--include-method", "DELETE"],
    );
}
