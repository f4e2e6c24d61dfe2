//! The training scheduler through HTTP: workflows submitted as jobs, tasks run as real processes
//! in their own folders, variables passed between tasks, retries, timeouts, pause/resume/cancel/
//! kill, priorities, the catalog, analytics, and the restart of a server in the middle of a task.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;
use crate::on_both_stores;

pub fn submit(server: &Server, workflow: &str, variables: Value) -> String {
    let r = server.post_json(
        "/v1/jobs",
        &json!({"workflow": workflow, "variables": variables}),
    );
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 202, "submit: {body}");
    assert_eq!(body["state"], "pending");
    body["id"].as_str().unwrap().to_owned()
}

/// Wait (up to `secs`) until the job is in `state`; returns the job.
pub fn wait_job(server: &Server, id: &str, state: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let job = server.get_json(&format!("/v1/jobs/{id}"));
        if job["state"] == state {
            return job;
        }
        let over = ["finished", "failed", "canceled", "killed", "in_error"];
        if Instant::now() > deadline || over.contains(&job["state"].as_str().unwrap_or("")) {
            panic!("job {id} did not reach {state}: {job:#}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn task<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {job:#}"))
}

fn wait_task(server: &Server, id: &str, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = server.get_json(&format!("/v1/jobs/{id}"));
        if task(&job, name)["state"] == state {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "task {name} did not reach {state}: {job:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const PIPELINE: &str = r#"
name: pipeline
description: three script tasks passing variables along
variables:
  GREETING: hello
  TIMES: 2
tasks:
  - name: produce
    kind: script
    script: |
      echo "producing $GREETING"
      echo "to stderr" >&2
      echo "WORD=${GREETING}-world" >> "$MAAS_EXPORTS"
      echo '{"quality": 0.75}' > "$MAAS_METRICS"
      mkdir -p "$MAAS_ARTIFACTS/sub" && echo "artifact body" > "$MAAS_ARTIFACTS/sub/out.txt"
      ln -s /etc/hostname "$MAAS_ARTIFACTS/escape"
  - name: transform
    kind: script
    language: python
    depends_on: [produce]
    variables:
      SUFFIX: "!"
    script: |
      import os
      word = os.environ["WORD"] * int(os.environ["TIMES"]) + os.environ["SUFFIX"]
      print("transformed", word)
      with open(os.environ["MAAS_EXPORTS"], "a") as f:
          f.write(f"RESULT={word}\n")
  - name: report
    kind: script
    depends_on: [transform]
    script: echo "final $RESULT from $WORD"
"#;

on_both_stores!(
    a_workflow_runs_its_tasks_in_order_passing_variables,
    |store: &Store| {
        let server = Server::start(store);
        let id = submit(&server, PIPELINE, json!({"GREETING": "hi"}));
        let job = wait_job(&server, &id, "finished", 30);
        assert_eq!(job["owner"], "admin");
        assert_eq!(job["variables"], json!({"GREETING": "hi", "TIMES": "2"}));
        for name in ["produce", "transform", "report"] {
            let t = task(&job, name);
            assert_eq!(t["state"], "finished", "{t}");
            assert_eq!(t["attempt"], 1);
            assert_eq!(t["executor"], "local");
            assert!(t["duration_secs"].as_f64().unwrap() >= 0.0);
        }
        assert_eq!(task(&job, "transform")["depends_on"], json!(["produce"]));
        // Dependencies ran first.
        let start = |n: &str| task(&job, n)["started_at"].as_str().unwrap().to_owned();
        let end = |n: &str| task(&job, n)["finished_at"].as_str().unwrap().to_owned();
        assert!(end("produce") <= start("transform") && end("transform") <= start("report"));

        // Results: exported variables, metrics, artifacts.
        let results = server.get_json(&format!("/v1/jobs/{id}/results"));
        let by_name = |n: &str| {
            results["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == n)
                .unwrap()
                .clone()
        };
        assert_eq!(by_name("produce")["variables"], json!({"WORD": "hi-world"}));
        assert_eq!(by_name("produce")["metrics"], json!({"quality": 0.75}));
        assert_eq!(
            by_name("transform")["variables"],
            json!({"RESULT": "hi-worldhi-world!"})
        );
        assert_eq!(
            by_name("produce")["artifacts"],
            json!([{"path": "sub/out.txt", "size_bytes": 14}])
        );
        // A link out of the task's folder is neither listed nor served.
        assert_error(
            server.get(&format!("/v1/jobs/{id}/tasks/produce/artifacts/escape")),
            404,
            "artifact_not_found",
        );
        let r = server.get(&format!(
            "/v1/jobs/{id}/tasks/produce/artifacts/sub/out.txt"
        ));
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().unwrap(), "artifact body\n");
        assert_error(
            server.get(&format!("/v1/jobs/{id}/tasks/produce/artifacts/nope.txt")),
            404,
            "artifact_not_found",
        );

        // Logs: stdout and stderr, with the offset for following.
        let r = server.get(&format!("/v1/jobs/{id}/tasks/report/logs"));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-log-complete"], "true");
        assert_eq!(r.text().unwrap(), "final hi-worldhi-world! from hi-world\n");
        let r = server.get(&format!("/v1/jobs/{id}/tasks/produce/logs?stream=stderr"));
        assert_eq!(r.text().unwrap(), "to stderr\n");
        let r = server.get(&format!("/v1/jobs/{id}/tasks/produce/logs?offset=3"));
        assert_eq!(r.headers()["x-log-offset"], "13");
        assert_eq!(r.text().unwrap(), "ducing hi\n");
        assert_error(
            server.get(&format!("/v1/jobs/{id}/tasks/produce/logs?stream=both")),
            422,
            "invalid_argument",
        );
        assert_error(
            server.get(&format!("/v1/jobs/{id}/tasks/produce/logs?attempt=2")),
            422,
            "invalid_argument",
        );
        assert_error(
            server.get(&format!("/v1/jobs/{id}/tasks/nope/logs")),
            404,
            "task_not_found",
        );

        // Listing, filters, summary, CSV.
        let list = server.get_json("/v1/jobs?name=pipeline&state=finished");
        assert_eq!(list["total"], 1);
        assert_eq!(list["jobs"][0]["id"], id.as_str());
        assert!(list["jobs"][0].get("tasks").is_none());
        assert_eq!(server.get_json("/v1/jobs?owner=nobody")["total"], 0);
        assert_eq!(
            server.get_json("/v1/jobs?since=2999-01-01T00:00:00Z")["total"],
            0
        );
        let summary = server.get_json("/v1/jobs/summary");
        assert_eq!(summary["total"], 1);
        assert_eq!(summary["states"]["finished"], 1);
        assert_eq!(summary["states"]["failed"], 0);
        assert_eq!(summary["success_ratio"], 1.0);
        assert_eq!(summary["in_progress"], 0);
        assert!(summary["average_duration_secs"].as_f64().unwrap() > 0.0);
        let r = server.get("/v1/jobs?format=csv");
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let text = r.text().unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        let row = reader.records().next().unwrap().unwrap();
        let col = |name: &str| row[headers.iter().position(|h| h == name).unwrap()].to_owned();
        assert_eq!(col("id"), id);
        assert_eq!(col("state"), "finished");
        assert!(col("variables").contains("\"GREETING\":\"hi\""));
        assert!(col("results").contains("hi-worldhi-world!"));
        assert_error(server.get("/v1/jobs?state=done"), 422, "invalid_argument");

        // Metrics: jobs by state, attempts by kind and outcome, their durations.
        let text = server.get("/metrics").text().unwrap();
        for line in [
            "maas_jobs{state=\"finished\"} 1",
            "maas_jobs{state=\"failed\"} 0",
            "maas_task_attempts_total{kind=\"script\",outcome=\"finished\"} 3",
            "maas_task_duration_seconds_count{kind=\"script\"} 3",
            "maas_tasks_running 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in /metrics");
        }

        // The audit trail has the submit and the end.
        let audit = server.get_json("/v1/audit?kind=job_submitted");
        assert_eq!(audit["events"][0]["details"]["job"], id.as_str());
        assert_eq!(audit["events"][0]["actor"], "admin");
        let audit = server.get_json("/v1/audit?kind=job_finished");
        assert_eq!(audit["events"][0]["details"]["state"], "finished");
    }
);

on_both_stores!(
    bad_workflows_are_refused_with_the_problem_named,
    |store: &Store| {
        let server = Server::start(store);
        let refuse = |body: Value, code: &str, status: u16, needle: &str| {
            let err = assert_error(server.post_json("/v1/jobs", &body), status, code);
            let message = err["message"].as_str().unwrap();
            assert!(message.contains(needle), "{message} should name {needle}");
        };
        let cyclic = PIPELINE.replace(
            "    kind: script\n    script: |\n      echo \"producing",
            "    kind: script\n    depends_on: [report]\n    script: |\n      echo \"producing",
        );
        refuse(
            json!({"workflow": cyclic}),
            "invalid_workflow",
            422,
            "cycle: produce -> report -> transform -> produce",
        );
        refuse(
            json!({"workflow": PIPELINE.replace("depends_on: [transform]", "depends_on: [nowhere]")}),
            "invalid_workflow",
            422,
            "'nowhere'",
        );
        refuse(
            json!({"workflow": PIPELINE.replace("name: report", "name: produce")}),
            "invalid_workflow",
            422,
            "two tasks are named 'produce'",
        );
        refuse(
            json!({"workflow": PIPELINE.replace("kind: script\n    depends_on: [transform]", "kind: trian\n    depends_on: [transform]")}),
            "invalid_workflow",
            422,
            "unknown kind 'trian'",
        );
        refuse(
            json!({"workflow": PIPELINE, "variables": {"GREETNG": "x"}}),
            "invalid_workflow",
            422,
            "no variable 'GREETNG'",
        );
        refuse(
            json!({"workflow": PIPELINE, "priority": "urgent"}),
            "invalid_workflow",
            422,
            "urgent",
        );
        refuse(
            json!({"workflow": "name: [unclosed"}),
            "invalid_workflow",
            422,
            "YAML",
        );
        refuse(json!({"workflow": ""}), "invalid_workflow", 422, "empty");
        // A typo names the key, its line and what it could be, not the parser's notation.
        for (typo, needle) in [
            (
                PIPELINE.replacen("tasks:", "taks:", 1),
                "unknown key 'taks' at line 7; expected one of: name, description, variables,",
            ),
            (
                PIPELINE.replacen("    language: python", "    langauge: python", 1),
                "unknown key 'langauge' at line 19 (in tasks[1]); expected one of: name,",
            ),
        ] {
            let err = assert_error(
                server.post_json("/v1/jobs", &json!({"workflow": typo})),
                422,
                "invalid_workflow",
            );
            let message = err["message"].as_str().unwrap();
            assert!(message.contains(needle), "{message}");
            assert!(
                !message.contains('`') && !message.contains("column"),
                "{message}"
            );
        }
        // A `${NAME}` that nothing will define is refused now, not when the task runs.
        let unresolved = r#"
name: refs
variables: {SEED: 7}
tasks:
  - name: load
    kind: load_dataset
    params: {name: iris}
  - name: split
    kind: split
    depends_on: [load]
    params: {data: "${DATA}", label: "${LABLE}", seed: "${SEED}"}
"#;
        refuse(
            json!({"workflow": unresolved}),
            "invalid_workflow",
            422,
            "task 'split' params.label refers to ${LABLE}, which no variable declares and no \
             task it depends on exports; it can use: DATA, LABEL, MODEL_NAME, MODEL_VERSION, SEED",
        );
        refuse(json!({}), "invalid_workflow", 422, "either `workflow`");
        refuse(
            json!({"name": "unsaved"}),
            "workflow_not_found",
            404,
            "unsaved",
        );
        refuse(
            json!({"workflow": 5}),
            "invalid_workflow",
            422,
            "YAML or JSON text",
        );
        refuse(
            json!({"workflow": PIPELINE, "extra": 1}),
            "invalid_request",
            400,
            "extra",
        );
        let r = server
            .client
            .post(format!("{}/v1/jobs", server.url))
            .header("content-type", "application/json")
            .body("")
            .send()
            .unwrap();
        assert_error(r, 400, "invalid_json");
        // Nothing was stored.
        assert_eq!(server.get_json("/v1/jobs")["total"], 0);
        assert_error(server.get("/v1/jobs/nope"), 404, "job_not_found");
        assert_error(
            server.post_empty("/v1/jobs/nope/cancel"),
            404,
            "job_not_found",
        );
        // A key limited to some models may not run jobs (they can deploy any model).
        server.post_json(
            "/v1/users",
            &json!({"username": "ci", "password": "a-long-password-1", "role": "deployer"}),
        );
        let r = server.post_json(
            "/v1/api-keys",
            &json!({"username": "ci", "role": "deployer", "models": ["iris"]}),
        );
        assert_eq!(r.status(), 201);
        let key: Value = r.json().unwrap();
        let scoped = authorized_client(key["key"].as_str().unwrap());
        let r = scoped
            .post(format!("{}/v1/jobs", server.url))
            .json(&json!({"workflow": PIPELINE}))
            .send()
            .unwrap();
        let body = assert_error(r, 403, "forbidden");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("limited to models iris"),
            "{body}"
        );
        // Nor read them: their logs and results may show any model's data.
        for path in [
            "/v1/jobs",
            "/v1/jobs/summary",
            "/v1/jobs/nope",
            "/v1/jobs/nope/results",
            "/v1/jobs/nope/tasks/t/logs",
            "/v1/workflows",
            "/v1/workflows/w",
        ] {
            let r = scoped.get(format!("{}{path}", server.url)).send().unwrap();
            assert_error(r, 403, "forbidden");
        }
        // Creating a model outside the scope is refused before the store is asked, so a 409
        // cannot reveal that the model exists; inside the scope it works.
        let r = server.post_json("/v1/models", &json!({"name": "secret"}));
        assert_eq!(r.status(), 201);
        for name in ["secret", "other"] {
            let r = scoped
                .post(format!("{}/v1/models", server.url))
                .json(&json!({"name": name}))
                .send()
                .unwrap();
            assert_error(r, 403, "forbidden");
        }
        let r = scoped
            .post(format!("{}/v1/models", server.url))
            .json(&json!({"name": "iris"}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        // Viewers may look but not submit.
        let r = server
            .anonymous
            .post(format!("{}/v1/jobs", server.url))
            .json(&json!({"workflow": PIPELINE}))
            .send()
            .unwrap();
        assert_error(r, 401, "unauthorized");
    }
);

const FLAKY: &str = r#"
name: flaky
on_task_error: suspend
tasks:
  - name: shaky
    kind: script
    retries: {max_attempts: 2, backoff_secs: 0.2}
    script: |
      echo "attempt $MAAS_ATTEMPT"
      [ "$MAAS_ATTEMPT" -ge 2 ] || exit 3
  - name: stubborn
    kind: script
    depends_on: [shaky]
    script: |
      echo "attempt $MAAS_ATTEMPT"
      [ "$MAAS_ATTEMPT" -ge 2 ] || exit 4
  - name: after
    kind: script
    depends_on: [stubborn]
    script: echo after
"#;

on_both_stores!(
    failed_tasks_are_retried_and_a_job_in_error_waits_for_a_decision,
    |store: &Store| {
        let server = Server::start(store);
        let id = submit(&server, FLAKY, json!({}));
        let job = wait_job(&server, &id, "in_error", 30);
        let shaky = task(&job, "shaky");
        assert_eq!(shaky["state"], "finished");
        assert_eq!(shaky["attempt"], 2);
        assert_eq!(shaky["attempts"][0]["state"], "failed");
        assert_eq!(
            shaky["attempts"][0]["error"],
            "the script exited with code 3"
        );
        // Each attempt says how its script exited.
        assert_eq!(shaky["attempts"][0]["exit_code"], 3, "{shaky}");
        assert_eq!(shaky["attempts"][1]["exit_code"], 0, "{shaky}");
        let stubborn = task(&job, "stubborn");
        assert_eq!(stubborn["state"], "failed");
        assert_eq!(stubborn["error"], "the script exited with code 4");
        assert_eq!(task(&job, "after")["state"], "pending");
        assert_eq!(job["reason"], "task stubborn failed");
        let r = server.get(&format!("/v1/jobs/{id}/tasks/stubborn/logs"));
        assert_eq!(r.text().unwrap(), "attempt 1\n");

        // Retrying a task that did not fail, or resuming, is refused.
        assert_error(
            server.post_empty(&format!("/v1/jobs/{id}/tasks/shaky/retry")),
            409,
            "invalid_action",
        );
        assert_error(
            server.post_empty(&format!("/v1/jobs/{id}/resume")),
            409,
            "invalid_action",
        );
        let r = server.post_empty(&format!("/v1/jobs/{id}/tasks/stubborn/retry"));
        assert_eq!(r.status(), 200);
        let job = wait_job(&server, &id, "finished", 30);
        assert_eq!(task(&job, "stubborn")["attempt"], 2);
        assert_eq!(task(&job, "after")["state"], "finished");
        let audit = server.get_json("/v1/audit?kind=job_retry");
        assert_eq!(audit["events"][0]["details"]["task"], "stubborn");

        // The default policy fails the job and skips what depended on the failure.
        let failing = FLAKY.replace("on_task_error: suspend\n", "");
        let id = submit(&server, &failing, json!({}));
        let job = wait_job(&server, &id, "failed", 30);
        assert_eq!(task(&job, "after")["state"], "skipped");
        let summary = server.get_json("/v1/jobs/summary");
        assert_eq!(summary["states"]["failed"], 1);
        assert_eq!(summary["success_ratio"], 0.5);
    }
);

const SLOW: &str = r#"
name: slow
tasks:
  - name: first
    kind: script
    script: |
      echo started
      sleep 2.5
  - name: second
    kind: script
    depends_on: [first]
    script: echo second
"#;

const ENDLESS: &str = r#"
name: endless
tasks:
  - name: forever
    kind: script
    script: |
      sleep 300 &
      echo "CHILD=$!" > child.env
      wait
  - name: never
    kind: script
    depends_on: [forever]
    script: echo never
  - name: bounded
    kind: script
    timeout_secs: 1
    script: sleep 300
"#;

fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

on_both_stores!(jobs_pause_resume_cancel_and_kill, |store: &Store| {
    let server = Server::start(store);
    // Pause while the first task runs: it finishes, the second does not start until resume.
    let id = submit(&server, SLOW, json!({}));
    wait_task(&server, &id, "first", "running");
    let r = server.post_empty(&format!("/v1/jobs/{id}/pause"));
    assert_eq!(r.status(), 200);
    let job = wait_task(&server, &id, "first", "finished");
    assert_eq!(job["state"], "paused");
    std::thread::sleep(Duration::from_millis(800));
    let job = server.get_json(&format!("/v1/jobs/{id}"));
    assert_eq!(task(&job, "second")["state"], "pending");
    assert_error(
        server.post_empty(&format!("/v1/jobs/{id}/pause")),
        409,
        "invalid_action",
    );
    assert_eq!(
        server.post_empty(&format!("/v1/jobs/{id}/resume")).status(),
        200
    );
    wait_job(&server, &id, "finished", 20);
    assert_error(
        server.post_empty(&format!("/v1/jobs/{id}/kill")),
        409,
        "invalid_action",
    );
    assert_error(
        server.post_empty(&format!("/v1/jobs/{id}/explode")),
        404,
        "route_not_found",
    );

    // Cancel: the running task is let finish, the rest never starts.
    let id = submit(&server, SLOW, json!({}));
    wait_task(&server, &id, "first", "running");
    let job: Value = server
        .post_empty(&format!("/v1/jobs/{id}/cancel"))
        .json()
        .unwrap();
    assert_eq!(job["state"], "canceled");
    assert_eq!(task(&job, "second")["state"], "skipped");
    let job = wait_task(&server, &id, "first", "finished");
    assert_eq!(job["state"], "canceled");

    // Kill: running processes (and what they started) end; timeouts end attempts too.
    let id = submit(&server, ENDLESS, json!({}));
    let job = wait_task(&server, &id, "bounded", "failed");
    assert_eq!(
        task(&job, "bounded")["error"],
        "timed out after 1 s (timeout_secs)"
    );
    wait_task(&server, &id, "forever", "running");
    let pid = native_id(&server, &id, "forever");
    assert!(alive(&pid));
    let job: Value = server
        .post_empty(&format!("/v1/jobs/{id}/kill"))
        .json()
        .unwrap();
    assert_eq!(job["state"], "killed");
    let job = wait_task(&server, &id, "forever", "killed");
    assert_eq!(task(&job, "never")["state"], "skipped");
    wait_for("the killed task's process to end", || !alive(&pid));
    let summary = server.get_json("/v1/jobs/summary?name=endless");
    assert_eq!(summary["states"]["killed"], 1);
});

const ONE_SLOT: &str = r#"
name: NAME
priority: PRIORITY
tasks:
  - name: work
    kind: script
    script: sleep SECONDS
"#;

on_both_stores!(
    priorities_order_the_pool_and_gpu_tasks_wait,
    |store: &Store| {
        let server =
            Server::start_with(store, Options::default().env("MAAS__SCHEDULER__SLOTS", "1"));
        let job = |name: &str, priority: &str| {
            submit(
                &server,
                &ONE_SLOT
                    .replace("NAME", name)
                    .replace("PRIORITY", priority)
                    // The blocker holds the only slot while the others are submitted.
                    .replace("SECONDS", if name == "blocker" { "2" } else { "0.2" }),
                json!({}),
            )
        };
        let blocker = job("blocker", "normal");
        wait_task(&server, &blocker, "work", "running");
        let low = job("low", "low");
        let idle = job("idle", "idle");
        let high = job("high", "highest");
        for id in [&blocker, &low, &idle, &high] {
            wait_job(&server, id, "finished", 30);
        }
        let started = |id: &str| {
            let job = server.get_json(&format!("/v1/jobs/{id}"));
            task(&job, "work")["started_at"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert!(started(&high) < started(&low), "highest before low");
        assert!(started(&low) < started(&idle), "low before idle");
        let listed = server.get_json("/v1/jobs?name=high");
        assert_eq!(listed["jobs"][0]["priority"], "highest");

        // A task that needs a GPU waits on a pool that has none.
        let gpu = r#"
name: gpu
tasks:
  - name: train
    kind: script
    resources: {gpus: 1}
    script: echo gpu
"#;
        let id = submit(&server, gpu, json!({}));
        std::thread::sleep(Duration::from_millis(1500));
        let job = server.get_json(&format!("/v1/jobs/{id}"));
        assert_eq!(job["state"], "pending");
        assert_eq!(task(&job, "train")["state"], "pending");
        assert_eq!(
            server.post_empty(&format!("/v1/jobs/{id}/cancel")).status(),
            200
        );
    }
);

on_both_stores!(
    saved_workflows_have_versions_and_run_by_name,
    |store: &Store| {
        let server = Server::start(store);
        let r = server.post_json("/v1/workflows", &json!({"workflow": PIPELINE}));
        assert_eq!(r.status(), 201);
        let saved: Value = r.json().unwrap();
        assert_eq!(
            (saved["name"].as_str(), saved["version"].as_u64()),
            (Some("pipeline"), Some(1))
        );
        assert_eq!(saved["source"], PIPELINE);
        let changed = PIPELINE.replace("GREETING: hello", "GREETING: bonjour");
        let saved: Value = server
            .post_json("/v1/workflows", &json!({"workflow": changed}))
            .json()
            .unwrap();
        assert_eq!(saved["version"], 2);
        let history = server.get_json("/v1/workflows/pipeline");
        assert_eq!(history["versions"], json!([1, 2]));
        assert_eq!(
            history["latest"]["definition"]["variables"]["GREETING"],
            "bonjour"
        );
        let list = server.get_json("/v1/workflows");
        assert_eq!(list["workflows"].as_array().unwrap().len(), 1);
        assert_eq!(
            server.get_json("/v1/workflows/pipeline/versions/1")["definition"]["variables"]
                ["GREETING"],
            "hello"
        );
        assert_error(
            server.get("/v1/workflows/pipeline/versions/3"),
            404,
            "workflow_not_found",
        );
        assert_error(server.get("/v1/workflows/other"), 404, "workflow_not_found");
        assert_error(
            server.post_json("/v1/workflows", &json!({"workflow": "name: x\ntasks: []"})),
            422,
            "invalid_workflow",
        );

        // By name: the latest version, or a given one, with variables.
        let r = server.post_json(
            "/v1/jobs",
            &json!({"name": "pipeline", "variables": {"TIMES": 3}}),
        );
        assert_eq!(r.status(), 202);
        let job: Value = r.json().unwrap();
        assert_eq!(job["workflow_version"], 2);
        let id = job["id"].as_str().unwrap();
        wait_job(&server, id, "finished", 30);
        let results = server.get_json(&format!("/v1/jobs/{id}/results"));
        assert_eq!(
            results["tasks"][1]["variables"]["RESULT"],
            "bonjour-worldbonjour-worldbonjour-world!"
        );
        let r = server.post_json("/v1/jobs", &json!({"name": "pipeline", "version": 1}));
        let job: Value = r.json().unwrap();
        assert_eq!(job["variables"]["GREETING"], "hello");
        assert_error(
            server.post_json("/v1/jobs", &json!({"name": "pipeline", "version": 9})),
            404,
            "workflow_not_found",
        );
    }
);

const SURVIVOR: &str = r#"
name: survivor
tasks:
  - name: long
    kind: script
    retries: {max_attempts: 2, backoff_secs: 0}
    script: |
      echo "attempt $MAAS_ATTEMPT"
      [ "$MAAS_ATTEMPT" -ge 2 ] || sleep 60
"#;

const ONCE: &str = r#"
name: once
tasks:
  - name: once
    kind: script
    script: sleep 60
"#;

/// Wait until a running task has its process or Slurm id recorded.
fn native_id(server: &Server, id: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = server.get_json(&format!("/v1/jobs/{id}"));
        if let Some(native) = task(&job, name)["native_id"].as_str() {
            return native.to_owned();
        }
        assert!(Instant::now() < deadline, "no native id: {job:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

on_both_stores!(
    a_restart_requeues_or_fails_lost_tasks_by_their_retry_policy,
    |store: &Store| {
        let options = Options::default().env("MAAS__SCHEDULER__LEASE_SECS", "2");
        let mut server = Server::start_with(store, options);
        let id = submit(&server, SURVIVOR, json!({}));
        let once_id = submit(&server, ONCE, json!({}));
        wait_task(&server, &id, "long", "running");
        wait_task(&server, &once_id, "once", "running");
        let pid = native_id(&server, &once_id, "once");
        assert!(alive(&pid));
        let server = server.restart();
        let job = wait_job(&server, &id, "finished", 30);
        let long = task(&job, "long");
        assert_eq!(long["state"], "finished", "{long}");
        assert_eq!(long["attempt"], 2);
        let lost = long["attempts"][0]["error"].as_str().unwrap();
        assert!(lost.contains("stopped renewing its lease"), "{lost}");
        let job = wait_job(&server, &once_id, "failed", 30);
        let once = task(&job, "once");
        assert_eq!(once["state"], "failed");
        assert!(once["error"]
            .as_str()
            .unwrap()
            .contains("attempt 1 was lost"));
        // What the lost attempts left running was ended when their leases were reaped.
        wait_for("the lost attempt's process to end", || !alive(&pid));
    }
);

const ON_SLURM: &str = r#"
name: on-slurm
executor: slurm
tasks:
  - name: first
    kind: script
    sbatch_args: ["--comment=maas-blackbox"]
    resources: {cpus: 1, memory_mb: 100}
    script: |
      echo "on $(hostname) as slurm job $SLURM_JOB_ID"
      echo "SLURM_ID=$SLURM_JOB_ID" >> "$MAAS_EXPORTS"
  - name: second
    kind: script
    depends_on: [first]
    script: |
      echo "after $SLURM_ID"
      exit 7
"#;

fn slurm_available() -> bool {
    let up = std::process::Command::new("sinfo")
        .args(["-h", "-o", "%T"])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if !up {
        if std::env::var("MAAS_REQUIRE_SLURM").is_ok_and(|v| v == "1") {
            panic!(
                "MAAS_REQUIRE_SLURM=1 but no Slurm cluster answers (run deploy/slurm/install.sh)"
            );
        }
        eprintln!("NOTICE: skipping a Slurm test: no Slurm cluster (run deploy/slurm/install.sh)");
    }
    up
}

#[test]
fn tasks_run_on_slurm_with_their_logs_and_exports() {
    if !slurm_available() {
        return;
    }
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let server = Server::start(&store);
    let id = submit(&server, ON_SLURM, json!({}));
    let job = wait_job(&server, &id, "failed", 60);
    let first = task(&job, "first");
    assert_eq!(first["state"], "finished", "{job:#}");
    assert_eq!(first["executor"], "slurm");
    let slurm_id = first["native_id"].as_str().unwrap().to_owned();
    assert!(slurm_id.parse::<u64>().is_ok(), "{slurm_id}");
    let results = server.get_json(&format!("/v1/jobs/{id}/results"));
    assert_eq!(
        results["tasks"][0]["variables"]["SLURM_ID"],
        slurm_id.as_str()
    );
    let log = server
        .get(&format!("/v1/jobs/{id}/tasks/first/logs"))
        .text()
        .unwrap();
    assert!(log.contains(&format!("as slurm job {slurm_id}")), "{log}");
    let second = task(&job, "second");
    assert_eq!(second["state"], "failed");
    assert_eq!(second["error"], "the script exited with code 7");
    let log = server
        .get(&format!("/v1/jobs/{id}/tasks/second/logs"))
        .text()
        .unwrap();
    assert_eq!(log, format!("after {slurm_id}\n"));

    // Paused, a job holds what Slurm has not started yet; resumed, it releases it.
    let later = "name: later-slurm\nexecutor: slurm\ntasks:\n  - name: wait\n    kind: script\n    sbatch_args: [\"--begin=now+300\"]\n    script: echo late\n";
    let id = submit(&server, later, json!({}));
    let slurm_id = native_id(&server, &id, "wait");
    let reason = |slurm_id: &str| {
        let out = std::process::Command::new("squeue")
            .args(["-h", "-j", slurm_id, "-o", "%r"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(reason(&slurm_id), "BeginTime");
    assert_eq!(
        server.post_empty(&format!("/v1/jobs/{id}/pause")).status(),
        200
    );
    wait_for("the pending Slurm job to be held", || {
        reason(&slurm_id).starts_with("JobHeld")
    });
    assert_eq!(
        server.post_empty(&format!("/v1/jobs/{id}/resume")).status(),
        200
    );
    wait_for("the Slurm job to be released", || {
        reason(&slurm_id) == "BeginTime"
    });
    assert_eq!(
        server.post_empty(&format!("/v1/jobs/{id}/kill")).status(),
        200
    );
    wait_task(&server, &id, "wait", "killed");

    // A kill cancels the Slurm job.
    let endless = "name: endless-slurm\nexecutor: slurm\ntasks:\n  - name: nap\n    kind: script\n    script: sleep 300\n";
    let id = submit(&server, endless, json!({}));
    wait_task(&server, &id, "nap", "running");
    let slurm_id = native_id(&server, &id, "nap");
    assert_eq!(
        server.post_empty(&format!("/v1/jobs/{id}/kill")).status(),
        200
    );
    wait_task(&server, &id, "nap", "killed");
    wait_for("the Slurm job to leave the queue", || {
        let out = std::process::Command::new("squeue")
            .args(["-h", "-j", &slurm_id, "-t", "PENDING,RUNNING"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
}
