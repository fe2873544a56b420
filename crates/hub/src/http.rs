//! The hub's HTTP protocol for one file: a metadata request (HEAD on the resolve URL, redirects
//! not followed) and the download of the blob it points at (GET, resumable with `Range`).
//!
//! Timeouts: the metadata request as a whole (name resolution, connection, request, response
//! headers) must finish within `HF_HUB_ETAG_TIMEOUT`; the download's name resolution, connection
//! and response headers get `HF_HUB_DOWNLOAD_TIMEOUT` each, and so does every read of the body.

use std::io::Read;
use std::time::Duration;

use anyhow::anyhow;
use ureq::http::{header, HeaderMap, StatusCode, Uri};
use ureq::Agent;

use crate::cache::is_commit;
use crate::Hub;

/// `User-Agent` of every request.
const USER_AGENT: &str = concat!("dfd/", env!("CARGO_PKG_VERSION"));
/// Relative redirects (renamed repositories) followed by the metadata request.
const MAX_RELATIVE_REDIRECTS: usize = 5;
/// Redirects followed by the blob download (a CDN may redirect again).
const MAX_DOWNLOAD_REDIRECTS: u32 = 5;

/// Why an attempt failed: `Fatal` ends the download at once, `Retry` may pass with another
/// attempt (network trouble, a stalled or truncated body, a server error).
#[derive(Debug)]
pub(crate) enum Failure {
    Fatal(anyhow::Error),
    Retry(anyhow::Error),
}

/// The agent shared by all requests of a [`Hub`]: statuses are answers (not errors), no
/// automatic redirects (set per request), no content encoding.
pub(crate) fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(USER_AGENT)
        .accept_encoding("identity")
        .build()
        .new_agent()
}

/// The file's metadata as the hub announces it.
#[derive(Debug)]
pub(crate) struct Metadata {
    /// `X-Repo-Commit`: the commit the revision resolved to.
    pub commit: String,
    /// `X-Linked-Etag`, else `ETag`, normalised: the blob's name in the cache.
    pub etag: String,
    /// `X-Linked-Size`, else `Content-Length`.
    pub size: u64,
    /// Where the contents are: the redirect target, or the resolve URL itself.
    pub location: String,
}

/// What the file is being fetched as, for error messages.
pub(crate) struct Target<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub file: &'a str,
    pub url: &'a str,
}

/// A blob download under way: the body reader and the offset its first byte belongs at (the
/// requested one, or 0 when the server sent the whole file).
pub(crate) struct BlobBody {
    pub reader: Box<dyn Read + Send>,
    pub offset: u64,
}

impl Hub {
    /// HEAD on the resolve URL; relative redirects without the file's metadata (a renamed
    /// repository) are followed, the first answer with it is used.
    pub(crate) fn metadata(&self, target: &Target) -> Result<Metadata, Failure> {
        let mut url = target.url.to_owned();
        for _ in 0..=MAX_RELATIVE_REDIRECTS {
            let request = self
                .agent
                .head(&url)
                .config()
                .timeout_global(Some(self.etag_timeout))
                .max_redirects(0)
                .build();
            let response = self.authorized(request, &url).call().map_err(|e| {
                request_failure(e, "HEAD", &url, ("HF_HUB_ETAG_TIMEOUT", self.etag_timeout))
            })?;
            let status = response.status();
            let headers = response.headers();
            let location = header_str(headers, header::LOCATION.as_str());
            if status.is_redirection() {
                if let Some(loc) = location.filter(|l| !has_host(l)) {
                    if header_str(headers, "x-repo-commit").is_none() {
                        url = resolve(&url, loc);
                        continue;
                    }
                }
            } else if !status.is_success() {
                return Err(self.status_failure(status, headers, &url, target));
            }
            return self.parse_metadata(status, headers, &url);
        }
        Err(Failure::Fatal(anyhow!(
            "{} redirects more than {MAX_RELATIVE_REDIRECTS} times",
            target.url
        )))
    }

