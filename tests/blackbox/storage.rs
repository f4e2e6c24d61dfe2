//! Storage faults through the real HTTP API: a data folder that is full, or one that is read-only.
//! A write answers 2xx only once it is durably committed, otherwise 503 `storage_unavailable`;
//! the server recovers by itself once space returns. The faults are real: a small tmpfs mounted as
//! the data folder and filled up, and a read-only bind mount over the artifact folder. Mounting
//! needs root (CAP_SYS_ADMIN): without it the tests are skipped with a notice, unless
//! `MAAS_REQUIRE_TMPFS=1` asks them to fail instead.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

/// A mount made by a test, undone when dropped (after the servers using it are stopped).
struct Mount {
    target: PathBuf,
}

impl Mount {
    /// Run `mount args…` onto `target`; `None` (after a notice) when mounting is not allowed here.
    fn new(target: &Path, args: &[&str]) -> Option<Mount> {
        let output = Command::new("mount").args(args).arg(target).output();
        let refused = match output {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Err(e) => Some(e.to_string()),
        };
        match refused {
            None => Some(Mount {
                target: target.to_owned(),
            }),
            Some(why) if std::env::var("MAAS_REQUIRE_TMPFS").is_ok_and(|v| v == "1") => {
                panic!(
                    "mount {args:?} {} failed (MAAS_REQUIRE_TMPFS=1): {why}",
                    target.display()
                )
            }
            Some(why) => {
                eprintln!(
                    "NOTICE: skipping a storage-fault test: mount {args:?} {} failed ({why}); \
                     run as root or set MAAS_REQUIRE_TMPFS=1 to fail instead",
                    target.display()
                );
                None
            }
        }
    }

    /// A tmpfs of `size` (like `20m`) over `target`.
    fn tmpfs(target: &Path, size: &str) -> Option<Mount> {
        Mount::new(
            target,
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
        )
    }

    /// `target` again, read-only (the files under it stay as they are).
    fn read_only(target: &Path) -> Option<Mount> {
        let mount = Mount::new(target, &["--bind", &target.display().to_string()])?;
        let status = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "remount {} read-only", target.display());
        Some(mount)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.target)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.target).status();
        }
    }
}

/// Files that take up the free space of a folder, given back a little or all at once.
struct Filler {
    dir: PathBuf,
    files: Vec<PathBuf>,
    /// Pieces written so far, for unique names.
    made: usize,
}

impl Filler {
    /// Write into `dir` until the file system refuses: one big file, then 16 KiB pieces.
    fn fill(dir: &Path) -> Filler {
        let big = dir.join("filler-big");
        assert!(!write_until_full(&big, 1 << 20, usize::MAX));
        let mut filler = Filler {
            dir: dir.to_owned(),
            files: vec![big],
            made: 1,
        };
        filler.top_up();
        filler
    }

    /// Take up whatever space came free again.
    fn top_up(&mut self) {
        loop {
            let piece = self.dir.join(format!("filler-{}", self.made));
            self.made += 1;
            let whole = write_until_full(&piece, 4 << 10, 16 << 10);
            self.files.push(piece);
            if !whole {
                return;
            }
        }
    }

    /// Give back `n` small pieces (the last one may be partly written).
    fn free(&mut self, n: usize) {
        for _ in 0..n {
            if let Some(path) = self.files.pop() {
                std::fs::remove_file(path).unwrap();
            }
        }
    }

    fn free_all(&mut self) {
        self.free(self.files.len());
    }
}

/// Write `path` in `chunk`s up to `limit` bytes; false when the file system filled up first.
fn write_until_full(path: &Path, chunk: usize, limit: usize) -> bool {
    let mut file = std::fs::File::create(path).unwrap();
    let buf = vec![0x5a_u8; chunk];
    let mut written = 0;
    while written < limit {
        if let Err(e) = file.write_all(&buf) {
            assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
            return false;
        }
        written += chunk;
    }
    true
}

/// The V2 readiness probe answers 400 (a 4xx, as the protocol says) with the reason.
fn assert_v2_not_ready(server: &Server) {
    let r = server.get("/v2/health/ready");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("refuses writes"), "{message}");
}

/// A job with one task that does nothing.
const TINY_WORKFLOW: &str =
    "name: tiny\ntasks:\n  - name: noop\n    kind: script\n    script: \"true\"\n";

