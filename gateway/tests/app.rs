//! The actix app in process: `server::build` + `server::create_app`, driven with actix's test
//! service. For handler behaviour where spawning the binary is overkill; the black-box suite
//! (`tests/blackbox`) covers the real process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use actix_web::http::StatusCode;
use actix_web::test;
use maas_gateway::server::{build, create_app};
use maas_gateway::settings::Settings;
use serde_json::{json, Value};

fn settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.to_path_buf();
    settings.scheduler.enabled = false;
    settings
}

#[actix_web::test]
async fn the_app_answers_in_process_with_the_one_error_body() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("MAAS_ADMIN_PASSWORD", "in-process-secret");
    let data = build(&settings(dir.path())).await.unwrap();
    maas_gateway::server::bootstrap_admin(&data.authenticator.store)
        .await
        .unwrap();
    let app = test::init_service(create_app(&data)).await;

    // Unknown route and wrong method: JSON errors with a stable code and a request id.
    let r = test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["code"], "route_not_found");
    assert!(!body["request_id"].as_str().unwrap().is_empty());
    let r = test::call_service(
        &app,
        test::TestRequest::delete()
            .uri("/v1/auth/token")
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);

    // No bearer: 401 with the challenge header.
    let r = test::call_service(
        &app,
        test::TestRequest::get().uri("/v1/models").to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));

    // Log in as the bootstrapped admin, then ask for a model that does not exist.
    let r = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/auth/token")
            .set_json(json!({"username": "admin", "password": "in-process-secret"}))
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let token: Value = test::read_body_json(r).await;
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let r = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v1/models/iris/predict")
            .insert_header(("Authorization", bearer.clone()))
            .set_json(json!({"instances": [[1.0, 2.0, 3.0, 4.0]]}))
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["code"], "model_not_found");

    // The same through the Open Inference Protocol, in its own error shape.
    let r = test::call_service(
        &app,
        test::TestRequest::post()
            .uri("/v2/models/iris/infer")
            .insert_header(("Authorization", bearer))
            .set_json(json!({"inputs": []}))
            .to_request(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = test::read_body_json(r).await;
    assert!(body["error"].as_str().unwrap().contains("does not exist"));
}