    fn parse_metadata(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        url: &str,
    ) -> Result<Metadata, Failure> {
        let commit = header_str(headers, "x-repo-commit");
        let etag = header_str(headers, "x-linked-etag")
            .or_else(|| header_str(headers, header::ETAG.as_str()))
            .map(normalize_etag);
        let size = header_str(headers, "x-linked-size")
            .or_else(|| header_str(headers, header::CONTENT_LENGTH.as_str()))
            .and_then(|s| s.trim().parse::<u64>().ok());
        let location = match header_str(headers, header::LOCATION.as_str()) {
            Some(loc) if status.is_redirection() => resolve(url, loc),
            _ => url.to_owned(),
        };
        match (commit, etag, size) {
            (Some(commit), Some(etag), Some(size)) if is_commit(commit) && safe_etag(etag) => {
                Ok(Metadata {
                    commit: commit.to_owned(),
                    etag: etag.to_owned(),
                    size,
                    location,
                })
            }
            (commit, etag, size) => Err(Failure::Fatal(anyhow!(
                "{url} answered HTTP {status} without usable file metadata (X-Repo-Commit \
                 {commit:?}, ETag {etag:?}, size {size:?}): is HF_ENDPOINT ({}) a Hugging Face \
                 hub?",
                self.endpoint
            ))),
        }
    }

    /// GET the blob of `size` bytes at `location`, from byte `offset` on (`Range`) when it is
    /// not 0. A `Content-Length` that does not add up to `size` is a final size mismatch.
    pub(crate) fn blob_body(
        &self,
        location: &str,
        offset: u64,
        size: u64,
        target: &Target,
    ) -> Result<BlobBody, Failure> {
        let d = self.download_timeout;
        let mut request = self
            .agent
            .get(location)
            .config()
            .timeout_resolve(Some(d))
            .timeout_connect(Some(d))
            .timeout_send_request(Some(d))
            .timeout_recv_response(Some(d))
            .timeout_per_read(Some(d))
            .max_redirects(MAX_DOWNLOAD_REDIRECTS)
            .build();
        if offset > 0 {
            request = request.header(header::RANGE, format!("bytes={offset}-"));
        }
        let response = self
            .authorized(request, location)
            .call()
            .map_err(|e| request_failure(e, "GET", location, ("HF_HUB_DOWNLOAD_TIMEOUT", d)))?;
        let status = response.status();
        let headers = response.headers();
        let offset = match status {
            StatusCode::OK => 0,
            StatusCode::PARTIAL_CONTENT => {
                let start =
                    header_str(headers, header::CONTENT_RANGE.as_str()).and_then(range_start);
                if start != Some(offset) {
                    return Err(Failure::Retry(anyhow!(
                        "{location} answered a request for bytes {offset}- with Content-Range \
                         {:?}",
                        header_str(headers, header::CONTENT_RANGE.as_str())
                    )));
                }
                offset
            }
            _ => return Err(self.status_failure(status, headers, location, target)),
        };
        let length = header_str(headers, header::CONTENT_LENGTH.as_str())
            .and_then(|s| s.trim().parse::<u64>().ok());
        if let Some(length) = length {
            if offset.checked_add(length) != Some(size) {
                return Err(Failure::Fatal(anyhow!(
                    "size mismatch: {location} sends {length} bytes from byte {offset} on, the hub \
                     announced {size} bytes in all for {}",
                    target.url
                )));
            }
        }
        Ok(BlobBody {
            reader: Box::new(response.into_body().into_reader()),
            offset,
        })
    }

    /// The request with `Authorization: Bearer` when there is a token and `url` is on the
    /// endpoint's host (never sent to a CDN or any other host).
    fn authorized<B>(
        &self,
        request: ureq::RequestBuilder<B>,
        url: &str,
    ) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) if same_origin(url, &self.endpoint) => {
                request.header(header::AUTHORIZATION, format!("Bearer {token}"))
            }
            _ => request,
        }
    }

    /// An error status. From the endpoint's host, 401/403 (authentication, gated repository)
    /// and 404 (no such repository, revision or file) are final; anything else is retried (a
    /// CDN's 403 may be an expired signed URL, which a new attempt replaces).
    fn status_failure(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        url: &str,
        target: &Target,
    ) -> Failure {
        let hub_says = header_str(headers, "x-error-message")
            .map(|m| format!(" (the hub says: {m})"))
            .unwrap_or_default();
        let (repo, endpoint) = (target.repo, &self.endpoint);
        let from_hub = same_origin(url, endpoint);
        match status.as_u16() {
            401 | 403 if from_hub => {
                let token = match &self.token {
                    None => "no token is set: set HF_TOKEN or run `huggingface-cli login`",
                    Some(_) => {
                        "the token was refused or lacks access: set HF_TOKEN to a valid token or \
                         run `huggingface-cli login`"
                    }
                };
                Failure::Fatal(anyhow!(
                    "{url} answered HTTP {status}{hub_says}: {token}; if the repository is gated, \
                     accept its terms at {endpoint}/{repo} (the hub also answers so for a \
                     repository that does not exist: check `{repo}`)"
                ))
            }
            404 if from_hub => Failure::Fatal(anyhow!(
                "no file {} at revision {} of {repo} ({url}){hub_says}",
                target.file,
                target.revision
            )),
            _ => Failure::Retry(anyhow!("{url} answered HTTP {status}{hub_says}")),
        }
    }
}

