//! The task process: what `maas task exec DIR` runs, on this machine or on a Slurm node. The
//! scheduler writes `task.json` into the attempt's folder; this runs the task there and writes
//! `result.json` (exported variables, metrics, or the error). The process's stdout and stderr
//! are the task's logs.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{Confinement, ReadPolicy};
use crate::workflow::{valid_variable_name, ScriptLanguage, SCRIPT};

pub const TASK_FILE: &str = "task.json";
pub const RESULT_FILE: &str = "result.json";
pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const EXPORTS_FILE: &str = "exports.env";
pub const METRICS_FILE: &str = "metrics.json";
pub const ARTIFACTS_DIR: &str = "artifacts";

/// What one attempt of a task is asked to do (variables already substituted).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskFile {
    pub job_id: String,
    pub task: String,
    pub attempt: u32,
    pub kind: String,
    #[serde(default)]
    pub script: Option<String>,
    #[serde(default)]
    pub language: ScriptLanguage,
    #[serde(default)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Every variable visible to the task; script tasks get them in their environment.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// The Python interpreter for Python scripts.
    #[serde(default = "default_python")]
    pub python: String,
    /// The server variables the task may see (`scheduler.env_allow`); nothing else of the
    /// server's environment reaches it.
    pub environment: BTreeMap<String, String>,
    /// Which local files built-in tasks may read.
    pub reads: ReadPolicy,
    /// How a script runs.
    pub confinement: Confinement,
    /// Most bytes the task may write to any one file (`scheduler.max_task_file_bytes`).
    #[serde(default)]
    pub max_file_bytes: Option<u64>,
}

fn default_python() -> String {
    "python3".to_owned()
}

/// What an attempt produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub ok: bool,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub metrics: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// The exit status of the task's own process (a script's), when it exited by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl TaskResult {
    pub fn failed(error: impl Into<String>) -> TaskResult {
        TaskResult {
            ok: false,
            error: Some(error.into()),
            ..TaskResult::default()
        }
    }

    /// Read the result an attempt left in its folder, if any.
    pub fn read(dir: &Path) -> Option<TaskResult> {
        let text = std::fs::read_to_string(dir.join(RESULT_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Write `task.json` into `dir` (created, with `artifacts/`). A script that runs as another
/// user owns its folder (it writes its exports, metrics and artifacts there); `task.json` stays
/// the server's, readable by it alone.
pub fn prepare(dir: &Path, task: &TaskFile) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join(ARTIFACTS_DIR))?;
    if let Some(user) = task.confinement.user() {
        use std::os::unix::fs::PermissionsExt;
        for path in [dir.to_path_buf(), dir.join(ARTIFACTS_DIR)] {
            std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))?;
        }
        // The task and job folders above: passable by the task's user, not listable.
        for folder in dir.ancestors().skip(1).take(2) {
            std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o711))?;
        }
    }
    let text = serde_json::to_vec_pretty(task).map_err(std::io::Error::other)?;
    write_atomically(&dir.join(TASK_FILE), &text)
}

