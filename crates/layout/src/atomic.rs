//! Atomic file writes: a reader (or a rerun after a crash) sees the old file or the whole new
//! one, never a torn one.
//!
//! A file is written under a temporary name `<name>.<host>.<pid>.tmp` (see [`tmp_path`]), synced
//! and renamed into place. A write that fails removes its temporary file; one that runs out of
//! space fails with [`DiskFull`]. The temporary files of a killed process stay behind until a
//! stage starts and removes those of this host's dead processes ([`remove_stale_tmp`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::process;

/// A write that failed because the file system is full (ENOSPC) or the user's quota is spent
/// (EDQUOT). Its message names the file and says what to do; [`crate::cli::exit`] prints it alone.
#[derive(Debug, thiserror::Error)]
#[error(
    "no space left to write {}: the disk (or your quota) is full. Free some space, or move the \
     layout elsewhere with --data-dir, then rerun the same command: it resumes where it stopped \
     (nothing partial was kept)",
    path.display()
)]
pub struct DiskFull {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Whether an I/O error means the disk or quota is full.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Wraps an I/O error of writing `path`: a [`DiskFull`] when it is one, else the error with the
/// context `what`.
pub fn write_error(e: std::io::Error, path: &Path, what: impl FnOnce() -> String) -> anyhow::Error {
    if is_disk_full(&e) {
        DiskFull {
            path: path.to_path_buf(),
            source: e,
        }
        .into()
    } else {
        anyhow::Error::new(e).context(what())
    }
}

/// The temporary name a file is written under before its rename: `<name>.<host>.<pid>.tmp`
/// ([`process::host`], [`process::pid`]), so processes sharing a layout (`--shard-index`, on one
/// host or many) never write through each other's temporary file, and a later stage can tell
/// whose it was ([`parse_tmp_name`]).
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{}.tmp", process::host(), process::pid()));
    path.with_file_name(name)
}

/// The parts of a temporary file name made by [`tmp_path`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TmpName<'a> {
    /// The name of the file it stands for.
    pub target: &'a str,
    pub host: &'a str,
    pub pid: u32,
}

/// Splits `<target>.<host>.<pid>.tmp`; `None` for any other name.
pub fn parse_tmp_name(name: &str) -> Option<TmpName<'_>> {
    let (rest, pid) = name.strip_suffix(".tmp")?.rsplit_once('.')?;
    let (target, host) = rest.rsplit_once('.')?;
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (digits && !target.is_empty() && process::is_host_name(host)).then_some(TmpName {
        target,
        host,
        pid: pid.parse().ok()?,
    })
}

/// Removes from `dir` (not its subdirectories) the temporary files ([`tmp_path`]) left by
/// processes of this host that are no longer alive ([`process::is_dead_writer`]); those of live
/// processes, of other hosts and every other file are left alone. A missing `dir` has none.
/// Returns how many were removed.
pub fn remove_stale_tmp(dir: &Path) -> Result<usize> {
    remove_stale_tmp_among(dir, &list_dir(dir)?)
}

/// The entries of `dir`; none when it does not exist. A listing error names `dir`.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("listing {}", dir.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing {}", dir.display())),
    }
}

/// [`remove_stale_tmp`] over `entries`, the listing of `dir`.
fn remove_stale_tmp_among(dir: &Path, entries: &[std::fs::DirEntry]) -> Result<usize> {
    let mut removed = 0;
    for entry in entries {
        let name = entry.file_name();
        let Some(tmp) = name.to_str().and_then(parse_tmp_name) else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && process::is_dead_writer(tmp.host, tmp.pid) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("removing stale temporary file {}", entry.path().display())
                    })
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            "removed {removed} temporary files left by dead processes in {}",
            dir.display()
        );
    }
    Ok(removed)
}

/// [`remove_stale_tmp`] in `root` and every directory below it (symbolic links are not
/// followed). Returns how many files were removed.
pub fn remove_stale_tmp_tree(root: &Path) -> Result<usize> {
    let entries = list_dir(root)?;
    let mut removed = remove_stale_tmp_among(root, &entries)?;
    for entry in &entries {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            removed += remove_stale_tmp_tree(&entry.path())?;
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically: a temporary file ([`tmp_path`]), fsync, rename, fsync of
/// the directory. Creates the parent directory if needed. On failure the temporary file is
/// removed; a full disk is a [`DiskFull`] error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| write_error(e, path, || format!("creating directory {}", dir.display())))?;
    let tmp = tmp_path(path);
    let written = write_and_rename(&tmp, path, bytes);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    // Make the rename itself durable; not all filesystems allow syncing a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn write_and_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::File::create(tmp)
        .map_err(|e| write_error(e, path, || format!("creating {}", tmp.display())))?;
    fault::before_write(&mut file, bytes);
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| write_error(e, path, || format!("writing {}", tmp.display())))?;
    drop(file);
    std::fs::rename(tmp, path).map_err(|e| {
        write_error(e, path, || {
            format!("renaming {} to {}", tmp.display(), path.display())
        })
    })
}