fn submit_job(server: &Server) -> reqwest::blocking::Response {
    server.post_json("/v1/jobs", &json!({"workflow": TINY_WORKFLOW}))
}

fn patch_settings(server: &Server, trace: bool) -> reqwest::blocking::Response {
    server
        .client
        .patch(format!("{}/v1/settings", server.url))
        .json(&json!({"trace": trace}))
        .send()
        .unwrap()
}

/// What the server acknowledged; all of it must be there after a restart, and nothing else.
#[derive(Default)]
struct Acknowledged {
    /// Version number → sha256 of the file deployed under it.
    versions: BTreeMap<u64, String>,
    jobs: Vec<String>,
    trace: bool,
    refused: usize,
}

impl Acknowledged {
    /// A write either succeeded (`ok`) or was refused as a storage fault, with the one error body.
    fn answer(
        &mut self,
        what: &str,
        response: reqwest::blocking::Response,
        ok: u16,
    ) -> Option<Value> {
        if response.status().as_u16() == ok {
            return Some(response.json().unwrap());
        }
        let body = assert_error(response, 503, "storage_unavailable");
        let message = body["message"].as_str().unwrap();
        assert!(
            !message.contains("database is locked"),
            "{what}: the database stayed locked: {body}"
        );
        self.refused += 1;
        None
    }

    fn deploy(&mut self, server: &Server, fixture_name: &str) {
        let response = server.deploy_form("iris", fixture_name, &[]);
        if let Some(body) = self.answer("deploy", response, 201) {
            let version = body["version"].as_u64().unwrap();
            let sha = body["sha256"].as_str().unwrap().to_owned();
            let earlier = self.versions.insert(version, sha);
            assert!(earlier.is_none(), "version {version} was handed out twice");
        }
    }

    fn submit(&mut self, server: &Server) {
        if let Some(body) = self.answer("job submit", submit_job(server), 202) {
            self.jobs.push(body["id"].as_str().unwrap().to_owned());
        }
    }

    fn settings(&mut self, server: &Server, trace: bool) {
        if let Some(body) = self.answer("settings", patch_settings(server, trace), 200) {
            assert_eq!(body["trace"], trace);
            self.trace = trace;
        }
    }

    /// Everything acknowledged is stored, and nothing that was refused.
    fn assert_stored(&self, server: &Server) {
        let model = server.get_json("/v1/models/iris");
        let stored: BTreeMap<u64, String> = model["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                let version = v["version"].as_u64().unwrap();
                let meta = server.get_json(&format!("/v1/models/iris/versions/{version}"));
                (version, meta["sha256"].as_str().unwrap().to_owned())
            })
            .collect();
        assert_eq!(
            stored, self.versions,
            "stored versions (number → sha256) differ from the acknowledged ones"
        );
        for id in &self.jobs {
            assert_eq!(
                server.get(&format!("/v1/jobs/{id}")).status(),
                200,
                "acknowledged job {id} is gone"
            );
        }
        assert_eq!(
            server.get_json("/v1/jobs")["total"],
            self.jobs.len(),
            "only acknowledged jobs are stored"
        );
        assert_eq!(server.get_json("/v1/settings")["trace"], self.trace);
    }
}

/// The model files under `artifacts/iris`, by version, and whatever is left in staging.
fn artifact_files(data_dir: &Path) -> (Vec<u64>, Vec<String>) {
    let names = |dir: PathBuf| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let root = data_dir.join("artifacts");
    let mut versions: Vec<u64> = names(root.join("iris"))
        .iter()
        .map(|n| {
            n.strip_suffix(".onnx")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("unexpected file artifacts/iris/{n}"))
        })
        .collect();
    versions.sort_unstable();
    (versions, names(root.join(".staging")))
}

