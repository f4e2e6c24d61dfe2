//! What a task may touch. The server decides, writes the decision into `task.json`, and the task
//! process (`maas task exec`, on this machine or on a Slurm node) applies it:
//!
//! - **Environment.** A task starts with an empty environment: its workflow's variables, the
//!   `MAAS_*` paths of its folder, `HOME` (its folder), and only the server variables an operator
//!   allowed by name (`scheduler.env_allow`). A secret the server holds in its environment
//!   (`MAAS_ADMIN_PASSWORD`, a database URL) never reaches a task.
//! - **Reads.** Built-in tasks read local files only inside the job's own folder and the folders
//!   an operator opened (`scheduler.data_roots`), never inside the server's data folder (its
//!   secret, its database, its model files, other jobs). [`ReadPolicy`] resolves `..` and
//!   symbolic links before it decides, and refuses with one message whether the file is missing
//!   or closed, so a refusal tells nothing about what exists.
//! - **Confinement.** Script tasks run as an unprivileged user, in bubblewrap namespaces, or both
//!   ([`Confinement`]); see the README's scheduler section for what each mode guarantees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Which local files built-in tasks may read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReadPolicy {
    /// Open folders (canonical paths).
    pub roots: Vec<PathBuf>,
    /// Folders closed even inside an open one: the server's data folder (canonical paths).
    pub closed: Vec<PathBuf>,
    /// The job's own folder: open, even inside a closed folder.
    pub job_dir: Option<PathBuf>,
}

/// A local path a task may not read, or that does not exist (the two are not told apart).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "cannot read {}: it does not exist, or it is outside the folders tasks may read (this job's \
     folder and the server's scheduler.data_roots)",
    .0.display()
)]
pub struct Unreadable(pub PathBuf);

impl ReadPolicy {
    /// The canonical path of `path` if a task may read it.
    pub fn check(&self, path: &Path) -> Result<PathBuf, Unreadable> {
        let refused = || Unreadable(path.to_owned());
        let real = std::fs::canonicalize(path).map_err(|_| refused())?;
        if self
            .job_dir
            .as_ref()
            .is_some_and(|dir| real.starts_with(dir))
        {
            return Ok(real);
        }
        if self.closed.iter().any(|dir| real.starts_with(dir)) {
            return Err(refused());
        }
        if self.roots.iter().any(|dir| real.starts_with(dir)) {
            return Ok(real);
        }
        Err(refused())
    }
}

/// How a script task's process is confined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Confinement {
    /// As the server's own user, seeing every file it sees (`scheduler.sandbox = "none"`).
    None,
    /// As another, unprivileged user (the server runs as root).
    User { uid: u32, gid: u32 },
    /// In bubblewrap namespaces: the file system read-only, `hidden` folders replaced by empty
    /// ones (the task's folder alone stays, writable), a private `/tmp`, its own process tree.
    /// As `user` too when one is given.
    Bwrap {
        program: PathBuf,
        user: Option<TaskUser>,
        hidden: Vec<PathBuf>,
    },
}

/// What an operator asks for (`scheduler.sandbox`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxMode {
    /// bubblewrap when it works here, else the task user when the server is root, else script
    /// tasks are refused (with the reason).
    #[default]
    Auto,
    /// bubblewrap (and the task user when the server is root); a start error when it cannot.
    Bwrap,
    /// The task user; a start error unless the server runs as root.
    User,
    /// Unconfined: scripts run as the server's user and can read all it can read.
    None,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Auto => "auto",
            SandboxMode::Bwrap => "bwrap",
            SandboxMode::User => "user",
            SandboxMode::None => "none",
        }
    }
}

/// Why scripts cannot be confined as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct NoSandbox(pub String);

