//! Checksums checked on read: a file the layout recorded (a shard in `index.json`, a checkpoint
//! file in `state.json`) is compared with its recorded blake3 before anything uses its bytes.
//!
//! Shards, which a stage may map many times, are hashed at most once per process
//! ([`Hashing::OncePerProcess`]): a verified file is remembered by path, recorded checksum, size,
//! modification time and inode, so a file replaced since (the writers rename a new inode into
//! place) is hashed again. Checkpoints, which a process reads once or twice, are hashed on every
//! check ([`Hashing::EveryCheck`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::hash::hash_file;

/// What identifies one verified version of a file.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Verified {
    path: PathBuf,
    checksum: String,
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn verified() -> &'static Mutex<HashSet<Verified>> {
    static VERIFIED: OnceLock<Mutex<HashSet<Verified>>> = OnceLock::new();
    VERIFIED.get_or_init(Mutex::default)
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// Whether a check may rely on an earlier verification of the same file version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hashing {
    OncePerProcess,
    EveryCheck,
}

/// The outcome of comparing a file with its recorded checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The file has the recorded checksum.
    Intact,
    /// The file does not exist.
    Missing,
    /// The file's bytes changed: its blake3 is this one.
    Changed(String),
}

/// Compares `path` with the recorded hex blake3 `checksum` (with [`Hashing::OncePerProcess`],
/// only if this process has not verified this version of the file yet). Errors only on I/O
/// failures other than "not found".
pub fn check_file(path: &Path, checksum: &str, hashing: Hashing) -> Result<Check> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Check::Missing),
        Err(e) => return Err(e).with_context(|| format!("reading metadata of {}", path.display())),
    };
    let key = Verified {
        path: path.to_path_buf(),
        checksum: checksum.to_owned(),
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: inode(&meta),
    };
    let once = hashing == Hashing::OncePerProcess;
    let cache = verified();
    if once && cache.lock().is_ok_and(|set| set.contains(&key)) {
        return Ok(Check::Intact);
    }
    let actual = hash_file(path)?;
    if actual != checksum {
        return Ok(Check::Changed(actual));
    }
    if once {
        if let Ok(mut set) = cache.lock() {
            set.insert(key);
        }
    }
    Ok(Check::Intact)
}

/// Fails unless `path` has the checksum `checksum` recorded in `record`. The error names the
/// file, both checksums, the record, and `rebuild`: the command that makes the file again.
pub fn require_file(
    path: &Path,
    checksum: &str,
    hashing: Hashing,
    record: &Path,
    rebuild: &str,
) -> Result<()> {
    match check_file(path, checksum, hashing)? {
        Check::Intact => Ok(()),
        Check::Missing => bail!(
            "{} is missing, but {} lists it; rebuild it with: {rebuild}",
            path.display(),
            record.display()
        ),
        Check::Changed(actual) => bail!(
            "{} is corrupt: its blake3 is {actual}, but {} records {checksum} (its bytes changed \
             after it was written: bit rot, a partial copy or a bad disk); rebuild it with: {rebuild}",
            path.display(),
            record.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash_bytes;

    #[test]
    fn detects_changed_and_missing_files_even_after_a_verified_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.bin");
        std::fs::write(&path, b"0123456789").unwrap();
        let sum = hash_bytes(b"0123456789");
        let once = Hashing::OncePerProcess;
        assert_eq!(check_file(&path, &sum, once).unwrap(), Check::Intact);
        assert_eq!(check_file(&path, &sum, once).unwrap(), Check::Intact);
        // Same size, a few bytes flipped at once: only a check that hashes again sees it.
        std::fs::write(&path, b"0123XX6789").unwrap();
        let every = Hashing::EveryCheck;
        assert!(matches!(
            check_file(&path, &sum, every).unwrap(),
            Check::Changed(_)
        ));
        // Later (a new modification time): the remembered verification does not cover it.
        std::thread::sleep(std::time::Duration::from_millis(25));
        std::fs::write(&path, b"0123YY6789").unwrap();
        let err = require_file(
            &path,
            &sum,
            once,
            Path::new("index.json"),
            "dfd-x --config p.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("f.bin is corrupt")
                && err.contains("index.json")
                && err.contains("rebuild it with: dfd-x --config p.toml"),
            "{err}"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(check_file(&path, &sum, once).unwrap(), Check::Missing);
    }
}
