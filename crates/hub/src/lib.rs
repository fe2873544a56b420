//! A small Hugging Face hub client for model files that behaves like Python's
//! `huggingface_hub` (`hf_hub_download`): the same environment variables, the same cache layout
//! (a cache filled by either is used by the other) and the same timeouts.
//!
//! # Environment
//!
//! Read once, by [`Hub::from_env`] (or [`Hub::from_vars`]). A variable set to the empty string
//! counts as unset. Paths get a leading `~` and `$VAR`/`${VAR}` expanded, as in Python.
//!
//! | Variable | Default | Meaning |
//! |---|---|---|
//! | `HF_ENDPOINT` | `https://huggingface.co` | The hub (or a mirror); trailing `/` trimmed. |
//! | `HF_TOKEN` | none | Access token, sent as `Authorization: Bearer` to the endpoint's host only. Legacy name: `HUGGING_FACE_HUB_TOKEN`. |
//! | `HF_TOKEN_PATH` | `$HF_HOME/token` | File holding the token, read when `HF_TOKEN` is unset (a missing file: no token). |
//! | `HF_HUB_DISABLE_IMPLICIT_TOKEN` | false | When true, no token is sent at all. |
//! | `HF_HOME` | `$XDG_CACHE_HOME/huggingface` | Root of the Hugging Face files (token, hub cache). |
//! | `XDG_CACHE_HOME` | `~/.cache` | Used for `HF_HOME`'s default. |
//! | `HF_HUB_CACHE` | `$HF_HOME/hub` | The hub cache. Legacy name, used when `HF_HUB_CACHE` is unset: `HUGGINGFACE_HUB_CACHE`. |
//! | `HF_HUB_OFFLINE` | false | `1`/`true`/`yes`/`on` (any case): only the cache is used, never the network. Legacy name, used when `HF_HUB_OFFLINE` is unset: `TRANSFORMERS_OFFLINE`. |
//! | `HF_HUB_ETAG_TIMEOUT` | `10` | Seconds for the whole metadata request (connect, request, response headers). `0` means the default. |
//! | `HF_HUB_DOWNLOAD_TIMEOUT` | `10` | Seconds for each of the download's connection and response headers, and for every read of its body (a body that stalls that long fails and is resumed by the next attempt). `0` means the default. |
//!
//! Timeouts must be whole numbers of seconds up to 86400; any other value, an endpoint that is not
//! an `http(s)://` URL, or a token that cannot be sent in a header is an error naming the variable.
//!
//! # Cache
//!
//! The layout of huggingface_hub. For a model repository `owner/name`, under the cache directory:
//!
//! ```text
//! models--owner--name/
//!   blobs/{etag}               the file contents, named by the normalised ETag
//!   blobs/{etag}.incomplete    a download in progress; the next download resumes it
//!   refs/{revision}            the commit a branch or tag name resolved to (40 hex, no newline)
//!   snapshots/{commit}/{file}  relative symlink to ../../blobs/{etag} (one more ../ per folder
//!                              of {file}); a copy of the blob where there are no symlinks
//!   .no_exist/{commit}/{file}  huggingface_hub's marker of a file known to be absent (read only)
//! .locks/models--owner--name/{etag}.lock   locked while that blob downloads
//! ```
//!
//! [`Hub::cached`] finds `snapshots/{commit}/{file}` for a commit-hash revision directly and for
//! a branch or tag through `refs/{revision}`.
//!
//! # Protocol
//!
//! `HEAD {endpoint}/{repo}/resolve/{revision}/{file}` without following redirects (relative
//! redirects without the file's metadata, as for a renamed repository, are followed) gives
//! `X-Repo-Commit`, `X-Linked-Etag` (else `ETag`), `X-Linked-Size` (else `Content-Length`) and,
//! on a redirect, the `Location` of the contents (a CDN). A `GET` of that location streams the
//! blob into `blobs/{etag}.incomplete`, resuming a leftover one with `Range: bytes=N-` (a server
//! that answers 200 instead of 206 sends the whole file, which then restarts from zero); the
//! file is renamed to `blobs/{etag}` once exactly the announced size has arrived. One process
//! at a time downloads a blob (a lock file under `.locks/`, shared with huggingface_hub).
//!
//! Errors: 401/403 from the hub (missing or refused token, gated repository) and 404 (no such
//! file, revision or repository) end the download at once, with what to do. Anything else (no
//! connection, timeouts, other statuses, a stalled or truncated body) is retried after 1 s, 2 s,
//! 4 s, … up to the number of attempts (3 by default, [`Hub::with_attempts`]), then reported
//! with the URL, the last cause and what to do.
//!
//! # Time bounds
//!
//! An attempt that gets no answer at all ends after `HF_HUB_ETAG_TIMEOUT` (the metadata request
//! as a whole), so a server that accepts connections but never answers fails the download
//! within `attempts × HF_HUB_ETAG_TIMEOUT + pauses` = 3 × 10 s + 1 s + 2 s = **33 s** with the
//! defaults. An attempt whose download gets no answer is bounded by `HF_HUB_ETAG_TIMEOUT` plus
//! 4 × `HF_HUB_DOWNLOAD_TIMEOUT` (name resolution, connection, request, response headers); a
//! body that keeps delivering data is never cut off.

