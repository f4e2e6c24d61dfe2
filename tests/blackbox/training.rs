//! Training workflows end to end: the shipped examples train with the built-in ML tasks (or
//! scikit-learn in a script task), deploy through the registry and serve predictions; the
//! closed loop retrains a model on request or on drift and deploys only a version that scores at
//! least as well; the `maas job` CLI drives it all.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::jobs::{submit, wait_job};
use crate::on_both_stores;

fn workflow_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../scheduler/workflows")
        .join(name)
}

fn workflow_text(name: &str) -> String {
    std::fs::read_to_string(workflow_file(name)).unwrap()
}

fn results_of(server: &Server, id: &str, task: &str) -> Value {
    let results = server.get_json(&format!("/v1/jobs/{id}/results"));
    results["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .unwrap_or_else(|| panic!("no task {task} in {results:#}"))
        .clone()
}

const SETOSA: [f64; 4] = [5.1, 3.5, 1.4, 0.2];
const VIRGINICA: [f64; 4] = [6.9, 3.1, 5.4, 2.1];

on_both_stores!(
    the_iris_workflow_trains_deploys_and_serves,
    |store: &Store| {
        let server = Server::start(store);
        let id = submit(&server, &workflow_text("iris-deploy.yaml"), json!({}));
        let job = wait_job(&server, &id, "finished", 120);
        assert_eq!(job["tasks"].as_array().unwrap().len(), 5);

        let evaluate = results_of(&server, &id, "evaluate");
        let accuracy = evaluate["metrics"]["accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.85, "accuracy {accuracy}");
        assert!(evaluate["metrics"]["confusion_matrix"].is_array());
        let train = results_of(&server, &id, "train");
        assert!(train["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["path"] == "model.onnx"));
        let deploy = results_of(&server, &id, "deploy");
        assert_eq!(deploy["variables"]["DEPLOYED"], "true");
        assert_eq!(deploy["variables"]["MODEL_VERSION"], "1");

        // The model serves, with class and feature names, and a drift baseline from the training rows.
        let meta = server.get_json("/v1/models/iris/versions/1");
        assert_eq!(meta["source"], format!("job:{id}"));
        assert_eq!(meta["drift"]["source"], "training_data");
        let answer = server.predict_ok(
        "iris",
        None,
        &json!({"records": [
            {"sepal_length": SETOSA[0], "sepal_width": SETOSA[1], "petal_length": SETOSA[2], "petal_width": SETOSA[3]},
            {"sepal_length": VIRGINICA[0], "sepal_width": VIRGINICA[1], "petal_length": VIRGINICA[2], "petal_width": VIRGINICA[3]},
        ]}),
    );
        assert_eq!(answer["predictions"], json!(["setosa", "virginica"]));

        // A deploy task's new version replaces the serving ones, unless `append: true`.
        let deployed = || -> Vec<u64> {
            server.get_json("/v1/models/iris")["versions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|v| v["state"] == "deployed")
                .map(|v| v["version"].as_u64().unwrap())
                .collect()
        };
        let appending = workflow_text("iris-deploy.yaml").replace(
            "      task: \"${TASK}\"\n",
            "      task: \"${TASK}\"\n      append: true\n",
        );
        assert!(appending.contains("append: true"));
        let id = submit(&server, &appending, json!({}));
        wait_job(&server, &id, "finished", 120);
        assert_eq!(deployed(), [1, 2]);
        let id = submit(&server, &workflow_text("iris-deploy.yaml"), json!({}));
        wait_job(&server, &id, "finished", 120);
        assert_eq!(deployed(), [3]);
    }
);

fn worse_workflow() -> String {
    // The same pipeline with a one-split tree: it cannot tell versicolor from virginica.
    workflow_text("iris-deploy.yaml")
        .replace(
            "name: iris-deploy-flower-classifier",
            "name: iris-stump",
        )
        .replace(
            "params: {train: \"${TRAIN}\", label: \"${LABEL}\", algorithm: \"${ALGORITHM}\"}",
            "params: {train: \"${TRAIN}\", label: \"${LABEL}\", algorithm: decision_tree, max_depth: 1}",
        )
}

fn set_retrain(server: &Server, workflow: &str) -> reqwest::blocking::Response {
    server.post_json(
        "/v1/models/iris/actions/update",
        &json!({"retrain_workflow": workflow}),
    )
}

on_both_stores!(
    retraining_deploys_only_a_version_at_least_as_good,
    |store: &Store| {
        let server = Server::start(store);
        let first = submit(&server, &workflow_text("iris-deploy.yaml"), json!({}));
        wait_job(&server, &first, "finished", 120);

        // The model must name a saved workflow.
        assert_error(
            server.post_empty("/v1/models/iris/retrain"),
            409,
            "invalid_action",
        );
        assert_error(
            set_retrain(&server, "iris-deploy-flower-classifier"),
            404,
            "workflow_not_found",
        );
        assert_error(
            server.post_empty("/v1/models/nope/retrain"),
            404,
            "model_not_found",
        );
        for text in [workflow_text("iris-deploy.yaml"), worse_workflow()] {
            let r = server.post_json("/v1/workflows", &json!({"workflow": text}));
            assert_eq!(r.status(), 201);
        }
        // The CLI names it (the same update action).
        let out = Command::new(BIN)
            .args([
                "model",
                "update",
                "iris",
                "--retrain-workflow",
                "iris-deploy-flower-classifier",
            ])
            .env("MAAS_URL", &server.url)
            .env("MAAS_TOKEN", &server.token)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // As good (the same training): deployed as version 2.
        let r = server.post_json(
            "/v1/models/iris/retrain",
            &json!({"variables": {"SEED": 42}}),
        );
        assert_eq!(r.status(), 202);
        let job: Value = r.json().unwrap();
        assert_eq!(job["origin"], "retrain");
        assert_eq!(job["model"], "iris");
        assert_eq!(job["variables"]["MODEL_NAME"], "iris");
        assert_eq!(job["variables"]["MODEL_VERSION"], "1");
        let id = job["id"].as_str().unwrap().to_owned();
        wait_job(&server, &id, "finished", 120);
        let deploy = results_of(&server, &id, "deploy");
        assert_eq!(deploy["variables"]["DEPLOYED"], "true", "{deploy:#}");
        assert_eq!(deploy["metrics"]["comparison"]["deployed"], true);
        assert_eq!(deploy["metrics"]["comparison"]["current_version"], 1);
        assert_eq!(
            server.predict_ok("iris", None, &json!({"instances": [SETOSA]}))["version"],
            2
        );

        // Worse: kept undeployed, the comparison recorded, version 2 still serving.
        assert_eq!(set_retrain(&server, "iris-stump").status(), 200);
        let job: Value = server.post_empty("/v1/models/iris/retrain").json().unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        wait_job(&server, &id, "finished", 120);
        let deploy = results_of(&server, &id, "deploy");
        assert_eq!(deploy["variables"]["DEPLOYED"], "false", "{deploy:#}");
        let comparison = &deploy["metrics"]["comparison"];
        assert_eq!(comparison["metric"], "accuracy");
        assert!(
            comparison["candidate_score"].as_f64().unwrap()
                < comparison["current_score"].as_f64().unwrap()
        );
        assert_eq!(
            server.predict_ok("iris", None, &json!({"instances": [SETOSA]}))["version"],
            2
        );
        let versions = server.get_json("/v1/models/iris/versions");
        assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
        let audit = server.get_json("/v1/audit?kind=retrain_rejected");
        assert_eq!(audit["events"][0]["model"], "iris");
        assert_eq!(audit["events"][0]["details"]["job"], id.as_str());
        let r = server.get(&format!("/v1/jobs/{id}/tasks/deploy/logs"));
        assert!(r.text().unwrap().contains("kept undeployed"));
    }
);

/// The cool-down of drift-started retraining in the closed-loop test: long enough for a second
/// burst of drift to land inside it, short enough to wait out.
const COOLDOWN_SECS: u64 = 8;

on_both_stores!(drift_submits_the_retraining_workflow, |store: &Store| {
    let server = Server::start_with(
        store,
        Options::default().env(
            "MAAS__SCHEDULER__RETRAIN_COOLDOWN_SECS",
            &COOLDOWN_SECS.to_string(),
        ),
    );
    let first = submit(&server, &workflow_text("iris-deploy.yaml"), json!({}));
    wait_job(&server, &first, "finished", 120);
    server.post_json(
        "/v1/workflows",
        &json!({"workflow": workflow_text("iris-deploy.yaml")}),
    );
    assert_eq!(
        set_retrain(&server, "iris-deploy-flower-classifier").status(),
        200
    );
    assert_eq!(server.get_json("/v1/jobs?model=iris")["total"], 0);

    // Calm rows, then petal length shifted far off: the detector fires.
    let mut rows: Vec<Value> = (0..60)
        .map(|i| {
            json!([
                5.8 + (i % 7) as f64 * 0.1,
                3.0,
                4.3 + (i % 5) as f64 * 0.2,
                1.3
            ])
        })
        .collect();
    rows.extend((0..60).map(|i| json!([5.8, 3.0, 12.0 + (i % 5) as f64 * 0.1, 1.3])));
    let answer = server.predict_ok(
        "iris",
        None,
        &json!({"instances": rows, "drift": {"detector": "adwin"}}),
    );
    assert!(
        answer["drift"]["features"]["petal_length"].is_array(),
        "{answer:#}"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let list = server.get_json("/v1/jobs?model=iris");
        if list["total"] == 1 {
            break list["jobs"][0].clone();
        }
        assert!(Instant::now() < deadline, "no retraining job was submitted");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(job["origin"], "drift");
    assert_eq!(job["owner"], "maas");
    assert_eq!(job["variables"]["MODEL_VERSION"], "1");
    wait_job(&server, job["id"].as_str().unwrap(), "finished", 120);
    let ended = Instant::now();
    // One drift episode, one retraining: a second burst of drifting predicts during the
    // cool-down starts nothing.
    let drifting = json!({"instances": rows, "drift": {"detector": "adwin"}});
    for _ in 0..3 {
        let answer = server.predict_ok("iris", None, &drifting);
        assert!(
            answer["drift"]["deviation"]["petal_length"]["flagged"] == true,
            "{answer:#}"
        );
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ended.elapsed() < Duration::from_secs(COOLDOWN_SECS));
    let drift = server.get_json("/v1/models/iris/drift");
    assert!(!drift["events"].as_array().unwrap().is_empty());
    assert_eq!(server.get_json("/v1/jobs?model=iris")["total"], 1);

    // Once the cool-down is over, drift starts the next retraining.
    std::thread::sleep(
        (ended + Duration::from_secs(COOLDOWN_SECS + 1)).saturating_duration_since(Instant::now()),
    );
    server.predict_ok("iris", None, &drifting);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = server.get_json("/v1/jobs?model=iris");
        if list["total"] == 2 {
            assert_eq!(list["jobs"][0]["origin"], "drift");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no retraining after the cool-down: {list:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
});

on_both_stores!(
    house_prices_trains_four_regressors_and_deploys_the_best,
    |store: &Store| {
        let server = Server::start(store);
        let id = submit(&server, &workflow_text("house-prices.yaml"), json!({}));
        let job = wait_job(&server, &id, "finished", 180);
        let compare = results_of(&server, &id, "compare");
        let names = [
            "linear_regression",
            "ridge",
            "decision_tree",
            "random_forest",
        ];
        let best = compare["variables"]["BEST"].as_str().unwrap().to_owned();
        assert!(names.contains(&best.as_str()), "{best}");
        assert_eq!(compare["variables"]["METRIC"], "r2");
        assert_eq!(compare["variables"]["HIGHER_IS_BETTER"], "true");
        let scores = &compare["metrics"]["models"];
        let r2 = |name: &str| {
            scores[name]["r2"]
                .as_f64()
                .unwrap_or_else(|| panic!("{compare:#}"))
        };
        for name in names {
            assert!(r2(name) <= r2(&best), "{compare:#}");
            // Every one is a regressor that explains much of the price, trees included.
            assert!(r2(name) > 0.3, "{name}: {compare:#}");
        }
        // The trees trained regressors, not a class per price.
        for task in ["train_tree", "train_forest"] {
            let trained = results_of(&server, &id, task);
            assert_eq!(trained["variables"]["TASK"], "regression", "{trained:#}");
            assert_eq!(trained["metrics"]["training_metric"], "r2", "{trained:#}");
            assert!(trained["variables"].get("CLASSES").is_none(), "{trained:#}");
        }
        // All four trained in parallel branches, then compared.
        let tasks = job["tasks"].as_array().unwrap();
        let t = |n: &str| tasks.iter().find(|t| t["name"] == n).unwrap().clone();
        assert_eq!(t("compare")["depends_on"].as_array().unwrap().len(), 4);
        let deploy = results_of(&server, &id, "deploy");
        assert_eq!(deploy["variables"]["DEPLOYED"], "true");
        let meta = server.get_json("/v1/models/house-prices/versions/1");
        assert_eq!(meta["feature_names"].as_array().unwrap().len(), 11);
        // Two houses, as records: two prices, numbers in a plausible range.
        let record = json!({"lotsize": 5000, "bedrooms": 3, "bathrooms": 1, "stories": 2, "driveway": 1,
        "recreation": 0, "fullbase": 1, "gasheat": 0, "aircon": 0, "garage": 1, "prefer": 0});
        let mut bigger = record.clone();
        bigger["lotsize"] = json!(9000);
        bigger["bathrooms"] = json!(3);
        bigger["aircon"] = json!(1);
        let answer = server.predict_ok("house-prices", None, &json!({"records": [record, bigger]}));
        let price = |i: usize| {
            answer["predictions"][i]
                .as_f64()
                .or_else(|| answer["predictions"][i][0].as_f64())
                .unwrap_or_else(|| panic!("{answer:#}"))
        };
        assert!((20_000.0..200_000.0).contains(&price(0)), "{answer:#}");
        assert!(price(1) > price(0), "{answer:#}");
        assert!(answer.get("probabilities").is_none(), "{answer:#}");
    }
);

#[test]
fn a_tree_refuses_a_price_as_classes_and_says_how_to_regress() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let workflow = r#"
name: forest-as-classifier
tasks:
  - name: load
    kind: load_dataset
    params: {name: house_prices}
  - name: train
    kind: train
    depends_on: [load]
    params: {train: "${DATA}", label: "${LABEL}", algorithm: random_forest}
"#;
    let id = submit(&server, workflow, json!({}));
    let job = wait_job(&server, &id, "failed", 60);
    let train = job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "train")
        .unwrap();
    let error = train["error"].as_str().unwrap();
    assert!(
        error.contains("the label column 'price' holds")
            && error.contains("too many to be the classes of a classifier (at most 50)")
            && error.contains("add `task: regression` to the random_forest task's params"),
        "{error}"
    );
}

#[test]
fn the_sklearn_script_example_trains_and_deploys() {
    let Ok(python) = std::env::var("MAAS_SKLEARN_PYTHON") else {
        if std::env::var("MAAS_REQUIRE_SKLEARN").is_ok_and(|v| v == "1") {
            panic!("MAAS_REQUIRE_SKLEARN=1 but MAAS_SKLEARN_PYTHON is not set");
        }
        eprintln!("NOTICE: skipping the scikit-learn script example: set MAAS_SKLEARN_PYTHON to a Python with scikit-learn and skl2onnx (pip install -r scheduler/workflows/requirements.txt)");
        return;
    };
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let mut options = Options::default().env("MAAS__SCHEDULER__PYTHON", &python);
    // Scripts run as an unprivileged user when the tests run as root: the interpreter must be
    // reachable by it. A checkout under a private folder (/root) is not; run unconfined there.
    // (The interpreter itself, links followed: a venv's python may point into /root/.pyenv.)
    let real = std::fs::canonicalize(&python).unwrap();
    let reachable = real.ancestors().skip(1).all(|dir| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    });
    if !reachable {
        eprintln!("NOTICE: {python} is not reachable by other users: the scikit-learn example runs with scheduler.sandbox = none");
        options = options.env("MAAS__SCHEDULER__SANDBOX", "none");
    }
    let server = Server::start_with(&store, options);
    let id = submit(&server, &workflow_text("sklearn-script.yaml"), json!({}));
    let job = wait_job(&server, &id, "finished", 300);
    assert_eq!(job["state"], "finished");
    let train = results_of(&server, &id, "train");
    assert!(train["metrics"]["accuracy"].as_f64().unwrap() > 0.85);
    let answer = server.predict_ok(
        "iris-sklearn",
        None,
        &json!({"instances": [SETOSA, VIRGINICA]}),
    );
    assert_eq!(answer["predictions"], json!(["setosa", "virginica"]));
}

#[test]
fn the_job_cli_submits_lists_shows_follows_and_cancels() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let maas = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("MAAS_URL", &server.url)
            .env("MAAS_TOKEN", &server.token)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hello.yaml");
    std::fs::write(
        &file,
        "name: hello\nvariables: {WHO: world}\ntasks:\n  - name: greet\n    kind: script\n    script: |\n      for i in 1 2 3; do echo \"hello $WHO $i\"; sleep 0.3; done\n",
    )
    .unwrap();
    let (ok, out, err) = maas(&["job", "submit", file.to_str().unwrap(), "--var", "WHO=maas"]);
    assert!(ok, "{err}");
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 32, "{out}");
    // Follow the log while the task runs: every line arrives, then the command returns.
    let (ok, out, err) = maas(&["job", "logs", &id, "greet", "--follow"]);
    assert!(ok, "{err}");
    assert_eq!(out, "hello maas 1\nhello maas 2\nhello maas 3\n");
    wait_job(&server, &id, "finished", 30);
    let (ok, out, _) = maas(&["job", "list"]);
    assert!(ok && out.contains(&id) && out.contains("finished"), "{out}");
    let (ok, out, _) = maas(&["job", "show", &id]);
    assert!(ok);
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["tasks"][0]["name"], "greet");

    let slow = dir.path().join("slow.yaml");
    std::fs::write(&slow, "name: slow\ntasks:\n  - name: nap\n    kind: script\n    script: sleep 30\n  - name: after\n    kind: script\n    depends_on: [nap]\n    script: echo after\n").unwrap();
    let (_, out, _) = maas(&["job", "submit", slow.to_str().unwrap()]);
    let slow_id = out.trim().to_owned();
    let (ok, out, err) = maas(&["job", "cancel", &slow_id]);
    assert!(ok, "{err}");
    assert!(out.contains("canceled"), "{out}");
    let (ok, _, err) = maas(&["job", "cancel", &slow_id]);
    assert!(!ok && err.contains("invalid_action"), "{err}");
    let (ok, _, err) = maas(&["job", "submit", file.to_str().unwrap(), "--var", "NOPE=1"]);
    assert!(!ok && err.contains("no variable 'NOPE'"), "{err}");
    let (ok, _, err) = maas(&["job", "submit", "/nonexistent.yaml"]);
    assert!(!ok && err.contains("/nonexistent.yaml"), "{err}");
    // The killed job's running nap process is ended.
    let (ok, _, _) = maas(&["job", "kill", &slow_id]);
    assert!(!ok, "a canceled job cannot be killed");
}

#[test]
fn a_csv_is_loaded_preprocessed_trained_and_evaluated() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    // A semicolon-separated file with a categorical column, a column to drop and gaps, in a
    // folder the server opens to built-in tasks.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        &store,
        Options::default().env(
            "MAAS__SCHEDULER__DATA_ROOTS",
            &format!("[\"{}\"]", dir.path().display()),
        ),
    );
    let data = dir.path().join("fruit.csv");
    let mut text = String::from("weight;colour;id;kind\n");
    for i in 0..120 {
        let apple = i % 2 == 0;
        let weight = if i % 17 == 0 {
            String::new()
        } else {
            format!("{}", if apple { 150 + i % 20 } else { 120 + i % 15 })
        };
        let colour = if apple { "red" } else { "yellow" };
        let kind = if apple { "apple" } else { "banana" };
        text.push_str(&format!("{weight};{colour};{i};{kind}\n"));
    }
    std::fs::write(&data, text).unwrap();
    let workflow = format!(
        r#"
name: fruit
tasks:
  - name: load
    kind: load_csv
    params: {{path: "{}", delimiter: ";", label: kind}}
  - name: split
    kind: split
    depends_on: [load]
    params: {{data: "${{DATA}}", label: "${{LABEL}}", train_size: 0.75, seed: 3, stratify: true}}
  - name: prepare
    kind: preprocess
    depends_on: [split]
    params: {{train: "${{TRAIN}}", test: "${{TEST}}", label: "${{LABEL}}", drop: [id], missing: mean, encode: [colour], scale: standard}}
  - name: train
    kind: train
    depends_on: [prepare]
    params: {{train: "${{TRAIN}}", label: "${{LABEL}}", algorithm: gaussian_nb, preprocess: "${{PREPROCESS}}"}}
  - name: evaluate
    kind: evaluate
    depends_on: [train]
    params: {{model: "${{MODEL}}", test: "${{TEST}}", label: "${{LABEL}}", task: "${{TASK}}", classes: "${{CLASSES}}"}}
"#,
        data.display()
    );
    let id = submit(&server, &workflow, json!({}));
    wait_job(&server, &id, "finished", 60);
    let load = results_of(&server, &id, "load");
    assert_eq!(load["metrics"]["rows"], 120);
    let train = results_of(&server, &id, "train");
    assert_eq!(
        train["variables"]["FEATURES"],
        r#"["weight","colour=red","colour=yellow"]"#
    );
    assert_eq!(train["variables"]["CLASSES"], r#"["apple","banana"]"#);
    let evaluate = results_of(&server, &id, "evaluate");
    assert_eq!(evaluate["metrics"]["accuracy"], 1.0, "{evaluate:#}");

    // A task that names a missing column fails with the column named.
    let broken = workflow.replace("label: kind}", "label: sort}");
    let id = submit(&server, &broken, json!({}));
    let job = wait_job(&server, &id, "failed", 60);
    let error = job["tasks"][0]["error"].as_str().unwrap();
    assert!(error.contains("'sort'"), "{error}");
}
