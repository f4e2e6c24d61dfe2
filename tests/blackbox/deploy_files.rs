//! The files under deploy/: the Prometheus rules and config pass `promtool`, the alerts fire (and
//! only they) on synthetic series, the Grafana dashboard is valid JSON whose queries parse, and
//! every `maas_*` metric the rules and the dashboard use is exported by a real server.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::Form;
use serde_json::Value;

use crate::common::*;

fn deploy_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn read(path: &str) -> String {
    let path = deploy_file(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `$PROMTOOL`, else `promtool` on PATH; `None` (after a NOTICE) when it cannot run, unless
/// `MAAS_REQUIRE_PROMTOOL=1`.
fn promtool(what: &str) -> Option<String> {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let problem = match Command::new(&promtool).arg("--version").output() {
        Ok(out) if out.status.success() => return Some(promtool),
        Ok(out) => format!("`{promtool} --version` exited with {}", out.status),
        Err(e) => e.to_string(),
    };
    if std::env::var("MAAS_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1") {
        panic!("promtool is required (MAAS_REQUIRE_PROMTOOL=1) but could not run: {problem}");
    }
    eprintln!("NOTICE: promtool not found ({problem}); skipping `promtool {what}`");
    None
}

/// Run promtool and insist on success, returning what it printed.
fn run_promtool(promtool: &str, args: &[&str]) -> String {
    let out = Command::new(promtool).args(args).output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {}:\n{report}",
        args.join(" ")
    );
    report
}

/// A path as a single-quoted YAML string.
fn yaml_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn alert_rules_pass_promtool() {
    let Some(promtool) = promtool("check rules / check config") else {
        return;
    };
    let rules = deploy_file("prometheus/alerts.yml");
    run_promtool(&promtool, &["check", "rules", rules.to_str().unwrap()]);
    // The config loads the rules (promtool checks them again through it). Its optional bearer
    // for protected metrics is commented out, so no token file has to exist for this check.
    let config = read("prometheus/prometheus.yml");
    assert!(
        config.contains("rule_files:\n  - alerts.yml\n"),
        "prometheus.yml loads alerts.yml:\n{config}"
    );
    let config = deploy_file("prometheus/prometheus.yml");
    let report = run_promtool(&promtool, &["check", "config", config.to_str().unwrap()]);
    assert!(report.contains("alerts.yml"), "{report}");
}

/// Every alert on series shaped like the ones maas exports: which fire, with which labels, and
/// which stay quiet (`exp_samples` are the complete answer). One alert's annotations are checked
/// as rendered. Minutes: `a+bxn` is n+1 samples a, a+b, ...; `_` is a missing sample.
const ALERT_TESTS: &str = r#"rule_files:
  - '{RULES}'
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # Replica a stops answering at 3m; b stays up.
      - series: 'up{job="maas",instance="a:8080"}'
        values: '1x2 0x30'
      - series: 'up{job="maas",instance="b:8080"}'
        values: '1x32'
      # petal_length: a series born at 10m (its counter appears at 1); petal_width: an old
      # series that increases at 16m; sepal_width: old and calm.
      - series: 'maas_drift_events_total{job="maas",instance="a:8080",model="iris",version="1",feature="petal_length",detector="adwin"}'
        values: '_x10 1x22'
      - series: 'maas_drift_events_total{job="maas",instance="a:8080",model="iris",version="1",feature="petal_width",detector="adwin"}'
        values: '2x15 3x16'
      - series: 'maas_drift_events_total{job="maas",instance="a:8080",model="iris",version="1",feature="sepal_width",detector="adwin"}'
        values: '2x32'
      # iris v1 fails 6 predicts in 66 (9 %) on two replicas; v2 1 in 61.
      - series: 'maas_predictions_total{job="maas",instance="a:8080",model="iris",version="1",outcome="ok"}'
        values: '0+30x32'
      - series: 'maas_predictions_total{job="maas",instance="b:8080",model="iris",version="1",outcome="ok"}'
        values: '0+30x32'
      - series: 'maas_predictions_total{job="maas",instance="a:8080",model="iris",version="1",outcome="error"}'
        values: '0+6x32'
      - series: 'maas_predictions_total{job="maas",instance="a:8080",model="iris",version="2",outcome="ok"}'
        values: '0+60x32'
      - series: 'maas_predictions_total{job="maas",instance="a:8080",model="iris",version="2",outcome="error"}'
        values: '0+1x32'
      # Half of the predict route's answers are 503; health is fine.
      - series: 'maas_http_requests_total{job="maas",instance="a:8080",method="POST",route="/v1/models/{name}/predict",status="200"}'
        values: '0+10x32'
      - series: 'maas_http_requests_total{job="maas",instance="a:8080",method="POST",route="/v1/models/{name}/predict",status="503"}'
        values: '0+10x32'
      - series: 'maas_http_requests_total{job="maas",instance="a:8080",method="GET",route="/health/live",status="200"}'
        values: '0+10x32'
      # iris v1 answers in 0.5-1 s, v2 under 0.5 s.
      - series: 'maas_prediction_duration_seconds_bucket{job="maas",instance="a:8080",model="iris",version="1",le="0.5"}'
        values: '0x32'
      - series: 'maas_prediction_duration_seconds_bucket{job="maas",instance="a:8080",model="iris",version="1",le="1"}'
        values: '0+10x32'
      - series: 'maas_prediction_duration_seconds_bucket{job="maas",instance="a:8080",model="iris",version="1",le="+Inf"}'
        values: '0+10x32'
      - series: 'maas_prediction_duration_seconds_bucket{job="maas",instance="a:8080",model="iris",version="2",le="0.5"}'
        values: '0+10x32'
      - series: 'maas_prediction_duration_seconds_bucket{job="maas",instance="a:8080",model="iris",version="2",le="1"}'
        values: '0+10x32'
      - series: 'maas_prediction_duration_seconds_bucket{job="maas",instance="a:8080",model="iris",version="2",le="+Inf"}'
        values: '0+10x32'
      # iris v1 refuses requests all along; abandoned requests are not shedding.
      - series: 'maas_inference_dropped_total{job="maas",instance="a:8080",model="iris",version="1",reason="queue_full"}'
        values: '0+1x32'
      - series: 'maas_inference_dropped_total{job="maas",instance="a:8080",model="iris",version="1",reason="timeout"}'
        values: '0x32'
      - series: 'maas_inference_dropped_total{job="maas",instance="a:8080",model="iris",version="1",reason="client_gone"}'
        values: '0+5x32'
      # iris is paused on both replicas, house is not.
      - series: 'maas_model_paused{job="maas",instance="a:8080",model="iris"}'
        values: '1x32'
      - series: 'maas_model_paused{job="maas",instance="b:8080",model="iris"}'
        values: '1x32'
      - series: 'maas_model_paused{job="maas",instance="a:8080",model="house"}'
        values: '0x32'
      # Replica b gives up on a webhook at 6m.
      - series: 'maas_drift_webhook_failures_total{job="maas",instance="a:8080"}'
        values: '0x32'
      - series: 'maas_drift_webhook_failures_total{job="maas",instance="b:8080"}'
        values: '0x5 1x26'
    promql_expr_test:
      - expr: ALERTS{alertname="MaasDown"}
        eval_time: 1m
        exp_samples: []
      - expr: ALERTS{alertname="MaasDown"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasDown",alertstate="firing",instance="a:8080",job="maas",severity="critical"}'
            value: 1
      - expr: ALERTS{alertname="MaasDriftDetected"}
        eval_time: 12m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasDriftDetected",alertstate="firing",feature="petal_length",model="iris",severity="warning",version="1"}'
            value: 1
      - expr: ALERTS{alertname="MaasDriftDetected"}
        eval_time: 25m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasDriftDetected",alertstate="firing",feature="petal_width",model="iris",severity="warning",version="1"}'
            value: 1
      - expr: ALERTS{alertname="MaasHighErrorRate"}
        eval_time: 3m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasHighErrorRate",alertstate="pending",model="iris",severity="critical",version="1"}'
            value: 1
      - expr: ALERTS{alertname="MaasHighErrorRate"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasHighErrorRate",alertstate="firing",model="iris",severity="critical",version="1"}'
            value: 1
      - expr: round(model_version:maas_prediction_errors:ratio_rate5m, 0.001)
        eval_time: 10m
        exp_samples:
          - labels: '{model="iris",version="1"}'
            value: 0.091
          - labels: '{model="iris",version="2"}'
            value: 0.016
      - expr: ALERTS{alertname="MaasHighHttp5xxRate"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasHighHttp5xxRate",alertstate="firing",route="/v1/models/{name}/predict",severity="critical"}'
            value: 1
      - expr: ALERTS{alertname="MaasHighP99Latency"}
        eval_time: 8m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasHighP99Latency",alertstate="pending",model="iris",severity="warning",version="1"}'
            value: 1
      - expr: ALERTS{alertname="MaasHighP99Latency"}
        eval_time: 15m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasHighP99Latency",alertstate="firing",model="iris",severity="warning",version="1"}'
            value: 1
      - expr: ALERTS{alertname="MaasRequestsShed"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasRequestsShed",alertstate="firing",model="iris",reason="queue_full",severity="warning",version="1"}'
            value: 1
      - expr: ALERTS{alertname="MaasModelPaused"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasModelPaused",alertstate="firing",model="iris",severity="warning"}'
            value: 1
      - expr: ALERTS{alertname="MaasDriftWebhookFailing"}
        eval_time: 10m
        exp_samples:
          - labels: 'ALERTS{alertname="MaasDriftWebhookFailing",alertstate="firing",instance="b:8080",severity="warning"}'
            value: 1
    alert_rule_test:
      - alertname: MaasHighErrorRate
        eval_time: 10m
        exp_alerts:
          - exp_labels:
              severity: critical
              model: iris
              version: "1"
            exp_annotations:
              summary: "iris v1: 9.091% of predictions fail"
              description: >-
                More than 5% of predict requests for model iris version 1 ended with outcome
                "error" over the last 5 minutes (now 9.091%). Invalid input and overload are not
                counted.
"#;

#[test]
fn alert_rules_fire_in_promtool_unit_tests() {
    let Some(promtool) = promtool("test rules") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rules = deploy_file("prometheus/alerts.yml");
    let tests = ALERT_TESTS.replace("'{RULES}'", &yaml_quoted(rules.to_str().unwrap()));
    let file = dir.path().join("alerts_test.yml");
    std::fs::write(&file, tests).unwrap();
    run_promtool(&promtool, &["test", "rules", file.to_str().unwrap()]);
}

/// Every panel, including those inside collapsed rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = stack.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            stack.extend(nested);
        }
        all.push(panel);
    }
    all
}

/// The dashboard's PromQL with Grafana's variables replaced by values Prometheus accepts.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    panels(dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| {
            t["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("target without expr: {t}"))
                .replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace("$model", ".*")
        })
        .collect()
}

fn check_dashboard(dashboard: &Value) {
    assert_eq!(dashboard["uid"], "maas");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(
        variable("model")["definition"],
        "label_values(maas_predictions_total, model)"
    );
    let mut ids = BTreeSet::new();
    let panels = panels(dashboard);
    assert!(panels.len() > 10);
    for panel in panels {
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel without id: {panel}"));
        assert!(ids.insert(id), "panel id {id} is used twice");
        let grid = &panel["gridPos"];
        for key in ["h", "w", "x", "y"] {
            assert!(grid[key].is_u64(), "panel {id} lacks gridPos.{key}");
        }
        assert!(
            grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap() <= 24,
            "panel {id} is wider than the dashboard"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "panel {id} queries the chosen data source"
            );
        }
    }
}

