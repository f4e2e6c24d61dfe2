//! The audit trail and the runtime settings: every change recorded with its actor, client
//! address, request id, model and version; filters, pages and CSV; tracing and debug logging
//! switched at run time and kept across restarts; request ids on every log line.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

fn audit(server: &Server, query: &str) -> Value {
    server.get_json(&format!("/v1/audit?{query}"))
}

fn kinds(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// A client logged in as `username` that sends `X-Request-Id: id` with every request.
fn as_user(server: &Server, username: &str, password: &str, id: &str) -> Client {
    let token = login(&server.anonymous, &server.url, username, password);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {token}").parse().unwrap());
    headers.insert("X-Request-Id", id.parse().unwrap());
    Client::builder().default_headers(headers).build().unwrap()
}

on_both_stores!(
    every_change_is_recorded_with_who_where_and_which_request,
    |store: &Store| {
        let server = Server::start(store);
        assert_eq!(
            server
                .post_json(
                    "/v1/users",
                    &json!({"username": "dora", "password": "dora-password-1", "role": "deployer"}),
                )
                .status(),
            201
        );
        let dora = as_user(&server, "dora", "dora-password-1", "req-dora-1");
        let form = reqwest::blocking::multipart::Form::new()
            .part("model", fixture_part("iris_logreg.onnx"))
            .text("serving", r#"{"max_batch_size": 8}"#);
        let r = dora
            .post(format!("{}/v1/models/iris/versions", server.url))
            .multipart(form)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        for action in ["pause", "resume"] {
            let r = dora
                .post(format!("{}/v1/models/iris/actions/{action}", server.url))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let r = dora
            .post(format!("{}/v1/models/iris/actions/update", server.url))
            .json(&json!({"serving": {"instances": 2}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = dora
            .post(format!("{}/v1/models/iris/versions/1/undeploy", server.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        // A refused deploy changes nothing and records nothing.
        let bad = reqwest::blocking::multipart::Form::new().part(
            "model",
            reqwest::blocking::multipart::Part::bytes(b"not onnx".to_vec()).file_name("x.onnx"),
        );
        let r = dora
            .post(format!("{}/v1/models/iris/versions", server.url))
            .multipart(bad)
            .send()
            .unwrap();
        assert_eq!(r.status(), 422);

        let page = audit(&server, "model=iris");
        assert_eq!(
            kinds(&page),
            [
                "undeploy",
                "action",
                "serving_update",
                "action",
                "resume",
                "action",
                "pause",
                "deploy"
            ],
            "{page}"
        );
        assert_eq!(page["total"], 8);
        for event in page["events"].as_array().unwrap() {
            assert_eq!(event["actor"], "dora", "{event}");
            assert_eq!(event["client"], "127.0.0.1", "{event}");
            assert_eq!(event["request_id"], "req-dora-1", "{event}");
            assert_eq!(event["model"], "iris");
        }
        let deploy = &page["events"][7];
        assert_eq!(deploy["version"], 1);
        assert_eq!(deploy["details"]["serving"]["max_batch_size"], 8);
        assert_eq!(deploy["details"]["source"], "upload:iris_logreg.onnx");
        assert_eq!(
            page["events"][2]["details"]["instances"], 2,
            "the update's options: {page}"
        );
        assert_eq!(page["events"][1]["details"]["action"], "update");

        // Users and logins are recorded too, without secrets.
        let page = audit(&server, "kind=user_created");
        assert_eq!(page["events"][0]["actor"], "admin");
        assert_eq!(page["events"][0]["details"]["username"], "dora");
        assert!(!page.to_string().contains("dora-password-1"));
        let logins = audit(&server, "kind=token_issued&actor=dora");
        assert_eq!(logins["total"], 1, "{logins}");

        // Filters, pages, time bounds.
        let all = audit(&server, "limit=1000");
        let total = all["total"].as_u64().unwrap();
        assert_eq!(all["events"].as_array().unwrap().len() as u64, total);
        let second = audit(&server, "limit=2&offset=1");
        assert_eq!(second["events"][0], all["events"][1]);
        assert_eq!(second["events"].as_array().unwrap().len(), 2);
        assert_eq!(audit(&server, "actor=dora&kind=deploy")["total"], 1);
        assert_eq!(audit(&server, "since=2999-01-01T00:00:00Z")["total"], 0);
        assert_eq!(
            audit(&server, "until=2999-01-01T00:00:00Z")["total"].as_u64(),
            Some(total)
        );

        // CSV export: a header and one line per event.
        let r = server.get("/v1/audit?format=csv&actor=dora");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let text = r.text().unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            [
                "at",
                "actor",
                "client",
                "request_id",
                "kind",
                "model",
                "version",
                "details",
                "id"
            ]
        );
        let dora_total = audit(&server, "actor=dora")["total"].as_u64().unwrap();
        assert_eq!(reader.records().count() as u64, dora_total);

        // Bad queries, and only admins read the trail.
        assert_error(
            server.get("/v1/audit?since=yesterday"),
            422,
            "invalid_argument",
        );
        assert_error(server.get("/v1/audit?limit=0"), 422, "invalid_argument");
        assert_error(server.get("/v1/audit?colour=red"), 400, "invalid_request");
        let r = dora.get(format!("{}/v1/audit", server.url)).send().unwrap();
        assert_error(r, 403, "forbidden");
    }
);

on_both_stores!(
    runtime_settings_switch_tracing_and_debug_logs_and_persist,
    |store: &Store| {
        let mut server = Server::start(store);
        assert_eq!(
            server.get_json("/v1/settings"),
            json!({"debug": false, "trace": true})
        );

        // Tracing off: changes are no longer recorded, but the switch itself is.
        let r = server
            .client
            .patch(format!("{}/v1/settings", server.url))
            .json(&json!({"trace": false}))
            .send()
            .unwrap();
        assert_eq!(
            r.json::<Value>().unwrap(),
            json!({"debug": false, "trace": false})
        );
        server.deploy("iris", "iris_logreg.onnx", &[]);
        assert_eq!(audit(&server, "model=iris")["total"], 0);
        let switches = audit(&server, "kind=settings_change");
        assert_eq!(switches["total"], 1);
        assert_eq!(switches["events"][0]["details"]["after"]["trace"], false);
        assert_eq!(switches["events"][0]["actor"], "admin");

        // Kept across a restart.
        server = server.restart();
        assert_eq!(server.get_json("/v1/settings")["trace"], false);
        server.deploy("iris", "iris_logreg.onnx", &[]);
        assert_eq!(audit(&server, "model=iris")["total"], 0);

        // Debug logging at run time: a rejected bearer is logged at debug level only.
        let bad_token = || {
            server
                .anonymous
                .get(format!("{}/v1/models", server.url))
                .bearer_auth("not-a-token")
                .send()
                .unwrap()
        };
        assert_eq!(bad_token().status(), 401);
        let r = server
            .client
            .patch(format!("{}/v1/settings", server.url))
            .json(&json!({"debug": true, "trace": true}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(bad_token().status(), 401);
        std::thread::sleep(Duration::from_millis(300));
        let log = server.log();
        assert_eq!(
            log.matches("rejected a bearer token").count(),
            1,
            "only the request made with debug on is logged:\n{log}"
        );
        server.deploy("iris", "iris_logreg.onnx", &[]);
        assert_eq!(audit(&server, "model=iris&kind=deploy")["total"], 1);

        // Unknown fields and bad values are refused; only admins change settings.
        let r = server
            .client
            .patch(format!("{}/v1/settings", server.url))
            .json(&json!({"verbose": true}))
            .send()
            .unwrap();
        assert_error(r, 400, "invalid_request");
        let r = server
            .client
            .patch(format!("{}/v1/settings", server.url))
            .json(&json!({"debug": "yes"}))
            .send()
            .unwrap();
        assert_error(r, 400, "invalid_request");
    }
);

#[test]
fn every_log_line_of_a_request_carries_its_id() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut server = Server::start(&store);
    let form =
        reqwest::blocking::multipart::Form::new().part("model", fixture_part("iris_logreg.onnx"));
    let r = server
        .client
        .post(format!("{}/v1/models/iris/versions", server.url))
        .header("X-Request-Id", "trace-me-123")
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    std::thread::sleep(Duration::from_millis(300));
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("model=iris")).collect();
    assert!(
        lines.len() >= 2,
        "the deploy logs its load and its commit:\n{log}"
    );
    for line in &lines {
        assert!(
            line.contains("request_id=trace-me-123"),
            "a log line of the request without its id: {line}"
        );
    }
}
