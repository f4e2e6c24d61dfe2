//! The Slurm executor's command-line half: submit a batch job, ask for its state, cancel, hold
//! and release it, through `sbatch`, `squeue`, `sacct`, `scancel` and `scontrol` (the stable
//! interface; the REST API differs between Debian's Slurm and current clusters).
//!
//! Every call is synchronous and bounded by a timeout, so a hung slurmctld cannot hang the
//! caller. A finished job's state does not depend on squeue alone (which forgets a job
//! `MinJobAge` seconds after it ends): then `sacct` answers, from slurmdbd or, without one, from
//! the job-completion file (`sacct --completion`), and where neither works, the exit status that
//! the batch wrapper written by [`SlurmCli::submit`] records in the job's working directory.
//! Parsing lives in pure functions with unit tests over real outputs.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The batch script that [`SlurmCli::submit`] hands to sbatch, in the job's working directory.
pub const WRAPPER_FILE: &str = "slurm-job.sh";
/// The job's own bash body, which the wrapper runs.
pub const BODY_FILE: &str = "slurm-job.body.sh";
/// Where the wrapper records "JOB_ID EXIT_STATUS" when the body ends (renamed into place).
pub const EXIT_CODE_FILE: &str = ".exit_code";

/// How long one Slurm command may take unless [`SlurmCli::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything that can go wrong talking to Slurm.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("{program} is not installed or not on PATH")]
    CommandMissing { program: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("`{command}` printed what maas cannot read: {output:?}")]
    Unparsable { command: String, output: String },
    #[error("`{command}` did not finish within {timeout:?}")]
    TimedOut { command: String, timeout: Duration },
    #[error("Slurm has no record of job {job_id} (not queued, no accounting, no exit-code file)")]
    JobNotFound { job_id: String },
    #[error("invalid batch job: {0}")]
    InvalidJob(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A job's state as maas sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlurmState {
    Pending,
    Running,
    Suspended,
    /// Pending with a hold (reason `JobHeldUser`/`JobHeldAdmin`, or requeued held).
    Held,
    Completed {
        exit_code: i32,
    },
    /// `exit_code` is the script's exit status (128 + N when signal N killed it), or -1 when
    /// nothing recorded it.
    Failed {
        exit_code: i32,
        reason: String,
    },
    Cancelled,
    Timeout,
    OutOfMemory,
    NodeFail,
    /// A state name this module does not map.
    Unknown(String),
}

impl SlurmState {
    /// Whether the job has ended (Slurm will not change its state again).
    pub fn is_terminal(&self) -> bool {
        !matches!(
            self,
            SlurmState::Pending | SlurmState::Running | SlurmState::Suspended | SlurmState::Held
        )
    }
}

/// One batch job to submit.
#[derive(Debug, Clone, Default)]
pub struct BatchJob {
    pub name: String,
    /// The job runs here; the wrapper, the body and the exit-code file are written here. It must
    /// be visible at the same path on the compute nodes.
    pub workdir: PathBuf,
    /// The bash body.
    pub script: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
    pub gpus: Option<u32>,
    pub time_limit: Option<Duration>,
    /// Passed to sbatch verbatim after maas's own options (so they win) and before the script:
    /// the seed's `NATIVE_SCHEDULER_PARAMS`.
    pub extra_args: Vec<String>,
    /// The job's whole environment (plus Slurm's `SLURM_*`): sbatch runs with exactly these
    /// and hands them on (`--export=ALL`), so nothing of the server's own environment reaches
    /// the job.
    pub env: Vec<(String, String)>,
}

/// Where the Slurm commands are.
#[derive(Debug, Clone)]
pub struct SlurmPrograms {
    pub sbatch: PathBuf,
    pub squeue: PathBuf,
    pub sacct: PathBuf,
    pub scancel: PathBuf,
    pub scontrol: PathBuf,
}

