//! huggingface_hub's cache layout, so that a cache filled by Python is reused here and the other
//! way round.
//! See the crate documentation for the layout.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One model repository's folder in the cache.
pub(crate) struct RepoCache {
    dir: PathBuf,
    lock_dir: PathBuf,
}

impl RepoCache {
    /// The folder of `repo` (checked: `owner/name` or `name`, as huggingface_hub accepts).
    pub fn new(cache_dir: &Path, repo: &str) -> Result<Self> {
        check_repo(repo)?;
        let folder = format!("models--{}", repo.replace('/', "--"));
        Ok(Self {
            dir: cache_dir.join(&folder),
            lock_dir: cache_dir.join(".locks").join(folder),
        })
    }

    /// The commit `revision` stands for: itself when it is a commit hash, else what
    /// `refs/{revision}` holds (None when that is missing or not a commit hash).
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_owned());
        }
        let text = fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let commit = text.trim();
        is_commit(commit).then(|| commit.to_owned())
    }

    /// `snapshots/{commit}/{file}` of `revision` if it is there (a dangling link is not).
    pub fn lookup(&self, revision: &str, file: &str) -> Option<PathBuf> {
        let pointer = self.pointer(&self.commit_of(revision)?, file);
        pointer.is_file().then_some(pointer)
    }

    /// huggingface_hub's `.no_exist/{commit}/{file}` marker of `revision`, if there is one.
    pub fn known_missing(&self, revision: &str, file: &str) -> Option<PathBuf> {
        let marker = under(
            &self.dir.join(".no_exist").join(self.commit_of(revision)?),
            file,
        );
        marker.is_file().then_some(marker)
    }

    /// Records that branch or tag `revision` is at `commit` (nothing to do for a commit hash).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit || self.commit_of(revision).as_deref() == Some(commit) {
            return Ok(());
        }
        let path = self.dir.join("refs").join(revision);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("creating the cache folder {}", parent.display()))?;
        }
        fs::write(&path, commit)
            .with_context(|| format!("writing the cache ref {}", path.display()))
    }

    /// `snapshots/{commit}/{file}`.
    pub fn pointer(&self, commit: &str, file: &str) -> PathBuf {
        under(&self.dir.join("snapshots").join(commit), file)
    }

    /// `blobs/{etag}`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    /// `blobs/{etag}.incomplete`.
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    /// Takes the lock of blob `etag` (waiting while another process, Python's included, holds
    /// it); released when the returned file is dropped.
    pub fn lock(&self, etag: &str) -> Result<File> {
        let path = self.lock_dir.join(format!("{etag}.lock"));
        let context = || format!("locking {}", path.display());
        fs::create_dir_all(&self.lock_dir).with_context(context)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(context)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!(lock = %path.display(), "another process is downloading this file; waiting for it");
                file.lock().with_context(context)?;
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(context),
        }
        Ok(file)
    }

    /// Points `snapshots/{commit}/{file}` at `blobs/{etag}` (replacing what was there) and
    /// returns that path.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.pointer(commit, file);
        let context = || format!("linking {} to its blob", pointer.display());
        if let Some(parent) = pointer.parent() {
            fs::create_dir_all(parent).with_context(context)?;
        }
        match fs::remove_file(&pointer) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).with_context(context),
            _ => {}
        }
        #[cfg(unix)]
        {
            let mut target = PathBuf::new();
            for _ in 0..=file.split('/').count() {
                target.push("..");
            }
            target.push("blobs");
            target.push(etag);
            match std::os::unix::fs::symlink(&target, &pointer) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(e).with_context(context)
                }
                _ => {}
            }
        }
        #[cfg(not(unix))]
        fs::copy(self.blob(etag), &pointer).with_context(context)?;
        Ok(pointer)
    }
}

/// `base` joined with the `/`-separated relative `path`.
fn under(base: &Path, path: &str) -> PathBuf {
    path.split('/')
        .fold(base.to_path_buf(), |p, part| p.join(part))
}

