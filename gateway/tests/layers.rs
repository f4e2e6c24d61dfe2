//! The gateway's layers import downward only (ARCHITECTURE.md): the store knows nothing above it,
//! the services know neither HTTP nor the wiring. Checked on the source, so a stray `use` fails
//! here rather than in review.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((
                path.display().to_string(),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

fn forbidden_in(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(layer);
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut found = Vec::new();
    for (path, text) in files {
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for f in forbidden {
                if code.contains(f) {
                    found.push(format!("{path}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn the_store_imports_nothing_above_it() {
    let found = forbidden_in(
        "store",
        &[
            "crate::services",
            "crate::http",
            "crate::server",
            "crate::settings",
            "crate::cli",
            "actix_web",
        ],
    );
    assert!(
        found.is_empty(),
        "the store reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_services_know_neither_http_nor_the_wiring() {
    let found = forbidden_in(
        "services",
        &[
            "crate::http",
            "crate::server",
            "crate::settings",
            "crate::cli",
            "actix_web",
            "StatusCode",
        ],
    );
    assert!(
        found.is_empty(),
        "a service reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn handlers_reach_the_store_only_through_the_services() {
    let found = forbidden_in("http", &["sqlx", ".store()."]);
    assert!(
        found.is_empty(),
        "a handler reaches into the store:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_grpc_layer_is_a_codec_beside_http() {
    // It reaches the services (and AppState, their bundle), never actix or the store.
    let found = forbidden_in(
        "grpc",
        &["actix_web", "sqlx", "crate::store::Sql", ".store()."],
    );
    assert!(
        found.is_empty(),
        "the gRPC layer reaches past the services:\n{}",
        found.join("\n")
    );
}