#[test]
fn dashboard_queries_parse_in_promtool() {
    let dashboard: Value = serde_json::from_str(&read("grafana/maas-dashboard.json")).unwrap();
    check_dashboard(&dashboard);
    let Some(promtool) = promtool("test rules (dashboard queries)") else {
        return;
    };
    // Each query, whatever it returns on no data, folded into one constant sample: promtool
    // evaluates it, so a query Prometheus cannot parse fails the test.
    let mut tests = String::from(
        "rule_files: []\ntests:\n  - interval: 1m\n    input_series: []\n    promql_expr_test:\n",
    );
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 10);
    for query in queries {
        assert!(!query.contains('\n') && !query.contains('$'), "{query}");
        let expr = yaml_quoted(&format!("sum(({query})) * 0 or vector(0)"));
        tests.push_str(&format!(
            "      - expr: {expr}\n        eval_time: 10m\n        exp_samples:\n          - labels: '{{}}'\n            value: 0\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_test.yml");
    std::fs::write(&file, tests).unwrap();
    run_promtool(&promtool, &["test", "rules", file.to_str().unwrap()]);
}

/// `maas_*` metric names in a text, with histogram series suffixes removed. Recording rules
/// (`model:maas_predictions:rate5m`) are not metrics: a name preceded by `:` is skipped.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("maas_") {
        if start > 0 && (is_name(bytes[start - 1]) || bytes[start - 1] == b':') {
            continue;
        }
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.insert(name.to_owned());
    }
    names
}