/// A commit hash as the hub writes them: 40 lowercase hex digits.
pub(crate) fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// huggingface_hub's repository id rules: `owner/name` or `name`, each part of ASCII letters,
/// digits, `-`, `_`, `.`, starting and ending with a letter or digit; no `--` or `..`; at most
/// 96 characters.
fn check_repo(repo: &str) -> Result<()> {
    let part_ok = |p: &str| {
        let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        edge(p.chars().next())
            && edge(p.chars().last())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let parts: Vec<&str> = repo.split('/').collect();
    if parts.len() > 2
        || !parts.iter().all(|p| part_ok(p))
        || repo.contains("--")
        || repo.contains("..")
        || repo.len() > 96
    {
        bail!(
            "`{repo}` is not a Hugging Face model repository id: expected owner/name (letters, \
             digits, -, _ and .)"
        );
    }
    Ok(())
}

/// Checks a file name or revision for use as a relative path in the cache: `/`-separated,
/// with no empty, `.` or `..` part and no `\` or NUL.
pub(crate) fn check_relative(what: &str, s: &str) -> Result<()> {
    let bad_part = |p: &str| p.is_empty() || p == "." || p == ".." || p.contains(['\\', '\0']);
    if s.split('/').any(bad_part) {
        bail!("{what} `{s}` is not a relative /-separated path without . or .. parts");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids() {
        for ok in ["timm/resnext50_32x4d.tv_in1k", "gpt2", "a/b", "A_1/x-y.z"] {
            check_repo(ok).unwrap();
        }
        for bad in [
            "", "/", "a/", "/b", "a/b/c", "../x", "a/..", "a--b/c", "a/.b", "a/b.", "-a/b",
            "a b/c", "a/b\\c",
        ] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
        assert!(check_repo(&"a".repeat(97)).is_err());
    }

    #[test]
    fn relative_paths() {
        for ok in ["model.safetensors", "sub/dir/f.bin", "refs/pr/1", "v1.0"] {
            check_relative("file", ok).unwrap();
        }
        for bad in [
            "", "/abs", "a//b", "a/../b", "..", ".", "a/", "a\\b", "nul\0",
        ] {
            assert!(check_relative("file", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commits() {
        assert!(is_commit(&"0123456789abcdef".repeat(3)[..40]));
        assert!(!is_commit(&"A".repeat(40)));
        assert!(!is_commit("main"));
        assert!(!is_commit(&"a".repeat(41)));
    }

    #[test]
    fn layout_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(dir.path(), "o/n").unwrap();
        let commit = "c".repeat(40);
        assert_eq!(repo.lookup("main", "f"), None);
        repo.write_ref("main", &commit).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("models--o--n/refs/main")).unwrap(),
            commit
        );
        repo.write_ref("refs/pr/1", &commit).unwrap();
        assert_eq!(repo.commit_of("refs/pr/1"), Some(commit.clone()));

        fs::create_dir_all(dir.path().join("models--o--n/blobs")).unwrap();
        fs::write(repo.blob("e1"), b"x").unwrap();
        let pointer = repo.link(&commit, "a/b/f", "e1").unwrap();
        assert_eq!(
            pointer,
            dir.path()
                .join("models--o--n/snapshots")
                .join(&commit)
                .join("a/b/f")
        );
        #[cfg(unix)]
        assert_eq!(
            fs::read_link(&pointer).unwrap(),
            PathBuf::from("../../../../blobs/e1")
        );
        assert_eq!(fs::read(&pointer).unwrap(), b"x");
        assert_eq!(repo.lookup("main", "a/b/f"), Some(pointer.clone()));
        assert_eq!(repo.lookup(&commit, "a/b/f"), Some(pointer.clone()));
        // Relinking replaces the link.
        fs::write(repo.blob("e2"), b"y").unwrap();
        repo.link(&commit, "a/b/f", "e2").unwrap();
        assert_eq!(fs::read(&pointer).unwrap(), b"y");
        // A dangling link is not a cached file.
        fs::remove_file(repo.blob("e2")).unwrap();
        assert_eq!(repo.lookup("main", "a/b/f"), None);
    }

    #[test]
    fn no_exist_marker() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoCache::new(dir.path(), "o/n").unwrap();
        let commit = "d".repeat(40);
        let marker = dir
            .path()
            .join("models--o--n/.no_exist")
            .join(&commit)
            .join("sub/f");
        fs::create_dir_all(marker.parent().unwrap()).unwrap();
        fs::write(&marker, b"").unwrap();
        assert_eq!(repo.known_missing(&commit, "sub/f"), Some(marker));
        assert_eq!(repo.known_missing("main", "sub/f"), None);
    }
}
