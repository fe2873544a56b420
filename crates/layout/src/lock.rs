//! Lock files: one process at a time writes a given output (e.g. one shard), on one host or on
//! many sharing a file system.
//!
//! A lock is a small file (`shard-NNNNN.lock`) holding its owner as JSON,
//! `{"host": "<host>", "pid": <pid>}` ([`crate::process`]). It is created atomically and complete:
//! the content is written to a temporary file which is then hard-linked to the lock's name, and
//! the link fails if the lock exists (the classic lock of shared file systems, safe on NFS). It is
//! removed when the [`Lock`] is dropped. When the lock exists:
//! - held by a live process, or by any process of another host: the caller gets an error naming
//!   the lock file, host and pid, at once. A lock of another host is never broken (its process
//!   cannot be checked from here): if that process is gone, the user deletes the file;
//! - left by a dead process of this host (or naming this very process, which never takes a lock
//!   twice: a leftover of an earlier process that had the same pid, as in containers): it is taken
//!   over. The stale file is first renamed aside (to a temporary name of the taker), which only
//!   one contender can do; if what was moved aside is not the stale lock that was judged (another
//!   process took it over meanwhile), it is put back and that process is reported.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::atomic::{tmp_path, write_error};
use crate::process;

/// Who holds a lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
}

impl Holder {
    /// This process.
    pub fn me() -> Self {
        Self {
            host: process::host().to_owned(),
            pid: process::pid(),
        }
    }

    /// Whether the lock it left may be taken over (see the module rules).
    fn is_stale(&self) -> bool {
        *self == Self::me() || process::is_dead_writer(&self.host, self.pid)
    }
}

/// A held lock file, removed on drop.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

/// How many times a contended lock is re-examined before giving up.
const ATTEMPTS: usize = 8;

impl Lock {
    /// Takes the lock `path` for this process, taking over a stale one; an error naming the
    /// lock file, host and pid when another process holds it.
    pub fn acquire(path: &Path) -> Result<Self> {
        let mut content = serde_json::to_vec(&Holder::me()).expect("a holder serialises");
        content.push(b'\n');
        let mine = tmp_path(path);
        std::fs::write(&mine, &content)
            .map_err(|e| write_error(e, path, || format!("writing {}", mine.display())))?;
        let taken = Self::link(&mine, path);
        let _ = std::fs::remove_file(&mine);
        taken
    }