#[test]
fn every_metric_in_the_rules_and_dashboard_is_exported() {
    let rules = metric_names(&read("prometheus/alerts.yml"));
    let dashboard_text = read("grafana/maas-dashboard.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).unwrap();
    check_dashboard(&dashboard);
    let mut dashboard_names = BTreeSet::new();
    for query in dashboard_queries(&dashboard) {
        dashboard_names.extend(metric_names(&query));
    }
    // Descriptions and variables count too.
    dashboard_names.extend(metric_names(&dashboard_text));
    for name in [
        "maas_drift_events_total",
        "maas_predictions_total",
        "maas_prediction_duration_seconds",
        "maas_inference_dropped_total",
        "maas_http_requests_total",
        "maas_model_paused",
    ] {
        assert!(rules.contains(name), "the alert rules use {name}");
        assert!(dashboard_names.contains(name), "the dashboard uses {name}");
    }

    // A server that has deployed, predicted and seen drift: every family has a sample (the
    // exposition leaves out metric families with no label values yet).
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let form = Form::new()
        .part("model", fixture_part("iris_logreg.onnx"))
        .part("training_data", fixture_part("iris_train.csv"))
        .text("class_names", IRIS_CLASSES)
        .text("feature_names", IRIS_FEATURES)
        .text("label_column", "species")
        .text("baseline_size", "50");
    let r = server.deploy_multipart("iris", form);
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    server.predict_ok(
        "iris",
        None,
        &serde_json::json!({"instances": [[5.1, 3.5, 1.4, 0.2]]}),
    );
    let shifted: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("iris_shifted.json")).unwrap())
            .unwrap();
    server.predict_ok("iris", None, &shifted);
    // Pausing a model makes maas_model_paused{model} appear (it reports paused models only).
    // The pause action is being added alongside these files; while it is missing, so may be the
    // gauge.
    let paused = server.post_empty("/v1/models/iris/actions/pause");
    let paused = paused.status().is_success();
    if !paused {
        eprintln!(
            "NOTICE: POST /v1/models/iris/actions/pause failed; maas_model_paused may be absent"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let r = server.get("/metrics");
        assert_eq!(r.status(), 200);
        let text = r.text().unwrap();
        if text.contains("maas_drift_events_total{")
            && (!paused || text.contains("maas_model_paused{model=\"iris\"} 1"))
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no drift event was counted{}:\n{text}",
            if paused {
                ", or iris is not reported paused"
            } else {
                ""
            }
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let exported: BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();

    for (source, names) in [("alerts.yml", &rules), ("the dashboard", &dashboard_names)] {
        for name in names {
            if exported.contains(name.as_str()) {
                continue;
            }
            // maas_model_paused{model} is being added to the gateway alongside these files;
            // until it (and the pause action) lands, its absence is tolerated, and only its.
            if name == "maas_model_paused" && !paused {
                eprintln!(
                    "NOTICE: {source} uses maas_model_paused, which /metrics does not export yet"
                );
                continue;
            }
            panic!("{source} uses {name}, which /metrics does not export:\n{text}");
        }
    }
}