impl SlurmPrograms {
    /// Each command as found on PATH; one that is not there keeps its bare name, so that calling
    /// it gives [`SlurmError::CommandMissing`].
    pub fn on_path() -> SlurmPrograms {
        SlurmPrograms {
            sbatch: find_on_path("sbatch"),
            squeue: find_on_path("squeue"),
            sacct: find_on_path("sacct"),
            scancel: find_on_path("scancel"),
            scontrol: find_on_path("scontrol"),
        }
    }
}

fn find_on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A Slurm cluster reached through its command-line tools.
#[derive(Debug, Clone)]
pub struct SlurmCli {
    programs: SlurmPrograms,
    timeout: Duration,
}

impl SlurmCli {
    pub fn new(programs: SlurmPrograms) -> SlurmCli {
        SlurmCli {
            programs,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The limit on each command's run time.
    pub fn with_timeout(mut self, timeout: Duration) -> SlurmCli {
        self.timeout = timeout;
        self
    }

    /// The commands on PATH, if sbatch is there and the controller answers `scontrol ping`.
    pub fn detect() -> Option<SlurmCli> {
        let cli = SlurmCli::new(SlurmPrograms::on_path()).with_timeout(Duration::from_secs(10));
        if !cli.programs.sbatch.is_absolute() {
            return None;
        }
        let out = cli
            .run(&cli.programs.scontrol, &os_args(&["ping"]), None)
            .ok()?;
        (out.status.success() && out.stdout.contains("is UP"))
            .then(|| cli.with_timeout(DEFAULT_TIMEOUT))
    }

    /// Write the wrapper and body into the job's working directory and submit the wrapper;
    /// returns the job id.
    pub fn submit(&self, job: &BatchJob) -> Result<String, SlurmError> {
        validate(job)?;
        write_file(&job.workdir.join(BODY_FILE), &job.script)?;
        let wrapper = job.workdir.join(WRAPPER_FILE);
        write_file(&wrapper, WRAPPER_SCRIPT)?;
        let mut args = sbatch_args(job);
        args.push(wrapper.into_os_string());
        let out = self.checked(&self.programs.sbatch, &args, Some(&job.env))?;
        parse_sbatch(&out.stdout).ok_or_else(|| SlurmError::Unparsable {
            command: "sbatch --parsable".into(),
            output: out.stdout.clone(),
        })
    }

    /// The job's state: squeue's while the controller holds the job, then the recorded one (see
    /// [`SlurmCli::finished_state`]). `workdir` (the job's working directory, kept by the
    /// caller) lets the exit-code file answer for a finished job when squeue has forgotten it or
    /// does not answer and sacct has no record.
    pub fn state(&self, job_id: &str, workdir: Option<&Path>) -> Result<SlurmState, SlurmError> {
        check_job_id(job_id)?;
        let queued = match self.queue_entry(job_id) {
            Ok(entry) => entry,
            // The controller may be down or slow; a finished job is still known without it.
            Err(e) => return self.finished_state(job_id, workdir).map_err(|_| e),
        };
        match queued.map(|entry| entry.state()) {
            // squeue's FAILED carries no exit code: ask what recorded it, if anything did.
            Some(failed @ SlurmState::Failed { .. }) => {
                Ok(self.finished_state(job_id, workdir).unwrap_or(failed))
            }
            Some(state) => Ok(state),
            None => self.finished_state(job_id, workdir),
        }
    }

    /// The state of a job as recorded after it left the queue: sacct (slurmdbd or the
    /// job-completion file), else the exit-code file in `workdir`. Errors from sacct count only
    /// when the file cannot answer either.
    pub fn finished_state(
        &self,
        job_id: &str,
        workdir: Option<&Path>,
    ) -> Result<SlurmState, SlurmError> {
        check_job_id(job_id)?;
        let accounting = self.accounting_record(job_id);
        if let Ok(Some(record)) = &accounting {
            return Ok(record.state());
        }
        if let Some(code) = workdir.and_then(|dir| read_exit_code(dir, job_id)) {
            return Ok(exit_code_state(code));
        }
        match accounting {
            Err(e) => Err(e),
            Ok(_) => Err(SlurmError::JobNotFound {
                job_id: job_id.to_string(),
            }),
        }
    }

    pub fn cancel(&self, job_id: &str) -> Result<(), SlurmError> {
        check_job_id(job_id)?;
        self.checked(&self.programs.scancel, &os_args(&[job_id]), None)
            .map(drop)
    }

    /// Keep a pending job from starting (`scontrol hold`).
    pub fn hold(&self, job_id: &str) -> Result<(), SlurmError> {
        check_job_id(job_id)?;
        self.checked(&self.programs.scontrol, &os_args(&["hold", job_id]), None)
            .map(drop)
    }

    /// Let a held job start (`scontrol release`).
    pub fn release(&self, job_id: &str) -> Result<(), SlurmError> {
        check_job_id(job_id)?;
        self.checked(
            &self.programs.scontrol,
            &os_args(&["release", job_id]),
            None,
        )
        .map(drop)
    }

    /// squeue's line for the job, or None once squeue no longer knows it.
    fn queue_entry(&self, job_id: &str) -> Result<Option<QueueEntry>, SlurmError> {
        // `-t all`: without it squeue leaves out jobs that have ended but are still kept.
        let args = os_args(&["-h", "-t", "all", "-j", job_id, "-o", "%T|%r"]);
        let out = self.run(&self.programs.squeue, &args, None)?;
        if !out.status.success() {
            if out.stderr.contains("Invalid job id") {
                return Ok(None);
            }
            return Err(out.failure(&self.programs.squeue, &args));
        }
        parse_squeue(&out.stdout).map_err(|()| SlurmError::Unparsable {
            command: display_command(&self.programs.squeue, &args),
            output: out.stdout.clone(),
        })
    }

    /// sacct's record of the job: from slurmdbd, or, when accounting storage is off, from the
    /// job-completion file. Ok(None) when sacct has no record of it.
    fn accounting_record(&self, job_id: &str) -> Result<Option<AccountingRecord>, SlurmError> {
        let mut args = os_args(&["-P", "-n", "-X", "-j", job_id, "-o", "State,ExitCode"]);
        let mut out = self.run(&self.programs.sacct, &args, None)?;
        if !out.status.success() && out.stderr.contains("accounting storage is disabled") {
            args.insert(0, "--completion".into());
            out = self.run(&self.programs.sacct, &args, None)?;
        }
        if !out.status.success() {
            return Err(out.failure(&self.programs.sacct, &args));
        }
        parse_sacct(&out.stdout).map_err(|()| SlurmError::Unparsable {
            command: display_command(&self.programs.sacct, &args),
            output: out.stdout.clone(),
        })
    }

    /// Run a command that must succeed.
    fn checked(
        &self,
        program: &Path,
        args: &[OsString],
        env: Option<&[(String, String)]>,
    ) -> Result<CommandOutput, SlurmError> {
        let out = self.run(program, args, env)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(out.failure(program, args))
        }
    }

    /// Run a command to its end or to the timeout, whichever comes first (then it is killed).
    /// With `env`, that is its whole environment.
    fn run(
        &self,
        program: &Path,
        args: &[OsString],
        env: Option<&[(String, String)]>,
    ) -> Result<CommandOutput, SlurmError> {
        let mut command = Command::new(program);
        if let Some(env) = env {
            command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => SlurmError::CommandMissing {
                    program: program.display().to_string(),
                },
                _ => SlurmError::Io {
                    path: program.to_path_buf(),
                    source,
                },
            })?;
        // Both pipes are drained while the command runs, so a full pipe cannot stall it.
        let (sender, receiver) = mpsc::channel();
        let mut readers = 0;
        if let Some(stdout) = child.stdout.take() {
            spawn_reader(stdout, true, sender.clone());
            readers += 1;
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_reader(stderr, false, sender);
            readers += 1;
        }
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(2);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(SlurmError::TimedOut {
                        command: display_command(program, args),
                        timeout: self.timeout,
                    });
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(SlurmError::Io {
                        path: program.to_path_buf(),
                        source,
                    })
                }
            }
        };
        let (mut stdout, mut stderr) = (String::new(), String::new());
        for _ in 0..readers {
            // A grandchild that kept a pipe open must not hold us past the deadline either.
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            match receiver.recv_timeout(wait) {
                Ok((true, text)) => stdout = text,
                Ok((false, text)) => stderr = text,
                Err(_) => break,
            }
        }
        Ok(CommandOutput {
            status,
            stdout,
            stderr,
        })
    }
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    is_stdout: bool,
    sender: mpsc::Sender<(bool, String)>,
) {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = sender.send((is_stdout, String::from_utf8_lossy(&bytes).into_owned()));
    });
}