/// A failed request (no answer): retried unless the request itself is malformed. `timeout`
/// names the variable that set the time limit, and its value.
fn request_failure(e: ureq::Error, method: &str, url: &str, timeout: (&str, Duration)) -> Failure {
    let (variable, limit) = timeout;
    match e {
        ureq::Error::Timeout(_) => Failure::Retry(anyhow!(
            "{method} {url}: no answer within {} s ({variable})",
            limit.as_secs()
        )),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl => {
            Failure::Fatal(anyhow!("{method} {url}: {e}"))
        }
        e => Failure::Retry(anyhow!("{method} {url}: {e}")),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// huggingface_hub's ETag normalisation: a weak `W/` prefix and the quotes removed.
pub(crate) fn normalize_etag(etag: &str) -> &str {
    let etag = etag.trim();
    etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"')
}

/// Whether a (normalised) ETag can name a blob file: ASCII letters, digits, `-`, `_`, `.`, not
/// starting with `.`.
fn safe_etag(etag: &str) -> bool {
    !etag.is_empty()
        && !etag.starts_with('.')
        && etag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The first byte of a `Content-Range: bytes a-b/total` value.
fn range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// Whether `location` names a host (absolute `scheme://…` or scheme-relative `//…`).
fn has_host(location: &str) -> bool {
    location.starts_with("//")
        || location
            .parse::<Uri>()
            .is_ok_and(|u| u.scheme().is_some() && u.authority().is_some())
}

/// `location` resolved against the URL `base` it came from.
pub(crate) fn resolve(base: &str, location: &str) -> String {
    if has_host(location) && !location.starts_with("//") {
        return location.to_owned();
    }
    let Ok(uri) = base.parse::<Uri>() else {
        return location.to_owned();
    };
    let scheme = uri.scheme_str().unwrap_or("https");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = uri.path();
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{authority}{dir}{location}")
}

/// Same scheme, host and port (default ports filled in).
fn same_origin(a: &str, b: &str) -> bool {
    let origin = |s: &str| {
        let uri = s.parse::<Uri>().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let host = uri.host()?.to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        Some((scheme, host, port))
    };
    matches!((origin(a), origin(b)), (Some(x), Some(y)) if x == y)
}

/// Percent-encoding as Python's `urllib.parse.quote`: ASCII letters, digits and `-._~` kept,
/// and `/` too when `keep_slash`.
pub(crate) fn quote(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
        assert!(safe_etag("a1b2-c_d.e"));
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(!safe_etag(bad), "{bad}");
        }
    }

    #[test]
    fn locations() {
        let base = "http://127.0.0.1:8080/o/n/resolve/main/f.bin";
        assert_eq!(resolve(base, "/blobs/x"), "http://127.0.0.1:8080/blobs/x");
        assert_eq!(
            resolve(base, "g.bin"),
            "http://127.0.0.1:8080/o/n/resolve/main/g.bin"
        );
        assert_eq!(resolve(base, "https://cdn/x?s=1"), "https://cdn/x?s=1");
        assert_eq!(resolve(base, "//cdn/x"), "http://cdn/x");
        assert!(has_host("https://cdn/x") && has_host("//cdn/x"));
        assert!(!has_host("/a/b") && !has_host("a/b"));
    }

    #[test]
    fn origins() {
        assert!(same_origin(
            "https://huggingface.co/a",
            "https://HuggingFace.co:443"
        ));
        assert!(same_origin("http://127.0.0.1:5/x", "http://127.0.0.1:5"));
        assert!(!same_origin("http://127.0.0.1:5/x", "http://127.0.0.1:6"));
        assert!(!same_origin(
            "https://cdn-lfs.hf.co/x",
            "https://huggingface.co"
        ));
        assert!(!same_origin(
            "http://huggingface.co/x",
            "https://huggingface.co"
        ));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(quote("a b/é.bin", true), "a%20b/%C3%A9.bin");
    }

    #[test]
    fn content_range() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes */200"), None);
    }
}