/// Create (or empty) a file only its owner may read: task logs and results.
pub fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its old mode through open(2).
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = create_private(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

/// Run the task whose `task.json` is in `dir`; returns the process exit code.
pub fn exec(dir: &Path) -> i32 {
    let mut limit = None;
    let result = match std::fs::read_to_string(dir.join(TASK_FILE))
        .map_err(|e| format!("cannot read {}: {e}", dir.join(TASK_FILE).display()))
        .and_then(|t| {
            serde_json::from_str::<TaskFile>(&t)
                .map_err(|e| format!("task.json is unreadable: {e}"))
        }) {
        Ok(task) => match task.max_file_bytes.map(limit_file_size).transpose() {
            Ok(_) => {
                limit = task.max_file_bytes;
                run(dir, &task)
            }
            Err(e) => TaskResult::failed(e),
        },
        Err(e) => TaskResult::failed(e),
    };
    if let Some(error) = &result.error {
        say(dir, limit, &format!("maas: task failed: {error}"));
    }
    let code = if result.ok { 0 } else { 1 };
    match serde_json::to_vec_pretty(&result) {
        Ok(bytes) => {
            if let Err(e) = write_atomically(&dir.join(RESULT_FILE), &bytes) {
                say(
                    dir,
                    limit,
                    &format!("maas: cannot write {RESULT_FILE}: {e}"),
                );
                return 2;
            }
        }
        Err(e) => {
            say(dir, limit, &format!("maas: cannot encode the result: {e}"));
            return 2;
        }
    }
    code
}

/// A line on stderr, unless the task filled its stderr log to the file size limit: writing past
/// it would stop this process before it writes the result.
fn say(dir: &Path, limit: Option<u64>, line: &str) {
    let room = limit.is_none_or(|limit| {
        std::fs::metadata(dir.join(STDERR_FILE))
            .map_or(0, |m| m.len())
            .saturating_add(line.len() as u64 + 1)
            < limit
    });
    if room {
        eprintln!("{line}");
    }
}

/// Limit every file this process and the processes it starts write to `bytes` (RLIMIT_FSIZE,
/// soft and hard, so a script cannot raise it again): a write past it stops the writer with
/// SIGXFSZ. The logs are files the task writes, so this bounds them too, on Slurm nodes alike.
fn limit_file_size(bytes: u64) -> Result<(), String> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    setrlimit(
        Resource::Fsize,
        Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
    .map_err(|e| format!("cannot limit the task's file size: {e}"))
}

/// Whether a script that failed with `status` went past `scheduler.max_task_file_bytes`: it (or
/// the last command of a shell script) was stopped by SIGXFSZ, or a log reached the limit.
fn passed_file_limit(dir: &Path, task: &TaskFile, status: std::process::ExitStatus) -> bool {
    let Some(limit) = task.max_file_bytes else {
        return false;
    };
    let xfsz = rustix::process::Signal::XFSZ.as_raw();
    status.signal() == Some(xfsz)
        || status.code() == Some(128 + xfsz)
        || [STDOUT_FILE, STDERR_FILE]
            .iter()
            .any(|log| std::fs::metadata(dir.join(log)).is_ok_and(|m| m.len() >= limit))
}

fn run(dir: &Path, task: &TaskFile) -> TaskResult {
    if task.kind == SCRIPT {
        return run_script(dir, task);
    }
    println!(
        "maas: {} task '{}' (attempt {}) with params {}",
        task.kind,
        task.task,
        task.attempt,
        serde_json::Value::Object(task.params.clone())
    );
    match crate::ml::run_builtin(&task.kind, &task.params, dir, &task.reads) {
        Ok(out) => {
            for (k, v) in &out.variables {
                println!("maas: export {k}={v}");
            }
            if !out.metrics.is_empty() {
                println!(
                    "maas: metrics {}",
                    serde_json::Value::Object(out.metrics.clone())
                );
            }
            TaskResult {
                ok: true,
                variables: out.variables,
                metrics: out.metrics,
                ..TaskResult::default()
            }
        }
        Err(e) => TaskResult::failed(e.to_string()),
    }
}

fn run_script(dir: &Path, task: &TaskFile) -> TaskResult {
    let Some(script) = &task.script else {
        return TaskResult::failed("a script task without a script");
    };
    let (file, program): (PathBuf, &str) = match task.language {
        ScriptLanguage::Shell => (dir.join("script.sh"), "sh"),
        ScriptLanguage::Python => (dir.join("script.py"), task.python.as_str()),
    };
    if let Err(e) = std::fs::write(&file, script) {
        return TaskResult::failed(format!("cannot write {}: {e}", file.display()));
    }
    let exports = dir.join(EXPORTS_FILE);
    let mut env = task.environment.clone();
    // What the executor set for this attempt: Slurm's job variables and the GPUs it assigned.
    env.extend(std::env::vars().filter(|(name, _)| {
        name.starts_with("SLURM_") || EXECUTOR_VARIABLES.contains(&name.as_str())
    }));
    env.extend(task.variables.clone());
    for (name, value) in [
        ("MAAS_JOB_ID", task.job_id.clone()),
        ("MAAS_TASK", task.task.clone()),
        ("MAAS_ATTEMPT", task.attempt.to_string()),
        ("HOME", dir.display().to_string()),
        ("MAAS_EXPORTS", exports.display().to_string()),
        ("MAAS_METRICS", dir.join(METRICS_FILE).display().to_string()),
        (
            "MAAS_ARTIFACTS",
            dir.join(ARTIFACTS_DIR).display().to_string(),
        ),
    ] {
        env.insert(name.to_owned(), value);
    }
    let status = task
        .confinement
        .command(program, &[file.as_path()], dir, &env)
        .status();
    let status = match status {
        Ok(status) => status,
        Err(e) => return TaskResult::failed(start_failure(program, &task.confinement, dir, &e)),
    };
    if !status.success() {
        return TaskResult {
            exit_code: status.code(),
            ..TaskResult::failed(match status.code() {
                _ if passed_file_limit(dir, task, status) => format!(
                    "the script wrote more than {} bytes to one file (its log or an artifact; \
                     scheduler.max_task_file_bytes) and was stopped",
                    task.max_file_bytes.unwrap_or_default()
                ),
                Some(code) => format!("the script exited with code {code}"),
                None => "the script was ended by a signal".to_owned(),
            })
        };
    }
    TaskResult {
        exit_code: Some(0),
        ..script_outputs(dir, &exports)
    }
}

/// What a script that exited with 0 left: its exported variables and metrics.
fn script_outputs(dir: &Path, exports: &Path) -> TaskResult {
    let variables = match read_exports(exports) {
        Ok(v) => v,
        Err(e) => return TaskResult::failed(e),
    };
    let metrics = match std::fs::read_to_string(dir.join(METRICS_FILE)) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return TaskResult::failed(format!(
                    "{METRICS_FILE} must hold one JSON object of metrics"
                ))
            }
        },
        Err(_) => serde_json::Map::new(),
    };
    TaskResult {
        ok: true,
        variables,
        metrics,
        ..TaskResult::default()
    }
}