/// Decide how scripts run on this machine: probe bubblewrap (as the task user when the server
/// is root) and look the task user up. `hidden` are the folders a bubblewrap sandbox replaces
/// with empty ones (the data folder, the job folder).
pub fn resolve(
    mode: SandboxMode,
    task_user: &str,
    bwrap: &Path,
    hidden: &[PathBuf],
) -> Result<Confinement, NoSandbox> {
    let root = is_root();
    let user = || -> Result<TaskUser, NoSandbox> {
        if !root {
            return Err(NoSandbox(
                "switching to scheduler.task_user needs a server running as root".into(),
            ));
        }
        lookup_user(task_user)
    };
    let bubblewrap = |user: Option<TaskUser>| -> Result<Confinement, NoSandbox> {
        probe_bwrap(bwrap, user)?;
        Ok(Confinement::Bwrap {
            program: bwrap.to_owned(),
            user,
            hidden: hidden.to_vec(),
        })
    };
    match mode {
        SandboxMode::None => Ok(Confinement::None),
        SandboxMode::User => {
            let u = user()?;
            Ok(Confinement::User {
                uid: u.uid,
                gid: u.gid,
            })
        }
        SandboxMode::Bwrap => bubblewrap(if root { Some(user()?) } else { None }),
        SandboxMode::Auto => {
            let u = if root { Some(user()?) } else { None };
            match (bubblewrap(u), u) {
                (Ok(c), _) => Ok(c),
                (Err(_), Some(u)) => Ok(Confinement::User {
                    uid: u.uid,
                    gid: u.gid,
                }),
                (Err(why), None) => Err(NoSandbox(format!(
                    "this server cannot confine script tasks: {why}, and it does not run as \
                     root (to switch to scheduler.task_user); install bubblewrap, or set \
                     scheduler.sandbox = \"none\" to run scripts unconfined as the server's user"
                ))),
            }
        }
    }
}