mod cache;
mod config;
mod download;
mod http;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cache::{check_relative, RepoCache};
use crate::config::Settings;
use crate::http::{quote, Target};

/// Attempts of a download unless [`Hub::with_attempts`] says otherwise.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// The revision huggingface_hub uses when none is given.
pub const DEFAULT_REVISION: &str = "main";

/// A hub client for model repositories: where files come from, where they are cached, and how
/// long to wait. Cheap to clone (connections are pooled and shared).
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    cache_dir: PathBuf,
    offline: bool,
    etag_timeout: Duration,
    download_timeout: Duration,
    attempts: u32,
    agent: ureq::Agent,
}

impl Hub {
    /// Reads the process environment as huggingface_hub does (see the crate documentation for
    /// the variables and their defaults). A variable that is not valid UTF-8 is an error.
    pub fn from_env() -> Result<Self> {
        let not_unicode = std::cell::RefCell::new(None);
        let hub = Self::from_vars(|name| match std::env::var(name) {
            Ok(value) => Some(value),
            Err(std::env::VarError::NotPresent) => None,
            Err(std::env::VarError::NotUnicode(_)) => {
                not_unicode.borrow_mut().get_or_insert(name.to_owned());
                None
            }
        });
        if let Some(name) = not_unicode.into_inner() {
            bail!("the environment variable {name} is not valid UTF-8");
        }
        hub
    }

