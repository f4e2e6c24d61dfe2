//! The scheduler's settings (`[scheduler]` in the server's configuration) and what they become
//! on this machine at start: the task folder, how script tasks are confined, the environment
//! and the files tasks may see, the local pool's size ([`TaskHost`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sandbox::{self, Confinement, NoSandbox, SandboxMode};
use crate::workflow::ExecutorKind;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    /// Whether this process runs tasks (a replica can serve the API only).
    pub enabled: bool,
    /// Where tasks run unless their workflow says otherwise: `local` or `slurm`.
    pub executor: ExecutorKind,
    /// CPUs of the local pool (0: as many as this machine has).
    pub slots: u32,
    /// GPUs of the local pool; tasks that need more wait.
    pub gpus: u32,
    /// Where task folders go (default: `jobs` under the data folder). Must be shared with the
    /// Slurm nodes when tasks run there.
    pub work_dir: Option<PathBuf>,
    /// Seconds a running task's lease lasts without renewal before it is reaped.
    pub lease_secs: u64,
    /// How often idle workers look for ready tasks, in ms (submits here wake them at once).
    pub poll_interval_ms: u64,
    /// The interpreter of Python script tasks.
    pub python: String,
    /// Whether workflows may hold `script` tasks (shell or Python).
    pub scripts: bool,
    /// How script tasks are confined: `auto`, `bwrap`, `user` or `none`.
    pub sandbox: SandboxMode,
    /// The unprivileged user script tasks run as when the server runs as root (a name, or
    /// `uid:gid`).
    pub task_user: String,
    /// The bubblewrap program.
    pub bwrap: PathBuf,
    /// Server environment variables a task may see, by name; nothing else of the server's
    /// environment reaches a task.
    pub env_allow: Vec<String>,
    /// Folders whose files built-in tasks may read by path (besides their job's own folder);
    /// the data folder stays closed even inside one.
    pub data_roots: Vec<PathBuf>,
    /// `sbatch` arguments for every Slurm task (before the task's own `sbatch_args`).
    pub slurm_args: Vec<String>,
    /// Seconds after a drift-started retraining ends during which a model's drift events start
    /// no other one (drift seen while it is pending or running never does).
    pub retrain_cooldown_secs: u64,
    /// Most bytes a task may write to any one file: its stdout and stderr logs, its artifacts.
    /// A task going past it is stopped and fails, saying so; what it wrote stays, cut there.
    pub max_task_file_bytes: u64,
    /// Most jobs not over (pending, running, paused, in error) at once; a submit beyond it is
    /// answered 429 `queue_full`.
    pub max_active_jobs: u64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            enabled: true,
            executor: ExecutorKind::Local,
            slots: 0,
            gpus: 0,
            work_dir: None,
            lease_secs: 30,
            poll_interval_ms: 500,
            python: "python3".to_owned(),
            scripts: true,
            sandbox: SandboxMode::Auto,
            task_user: "nobody".to_owned(),
            bwrap: PathBuf::from("bwrap"),
            env_allow: ["PATH", "LANG", "LC_ALL", "TZ"].map(str::to_owned).to_vec(),
            data_roots: Vec::new(),
            slurm_args: Vec::new(),
            retrain_cooldown_secs: 600,
            max_task_file_bytes: 1 << 30,
            max_active_jobs: 1000,
        }
    }
}

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSettings(pub String);

impl SchedulerSettings {
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        if self.lease_secs < 2 {
            return Err(InvalidSettings(
                "scheduler.lease_secs must be at least 2".into(),
            ));
        }
        if self.max_task_file_bytes < 64 * 1024 {
            return Err(InvalidSettings(
                "scheduler.max_task_file_bytes must be at least 65536 (a task writes its result \
                 and its logs under it)"
                    .into(),
            ));
        }
        if self.max_active_jobs == 0 {
            return Err(InvalidSettings(
                "scheduler.max_active_jobs must be positive".into(),
            ));
        }
        if self.poll_interval_ms < 10 {
            return Err(InvalidSettings(
                "scheduler.poll_interval_ms must be at least 10".into(),
            ));
        }
        Ok(())
    }
}

/// Why the scheduler cannot start on this machine.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The machine's side of the settings, resolved once at start.
#[derive(Debug, Clone)]
pub struct TaskHost {
    /// Where attempts' folders go (canonical).
    pub work_dir: PathBuf,
    /// How script tasks run here, or why they cannot.
    pub confinement: Result<Confinement, NoSandbox>,
    /// The server variables tasks see (`env_allow`).
    pub task_env: BTreeMap<String, String>,
    /// Closed to built-in tasks' reads: the data and job folders (canonical).
    pub closed: Vec<PathBuf>,
    /// Open to them: `data_roots` (canonical).
    pub data_roots: Vec<PathBuf>,
    /// CPUs of the local pool.
    pub slots: u32,
    /// The program tasks run (`PROGRAM task exec DIR`).
    pub program: PathBuf,
}

