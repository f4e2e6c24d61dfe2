//! The artifact store: model files on disk, one per version, written so that a crash at any
//! moment leaves either no file or a whole one.
//!
//! Uploads are streamed into `.staging/`, hashed as they arrive, fsynced, then renamed into
//! `<model>/<version>.onnx` (a rename within one file system is atomic). Whatever is left in
//! `.staging/` by a process that no longer runs is deleted at the next start, and files that no stored version
//! refers to are swept by [`ArtifactStore::retain`].
//!
//! A write the folder itself refuses (full, over quota, read-only, no permission) comes back with
//! its kind kept and the folder named, so callers can tell "try again once someone acts" from a
//! bug; see [`StorageFault`].

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

const STAGING: &str = ".staging";

/// Model files under one root folder.
#[derive(Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    counter: AtomicU64,
}

/// An upload being written; deleted on drop unless committed.
#[derive(Debug)]
pub struct StagedArtifact {
    /// The store's root, named in errors.
    root: PathBuf,
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    size: u64,
}

/// A model file moved into place by [`ArtifactStore::commit`], until its version is recorded.
#[derive(Debug)]
pub struct PlacedArtifact {
    path: PathBuf,
    /// Device and inode: what tells this file from one put at the same path later.
    identity: Option<(u64, u64)>,
}

/// Why a folder refused a write when the folder, not the data, is at fault: the same write can
/// succeed once someone frees space or makes the folder writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFault {
    /// No space left on the device, or over a disk quota.
    Full,
    /// A read-only file system, or no permission to write there.
    NotWritable,
}

impl StorageFault {
    pub fn of(e: &io::Error) -> Option<StorageFault> {
        match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Some(StorageFault::Full),
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied => {
                Some(StorageFault::NotWritable)
            }
            _ => None,
        }
    }

    /// `e` again, same kind, saying which folder refused and what a person can do about it.
    /// Errors that are not storage faults come back unchanged.
    pub fn explain(folder: &Path, e: io::Error) -> io::Error {
        let advice = match StorageFault::of(&e) {
            Some(StorageFault::Full) => "is full; free space there and retry",
            Some(StorageFault::NotWritable) => {
                "is not writable; make it writable (permissions, or a read-only mount) and retry"
            }
            None => return e,
        };
        io::Error::new(
            e.kind(),
            format!("the folder {} {advice} ({e})", folder.display()),
        )
    }
}

/// What is known about a finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDigest {
    pub sha256: String,
    pub size: u64,
}

