//! The environment, read as `huggingface_hub` reads it (its `constants.py` and token helpers).
//!
//! Every variable is read through a getter, so tests never touch the process environment. A
//! variable set to the empty string counts as unset. Paths get huggingface_hub's
//! `expandvars(expanduser(…))`: a leading `~` or `~/` becomes the home directory, then `$NAME` and
//! `${NAME}` become that variable's value (left as they are when it is unset).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// The hub used when `HF_ENDPOINT` is unset.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// `HF_HUB_ETAG_TIMEOUT` and `HF_HUB_DOWNLOAD_TIMEOUT` when unset (or 0), in seconds.
pub(crate) const DEFAULT_TIMEOUT_S: u64 = 10;
/// The largest timeout accepted, in seconds (one day); larger values are an error.
const MAX_TIMEOUT_S: u64 = 86_400;

/// What the environment says; see the table in the crate documentation.
pub(crate) struct Settings {
    pub endpoint: String,
    pub token: Option<String>,
    pub cache_dir: PathBuf,
    pub offline: bool,
    pub etag_timeout: Duration,
    pub download_timeout: Duration,
}

impl Settings {
    /// Reads every variable through `get` (None = unset).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let env = Env { get };
        Ok(Self {
            endpoint: env.endpoint()?,
            token: env.token()?,
            cache_dir: env.cache_dir()?,
            offline: env
                .flag("HF_HUB_OFFLINE")
                .or_else(|| env.flag("TRANSFORMERS_OFFLINE"))
                == Some(true),
            etag_timeout: env.seconds("HF_HUB_ETAG_TIMEOUT")?,
            download_timeout: env.seconds("HF_HUB_DOWNLOAD_TIMEOUT")?,
        })
    }
}