impl TaskHost {
    /// Create the task folder, decide how scripts are confined (opening the path to the task
    /// folders to the task user when scripts run as one), and read the rest of the settings
    /// against this machine. An explicit sandbox that cannot be had is an error.
    pub fn prepare(settings: &SchedulerSettings, data_dir: &Path) -> Result<TaskHost, SetupError> {
        let work_dir = settings
            .work_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("jobs"));
        std::fs::create_dir_all(&work_dir).map_err(|e| {
            SetupError::Refused(format!(
                "cannot create the job folder {}: {e}",
                work_dir.display()
            ))
        })?;
        let work_dir = std::fs::canonicalize(&work_dir)?;
        let data_dir = std::fs::canonicalize(data_dir)?;
        let mut closed = vec![data_dir.clone()];
        if !work_dir.starts_with(&data_dir) {
            closed.push(work_dir.clone());
        }
        let mut confinement = if settings.scripts {
            sandbox::resolve(
                settings.sandbox,
                &settings.task_user,
                &settings.bwrap,
                &closed,
            )
        } else {
            Err(NoSandbox(
                "this server runs none (scheduler.scripts = false)".into(),
            ))
        };
        if let Ok(c) = &confinement {
            if c.user().is_some() {
                open_path_to_jobs(&data_dir, &work_dir)?;
                if let Some(closed) = sandbox::unreachable(&work_dir) {
                    confinement = unreachable_work_dir(c, settings.sandbox, &work_dir, &closed);
                }
            }
        }
        match (&confinement, settings.sandbox) {
            (Err(why), SandboxMode::Bwrap | SandboxMode::User) if settings.scripts => {
                return Err(SetupError::Refused(format!(
                    "scheduler.sandbox = \"{}\" cannot be met: {why}",
                    settings.sandbox.as_str()
                )))
            }
            (Err(why), _) => tracing::warn!(reason = %why, "script tasks are refused"),
            (Ok(c), _) => {
                tracing::info!(sandbox = confinement_name(c), "script tasks are confined")
            }
        }
        let mut data_roots = Vec::new();
        for root in &settings.data_roots {
            match std::fs::canonicalize(root) {
                Ok(real) => data_roots.push(real),
                Err(e) => tracing::warn!(folder = %root.display(), error = %e,
                    "scheduler.data_roots: a folder is unreadable and stays closed"),
            }
        }
        let task_env = sandbox::allowed_environment(&settings.env_allow);
        let slots = if settings.slots == 0 {
            std::thread::available_parallelism()
                .map(|n| u32::try_from(n.get()).unwrap_or(1))
                .unwrap_or(1)
        } else {
            settings.slots
        };
        Ok(TaskHost {
            work_dir,
            confinement,
            task_env,
            closed,
            data_roots,
            slots,
            program: std::env::current_exe()?,
        })
    }

    /// The folder of one attempt of a task.
    pub fn attempt_dir(&self, job: &str, task: &str, attempt: u32) -> PathBuf {
        self.work_dir
            .join(job)
            .join(task)
            .join(format!("attempt-{attempt}"))
    }
}

fn confinement_name(confinement: &Confinement) -> &'static str {
    match confinement {
        Confinement::None => "none (scripts run as the server's user)",
        Confinement::User { .. } => "user (scripts run as scheduler.task_user)",
        Confinement::Bwrap { user: Some(_), .. } => "bwrap, as scheduler.task_user",
        Confinement::Bwrap { user: None, .. } => "bwrap (no capabilities)",
    }
}

/// The task user cannot reach the task folders (a folder above them, outside maas's data folder,
/// is private: `/root`, a 0700 home). `auto` keeps bubblewrap, as root without capabilities (the
/// data folder still hidden, the file system still read-only), and says how to do better;
/// anything else cannot be honoured.
fn unreachable_work_dir(
    confinement: &Confinement,
    mode: SandboxMode,
    work_dir: &Path,
    closed: &Path,
) -> Result<Confinement, NoSandbox> {
    let why = format!(
        "the task user cannot reach the task folders {} ({} is not searchable by other users); \
         set scheduler.work_dir to a folder it can reach",
        work_dir.display(),
        closed.display()
    );
    match (confinement, mode) {
        (
            Confinement::Bwrap {
                program, hidden, ..
            },
            SandboxMode::Auto,
        ) => {
            tracing::warn!(reason = %why, "script tasks run in bubblewrap as root without capabilities");
            Ok(Confinement::Bwrap {
                program: program.clone(),
                user: None,
                hidden: hidden.clone(),
            })
        }
        _ => Err(NoSandbox(why)),
    }
}

/// Scripts running as another user must pass through the data folder to their task folder:
/// the data and job folders become passable but not listable (0711), and everything else in the
/// data folder the server's alone (folders 0700, files 0600).
fn open_path_to_jobs(data_dir: &Path, work_dir: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::PermissionsExt;
    let set = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
            SetupError::Refused(format!("cannot set the mode of {}: {e}", path.display()))
        })
    };
    if work_dir.starts_with(data_dir) {
        for entry in std::fs::read_dir(data_dir)?.flatten() {
            let path = entry.path();
            if work_dir.starts_with(&path) {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                set(&path, 0o700)?;
            } else if meta.is_file() {
                set(&path, 0o600)?;
            }
        }
        for folder in work_dir.ancestors().take_while(|f| f.starts_with(data_dir)) {
            set(folder, 0o711)?;
        }
    } else {
        set(work_dir, 0o711)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_short_leases_do_not() {
        assert!(SchedulerSettings::default().validate().is_ok());
        let short = SchedulerSettings {
            lease_secs: 1,
            ..SchedulerSettings::default()
        };
        assert_eq!(
            short.validate().unwrap_err().to_string(),
            "scheduler.lease_secs must be at least 2"
        );
    }
}