impl ArtifactStore {
    /// Open (creating) the store and drop whatever a crashed upload left in staging.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        let staging = root.join(STAGING);
        fs::create_dir_all(&staging)?;
        for entry in fs::read_dir(&staging)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let owner = name
                .split('-')
                .next()
                .and_then(|pid| pid.parse::<u32>().ok());
            if !owner.is_some_and(process_alive) {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(ArtifactStore {
            root,
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Start a new upload.
    pub fn stage(&self) -> io::Result<StagedArtifact> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self
            .root
            .join(STAGING)
            .join(format!("{}-{n}.part", std::process::id()));
        let file = File::create(&path).map_err(|e| self.explain(e))?;
        Ok(StagedArtifact {
            root: self.root.clone(),
            path,
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    fn explain(&self, e: io::Error) -> io::Error {
        StorageFault::explain(&self.root, e)
    }

    /// Whether the folder takes a write now: a small file is written to staging, synced and
    /// removed. Readiness asks this, so a full or read-only folder is seen before an upload fails.
    pub fn probe_write(&self) -> io::Result<()> {
        let mut probe = self.stage()?;
        probe.write(&[0_u8; 4096])?;
        if let Some(file) = &probe.file {
            file.sync_data().map_err(|e| self.explain(e))?;
        }
        Ok(())
    }

    /// Where the file of `model` `version` lives.
    pub fn path(&self, model: &str, version: u64) -> io::Result<PathBuf> {
        Ok(self.model_dir(model)?.join(format!("{version}.onnx")))
    }

    fn model_dir(&self, model: &str) -> io::Result<PathBuf> {
        let safe = !model.is_empty()
            && !model.starts_with('.')
            && model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !safe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unsafe model name",
            ));
        }
        Ok(self.root.join(model))
    }

    /// Move a finished upload into place. After this returns the file is durable. If the
    /// version then fails to be recorded, [`ArtifactStore::discard`] takes the file back out.
    pub fn commit(
        &self,
        mut staged: StagedArtifact,
        model: &str,
        version: u64,
    ) -> io::Result<PlacedArtifact> {
        let target = self.path(model, version)?;
        let dir = self.model_dir(model)?;
        let place = |staged: &mut StagedArtifact| -> io::Result<Option<(u64, u64)>> {
            fs::create_dir_all(&dir)?;
            if let Some(file) = staged.file.take() {
                file.sync_all()?;
            }
            let identity = identity(&fs::metadata(&staged.path)?);
            fs::rename(&staged.path, &target)?;
            staged.path = PathBuf::new();
            Ok(identity)
        };
        let identity = place(&mut staged).map_err(|e| self.explain(e))?;
        let placed = PlacedArtifact {
            path: target,
            identity,
        };
        if let Err(e) = sync_dir(&dir) {
            let _ = self.discard(&placed);
            return Err(self.explain(e));
        }
        Ok(placed)
    }

    /// Remove a committed file whose version was not recorded after all, unless the path holds
    /// another file by now (a replica sharing the folder reused the number after our rollback).
    pub fn discard(&self, placed: &PlacedArtifact) -> io::Result<()> {
        match fs::metadata(&placed.path) {
            Ok(meta) if identity(&meta) == placed.identity => fs::remove_file(&placed.path),
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn read(&self, model: &str, version: u64) -> io::Result<Vec<u8>> {
        fs::read(self.path(model, version)?)
    }

    pub fn remove_version(&self, model: &str, version: u64) -> io::Result<()> {
        match fs::remove_file(self.path(model, version)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    pub fn remove_model(&self, model: &str) -> io::Result<()> {
        match fs::remove_dir_all(self.model_dir(model)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Delete every artifact for which `keep(model, version)` is false (leftovers of a crash
    /// between the rename and the store's commit). Returns how many files were removed.
    /// Files modified less than `min_age` ago are kept: another process sharing the folder may
    /// be between its rename and its commit.
    pub fn retain(&self, min_age: Duration, keep: impl Fn(&str, u64) -> bool) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(&self.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == STAGING || !entry.file_type()?.is_dir() {
                continue;
            }
            for file in fs::read_dir(entry.path())? {
                let file = file?;
                let file_name = file.file_name().to_string_lossy().into_owned();
                let version = file_name
                    .strip_suffix(".onnx")
                    .and_then(|v| v.parse::<u64>().ok());
                let age = file.metadata()?.modified()?.elapsed().unwrap_or_default();
                if age >= min_age && version.is_none_or(|v| !keep(&name, v)) {
                    fs::remove_file(file.path())?;
                    removed += 1;
                }
            }
            if fs::read_dir(entry.path())?.next().is_none() {
                fs::remove_dir(entry.path())?;
            }
        }
        Ok(removed)
    }
}

impl StagedArtifact {
    pub fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("artifact already committed"))?;
        file.write_all(chunk)
            .map_err(|e| StorageFault::explain(&self.root, e))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn digest(&self) -> ArtifactDigest {
        ArtifactDigest {
            sha256: hex::encode(self.hasher.clone().finalize()),
            size: self.size,
        }
    }
}

impl Drop for StagedArtifact {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            // Best effort: a leftover is also removed at the next start.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether an upload's owner still runs: another replica on this host may share the folder.
/// Where `/proc` is missing every leftover is treated as abandoned.
fn process_alive(pid: u32) -> bool {
    pid != std::process::id()
        && Path::new("/proc/self").exists()
        && Path::new(&format!("/proc/{pid}")).exists()
}

impl PlacedArtifact {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_upload_is_hashed_committed_and_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let mut staged = store.stage().unwrap();
        staged.write(b"hello ").unwrap();
        staged.write(b"world").unwrap();
        let digest = staged.digest();
        assert_eq!(digest.size, 11);
        assert_eq!(
            digest.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let placed = store.commit(staged, "iris", 3).unwrap();
        assert_eq!(fs::read(placed.path()).unwrap(), b"hello world");
        assert_eq!(fs::read_dir(dir.path().join(STAGING)).unwrap().count(), 0);

        store.commit(store.stage().unwrap(), "iris", 4).unwrap();
        assert_eq!(
            store
                .retain(Duration::ZERO, |m, v| m == "iris" && v == 3)
                .unwrap(),
            1
        );
        assert!(store.path("iris", 3).unwrap().exists());
        assert!(!store.path("iris", 4).unwrap().exists());
        store.commit(store.stage().unwrap(), "iris", 5).unwrap();
        assert_eq!(
            store
                .retain(Duration::from_secs(3600), |_, _| false)
                .unwrap(),
            0
        );
    }

    #[test]
    fn dropped_upload_leaves_nothing_and_restart_clears_staging() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let mut staged = store.stage().unwrap();
        staged.write(b"partial").unwrap();
        let path = staged.path().to_path_buf();
        drop(staged);
        assert!(!path.exists());

        fs::write(dir.path().join(STAGING).join("crashed.part"), b"x").unwrap();
        fs::write(dir.path().join(STAGING).join("4294967295-0.part"), b"x").unwrap();
        ArtifactStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join(STAGING)).unwrap().count(), 0);
    }

    #[test]
    fn discard_removes_only_the_file_it_placed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let placed = store.commit(store.stage().unwrap(), "iris", 1).unwrap();
        store.discard(&placed).unwrap();
        assert!(!placed.path().exists());
        store.discard(&placed).unwrap();

        // The number was taken again (and its file put in place) before the discard ran.
        let placed = store.commit(store.stage().unwrap(), "iris", 2).unwrap();
        let mut again = store.stage().unwrap();
        again.write(b"another upload").unwrap();
        store.commit(again, "iris", 2).unwrap();
        store.discard(&placed).unwrap();
        assert_eq!(fs::read(placed.path()).unwrap(), b"another upload");
    }

    #[test]
    fn storage_faults_name_the_folder_and_keep_their_kind() {
        let folder = Path::new("/data/artifacts");
        for (errno, fault, says) in [
            (28, StorageFault::Full, "is full"),
            (122, StorageFault::Full, "is full"),
            (30, StorageFault::NotWritable, "is not writable"),
            (13, StorageFault::NotWritable, "is not writable"),
            (1, StorageFault::NotWritable, "is not writable"),
        ] {
            let e = io::Error::from_raw_os_error(errno);
            let kind = e.kind();
            assert_eq!(StorageFault::of(&e), Some(fault), "errno {errno}");
            let explained = StorageFault::explain(folder, e);
            assert_eq!(explained.kind(), kind);
            let text = explained.to_string();
            assert!(
                text.starts_with("the folder /data/artifacts ") && text.contains(says),
                "{text}"
            );
        }
        let other = io::Error::from_raw_os_error(5);
        assert_eq!(StorageFault::of(&other), None);
        assert_eq!(
            StorageFault::explain(folder, other).to_string(),
            io::Error::from_raw_os_error(5).to_string()
        );
    }

    #[test]
    fn unsafe_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        assert!(store.path("../etc", 1).is_err());
        assert!(store.path(".staging", 1).is_err());
        assert!(store.path("a/b", 1).is_err());
    }
}
