//! The local executor's process half: one task attempt as a child process (`maas task exec
//! DIR`) in a process group of its own, so that a kill or a timeout ends everything the task
//! started (a shell, the Python it ran, …), with stdout and stderr going to the attempt's log
//! files as they are written. The process starts with exactly the environment it is given: none
//! of the server's own variables (its admin password, its database URL) reach a task.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use crate::runner::{create_private, STDERR_FILE, STDOUT_FILE};

/// A running attempt.
pub struct LocalProcess {
    child: tokio::process::Child,
    pid: Option<u32>,
}

impl LocalProcess {
    /// Start `program task exec DIR` in `dir`, with `env` as its whole environment. Its logs
    /// are readable by the server's user alone.
    pub fn spawn(
        program: &Path,
        dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> std::io::Result<LocalProcess> {
        let stdout = create_private(&dir.join(STDOUT_FILE))?;
        let stderr = create_private(&dir.join(STDERR_FILE))?;
        let child = tokio::process::Command::new(program)
            .arg("task")
            .arg("exec")
            .arg(dir)
            .current_dir(dir)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let pid = child.id();
        Ok(LocalProcess { child, pid })
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// End the attempt and everything it started (SIGKILL to its process group).
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid {
            kill_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

/// SIGKILL a process group by its leader's pid (through kill(1): no unsafe code here).
pub fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kill_ends_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // `sh -c` stands in for `maas`: it gets "task exec DIR" as $0.. and starts a grandchild.
        let script = dir.path().join("fake-maas");
        std::fs::write(
            &script,
            "#!/bin/sh\nsleep 30 &\necho $! > child.pid\nwait\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        let mut process = LocalProcess::spawn(&script, dir.path(), &BTreeMap::new()).unwrap();
        let pid_file = dir.path().join("child.pid");
        for _ in 0..100 {
            if std::fs::read_to_string(&pid_file).is_ok_and(|t| !t.trim().is_empty()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let grandchild = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .to_owned();
        process.kill();
        let status = process.wait().await.unwrap();
        assert!(!status.success());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Gone, or a zombie waiting for whoever adopted it to reap it.
        let alive = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "));
        assert!(!alive, "the task's grandchild survived the kill");
    }
}