/// Writes a value as pretty JSON, atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .with_context(|| format!("serialising {}", path.display()))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// TEST-ONLY fault injection, for the kill-anywhere tests of the stages: with
/// `DFD_TEST_FAULT_AT_WRITE=<n>` the process's n-th atomic write (counting from 1) writes half of
/// its temporary file and then SIGKILLs the process (a torn `.tmp` left behind, as by a crash);
/// with `<n>:pause` it sleeps there instead, holding whatever locks it took, until the test kills
/// it. Unset (always, outside tests), this does nothing.
mod fault {
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;

    const VAR: &str = "DFD_TEST_FAULT_AT_WRITE";

    /// `(write number, pause instead of kill)` from the environment.
    fn setting() -> Option<(usize, bool)> {
        static SETTING: OnceLock<Option<(usize, bool)>> = OnceLock::new();
        *SETTING.get_or_init(|| {
            let value = std::env::var(VAR).ok()?;
            let (n, pause) = match value.split_once(':') {
                Some((n, "pause")) => (n, true),
                Some(_) => return None,
                None => (value.as_str(), false),
            };
            Some((n.parse().ok()?, pause))
        })
    }

    pub(super) fn before_write(file: &mut std::fs::File, bytes: &[u8]) {
        static WRITES: AtomicUsize = AtomicUsize::new(0);
        let Some((at, pause)) = setting() else {
            return;
        };
        if WRITES.fetch_add(1, Ordering::SeqCst) + 1 != at {
            return;
        }
        let _ = file
            .write_all(&bytes[..bytes.len() / 2])
            .and_then(|()| file.sync_all());
        eprintln!("{VAR}: stopping at write {at} (pid {})", std::process::id());
        if pause {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        // SAFETY: sends SIGKILL to this very process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_leaving_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/file.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn tmp_names_carry_host_and_pid() {
        let tmp = tmp_path(Path::new("d/shard-00001.safetensors"));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            parse_tmp_name(name),
            Some(TmpName {
                target: "shard-00001.safetensors",
                host: process::host(),
                pid: process::pid()
            })
        );
        for other in [
            "a.tmp",
            "a.1.tmp",
            "best.tmp",
            ".h.1.tmp",
            "a.h.x1.tmp",
            "a.h.b.1.tmp",
        ] {
            let parsed = parse_tmp_name(other);
            assert!(
                other == "a.h.b.1.tmp" || parsed.is_none(),
                "{other}: {parsed:?}"
            );
        }
        assert_eq!(parse_tmp_name("a.h.b.1.tmp").unwrap().target, "a.h");
    }

    #[test]
    fn only_dead_local_writers_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let host = process::host();
        let names = [
            format!("a.bin.{host}.{dead}.tmp"), // dead, this host: removed
            format!("b.bin.{host}.{}.tmp", process::pid()), // alive (this process)
            format!("c.bin.other-host.{dead}.tmp"), // another host
            "best.tmp".to_owned(),              // not a temporary file name
            "d.bin".to_owned(),
        ];
        let sub = dir.path().join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        for name in &names {
            std::fs::write(dir.path().join(name), b"x").unwrap();
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        assert_eq!(remove_stale_tmp(dir.path()).unwrap(), 1);
        assert!(sub.join(&names[0]).exists(), "not recursive");
        assert_eq!(remove_stale_tmp_tree(dir.path()).unwrap(), 1);
        for d in [dir.path(), sub.as_path()] {
            assert!(!d.join(&names[0]).exists());
            assert!(names[1..].iter().all(|n| d.join(n).exists()));
        }
        assert_eq!(remove_stale_tmp(&dir.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn a_failed_write_removes_its_tmp() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a non-empty directory.
        let p = dir.path().join("taken");
        std::fs::create_dir_all(p.join("inside")).unwrap();
        let err = write_atomic(&p, b"data").unwrap_err();
        assert!(format!("{err:#}").contains("renaming"), "{err:#}");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn disk_full_names_the_file() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let err = write_error(e, Path::new("/x/shard-00000.safetensors"), || "w".into());
        let full = err.downcast_ref::<DiskFull>().unwrap().to_string();
        assert!(
            full.contains("/x/shard-00000.safetensors") && full.contains("disk"),
            "{full}"
        );
        let other = write_error(std::io::Error::other("boom"), Path::new("/x"), || {
            "w".into()
        });
        assert!(other.downcast_ref::<DiskFull>().is_none());
    }
}