    /// As [`Hub::from_env`], with the variables read through `get` (None = unset), so that
    /// callers and tests need not touch the process environment.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let settings = Settings::from_vars(get)?;
        Ok(Self {
            endpoint: settings.endpoint,
            token: settings.token,
            cache_dir: settings.cache_dir,
            offline: settings.offline,
            etag_timeout: settings.etag_timeout,
            download_timeout: settings.download_timeout,
            attempts: DEFAULT_ATTEMPTS,
            agent: http::agent(),
        })
    }

    /// The same hub making at most `attempts` attempts per download (at least 1).
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// `{endpoint}/{repo}/resolve/{revision}/{file}`, the revision and file percent-encoded as
    /// huggingface_hub does (`/` kept in the file name only).
    pub fn url(&self, repo: &str, revision: &str, file: &str) -> String {
        format!(
            "{}/{repo}/resolve/{}/{}",
            self.endpoint,
            quote(revision, false),
            quote(file, true)
        )
    }

    /// The hub cache directory (`HF_HUB_CACHE`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The hub address (`HF_ENDPOINT`), without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether only the cache may be used (`HF_HUB_OFFLINE`).
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// `snapshots/{commit}/{file}` of `revision` (a commit hash, or a branch or tag name
    /// resolved through `refs/`) when it is in the cache; never touches the network. None also
    /// for a repository id, revision or file name that is not valid.
    pub fn cached(&self, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
        check_relative("revision", revision).ok()?;
        check_relative("file name", file).ok()?;
        RepoCache::new(&self.cache_dir, repo)
            .ok()?
            .lookup(revision, file)
    }

    /// The local path of `file` at `revision` (a branch or tag name such as
    /// [`DEFAULT_REVISION`], or a 40-hex commit hash) of model repository `repo`: the cached
    /// file if there is one (without touching the network), else downloaded into the cache
    /// (an error when offline). `progress(done_bytes, total_bytes)` is called as bytes arrive,
    /// `done_bytes` counting those resumed from an earlier download; not at all for a cached
    /// file.
    pub fn get(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PathBuf> {
        check_relative("revision", revision)?;
        check_relative("file name", file)?;
        let repo_cache = RepoCache::new(&self.cache_dir, repo)?;
        if let Some(path) = repo_cache.lookup(revision, file) {
            return Ok(path);
        }
        let url = self.url(repo, revision, file);
        if self.offline {
            if let Some(marker) = repo_cache.known_missing(revision, file) {
                bail!(
                    "no file {file} at revision {revision} of {repo} ({url}): the cache records \
                     it as missing ({}); HF_HUB_OFFLINE is set, so the hub was not asked again",
                    marker.display()
                );
            }
            bail!(
                "{file} of {repo} at revision {revision} is not in the Hugging Face cache ({}) and \
                 HF_HUB_OFFLINE is set, so {url} was not fetched: unset HF_HUB_OFFLINE to download \
                 it, or fill the cache where network access is available",
                self.cache_dir.display()
            );
        }
        tracing::info!(%url, "downloading from the Hugging Face hub");
        let target = Target {
            repo,
            revision,
            file,
            url: &url,
        };
        self.download(&repo_cache, &target, progress)
    }
}

/// Everything but the token.
impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("etag_timeout", &self.etag_timeout)
            .field("download_timeout", &self.download_timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(vars: &[(&str, &str)]) -> Hub {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Hub::from_vars(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())).unwrap()
    }

    #[test]
    fn urls() {
        let h = hub(&[("HOME", "/h")]);
        assert_eq!(
            h.url("timm/resnet", "main", "model.safetensors"),
            "https://huggingface.co/timm/resnet/resolve/main/model.safetensors"
        );
        let h = hub(&[("HOME", "/h"), ("HF_ENDPOINT", "http://127.0.0.1:9/")]);
        assert_eq!(
            h.url("o/n", "refs/pr/1", "sub/a b.bin"),
            "http://127.0.0.1:9/o/n/resolve/refs%2Fpr%2F1/sub/a%20b.bin"
        );
    }

    #[test]
    fn debug_hides_the_token() {
        let h = hub(&[("HOME", "/h"), ("HF_TOKEN", "hf_secret")]);
        let shown = format!("{h:?}");
        assert!(
            !shown.contains("hf_secret") && shown.contains("<set>"),
            "{shown}"
        );
    }

    #[test]
    fn invalid_names_are_errors_not_panics() {
        let h = hub(&[("HOME", "/h"), ("HF_HUB_OFFLINE", "1")]);
        let mut progress = |_: u64, _: u64| {};
        for (repo, rev, file) in [
            ("../x", "main", "f"),
            ("o/n", "../main", "f"),
            ("o/n", "main", "/etc/passwd"),
            ("o/n", "main", ""),
        ] {
            assert!(h.get(repo, rev, file, &mut progress).is_err());
            assert_eq!(h.cached(repo, rev, file), None);
        }
    }
}