/// Variables an executor sets for an attempt that a script sees (besides `SLURM_*`).
const EXECUTOR_VARIABLES: &[&str] = &[
    "CUDA_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "ROCR_VISIBLE_DEVICES",
];

/// Why a script could not start, in words an operator can act on.
fn start_failure(
    program: &str,
    confinement: &Confinement,
    dir: &Path,
    error: &std::io::Error,
) -> String {
    match (confinement, error.kind()) {
        (Confinement::Bwrap { program: bwrap, .. }, std::io::ErrorKind::NotFound) => format!(
            "cannot start the sandbox {}: not found on this machine (install bubblewrap, or \
             change scheduler.sandbox)",
            bwrap.display()
        ),
        (Confinement::User { uid, .. }, std::io::ErrorKind::PermissionDenied) => format!(
            "cannot start {program} as user {uid} in {}: that user cannot reach the task folder \
             (every folder above it must be searchable by it: chmod o+x, or set \
             scheduler.work_dir)",
            dir.display()
        ),
        _ => format!("cannot start {program}: {error}"),
    }
}

/// `NAME=value` lines; blank lines and `#` comments are skipped.
fn read_exports(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "line {} of $MAAS_EXPORTS is not NAME=value: {line}",
                n + 1
            ));
        };
        let name = name.trim();
        if !valid_variable_name(name) {
            return Err(format!(
                "line {} of $MAAS_EXPORTS exports '{name}', which is not a valid variable name",
                n + 1
            ));
        }
        out.insert(name.to_owned(), value.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script_task(script: &str) -> TaskFile {
        TaskFile {
            job_id: "j".into(),
            task: "t".into(),
            attempt: 1,
            kind: SCRIPT.into(),
            script: Some(script.into()),
            language: ScriptLanguage::Shell,
            params: Default::default(),
            variables: BTreeMap::from([("GREETING".into(), "hello".into())]),
            python: "python3".into(),
            environment: BTreeMap::from([(
                "PATH".into(),
                std::env::var("PATH").unwrap_or_default(),
            )]),
            reads: ReadPolicy::default(),
            confinement: Confinement::None,
            max_file_bytes: None,
        }
    }

    #[test]
    fn a_script_exports_variables_and_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let task = script_task(
            "echo \"$GREETING\"; echo \"OUT=$GREETING world\" >> \"$MAAS_EXPORTS\"; \
             echo '{\"loss\": 0.5}' > \"$MAAS_METRICS\"; echo x > \"$MAAS_ARTIFACTS/a.txt\"",
        );
        prepare(dir.path(), &task).unwrap();
        assert_eq!(exec(dir.path()), 0);
        let result = TaskResult::read(dir.path()).unwrap();
        assert!(result.ok);
        assert_eq!(result.variables["OUT"], "hello world");
        assert_eq!(result.metrics["loss"], 0.5);
        assert!(dir.path().join("artifacts/a.txt").exists());
    }

    #[test]
    fn a_script_sees_its_variables_and_nothing_of_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), &script_task("env > env.txt")).unwrap();
        assert_eq!(exec(dir.path()), 0);
        let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
        // The test runner's own environment (CARGO_*, RUST_*, ...) stays out.
        for line in env.lines() {
            let name = line.split('=').next().unwrap();
            assert!(
                ["PATH", "GREETING", "HOME", "PWD", "SHLVL", "_", "OLDPWD"].contains(&name)
                    || name.starts_with("MAAS_"),
                "{name} leaked into the script: {env}"
            );
        }
        assert!(env.contains("GREETING=hello"), "{env}");
    }

    #[test]
    fn a_failing_script_says_its_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), &script_task("exit 3")).unwrap();
        assert_eq!(exec(dir.path()), 1);
        let result = TaskResult::read(dir.path()).unwrap();
        assert_eq!(
            result.error.as_deref(),
            Some("the script exited with code 3")
        );
    }

    #[test]
    fn bad_export_lines_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path(), &script_task("echo '1X=2' >> \"$MAAS_EXPORTS\"")).unwrap();
        assert_eq!(exec(dir.path()), 1);
        let error = TaskResult::read(dir.path()).unwrap().error.unwrap();
        assert!(error.contains("'1X'"), "{error}");
    }
}
