//! One file from the hub into the cache: attempts with exponential backoff; each asks for the
//! metadata, then streams the blob into `blobs/{etag}.incomplete` (resuming what an earlier
//! attempt or process left there), checks its size, renames it to `blobs/{etag}` and links the
//! snapshot to it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cache::RepoCache;
use crate::http::{Failure, Metadata, Target};
use crate::Hub;

/// Read size while streaming a blob.
const CHUNK: usize = 1 << 20;

/// The pause after failed attempt `n` (from 1): 1 s, 2 s, 4 s, then 8 s.
pub(crate) fn backoff(n: u32) -> Duration {
    Duration::from_secs(1 << n.saturating_sub(1).min(3))
}

impl Hub {
    /// Downloads `target` into `repo_cache` with up to `self.attempts` attempts; the snapshot
    /// path.
    pub(crate) fn download(
        &self,
        repo_cache: &RepoCache,
        target: &Target,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PathBuf> {
        let started = Instant::now();
        let mut last = anyhow!("no attempt was made");
        for attempt in 1..=self.attempts {
            match self.attempt(repo_cache, target, progress) {
                Ok(path) => return Ok(path),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e)) => {
                    if attempt < self.attempts {
                        let pause = backoff(attempt);
                        tracing::warn!(
                            url = target.url,
                            attempt,
                            error = format!("{e:#}"),
                            "download attempt failed; retrying in {} s",
                            pause.as_secs()
                        );
                        std::thread::sleep(pause);
                    }
                    last = e;
                }
            }
        }
        bail!(
            "downloading {} failed after {} attempt(s) in {:.1} s; the last error: {last:#}. Check \
             the network and HF_ENDPOINT (now {}), set HF_HUB_OFFLINE=1 to use only the cache ({}), \
             or pass a local file instead",
            target.url,
            self.attempts,
            started.elapsed().as_secs_f64(),
            self.endpoint,
            self.cache_dir.display()
        )
    }

    fn attempt(
        &self,
        repo_cache: &RepoCache,
        target: &Target,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<PathBuf, Failure> {
        let meta = self.metadata(target)?;
        repo_cache
            .write_ref(target.revision, &meta.commit)
            .map_err(Failure::Fatal)?;
        let pointer = repo_cache.pointer(&meta.commit, target.file);
        if pointer.is_file() {
            return Ok(pointer);
        }
        let blob = repo_cache.blob(&meta.etag);
        if !blob.is_file() {
            let _lock = repo_cache.lock(&meta.etag).map_err(Failure::Fatal)?;
            // Another process may have finished it while this one waited for the lock.
            if !blob.is_file() {
                let part = repo_cache.incomplete(&meta.etag);
                self.fetch_blob(&meta, &part, target, progress)?;
                fs::rename(&part, &blob)
                    .with_context(|| format!("moving {} to {}", part.display(), blob.display()))
                    .map_err(Failure::Fatal)?;
            }
        }
        repo_cache
            .link(&meta.commit, target.file, &meta.etag)
            .map_err(Failure::Fatal)
    }

    /// Makes `part` the complete blob: resumes it with a `Range` request when it holds a
    /// prefix (restarting from zero when the server sends the whole file), and checks that
    /// exactly `meta.size` bytes arrived. A stalled or short body is retried; `part` keeps what
    /// came, for the next attempt.
    fn fetch_blob(
        &self,
        meta: &Metadata,
        part: &Path,
        target: &Target,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), Failure> {
        let local = |e: io::Error, what: &str| {
            Failure::Fatal(anyhow::Error::new(e).context(format!("{what} {}", part.display())))
        };
        if let Some(dir) = part.parent() {
            fs::create_dir_all(dir).map_err(|e| local(e, "creating the folder of"))?;
        }
        let have = match fs::metadata(part) {
            Ok(m) if m.len() <= meta.size => Some(m.len()),
            Ok(_) => None, // longer than the file: not a prefix of it
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(local(e, "examining")),
        };
        if have == Some(meta.size) {
            return Ok(());
        }
        let from = have.unwrap_or(0);
        if from > 0 {
            tracing::info!(
                url = target.url,
                from,
                size = meta.size,
                "resuming download"
            );
        }
        let mut body = self.blob_body(&meta.location, from, meta.size, target)?;
        let mut file = if body.offset == 0 {
            File::create(part)
        } else {
            OpenOptions::new().append(true).open(part)
        }
        .map_err(|e| local(e, "opening"))?;
        let mut done = body.offset;
        progress(done, meta.size);
        let mut buf = vec![0; CHUNK];
        loop {
            let n = match body.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let why = match e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
                        Some(ureq::Error::Timeout(_)) => format!(
                            "no data for {} s (HF_HUB_DOWNLOAD_TIMEOUT)",
                            self.download_timeout.as_secs()
                        ),
                        _ => e.to_string(),
                    };
                    return Err(Failure::Retry(anyhow!(
                        "reading {} stopped after {done} of {} bytes: {why}",
                        meta.location,
                        meta.size
                    )));
                }
            };
            let n_u64 = u64::try_from(n).unwrap_or(u64::MAX);
            if done.saturating_add(n_u64) > meta.size {
                return Err(Failure::Fatal(anyhow!(
                    "size mismatch: {} sends more than the {} bytes the hub announced for {}",
                    meta.location,
                    meta.size,
                    target.url
                )));
            }
            file.write_all(&buf[..n]).map_err(|e| local(e, "writing"))?;
            done += n_u64;
            progress(done, meta.size);
        }
        if done != meta.size {
            return Err(Failure::Retry(anyhow!(
                "{} ended the body after {done} of {} bytes",
                meta.location,
                meta.size
            )));
        }
        file.sync_all().map_err(|e| local(e, "syncing"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_TIMEOUT_S;
    use crate::DEFAULT_ATTEMPTS;

    #[test]
    fn backoff_doubles_then_caps() {
        let secs: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 8, 8]);
    }

    /// The documented bound: with the defaults, a server that accepts connections but never
    /// answers costs each attempt one metadata timeout, plus the pauses between attempts.
    #[test]
    fn silent_server_bound_with_defaults_is_under_a_minute() {
        let pauses: Duration = (1..DEFAULT_ATTEMPTS).map(backoff).sum();
        let bound = Duration::from_secs(DEFAULT_TIMEOUT_S) * DEFAULT_ATTEMPTS + pauses;
        assert_eq!(bound, Duration::from_secs(33));
    }
}
