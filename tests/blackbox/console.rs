//! The operator console at `/console`: its files over plain HTTP, then the whole thing driven in
//! headless Chromium by `tests/console/e2e.mjs` (playwright-core).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn the_console_files_are_served_without_outside_assets() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let fetch = |path: &str| {
        let r = server
            .anonymous
            .get(format!("{}{path}", server.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path} needs no token");
        let header = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (content_type, cache, etag, csp) = (
            header("content-type"),
            header("cache-control"),
            header("etag"),
            header("content-security-policy"),
        );
        assert_eq!(cache, "no-cache", "Cache-Control of {path}");
        assert!(!etag.is_empty(), "{path} has an ETag");
        assert!(csp.contains("default-src 'self'"), "CSP of {path}: {csp}");
        (content_type, etag, r.text().unwrap())
    };

    let (content_type, _, index) = fetch("/console");
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert_eq!(fetch("/console/").2, index);
    assert!(index.contains("/console/app.js") && index.contains("/console/app.css"));
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "index.html must load nothing from outside: {index}"
    );
    let (content_type, js_etag, js) = fetch("/console/app.js");
    assert_eq!(content_type, "text/javascript; charset=utf-8");
    assert!(js.contains("/v1/auth/token"));
    // Each section's script is served the same way, and the page loads it.
    for script in ["charts", "models", "drift", "audit", "jobs"] {
        let path = format!("/console/{script}.js");
        assert!(index.contains(&path), "index.html should load {path}");
        let (content_type, _, js) = fetch(&path);
        assert_eq!(content_type, "text/javascript; charset=utf-8", "{path}");
        assert!(js.contains("'use strict'"), "{path}");
    }
    let (content_type, _, css) = fetch("/console/app.css");
    assert_eq!(content_type, "text/css; charset=utf-8");
    assert!(!css.contains("@import") && !css.contains("url(http"));

    // no-cache revalidates: an unchanged file answers 304 with no body.
    let r = server
        .anonymous
        .get(format!("{}/console/app.js", server.url))
        .header("If-None-Match", &js_etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.text().unwrap().is_empty());

    // Wrong methods and unknown files answer with the API's one error body.
    let post = server
        .anonymous
        .post(format!("{}/console", server.url))
        .send()
        .unwrap();
    assert_error(post, 405, "method_not_allowed");
    assert_error(server.get("/console/nope.js"), 404, "route_not_found");
}

/// Why the browser test cannot run here, if it cannot.
fn browser_missing(console_dir: &Path, chromium: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("node (Debian package nodejs)".to_owned());
    }
    if !chromium.is_file() {
        missing.push(format!(
            "{} (Debian package chromium, or set CHROMIUM)",
            chromium.display()
        ));
    }
    if !console_dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push(format!(
            "{}/node_modules/playwright-core (run `npm ci` there)",
            console_dir.display()
        ));
    }
    missing
}

/// The repository root, the console test folder and the browser, or `None` (with a notice)
/// when node, Chromium or playwright-core is missing and `MAAS_REQUIRE_BROWSER` is not 1.
pub(crate) fn browser_or_skip(what: &str) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap();
    let console_dir = root.join("tests/console");
    let chromium =
        PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()));
    let missing = browser_missing(&console_dir, &chromium);
    if !missing.is_empty() {
        let missing = missing.join(", ");
        if std::env::var("MAAS_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!("{what} is required (MAAS_REQUIRE_BROWSER=1) but these are missing: {missing}");
        }
        eprintln!("NOTICE: skipping {what}: missing {missing}; set MAAS_REQUIRE_BROWSER=1 to fail instead");
        return None;
    }
    Some((root, console_dir, chromium))
}

#[test]
fn the_console_works_in_a_real_browser() {
    let Some((root, console_dir, chromium)) = browser_or_skip("the console browser test") else {
        return;
    };

    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let screenshots = root.join("target/console-screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let mut child = Command::new("node")
        .arg("e2e.mjs")
        .arg(&server.url)
        .arg(&screenshots)
        .current_dir(&console_dir)
        .env("MAAS_E2E_PASSWORD", ADMIN_PASSWORD)
        .env("MAAS_E2E_MODEL", fixture("iris_logreg.onnx"))
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    println!("{stdout}{stderr}");
    match status {
        Some(status) => assert!(
            status.success(),
            "the console e2e test failed ({status}); screenshots in {}:\n{stdout}{stderr}",
            screenshots.display()
        ),
        None => panic!("the console e2e test ran past 180 s:\n{stdout}{stderr}"),
    }
    for page in ["login", "models", "model", "audit", "drift", "jobs", "job"] {
        let shot = screenshots.join(format!("console-{page}.png"));
        assert!(shot.is_file(), "{} was not saved", shot.display());
    }
}
