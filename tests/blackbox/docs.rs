//! Swagger UI at `/docs` in a real browser (headless Chromium, `tests/console/docs.mjs`): a new
//! user authorizes, deploys iris with the form (only the file chosen) and predicts with the
//! pre-filled example, sent as it is.

use std::process::Command;

use crate::common::*;
use crate::console::browser_or_skip;

#[test]
fn swagger_ui_deploys_and_predicts_as_sent() {
    let Some((root, console_dir, chromium)) = browser_or_skip("the Swagger UI browser test") else {
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let screenshots = root.join("target/console-screenshots");
    let out = Command::new("node")
        .arg("docs.mjs")
        .arg(&server.url)
        .arg(&screenshots)
        .current_dir(&console_dir)
        .env("MAAS_E2E_TOKEN", &server.token)
        .env("MAAS_E2E_MODEL", fixture("iris_logreg.onnx"))
        .env("CHROMIUM", &chromium)
        .output()
        .expect("spawn node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "deploy and predict from /docs failed; screenshots in {}:\n{text}",
        screenshots.display()
    );
    // What the browser did is what the API holds.
    let predicted = server.predict_ok(
        "iris",
        Some(1),
        &serde_json::json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
    );
    assert_eq!(predicted["version"], 1);
}
