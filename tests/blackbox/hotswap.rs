//! Hot swap under load: deploy, undeploy, roll back and replace versions while clients predict.
//! No request fails, no answer mixes versions, and each answer matches the state of the model at
//! some moment while the request was in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

const NAMES: [&str; 3] = ["setosa", "versicolor", "virginica"];
const DEFAULT_CLIENTS: usize = 16;
const V1_CLIENTS: usize = 4;
const PAUSE: Duration = Duration::from_millis(400);

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// 200 with the reference answer of the version it names.
    Served(u64),
    /// 409 `version_not_deployed`.
    NotDeployed,
    /// Anything else, described.
    Failed(String),
}

struct Sample {
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

/// The reference answer of each version: v1 is iris_logreg with class names, v2 iris_logreg_v2
/// with class names, v3 iris_logreg_v2 without (numeric labels).
struct References {
    body: Value,
    answers: BTreeMap<u64, (Value, Value)>,
}

impl References {
    fn new() -> References {
        let all = expected();
        let named = |key: &str| -> Value {
            json!(all[key]["outputs"]["label"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| NAMES[l.as_u64().unwrap() as usize])
                .collect::<Vec<_>>())
        };
        let probabilities = |key: &str| all[key]["outputs"]["probabilities"].clone();
        assert_eq!(
            all["iris_logreg"]["inputs"], all["iris_logreg_v2"]["inputs"],
            "both fixtures have the same reference rows"
        );
        let mut answers = BTreeMap::new();
        answers.insert(1, (named("iris_logreg"), probabilities("iris_logreg")));
        answers.insert(
            2,
            (named("iris_logreg_v2"), probabilities("iris_logreg_v2")),
        );
        // Version 3 is deployed without class names: it carries version 2's.
        answers.insert(
            3,
            (named("iris_logreg_v2"), probabilities("iris_logreg_v2")),
        );
        References {
            body: json!({ "instances": all["iris_logreg"]["inputs"] }),
            answers,
        }
    }

    /// Check one answer; `Err` says what is wrong.
    fn check(&self, answer: &Value) -> Result<u64, String> {
        let version = answer["version"]
            .as_u64()
            .ok_or_else(|| format!("no version in {answer}"))?;
        let (labels, probabilities) = self
            .answers
            .get(&version)
            .ok_or_else(|| format!("unknown version {version}: {answer}"))?;
        if answer["model"] != "iris" {
            return Err(format!("wrong model: {answer}"));
        }
        if &answer["predictions"] != labels {
            return Err(format!(
                "version {version}: predictions {} instead of {labels}",
                answer["predictions"]
            ));
        }
        if !close(&answer["probabilities"], probabilities, 1e-4) {
            return Err(format!(
                "version {version}: probabilities {} instead of {probabilities}",
                answer["probabilities"]
            ));
        }
        Ok(version)
    }
}

fn close(got: &Value, want: &Value, tolerance: f64) -> bool {
    match (got, want) {
        (Value::Array(g), Value::Array(w)) => {
            g.len() == w.len() && g.iter().zip(w).all(|(g, w)| close(g, w, tolerance))
        }
        _ => match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() <= tolerance,
            _ => false,
        },
    }
}

fn client_loop(
    url: String,
    token: String,
    references: Arc<References>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<Sample>> {
    std::thread::spawn(move || {
        // Each client thread has its own connection pool, like 16 separate callers.
        let client = authorized_client(&token);
        let hard_stop = Instant::now() + Duration::from_secs(30);
        let mut samples = Vec::new();
        while !stop.load(Ordering::Acquire) && Instant::now() < hard_stop {
            let start = Instant::now();
            let sent = client.post(&url).json(&references.body).send();
            let outcome = match sent {
                Err(e) => Outcome::Failed(format!("transport error: {e}")),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.text().unwrap_or_default();
                    match (status, serde_json::from_str::<Value>(&text)) {
                        (200, Ok(answer)) => match references.check(&answer) {
                            Ok(version) => Outcome::Served(version),
                            Err(e) => Outcome::Failed(e),
                        },
                        (409, Ok(body)) if body["code"] == "version_not_deployed" => {
                            Outcome::NotDeployed
                        }
                        _ => Outcome::Failed(format!("{status} {text}")),
                    }
                }
            };
            samples.push(Sample {
                start,
                end: Instant::now(),
                outcome,
            });
        }
        samples
    })
}

/// One step of the swap sequence: when it ran, and the state after it.
struct Step {
    what: &'static str,
    start: Instant,
    end: Instant,
}

/// The state after each step (index 0: before the first one): the default version and whether
/// version 1 is deployed.
static STATES: [(u64, bool); 5] = [
    (1, true),  // v1 only
    (2, true),  // deploy v2 (append): v1, v2
    (2, false), // undeploy v1: v2
    (1, true),  // roll back to v1 (append=false): v1
    (3, false), // deploy v3 (append=false): v3
];