/// The first folder above `dir` that other users may not pass through (no `o+x`), if any.
pub fn unreachable(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dir.ancestors()
        .skip(1)
        .find(|folder| std::fs::metadata(folder).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
        .map(Path::to_path_buf)
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective user).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `uid:gid` as numbers, or a user name (its primary group), through `id(1)`.
fn lookup_user(name: &str) -> Result<TaskUser, NoSandbox> {
    if let Some((uid, gid)) = name.split_once(':') {
        if let (Ok(uid), Ok(gid)) = (uid.trim().parse(), gid.trim().parse()) {
            return Ok(TaskUser { uid, gid });
        }
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(name).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    match (id("-u"), id("-g")) {
        (Some(0), _) => Err(NoSandbox(format!(
            "scheduler.task_user '{name}' is root; name an unprivileged user"
        ))),
        (Some(uid), Some(gid)) => Ok(TaskUser { uid, gid }),
        _ => Err(NoSandbox(format!(
            "scheduler.task_user '{name}' is not a user on this machine (or write it uid:gid)"
        ))),
    }
}

/// Run `true` in the sandbox the tasks will get.
fn probe_bwrap(bwrap: &Path, user: Option<TaskUser>) -> Result<(), NoSandbox> {
    let mut command = Command::new(bwrap);
    command
        .args(BWRAP_BASE)
        .arg("true")
        .env_clear()
        .envs(allowed_environment(&["PATH".to_owned()]));
    if let Some(user) = user {
        use std::os::unix::process::CommandExt;
        command.uid(user.uid).gid(user.gid);
    }
    match command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(NoSandbox(format!(
            "bubblewrap ({}) does not work here: {}",
            bwrap.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NoSandbox(format!(
            "bubblewrap is not installed ({} not found; Debian: apt-get install bubblewrap)",
            bwrap.display()
        ))),
        Err(e) => Err(NoSandbox(format!(
            "bubblewrap ({}) cannot start: {e}",
            bwrap.display()
        ))),
    }
}

/// A numeric user and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskUser {
    pub uid: u32,
    pub gid: u32,
}

impl Confinement {
    /// The user the script runs as, if not the server's.
    pub fn user(&self) -> Option<TaskUser> {
        match self {
            Confinement::None => None,
            Confinement::User { uid, gid } => Some(TaskUser {
                uid: *uid,
                gid: *gid,
            }),
            Confinement::Bwrap { user, .. } => *user,
        }
    }

    /// `program args…` run in `dir` under this confinement, with exactly `env` as its
    /// environment.
    pub fn command(
        &self,
        program: &str,
        args: &[&Path],
        dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Command {
        let mut command = match self {
            Confinement::Bwrap {
                program: bwrap,
                hidden,
                ..
            } => {
                let mut c = Command::new(bwrap);
                c.args(bwrap_args(hidden, dir)).arg("--").arg(program);
                c
            }
            Confinement::None | Confinement::User { .. } => Command::new(program),
        };
        command.args(args).current_dir(dir).env_clear().envs(env);
        if let Some(user) = self.user() {
            use std::os::unix::process::CommandExt;
            // std drops the supplementary groups too when it leaves root.
            command.uid(user.uid).gid(user.gid);
        }
        command
    }
}

/// What every sandbox has, the probe's included: no capabilities, `/` read-only, fresh `/dev`
/// and `/proc`, its own process tree, gone with its parent.
const BWRAP_BASE: [&str; 11] = [
    "--die-with-parent",
    // Run by root, bubblewrap would otherwise keep every capability (enough to unmount what
    // hides the data folder).
    "--cap-drop",
    "ALL",
    "--unshare-pid",
    "--ro-bind",
    "/",
    "/",
    "--dev",
    "/dev",
    "--proc",
    "/proc",
];

/// bubblewrap's arguments: [`BWRAP_BASE`], a fresh `/tmp`, each hidden folder an empty tmpfs,
/// the task's folder bound back writable and made the working directory.
pub fn bwrap_args(hidden: &[PathBuf], dir: &Path) -> Vec<String> {
    let mut args: Vec<String> = BWRAP_BASE.map(str::to_owned).to_vec();
    args.extend(
        [
            "--new-session",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--tmpfs",
            "/tmp",
        ]
        .map(str::to_owned),
    );
    for folder in hidden {
        args.extend(["--tmpfs".to_owned(), path_text(folder)]);
    }
    let dir = path_text(dir);
    args.extend([
        "--bind".to_owned(),
        dir.clone(),
        dir.clone(),
        "--chdir".to_owned(),
        dir,
    ]);
    args
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The server environment a task may see: the allowed names that are set, nothing else.
pub fn allowed_environment(allow: &[String]) -> BTreeMap<String, String> {
    allow
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.clone(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(root: &Path, data: &Path, job: &Path) -> ReadPolicy {
        ReadPolicy {
            roots: vec![root.canonicalize().unwrap()],
            closed: vec![data.canonicalize().unwrap()],
            job_dir: Some(job.canonicalize().unwrap()),
        }
    }

    #[test]
    fn reads_stay_inside_the_open_folders() {
        let top = tempfile::tempdir().unwrap();
        let data = top.path().join("data");
        let job = data.join("jobs/j1");
        let open = top.path().join("open");
        std::fs::create_dir_all(&job).unwrap();
        std::fs::create_dir_all(&open).unwrap();
        std::fs::write(data.join("jwt-secret"), "s3cret").unwrap();
        std::fs::write(job.join("a.csv"), "x").unwrap();
        std::fs::write(open.join("b.csv"), "x").unwrap();
        std::fs::write(top.path().join("c.csv"), "x").unwrap();
        std::os::unix::fs::symlink(data.join("jwt-secret"), open.join("link.csv")).unwrap();
        // The open folder may even hold the data folder: it stays closed.
        let p = policy(top.path(), &data, &job);
        let q = policy(&open, &data, &job);

        assert!(q.check(&job.join("a.csv")).is_ok());
        assert!(q.check(&open.join("b.csv")).is_ok());
        for refused in [
            data.join("jwt-secret"),
            job.join("../../jwt-secret"),
            open.join("link.csv"),
            open.join("../c.csv"),
            open.join("missing.csv"),
        ] {
            let err = q.check(&refused).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains("scheduler.data_roots"), "{err}");
        }
        assert!(p.check(&top.path().join("c.csv")).is_ok());
        assert!(p.check(&data.join("jwt-secret")).is_err());
    }

    #[test]
    fn bwrap_hides_then_binds_the_task_folder_back() {
        let args = bwrap_args(
            &[PathBuf::from("/data")],
            Path::new("/data/jobs/j/t/attempt-1"),
        );
        let text = args.join(" ");
        let hide = text.find("--tmpfs /data").unwrap();
        let bind = text
            .find("--bind /data/jobs/j/t/attempt-1 /data/jobs/j/t/attempt-1")
            .unwrap();
        assert!(hide < bind, "{text}");
        assert!(text.starts_with("--die-with-parent"), "{text}");
    }
}