struct CommandOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl CommandOutput {
    fn failure(&self, program: &Path, args: &[OsString]) -> SlurmError {
        SlurmError::CommandFailed {
            command: display_command(program, args),
            status: self.status.to_string(),
            stderr: self.stderr.trim().to_string(),
        }
    }
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn display_command(program: &Path, args: &[OsString]) -> String {
    let mut text = program.display().to_string();
    for arg in args {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn write_file(path: &Path, text: &str) -> Result<(), SlurmError> {
    std::fs::write(path, text).map_err(|source| SlurmError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The batch script: runs the body in the working directory (`--chdir`), then records its exit
/// status with the job id, written aside and renamed so that a reader never sees half a file.
const WRAPPER_SCRIPT: &str = r#"#!/bin/bash
# Written by maas: runs the task's script, then records its exit status for maas.
/bin/bash ./slurm-job.body.sh
status=$?
printf '%s %s\n' "${SLURM_JOB_ID:-}" "$status" > ".exit_code.$$" && mv -f ".exit_code.$$" .exit_code
exit "$status"
"#;

/// sbatch's arguments for the job, without the script path.
fn sbatch_args(job: &BatchJob) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--parsable".into(),
        format!("--job-name={}", job.name).into(),
        prefixed("--chdir=", &job.workdir),
        prefixed("--output=", &job.stdout),
        prefixed("--error=", &job.stderr),
        "--export=ALL".into(),
    ];
    if let Some(cpus) = job.cpus {
        args.push(format!("--cpus-per-task={cpus}").into());
    }
    if let Some(mb) = job.memory_mb {
        args.push(format!("--mem={mb}M").into());
    }
    if let Some(gpus) = job.gpus {
        args.push(format!("--gres=gpu:{gpus}").into());
    }
    if let Some(limit) = job.time_limit {
        args.push(format!("--time={}", slurm_duration(limit)).into());
    }
    args.extend(job.extra_args.iter().map(OsString::from));
    args
}

fn prefixed(option: &str, path: &Path) -> OsString {
    let mut arg = OsString::from(option);
    arg.push(path.as_os_str());
    arg
}

/// A time limit as D-HH:MM:SS, rounded up to the second (Slurm rounds up to the minute).
fn slurm_duration(limit: Duration) -> String {
    let total = (limit.as_secs() + u64::from(limit.subsec_nanos() > 0)).max(1);
    let (days, rest) = (total / 86_400, total % 86_400);
    format!(
        "{days}-{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn validate(job: &BatchJob) -> Result<(), SlurmError> {
    if job.name.is_empty() || job.name.chars().any(char::is_control) {
        return Err(SlurmError::InvalidJob(format!("job name {:?}", job.name)));
    }
    if !job.workdir.is_absolute() {
        return Err(SlurmError::InvalidJob(format!(
            "working directory {} is not absolute",
            job.workdir.display()
        )));
    }
    if let Some((name, _)) = job.env.iter().find(|(name, _)| !is_env_name(name)) {
        return Err(SlurmError::InvalidJob(format!(
            "environment variable name {name:?}"
        )));
    }
    if let Some((name, _)) = job.env.iter().find(|(_, value)| value.contains('\0')) {
        return Err(SlurmError::InvalidJob(format!(
            "environment variable {name} holds a NUL byte"
        )));
    }
    Ok(())
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Job ids are digits, with `_` (array tasks) or `+` (heterogeneous components); anything else
/// would be read by the commands as something else (an option, a list).
fn check_job_id(job_id: &str) -> Result<(), SlurmError> {
    let ok = job_id.starts_with(|c: char| c.is_ascii_digit())
        && job_id
            .chars()
            .all(|c| c.is_ascii_digit() || c == '_' || c == '+');
    if ok {
        Ok(())
    } else {
        Err(SlurmError::InvalidJob(format!("job id {job_id:?}")))
    }
}

/// `sbatch --parsable` prints "ID" or "ID;CLUSTER".
fn parse_sbatch(stdout: &str) -> Option<String> {
    let line = stdout
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())?;
    let id = line.split(';').next()?.trim();
    check_job_id(id).ok()?;
    Some(id.to_string())
}

/// One line of `squeue -o '%T|%r'`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct QueueEntry {
    state: String,
    reason: String,
}

impl QueueEntry {
    fn state(&self) -> SlurmState {
        let held = self.reason.starts_with("JobHeld");
        match self.state.as_str() {
            "PENDING" if held => SlurmState::Held,
            "COMPLETED" => SlurmState::Completed { exit_code: 0 },
            "FAILED" => SlurmState::Failed {
                exit_code: -1,
                reason: self.reason.clone(),
            },
            other => named_state(other),
        }
    }
}

/// squeue's output for one job: Ok(None) when it printed nothing (the job left the queue).
fn parse_squeue(stdout: &str) -> Result<Option<QueueEntry>, ()> {
    let Some(line) = stdout.lines().map(str::trim).find(|line| !line.is_empty()) else {
        return Ok(None);
    };
    let (state, reason) = line.split_once('|').ok_or(())?;
    if state.is_empty() {
        return Err(());
    }
    Ok(Some(QueueEntry {
        state: state.to_string(),
        reason: reason.to_string(),
    }))
}

/// One line of `sacct -P -n -X -o State,ExitCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AccountingRecord {
    /// The state's first word: "CANCELLED by 0" is CANCELLED.
    state: String,
    exit_code: i32,
    signal: i32,
}

impl AccountingRecord {
    fn state(&self) -> SlurmState {
        match self.state.as_str() {
            "COMPLETED" => SlurmState::Completed {
                exit_code: self.exit_code,
            },
            "FAILED" => {
                let (exit_code, reason) = if self.signal != 0 {
                    (
                        128 + self.signal,
                        format!("killed by signal {}", self.signal),
                    )
                } else {
                    (self.exit_code, format!("exit code {}", self.exit_code))
                };
                SlurmState::Failed { exit_code, reason }
            }
            other => named_state(other),
        }
    }
}

/// sacct's output for one job: the last record wins (a reused job id's older records come
/// first). Ok(None) when it printed nothing.
fn parse_sacct(stdout: &str) -> Result<Option<AccountingRecord>, ()> {
    let Some(line) = stdout.lines().map(str::trim).rfind(|line| !line.is_empty()) else {
        return Ok(None);
    };
    let (state, exit) = line.split_once('|').ok_or(())?;
    let state = state.split_whitespace().next().ok_or(())?;
    let (code, signal) = exit.split_once(':').ok_or(())?;
    Ok(Some(AccountingRecord {
        state: state.to_string(),
        exit_code: code.trim().parse().map_err(drop)?,
        signal: signal.trim().parse().map_err(drop)?,
    }))
}

/// The states whose meaning does not depend on a reason or an exit code.
fn named_state(name: &str) -> SlurmState {
    match name {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" => SlurmState::Pending,
        "REQUEUE_HOLD" | "RESV_DEL_HOLD" => SlurmState::Held,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => SlurmState::Running,
        "SUSPENDED" | "STOPPED" => SlurmState::Suspended,
        "CANCELLED" | "PREEMPTED" | "REVOKED" => SlurmState::Cancelled,
        "TIMEOUT" | "DEADLINE" => SlurmState::Timeout,
        "OUT_OF_MEMORY" => SlurmState::OutOfMemory,
        "NODE_FAIL" | "BOOT_FAIL" => SlurmState::NodeFail,
        "COMPLETED" => SlurmState::Completed { exit_code: 0 },
        "FAILED" | "SPECIAL_EXIT" => SlurmState::Failed {
            exit_code: -1,
            reason: name.to_string(),
        },
        other => SlurmState::Unknown(other.to_string()),
    }
}

/// The exit status the wrapper recorded for this job, if the file is there and is this job's
/// (a working directory reused by a later attempt holds the later job's id).
fn read_exit_code(workdir: &Path, job_id: &str) -> Option<i32> {
    parse_exit_code_file(
        &std::fs::read_to_string(workdir.join(EXIT_CODE_FILE)).ok()?,
        job_id,
    )
}

fn parse_exit_code_file(text: &str, job_id: &str) -> Option<i32> {
    let mut words = text.split_whitespace();
    let (id, code) = (words.next()?, words.next()?);
    (id == job_id).then(|| code.parse().ok()).flatten()
}

fn exit_code_state(code: i32) -> SlurmState {
    if code == 0 {
        SlurmState::Completed { exit_code: 0 }
    } else {
        SlurmState::Failed {
            exit_code: code,
            reason: format!("exit code {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: &str, reason: &str) -> SlurmState {
        parse_squeue(&format!("{state}|{reason}\n"))
            .unwrap()
            .unwrap()
            .state()
    }

    fn record(line: &str) -> SlurmState {
        parse_sacct(line).unwrap().unwrap().state()
    }

    #[test]
    fn squeue_lines() {
        assert_eq!(entry("PENDING", "Priority"), SlurmState::Pending);
        assert_eq!(entry("PENDING", "JobHeldUser"), SlurmState::Held);
        assert_eq!(entry("PENDING", "JobHeldAdmin"), SlurmState::Held);
        assert_eq!(entry("RUNNING", "None"), SlurmState::Running);
        assert_eq!(entry("COMPLETING", "None"), SlurmState::Running);
        assert_eq!(entry("SUSPENDED", "None"), SlurmState::Suspended);
        assert_eq!(
            entry("COMPLETED", "None"),
            SlurmState::Completed { exit_code: 0 }
        );
        assert_eq!(entry("CANCELLED", "None"), SlurmState::Cancelled);
        assert_eq!(entry("TIMEOUT", "TimeLimit"), SlurmState::Timeout);
        assert_eq!(
            entry("OUT_OF_MEMORY", "OutOfMemory"),
            SlurmState::OutOfMemory
        );
        assert_eq!(entry("NODE_FAIL", "None"), SlurmState::NodeFail);
        assert_eq!(entry("BOOT_FAIL", "None"), SlurmState::NodeFail);
        assert_eq!(
            entry("FAILED", "NonZeroExitCode"),
            SlurmState::Failed {
                exit_code: -1,
                reason: "NonZeroExitCode".into()
            }
        );
        assert_eq!(
            entry("SOMETHING_NEW", "None"),
            SlurmState::Unknown("SOMETHING_NEW".into())
        );
        assert_eq!(parse_squeue(""), Ok(None));
        assert_eq!(parse_squeue("\n"), Ok(None));
        assert_eq!(parse_squeue("garbage"), Err(()));
        assert_eq!(parse_squeue("|None"), Err(()));
    }

    #[test]
    fn sacct_lines() {
        assert_eq!(
            record("COMPLETED|0:0\n"),
            SlurmState::Completed { exit_code: 0 }
        );
        assert_eq!(
            record("FAILED|1:0\n"),
            SlurmState::Failed {
                exit_code: 1,
                reason: "exit code 1".into()
            }
        );
        assert_eq!(
            record("FAILED|0:9\n"),
            SlurmState::Failed {
                exit_code: 137,
                reason: "killed by signal 9".into()
            }
        );
        assert_eq!(record("CANCELLED by 0|0:0\n"), SlurmState::Cancelled);
        assert_eq!(record("CANCELLED|0:15\n"), SlurmState::Cancelled);
        assert_eq!(record("TIMEOUT|0:0\n"), SlurmState::Timeout);
        assert_eq!(record("OUT_OF_MEMORY|0:125\n"), SlurmState::OutOfMemory);
        assert_eq!(record("NODE_FAIL|0:0\n"), SlurmState::NodeFail);
        assert_eq!(record("PENDING|0:0\n"), SlurmState::Pending);
        assert_eq!(record("RUNNING|0:0\n"), SlurmState::Running);
        // A reused job id: the newest record is last.
        assert_eq!(
            record("FAILED|2:0\nCOMPLETED|0:0\n"),
            SlurmState::Completed { exit_code: 0 }
        );
        assert_eq!(parse_sacct(""), Ok(None));
        assert_eq!(parse_sacct("COMPLETED\n"), Err(()));
        assert_eq!(parse_sacct("COMPLETED|zero\n"), Err(()));
    }

    #[test]
    fn sbatch_output() {
        assert_eq!(parse_sbatch("42\n").as_deref(), Some("42"));
        assert_eq!(parse_sbatch("42;maas\n").as_deref(), Some("42"));
        assert_eq!(parse_sbatch("Submitted batch job 42\n"), None);
        assert_eq!(parse_sbatch(""), None);
    }

    #[test]
    fn exit_code_file() {
        assert_eq!(parse_exit_code_file("17 0\n", "17"), Some(0));
        assert_eq!(parse_exit_code_file("17 3\n", "17"), Some(3));
        assert_eq!(parse_exit_code_file("16 0\n", "17"), None);
        assert_eq!(parse_exit_code_file("17\n", "17"), None);
        assert_eq!(parse_exit_code_file("", "17"), None);
        assert_eq!(exit_code_state(0), SlurmState::Completed { exit_code: 0 });
        assert_eq!(
            exit_code_state(3),
            SlurmState::Failed {
                exit_code: 3,
                reason: "exit code 3".into()
            }
        );
    }

    #[test]
    fn job_ids() {
        for ok in ["1", "123", "123_4", "123+0"] {
            assert!(check_job_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "--all", "1,2", "abc", "1 2"] {
            assert!(check_job_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sbatch_arguments() {
        let job = BatchJob {
            name: "train".into(),
            workdir: "/w".into(),
            script: "true".into(),
            stdout: "/w/out.log".into(),
            stderr: "/w/err.log".into(),
            cpus: Some(2),
            memory_mb: Some(512),
            gpus: Some(1),
            time_limit: Some(Duration::from_secs(90_061)),
            extra_args: vec!["--qos=high".into()],
            env: vec![],
        };
        let args: Vec<String> = sbatch_args(&job)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=train",
                "--chdir=/w",
                "--output=/w/out.log",
                "--error=/w/err.log",
                "--export=ALL",
                "--cpus-per-task=2",
                "--mem=512M",
                "--gres=gpu:1",
                "--time=1-01:01:01",
                "--qos=high",
            ]
        );
        assert_eq!(slurm_duration(Duration::from_millis(1)), "0-00:00:01");
        assert_eq!(slurm_duration(Duration::from_secs(3600)), "0-01:00:00");
    }

    #[test]
    fn invalid_jobs_are_refused() {
        let good = BatchJob {
            name: "t".into(),
            workdir: "/w".into(),
            ..BatchJob::default()
        };
        assert!(validate(&good).is_ok());
        let relative = BatchJob {
            workdir: "w".into(),
            ..good.clone()
        };
        assert!(validate(&relative).is_err());
        let bad_env = BatchJob {
            env: vec![("A=B".into(), "x".into())],
            ..good.clone()
        };
        assert!(validate(&bad_env).is_err());
        let unnamed = BatchJob {
            name: String::new(),
            ..good
        };
        assert!(validate(&unnamed).is_err());
    }
}