struct Env<F> {
    get: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable's value; None when unset or empty.
    fn var(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.is_empty())
    }

    /// huggingface_hub's `_is_true`: 1/true/yes/on in any case is true, any other value false;
    /// None when unset.
    fn flag(&self, name: &str) -> Option<bool> {
        self.var(name).map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
    }

    fn endpoint(&self) -> Result<String> {
        let Some(raw) = self.var("HF_ENDPOINT") else {
            return Ok(DEFAULT_ENDPOINT.to_owned());
        };
        let endpoint = raw.trim_end_matches('/');
        let host = endpoint
            .strip_prefix("https://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .map(|rest| rest.split('/').next().unwrap_or_default());
        match host {
            Some(host) if !host.is_empty() && endpoint.parse::<ureq::http::Uri>().is_ok() => {
                Ok(endpoint.to_owned())
            }
            _ => bail!(
                "HF_ENDPOINT={raw:?} is not a hub address: expected an http:// or https:// URL such \
                 as {DEFAULT_ENDPOINT}"
            ),
        }
    }

    /// `HF_TOKEN` (legacy `HUGGING_FACE_HUB_TOKEN`), else the token file; none at all when
    /// `HF_HUB_DISABLE_IMPLICIT_TOKEN` is true.
    fn token(&self) -> Result<Option<String>> {
        if self.flag("HF_HUB_DISABLE_IMPLICIT_TOKEN") == Some(true) {
            return Ok(None);
        }
        let from_env = self.var("HF_TOKEN").map(|t| ("HF_TOKEN", t)).or_else(|| {
            self.var("HUGGING_FACE_HUB_TOKEN")
                .map(|t| ("HUGGING_FACE_HUB_TOKEN", t))
        });
        if let Some((name, token)) = from_env {
            if let Some(token) = clean_token(&token) {
                return checked_token(token, name).map(Some);
            }
        }
        let path = match self.var("HF_TOKEN_PATH") {
            Some(path) => self.expand(&path)?,
            None => self.hf_home()?.join("token"),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => clean_token(&text)
                .map(|token| checked_token(token, &format!("the token file {}", path.display())))
                .transpose(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "reading the Hugging Face token file {} (set HF_TOKEN_PATH or HF_TOKEN to use \
                     another token)",
                    path.display()
                )
            }),
        }
    }

    /// `HF_HUB_CACHE` > legacy `HUGGINGFACE_HUB_CACHE` > `$HF_HOME/hub`.
    fn cache_dir(&self) -> Result<PathBuf> {
        match self
            .var("HF_HUB_CACHE")
            .or_else(|| self.var("HUGGINGFACE_HUB_CACHE"))
        {
            Some(dir) => self.expand(&dir),
            None => Ok(self.hf_home()?.join("hub")),
        }
    }

    /// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
    fn hf_home(&self) -> Result<PathBuf> {
        if let Some(home) = self.var("HF_HOME") {
            return self.expand(&home);
        }
        let xdg = match self.var("XDG_CACHE_HOME") {
            Some(xdg) => self.expand(&xdg)?,
            None => self.home()?.join(".cache"),
        };
        Ok(xdg.join("huggingface"))
    }

    fn home(&self) -> Result<PathBuf> {
        self.var("HOME")
            .or_else(|| self.var("USERPROFILE"))
            .map(PathBuf::from)
            .ok_or_else(|| {
                anyhow!(
                    "cannot tell where the Hugging Face cache is: HOME is not set (set HF_HOME or \
                     HF_HUB_CACHE)"
                )
            })
    }

    /// Python's `os.path.expandvars(os.path.expanduser(raw))`, minus `~user` (left as is).
    fn expand(&self, raw: &str) -> Result<PathBuf> {
        let user = match raw.strip_prefix('~') {
            Some("") => self.home()?.display().to_string(),
            Some(rest) if rest.starts_with('/') => format!("{}{rest}", self.home()?.display()),
            _ => raw.to_owned(),
        };
        Ok(PathBuf::from(self.expand_vars(&user)))
    }

    /// `$NAME` (letters, digits, `_`) and `${NAME}` replaced by the variable's value (even an
    /// empty one), left as they are when it is unset.
    fn expand_vars(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let (name, len) = match after.strip_prefix('{') {
                Some(braced) => match braced.find('}') {
                    Some(end) => (&braced[..end], end + 2),
                    None => ("", 0),
                },
                None => {
                    let end = after
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], end)
                }
            };
            match (!name.is_empty()).then(|| (self.get)(name)).flatten() {
                Some(value) => {
                    out.push_str(&value);
                    rest = &after[len..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// A timeout in whole seconds; unset or 0 means the default (as in huggingface_hub, whose
    /// `int(value) or 10` also rejects anything that is not an integer).
    fn seconds(&self, name: &str) -> Result<Duration> {
        let Some(raw) = self.var(name) else {
            return Ok(Duration::from_secs(DEFAULT_TIMEOUT_S));
        };
        match raw.trim().parse::<u64>() {
            Ok(0) => Ok(Duration::from_secs(DEFAULT_TIMEOUT_S)),
            Ok(s) if s <= MAX_TIMEOUT_S => Ok(Duration::from_secs(s)),
            _ => bail!(
                "{name}={raw:?} is not a timeout: expected a whole number of seconds from 1 to \
                 {MAX_TIMEOUT_S} (0 or unset: {DEFAULT_TIMEOUT_S})"
            ),
        }
    }
}

/// huggingface_hub's `_clean_token`: line breaks removed, spaces trimmed, empty = none.
fn clean_token(raw: &str) -> Option<String> {
    let token = raw.replace(['\r', '\n'], "");
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The token if it can go in an HTTP header; an error naming where it came from (never the
/// token itself) otherwise.
fn checked_token(token: String, source: &str) -> Result<String> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token)
    } else {
        bail!(
            "the Hugging Face token from {source} has characters that cannot be sent in an HTTP \
             header (spaces or non-ASCII): check it"
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_vars(|k| map.get(k).cloned())
    }

    /// The error `vars` give (Settings has no Debug: it holds the token).
    fn error(vars: &[(&str, &str)]) -> String {
        match settings(vars) {
            Ok(_) => panic!("{vars:?} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_follow_home() {
        let s = settings(&[("HOME", "/h")]).unwrap();
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert_eq!(s.token, None);
        assert_eq!(s.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert!(!s.offline);
        assert_eq!(s.etag_timeout, Duration::from_secs(10));
        assert_eq!(s.download_timeout, Duration::from_secs(10));
    }

    #[test]
    fn cache_precedence() {
        let base = [("HOME", "/h")];
        let with = |extra: &[(&str, &str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            settings(&v).unwrap().cache_dir
        };
        assert_eq!(
            with(&[("XDG_CACHE_HOME", "/x")]),
            PathBuf::from("/x/huggingface/hub")
        );
        assert_eq!(
            with(&[("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/hf")]),
            PathBuf::from("/hf/hub")
        );
        assert_eq!(
            with(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")]),
            PathBuf::from("/legacy")
        );
        assert_eq!(
            with(&[
                ("HF_HOME", "/hf"),
                ("HUGGINGFACE_HUB_CACHE", "/legacy"),
                ("HF_HUB_CACHE", "/c")
            ]),
            PathBuf::from("/c")
        );
        // Empty counts as unset.
        assert_eq!(
            with(&[("HF_HUB_CACHE", ""), ("HF_HOME", "/hf")]),
            PathBuf::from("/hf/hub")
        );
    }

    #[test]
    fn paths_expand_user_and_vars() {
        let s = settings(&[
            ("HOME", "/h"),
            ("HF_HOME", "~/hf"),
            ("HF_HUB_CACHE", "$BASE/${SUB}/$UNSET/x$"),
            ("BASE", "/b"),
            ("SUB", "s"),
        ])
        .unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/b/s/$UNSET/x$"));
        let s = settings(&[("HOME", "/h"), ("HF_HOME", "~/hf")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/h/hf/hub"));
        let s = settings(&[("HOME", "/h"), ("HF_HUB_CACHE", "~other/c")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("~other/c"));
    }

    #[test]
    fn no_home_is_an_error_only_when_needed() {
        let err = error(&[]);
        assert!(
            err.contains("HOME") && err.contains("HF_HUB_CACHE"),
            "{err}"
        );
        let s = settings(&[("HF_HUB_CACHE", "/c"), ("HF_TOKEN", "t")]).unwrap();
        assert_eq!(s.cache_dir, PathBuf::from("/c"));
    }

    #[test]
    fn endpoint_trims_and_checks() {
        let s = settings(&[("HOME", "/h"), ("HF_ENDPOINT", "http://127.0.0.1:8080//")]).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:8080");
        let s = settings(&[("HOME", "/h"), ("HF_ENDPOINT", "https://hf-mirror.com/x/")]).unwrap();
        assert_eq!(s.endpoint, "https://hf-mirror.com/x");
        for bad in ["hf-mirror.com", "ftp://x", "https://", "http:// spaces"] {
            let err = error(&[("HOME", "/h"), ("HF_ENDPOINT", bad)]);
            assert!(err.contains("HF_ENDPOINT") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn offline_flags() {
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            ("Yes", true),
            ("on", true),
            ("0", false),
            ("false", false),
            ("", false),
        ] {
            let s = settings(&[("HOME", "/h"), ("HF_HUB_OFFLINE", v)]).unwrap();
            assert_eq!(s.offline, want, "HF_HUB_OFFLINE={v}");
        }
        let s = settings(&[("HOME", "/h"), ("TRANSFORMERS_OFFLINE", "1")]).unwrap();
        assert!(s.offline);
        let s = settings(&[
            ("HOME", "/h"),
            ("HF_HUB_OFFLINE", "0"),
            ("TRANSFORMERS_OFFLINE", "1"),
        ])
        .unwrap();
        assert!(!s.offline, "HF_HUB_OFFLINE wins when set");
    }

    #[test]
    fn timeouts_parse_or_name_the_variable() {
        let s = settings(&[
            ("HOME", "/h"),
            ("HF_HUB_ETAG_TIMEOUT", " 3 "),
            ("HF_HUB_DOWNLOAD_TIMEOUT", "0"),
        ])
        .unwrap();
        assert_eq!(s.etag_timeout, Duration::from_secs(3));
        assert_eq!(s.download_timeout, Duration::from_secs(10));
        for bad in ["1.5", "-1", "ten", "99999999999999999999", "86401"] {
            let err = error(&[("HOME", "/h"), ("HF_HUB_DOWNLOAD_TIMEOUT", bad)]);
            assert!(
                err.contains("HF_HUB_DOWNLOAD_TIMEOUT") && err.contains(bad),
                "{err}"
            );
        }
    }

    #[test]
    fn token_sources() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap();
        let hf_home = dir.path().join("hf");
        std::fs::create_dir(&hf_home).unwrap();
        std::fs::write(hf_home.join("token"), " file-token\r\n").unwrap();
        let hf_home = hf_home.to_str().unwrap();
        let token = |extra: &[(&str, &str)]| {
            let mut v = vec![("HOME", home), ("HF_HOME", hf_home)];
            v.extend_from_slice(extra);
            settings(&v).map(|s| s.token)
        };
        assert_eq!(token(&[]).unwrap().as_deref(), Some("file-token"));
        assert_eq!(
            token(&[("HF_TOKEN", "env")]).unwrap().as_deref(),
            Some("env")
        );
        assert_eq!(
            token(&[("HUGGING_FACE_HUB_TOKEN", "old")])
                .unwrap()
                .as_deref(),
            Some("old")
        );
        assert_eq!(
            token(&[("HF_TOKEN", "new"), ("HUGGING_FACE_HUB_TOKEN", "old")])
                .unwrap()
                .as_deref(),
            Some("new")
        );
        // Empty (or blank) env token: the file is used.
        assert_eq!(
            token(&[("HF_TOKEN", " \n")]).unwrap().as_deref(),
            Some("file-token")
        );
        assert_eq!(token(&[("HF_TOKEN_PATH", "/nonexistent/t")]).unwrap(), None);
        assert_eq!(
            token(&[("HF_TOKEN", "env"), ("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")]).unwrap(),
            None
        );
        let err = error(&[("HOME", home), ("HF_TOKEN", "has space")]);
        assert!(
            err.contains("HF_TOKEN") && !err.contains("has space"),
            "{err}"
        );
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = dir.path().join("empty");
        assert_eq!(
            token(&[("HF_TOKEN_PATH", empty.to_str().unwrap())]).unwrap(),
            None
        );
    }
}