fn hot_swap(store: &Store) {
    let mut server = Server::start(store);
    server.deploy("iris", "iris_logreg.onnx", &[("class_names", IRIS_CLASSES)]);
    let references = Arc::new(References::new());
    // Warm up and check the reference before the swap starts.
    let first = server.predict_ok("iris", None, &references.body);
    assert_eq!(references.check(&first), Ok(1));

    let stop = Arc::new(AtomicBool::new(false));
    let default_url = format!("{}/v1/models/iris/predict", server.url);
    let v1_url = format!("{}/v1/models/iris/versions/1/predict", server.url);
    let default_clients: Vec<_> = (0..DEFAULT_CLIENTS)
        .map(|_| {
            client_loop(
                default_url.clone(),
                server.token.clone(),
                references.clone(),
                stop.clone(),
            )
        })
        .collect();
    let v1_clients: Vec<_> = (0..V1_CLIENTS)
        .map(|_| {
            client_loop(
                v1_url.clone(),
                server.token.clone(),
                references.clone(),
                stop.clone(),
            )
        })
        .collect();

    let mut steps = Vec::new();
    let mut step = |what: &'static str, action: &mut dyn FnMut()| {
        std::thread::sleep(PAUSE);
        let start = Instant::now();
        action();
        steps.push(Step {
            what,
            start,
            end: Instant::now(),
        });
    };
    step("deploy v2 (append)", &mut || {
        let r = server.deploy(
            "iris",
            "iris_logreg_v2.onnx",
            &[("class_names", IRIS_CLASSES), ("append", "true")],
        );
        assert_eq!(r["version"], 2, "{r}");
    });
    step("undeploy v1", &mut || {
        let r = server.post_empty("/v1/models/iris/versions/1/undeploy");
        assert_eq!(r.status(), 200);
    });
    step("roll back to v1", &mut || {
        let r = server.post_json(
            "/v1/models/iris/versions/1/deploy",
            &json!({"append": false}),
        );
        assert_eq!(r.status(), 200);
    });
    step("deploy v3 (append=false)", &mut || {
        let r = server.deploy("iris", "iris_logreg_v2.onnx", &[("append", "false")]);
        assert_eq!(r["version"], 3, "{r}");
    });
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Release);
    let join = |clients: Vec<JoinHandle<Vec<Sample>>>| -> Vec<Sample> {
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect()
    };
    let default_samples = join(default_clients);
    let v1_samples = join(v1_clients);

    // The states a request may have seen: from the last step done before it started to the last
    // step begun before it ended.
    let states_seen = |sample: &Sample| {
        let lo = steps.iter().filter(|s| s.end <= sample.start).count();
        let hi = steps.iter().filter(|s| s.start < sample.end).count();
        &STATES[lo..=hi]
    };
    let timeline = || {
        steps
            .iter()
            .map(|s| format!("{} took {:?}", s.what, s.end - s.start))
            .collect::<Vec<_>>()
            .join("; ")
    };

    let mut problems = Vec::new();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for sample in &default_samples {
        let allowed = states_seen(sample);
        match &sample.outcome {
            Outcome::Served(v) => {
                *seen.entry(*v).or_default() += 1;
                if !allowed.iter().any(|(d, _)| d == v) {
                    problems.push(format!(
                        "default route answered version {v}, the default was one of {:?}",
                        allowed.iter().map(|(d, _)| d).collect::<Vec<_>>()
                    ));
                }
            }
            other => problems.push(format!("default route: {other:?}")),
        }
    }
    let mut v1_seen = (0, 0);
    for sample in &v1_samples {
        let allowed = states_seen(sample);
        match &sample.outcome {
            Outcome::Served(1) => {
                v1_seen.0 += 1;
                if !allowed.iter().any(|(_, up)| *up) {
                    problems.push("version 1 answered while undeployed".to_owned());
                }
            }
            Outcome::NotDeployed => {
                v1_seen.1 += 1;
                if !allowed.iter().any(|(_, up)| !*up) {
                    problems.push("version 1 refused while deployed".to_owned());
                }
            }
            other => problems.push(format!("version 1 route: {other:?}")),
        }
    }
    eprintln!(
        "hot swap: {} default requests {seen:?}, {} v1 requests (200: {}, 409: {}); {}",
        default_samples.len(),
        v1_samples.len(),
        v1_seen.0,
        v1_seen.1,
        timeline()
    );
    if !problems.is_empty() {
        let total = problems.len();
        problems.sort();
        problems.dedup();
        panic!(
            "{total} bad answers during the hot swap ({}); distinct:\n{}\nserver log:\n{}",
            timeline(),
            problems.join("\n"),
            server.log()
        );
    }
    assert!(
        seen.len() > 1,
        "the default route only ever answered {seen:?}"
    );
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "every default version was served at some point"
    );
    assert!(
        v1_seen.0 > 0 && v1_seen.1 > 0,
        "version 1 was both served and refused: {v1_seen:?}"
    );

    // After the swap the state is exactly the last one.
    let model = server.get_json("/v1/models/iris");
    assert_eq!(model["default_version"], 3);
    let deployed: Vec<u64> = model["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "deployed")
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(deployed, [3]);
}

on_both_stores!(predictions_never_fail_during_hot_swap, |store: &Store| {
    hot_swap(store)
});