#[test]
fn a_full_disk_never_acknowledges_a_lost_write_and_recovers_when_space_returns() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let Some(_tmpfs) = Mount::tmpfs(store.data_dir(), "20m") else {
        return;
    };
    let mut server = Server::start(&store);
    let fixtures = ["iris_logreg.onnx", "iris_logreg_v2.onnx"];
    let mut acked = Acknowledged {
        trace: true,
        ..Acknowledged::default()
    };
    for i in 0..4 {
        acked.deploy(&server, fixtures[i % 2]);
    }
    assert_eq!(
        acked.versions.len(),
        4,
        "deploys with room to spare succeed"
    );

    // Full, or nearly: a few pieces given back before a round and taken up again after it, so
    // writes fail at every step (the upload, a statement, the commit) and some fit.
    let mut filler = Filler::fill(store.data_dir());
    for round in 0..24 {
        filler.free(round % 4);
        acked.deploy(&server, fixtures[round % 2]);
        acked.submit(&server);
        acked.settings(&server, round % 2 == 1);
        filler.top_up();
    }
    assert!(acked.refused > 0, "the full disk refused nothing");
    // Readiness says so while the disk is full, on the ops probe and the V2 one alike.
    wait_for("not-ready on a full disk", || {
        server.get("/health/ready").status() == 503
    });
    let body = assert_error(server.get("/health/ready"), 503, "storage_unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("refuses writes") && message.contains("full"),
        "readiness names the fault: {message}"
    );
    assert_v2_not_ready(&server);

    // Space returns: writes succeed again at once, without a restart.
    filler.free_all();
    let started = Instant::now();
    let body = server.deploy("iris", fixtures[0], &[]);
    let version = body["version"].as_u64().unwrap();
    assert!(
        acked
            .versions
            .insert(version, body["sha256"].as_str().unwrap().to_owned())
            .is_none(),
        "version {version} was handed out twice"
    );
    let r = submit_job(&server);
    assert_eq!(r.status(), 202);
    acked.jobs.push(
        r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let trace = !acked.trace;
    assert_eq!(patch_settings(&server, trace).status(), 200);
    acked.trace = trace;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "writes after space returned took {:?}",
        started.elapsed()
    );
    acked.assert_stored(&server);
    wait_for("readiness once space returned", || {
        server.get("/health/ready").status() == 200
    });

    server = server.restart();
    acked.assert_stored(&server);
    let (files, staging) = artifact_files(store.data_dir());
    assert_eq!(
        files,
        acked.versions.keys().copied().collect::<Vec<_>>(),
        "one model file per stored version, no stray ones"
    );
    assert!(staging.is_empty(), "uploads left in staging: {staging:?}");
    drop(server);
}

#[test]
fn a_read_only_artifact_folder_answers_503_storage_unavailable() {
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let Some(_tmpfs) = Mount::tmpfs(store.data_dir(), "20m") else {
        return;
    };
    let mut server = Server::start(&store);
    let mut acked = Acknowledged {
        trace: true,
        ..Acknowledged::default()
    };
    acked.deploy(&server, "iris_logreg.onnx");
    assert_eq!(acked.versions.len(), 1);

    let artifacts = store.data_dir().join("artifacts");
    let read_only = Mount::read_only(&artifacts).unwrap();
    let body = assert_error(
        server.deploy_form("iris", "iris_logreg_v2.onnx", &[]),
        503,
        "storage_unavailable",
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&artifacts.display().to_string()) && message.contains("not writable"),
        "the message names the folder and the problem: {message}"
    );
    // The database is elsewhere and still takes writes.
    acked.submit(&server);
    assert_eq!(acked.jobs.len(), 1);
    // Not ready while the folder refuses writes: a load balancer sends deploys elsewhere.
    wait_for("not-ready on a read-only artifact folder", || {
        server.get("/health/ready").status() == 503
    });
    let body = assert_error(server.get("/health/ready"), 503, "storage_unavailable");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&artifacts.display().to_string()) && message.contains("not writable"),
        "readiness names the folder and the problem: {message}"
    );
    assert_v2_not_ready(&server);

    drop(read_only);
    wait_for("readiness once the folder is writable", || {
        server.get("/health/ready").status() == 200
    });
    acked.deploy(&server, "iris_logreg_v2.onnx");
    assert_eq!(
        acked.versions.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "the refused deploy took no version number"
    );
    server = server.restart();
    acked.assert_stored(&server);
    let (files, staging) = artifact_files(store.data_dir());
    assert_eq!(files, [1, 2]);
    assert!(staging.is_empty(), "uploads left in staging: {staging:?}");
    drop(server);
}

/// The database holds password and API key hashes: its files are the owner's alone, from the
/// first start, and files an older version made readable to others are narrowed at start.
#[test]
fn the_database_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let store = Store::new(StoreKind::Sqlite).unwrap();
    let files = ["maas.db", "maas.db-wal", "maas.db-shm"].map(|f| store.data_dir().join(f));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let mut server = Server::start(&store);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    server.kill9();
    for file in &files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    server = server.restart();
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} after a restart", file.display());
    }
    drop(server);
}
