//! `maas job …`: submit a workflow, list, show, steer and follow jobs.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;

use crate::cli::{print, Client};

/// Lines of a failed task's stderr that `job submit --wait` prints.
const STDERR_TAIL_LINES: usize = 20;

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit the workflow in FILE (YAML or JSON); prints the job id.
    Submit {
        file: PathBuf,
        /// A variable's value, NAME=VALUE (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// idle, lowest, low, normal, high or highest (default: the workflow's).
        #[arg(long)]
        priority: Option<String>,
        /// Wait for the job to end, and fail unless it finished (printing each failed task's
        /// error and the end of its stderr).
        #[arg(long)]
        wait: bool,
    },
    /// List jobs, newest first.
    List {
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A job with its tasks, as JSON (every time RFC 3339, UTC).
    Show {
        id: String,
    },
    /// Cancel a job: nothing new starts, running tasks finish.
    Cancel {
        id: String,
    },
    /// Kill a job: running processes end.
    Kill {
        id: String,
    },
    /// Pause a job (nothing new starts) or resume it.
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Print a task's log; with --follow, until the task ends.
    Logs {
        id: String,
        task: String,
        #[arg(long)]
        follow: bool,
        /// stdout (default) or stderr.
        #[arg(long, default_value = "stdout")]
        stream: String,
    },
}

pub(crate) async fn run(action: JobCommand, c: &Client) -> anyhow::Result<()> {
    use reqwest::Method;
    match action {
        JobCommand::Submit {
            file,
            vars,
            priority,
            wait,
        } => {
            let text = tokio::fs::read_to_string(&file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let mut variables = serde_json::Map::new();
            for var in vars {
                let (name, value) = var
                    .split_once('=')
                    .with_context(|| format!("--var {var}: expected NAME=VALUE"))?;
                variables.insert(name.to_owned(), Value::String(value.to_owned()));
            }
            let mut body = serde_json::json!({ "workflow": text, "variables": variables });
            if let Some(p) = priority {
                body["priority"] = Value::String(p);
            }
            let job = c
                .send(c.request(Method::POST, "/v1/jobs").json(&body))
                .await?;
            let id = job
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            println!("{id}");
            if wait {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let job = c
                        .send(c.request(Method::GET, &format!("/v1/jobs/{id}")))
                        .await?;
                    let state = job.get("state").and_then(Value::as_str).unwrap_or("?");
                    match state {
                        "finished" => return Ok(()),
                        "failed" | "canceled" | "killed" | "in_error" => {
                            report_failed_tasks(c, &id, &job).await;
                            anyhow::bail!(
                                "job {id} is {state}: {}",
                                job.get("reason").and_then(Value::as_str).unwrap_or("")
                            )
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        JobCommand::List {
            name,
            state,
            owner,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [("name", name), ("state", state), ("owner", owner)] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let page = c
                .send(c.request(Method::GET, "/v1/jobs").query(&query))
                .await?;
            let jobs = page
                .get("jobs")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if jobs.is_empty() {
                println!("no jobs");
            }
            let text =
                |j: &Value, k: &str| j.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            for j in jobs {
                let duration = j
                    .get("duration_secs")
                    .and_then(Value::as_f64)
                    .map(|d| format!("{d:.1}s"))
                    .unwrap_or_default();
                println!(
                    "{}	{}	{}	{}	{}	{}",
                    text(&j, "id"),
                    text(&j, "name"),
                    text(&j, "state"),
                    text(&j, "owner"),
                    text(&j, "submitted_at"),
                    duration
                );
            }
            Ok(())
        }
        JobCommand::Show { id } => print(
            &c.send(c.request(Method::GET, &format!("/v1/jobs/{id}")))
                .await?,
        ),
        JobCommand::Cancel { id } => job_action(c, &id, "cancel").await,
        JobCommand::Kill { id } => job_action(c, &id, "kill").await,
        JobCommand::Pause { id } => job_action(c, &id, "pause").await,
        JobCommand::Resume { id } => job_action(c, &id, "resume").await,
        JobCommand::Logs {
            id,
            task,
            follow,
            stream,
        } => {
            use std::io::Write;
            let mut offset = 0u64;
            loop {
                let response = c
                    .request(Method::GET, &format!("/v1/jobs/{id}/tasks/{task}/logs"))
                    .query(&[("stream", stream.as_str()), ("offset", &offset.to_string())])
                    .send()
                    .await
                    .with_context(|| format!("cannot reach maas at {}", c.base))?;
                if !response.status().is_success() {
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    anyhow::bail!(
                        "{status}: {}",
                        body.get("message").and_then(Value::as_str).unwrap_or("")
                    );
                }
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let next = header("x-log-offset").and_then(|v| v.parse().ok());
                let complete = header("x-log-complete").is_none_or(|v| v == "true");
                let bytes = response.bytes().await?;
                std::io::stdout().write_all(&bytes)?;
                std::io::stdout().flush()?;
                offset = next.unwrap_or(offset + bytes.len() as u64);
                if !follow || complete {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        }
    }
}

async fn job_action(c: &Client, id: &str, action: &str) -> anyhow::Result<()> {
    let job = c
        .send(c.request(reqwest::Method::POST, &format!("/v1/jobs/{id}/{action}")))
        .await?;
    println!(
        "{id}\t{}",
        job.get("state").and_then(Value::as_str).unwrap_or("?")
    );
    Ok(())
}

/// Tell, on stderr, which tasks failed, with their errors and the end of their stderr: what a
/// person needs to fix a workflow without a second command.
async fn report_failed_tasks(c: &Client, id: &str, job: &Value) {
    let tasks = job
        .get("tasks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for task in tasks.iter().filter(|t| t["state"] == "failed") {
        let name = task["name"].as_str().unwrap_or_default();
        eprintln!(
            "task '{name}' failed (attempt {} of {}): {}",
            task["attempt"],
            task["max_attempts"],
            task["error"].as_str().unwrap_or("no error recorded")
        );
        match stderr_tail(c, id, name).await {
            Ok(lines) if lines.is_empty() => eprintln!("(its stderr is empty)"),
            Ok(lines) => {
                eprintln!("--- the last {} lines of its stderr ---", lines.len());
                for line in lines {
                    eprintln!("{line}");
                }
                eprintln!("---");
            }
            Err(e) => eprintln!("(cannot read its stderr: {e:#})"),
        }
    }
}

/// The last [`STDERR_TAIL_LINES`] lines of a task's stderr (its latest attempt).
async fn stderr_tail(c: &Client, id: &str, task: &str) -> anyhow::Result<Vec<String>> {
    let mut offset = 0u64;
    let mut text: Vec<u8> = Vec::new();
    loop {
        let response = c
            .request(
                reqwest::Method::GET,
                &format!("/v1/jobs/{id}/tasks/{task}/logs"),
            )
            .query(&[("stream", "stderr"), ("offset", &offset.to_string())])
            .send()
            .await
            .with_context(|| format!("cannot reach maas at {}", c.base))?;
        if !response.status().is_success() {
            anyhow::bail!("{}", response.status());
        }
        let next = response
            .headers()
            .get("x-log-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes = response.bytes().await?;
        text.extend_from_slice(&bytes);
        // Keep the end only: enough for the lines shown, however long the log.
        if text.len() > 256 * 1024 {
            text.drain(..text.len() - 64 * 1024);
        }
        match next {
            Some(n) if n > offset && !bytes.is_empty() => offset = n,
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    Ok(lines[start..].iter().map(|l| (*l).to_owned()).collect())
}