    fn link(mine: &Path, path: &Path) -> Result<Self> {
        for _ in 0..ATTEMPTS {
            match std::fs::hard_link(mine, path) {
                Ok(()) => {
                    return Ok(Self {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(write_error(e, path, || {
                        format!("creating lock file {}", path.display())
                    }))
                }
            }
            let Some(holder) = read_holder(path)? else {
                continue; // released meanwhile: try again
            };
            if !holder.is_stale() {
                return Err(held(path, &holder));
            }
            take_over(path, &holder)?;
        }
        bail!(
            "could not take the lock {} after {ATTEMPTS} attempts: other processes keep taking it",
            path.display()
        )
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes from `dir` the lock files (`*.lock`) left by dead processes of this host
/// ([`process::is_dead_writer`]), as a taker would (never one taken over meanwhile); locks of
/// live processes, of other hosts and unreadable ones stay. A killed writer leaves the locks of
/// the shards it had finished, which nobody would take again. Returns how many were removed.
pub fn remove_stale_locks(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in crate::atomic::list_dir(dir)? {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        if let Ok(Some(holder)) = read_holder(&path) {
            if process::is_dead_writer(&holder.host, holder.pid) {
                take_over(&path, &holder)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// The holder recorded in `path`; `None` when the file no longer exists. An unreadable or
/// unparseable lock is an error naming it (it is never broken).
fn read_holder(path: &Path) -> Result<Option<Holder>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading lock file {}", path.display())),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|_| {
        anyhow::anyhow!(
            "{} is locked, but the lock file does not say by whom (expected {{\"host\": …, \"pid\": …}}): \
             if no dfd process is writing there, delete it and rerun",
            path.display()
        )
    })
}

/// The refusal: `path` is held by the live (or remote) `holder`.
fn held(path: &Path, holder: &Holder) -> anyhow::Error {
    let (host, pid) = (&holder.host, holder.pid);
    if host == process::host() {
        anyhow::anyhow!(
            "{} is locked by process {pid} on this host ({host}), which is still running and \
             writing the same output: let it finish, or stop it and rerun",
            path.display()
        )
    } else {
        anyhow::anyhow!(
            "{} is locked by process {pid} on host {host}, which may still be writing the same \
             output; a lock of another host is never broken: if that process is gone, delete the \
             lock file and rerun",
            path.display()
        )
    }
}

/// Removes the stale lock `path` left by `stale`, unless another process took it over since it
/// was read (then its lock is put back).
fn take_over(path: &Path, stale: &Holder) -> Result<()> {
    // A temporary name of this process: removed by the next stage if this process dies here.
    let mut aside = path.as_os_str().to_owned();
    aside.push(".stale");
    let aside = tmp_path(Path::new(&aside));
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("moving the stale lock {} aside", path.display()))
        }
    }
    if read_holder(&aside)?.as_ref() != Some(stale) {
        // A live lock: restore it (the link fails only if yet another lock appeared meanwhile).
        let _ = std::fs::hard_link(&aside, path);
    } else {
        tracing::info!(
            "taking over {}, left by process {} on this host, which is gone",
            path.display(),
            stale.pid
        );
    }
    std::fs::remove_file(&aside)
        .with_context(|| format!("removing the stale lock {}", aside.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_lock(path: &Path, host: &str, pid: u32) {
        let holder = Holder {
            host: host.to_owned(),
            pid,
        };
        std::fs::write(path, serde_json::to_vec(&holder).unwrap()).unwrap();
    }

    #[test]
    fn held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-00000.lock");
        let lock = Lock::acquire(&path).unwrap();
        assert_eq!(
            read_holder(&path).unwrap(),
            Some(Holder::me()),
            "the lock names this process"
        );
        drop(lock);
        assert!(!path.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(names.is_empty(), "no temporary file left: {names:?}");
        Lock::acquire(&path).unwrap();
    }

    #[test]
    fn a_live_holder_is_refused_and_a_dead_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shard-00003.lock");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        write_lock(&path, process::host(), child.id());
        let err = Lock::acquire(&path).unwrap_err().to_string();
        for part in [
            path.display().to_string(),
            process::host().to_owned(),
            child.id().to_string(),
        ] {
            assert!(err.contains(&part), "{err} lacks {part}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let lock = Lock::acquire(&path).unwrap();
        assert_eq!(read_holder(lock.path()).unwrap(), Some(Holder::me()));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn other_hosts_and_unreadable_locks_are_never_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        write_lock(&path, "elsewhere", 1);
        let err = Lock::acquire(&path).unwrap_err().to_string();
        assert!(
            err.contains("host elsewhere") && err.contains("never broken"),
            "{err}"
        );
        std::fs::write(&path, b"").unwrap();
        let err = Lock::acquire(&path).unwrap_err().to_string();
        assert!(err.contains("does not say by whom"), "{err}");
        assert!(path.exists());
    }

    #[test]
    fn only_dead_local_holders_locks_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        write_lock(&dir.path().join("a.lock"), process::host(), dead);
        write_lock(&dir.path().join("b.lock"), "elsewhere", dead);
        let held = Lock::acquire(&dir.path().join("c.lock")).unwrap();
        std::fs::write(dir.path().join("d.lock"), b"?").unwrap();
        assert_eq!(remove_stale_locks(dir.path()).unwrap(), 1);
        assert!(!dir.path().join("a.lock").exists());
        for kept in ["b.lock", "c.lock", "d.lock"] {
            assert!(dir.path().join(kept).exists(), "{kept}");
        }
        drop(held);
    }

    #[test]
    fn a_lock_naming_this_process_is_a_leftover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        write_lock(&path, process::host(), process::pid());
        Lock::acquire(&path).unwrap();
    }
}
