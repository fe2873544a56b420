//! The client against a stand-in hub on 127.0.0.1 (see `standin`): cache layout, tokens,
//! timeouts, resumption, revisions, offline use and the error messages.

mod standin;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dfd_hub::Hub;
use standin::{pattern, silent_server, Behaviour, Entry, StandIn};

const REPO: &str = "acme/net";
const FILE: &str = "model.safetensors";

/// A hub on `endpoint` with the cache (and HOME, so no real token file is read) under `root`,
/// plus `extra` variables.
fn hub(endpoint: &str, root: &Path, extra: &[(&str, &str)]) -> Hub {
    let mut vars: Vec<(String, String)> = vec![
        ("HF_ENDPOINT".into(), endpoint.into()),
        ("HOME".into(), root.display().to_string()),
        ("HF_HUB_CACHE".into(), cache_of(root).display().to_string()),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Hub::from_vars(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .expect("hub from vars")
}

fn cache_of(root: &Path) -> PathBuf {
    root.join("hub-cache")
}

fn repo_dir(root: &Path) -> PathBuf {
    cache_of(root).join("models--acme--net")
}

fn no_progress() -> impl FnMut(u64, u64) {
    |_, _| {}
}

fn get(hub: &Hub, revision: &str, file: &str) -> anyhow::Result<PathBuf> {
    hub.get(REPO, revision, file, &mut no_progress())
}

fn err_text(result: anyhow::Result<PathBuf>) -> String {
    format!("{:#}", result.expect_err("an error"))
}

fn gets(server: &StandIn) -> Vec<standin::Request> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect()
}

#[test]
fn download_fills_the_python_layout_then_offline_reuses_it() {
    let server = StandIn::start(Behaviour::default());
    let top = server.add(REPO, "main", FILE, pattern(300_000));
    let deep = server.add(REPO, "main", "sub/dir/w.bin", pattern(1234));
    let root = tempfile::tempdir().unwrap();
    let hub = hub(&server.url(), root.path(), &[]);

    let mut calls = Vec::new();
    let path = hub
        .get(REPO, "main", FILE, &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap();
    let repo = repo_dir(root.path());
    assert_eq!(
        path,
        repo.join("snapshots").join(&top.commit).join(FILE),
        "the snapshot path"
    );
    assert_eq!(
        fs::read_link(&path).unwrap(),
        PathBuf::from(format!("../../blobs/{}", top.etag))
    );
    assert_eq!(fs::read(&path).unwrap(), *top.data);
    assert_eq!(
        fs::read(repo.join("blobs").join(&top.etag)).unwrap(),
        *top.data
    );
    assert_eq!(
        fs::read_to_string(repo.join("refs/main")).unwrap(),
        top.commit
    );
    let blobs: Vec<_> = fs::read_dir(repo.join("blobs")).unwrap().collect();
    assert_eq!(blobs.len(), 1, "no .incomplete left");
    let total = top.data.len() as u64;
    assert_eq!(calls.first(), Some(&(0, total)));
    assert_eq!(calls.last(), Some(&(total, total)));
    assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));

    // The protocol: HEAD on the resolve URL with the hub's headers, then GET of the Location.
    let requests = server.requests();
    let head = &requests[0];
    assert_eq!(
        (head.method.as_str(), head.path.as_str()),
        ("HEAD", "/acme/net/resolve/main/model.safetensors")
    );
    assert_eq!(head.header("accept-encoding"), Some("identity"));
    assert!(head.header("user-agent").unwrap().starts_with("dfd/"));
    assert_eq!(head.header("authorization"), None);
    assert_eq!(gets(&server)[0].path, format!("/blobs/{}", top.etag));

    // A file in folders links with one ../ per folder.
    let deep_path = get(&hub, "main", "sub/dir/w.bin").unwrap();
    assert_eq!(
        fs::read_link(&deep_path).unwrap(),
        PathBuf::from(format!("../../../../blobs/{}", deep.etag))
    );
    assert_eq!(fs::read(&deep_path).unwrap(), *deep.data);

    let endpoint = server.url();
    server.stop();
    let offline = self::hub(&endpoint, root.path(), &[("HF_HUB_OFFLINE", "1")]);
    assert!(offline.is_offline());
    assert_eq!(get(&offline, "main", FILE).unwrap(), path);
    assert_eq!(offline.cached(REPO, "main", FILE), Some(path.clone()));
    // Online, a cached file is returned without asking the (stopped) hub.
    assert_eq!(get(&hub, "main", FILE).unwrap(), path);
}

#[test]
fn token_is_sent_to_the_hub_but_not_to_the_cdn() {
    let cdn = StandIn::start(Behaviour::default());
    let server = StandIn::start(Behaviour {
        require_token: Some("hf_abc".into()),
        blob_base: Some(cdn.url()),
        ..Behaviour::default()
    });
    let entry = server.add(REPO, "main", FILE, pattern(5000));
    cdn.serve_entry(entry.clone());
    let root = tempfile::tempdir().unwrap();
    let hub = hub(&server.url(), root.path(), &[("HF_TOKEN", "hf_abc")]);
    let path = get(&hub, "main", FILE).unwrap();
    assert_eq!(fs::read(path).unwrap(), *entry.data);
    let head = &server.requests()[0];
    assert_eq!(head.header("authorization"), Some("Bearer hf_abc"));
    let cdn_gets = gets(&cdn);
    assert_eq!(cdn_gets.len(), 1);
    assert_eq!(
        cdn_gets[0].header("authorization"),
        None,
        "no token to the CDN"
    );
    assert!(gets(&server).is_empty());
}

#[test]
fn token_file_fallback() {
    let server = StandIn::start(Behaviour {
        require_token: Some("hf_file".into()),
        ..Behaviour::default()
    });
    server.add(REPO, "main", FILE, pattern(10));
    server.add(REPO, "main", "b.bin", pattern(20));
    let root = tempfile::tempdir().unwrap();

    let token_path = root.path().join("my-token");
    fs::write(&token_path, "hf_file\n").unwrap();
    let path_var = token_path.display().to_string();
    let hub = hub(&server.url(), root.path(), &[("HF_TOKEN_PATH", &path_var)]);
    get(&hub, "main", FILE).unwrap();

    let hf_home = root.path().join("hf-home");
    fs::create_dir(&hf_home).unwrap();
    fs::write(hf_home.join("token"), "hf_file").unwrap();
    let home_var = hf_home.display().to_string();
    let hub = self::hub(&server.url(), root.path(), &[("HF_HOME", &home_var)]);
    get(&hub, "main", "b.bin").unwrap();

    let heads: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .collect();
    assert_eq!(heads.len(), 2);
    assert!(heads
        .iter()
        .all(|r| r.header("authorization") == Some("Bearer hf_file")));
}

#[test]
fn unauthorized_says_what_to_do_without_retrying() {
    let server = StandIn::start(Behaviour {
        require_token: Some("hf_right".into()),
        ..Behaviour::default()
    });
    server.add(REPO, "main", FILE, pattern(10));
    let root = tempfile::tempdir().unwrap();
    let url = format!("{}/acme/net/resolve/main/{FILE}", server.url());

    let err = err_text(get(&hub(&server.url(), root.path(), &[]), "main", FILE));
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("401"), "{err}");
    assert!(err.contains("set HF_TOKEN"), "{err}");
    assert!(err.contains("huggingface-cli login"), "{err}");
    assert!(
        err.contains(&format!("accept its terms at {}/acme/net", server.url())),
        "{err}"
    );
    assert!(
        err.contains("Invalid credentials"),
        "the hub's message: {err}"
    );

    let wrong = hub(&server.url(), root.path(), &[("HF_TOKEN", "hf_wrong")]);
    let err = err_text(get(&wrong, "main", FILE));
    assert!(err.contains("refused") && err.contains("HF_TOKEN"), "{err}");
    assert_eq!(server.requests().len(), 2, "401 is not retried");
    assert!(!repo_dir(root.path()).join("blobs").exists());
}

#[test]
fn missing_file_is_named() {
    let server = StandIn::start(Behaviour::default());
    server.add(REPO, "main", FILE, pattern(10));
    let root = tempfile::tempdir().unwrap();
    let err = err_text(get(
        &hub(&server.url(), root.path(), &[]),
        "main",
        "nope.bin",
    ));
    let url = format!("{}/acme/net/resolve/main/nope.bin", server.url());
    assert!(
        err.contains(&format!(
            "no file nope.bin at revision main of acme/net ({url})"
        )),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1, "404 is not retried");
}

#[test]
fn silent_server_gives_up_within_the_timeouts() {
    let listener = silent_server();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let root = tempfile::tempdir().unwrap();
    let hub = hub(
        &endpoint,
        root.path(),
        &[
            ("HF_HUB_ETAG_TIMEOUT", "1"),
            ("HF_HUB_DOWNLOAD_TIMEOUT", "1"),
        ],
    )
    .with_attempts(2);
    let started = Instant::now();
    let err = err_text(get(&hub, "main", FILE));
    let elapsed = started.elapsed();
    // 2 attempts of 1 s each and a 1 s pause.
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    let url = format!("{endpoint}/acme/net/resolve/main/{FILE}");
    for part in [
        url.as_str(),
        "2 attempt(s)",
        "HF_HUB_ETAG_TIMEOUT",
        "HF_ENDPOINT",
        "HF_HUB_OFFLINE=1",
        "local file",
    ] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    drop(listener);
}

#[test]
fn leftover_incomplete_is_resumed_with_range() {
    let server = StandIn::start(Behaviour::default());
    let entry = server.add(REPO, "main", FILE, pattern(1 << 20));
    let root = tempfile::tempdir().unwrap();
    let half = entry.data.len() / 2;
    let blobs = repo_dir(root.path()).join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{}.incomplete", entry.etag));
    fs::write(&part, &entry.data[..half]).unwrap();

    let mut calls = Vec::new();
    let path = hub(&server.url(), root.path(), &[])
        .get(REPO, "main", FILE, &mut |d, t| calls.push((d, t)))
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), *entry.data);
    assert!(!part.exists());
    let range = format!("bytes={half}-");
    assert_eq!(gets(&server)[0].header("range"), Some(range.as_str()));
    assert_eq!(calls[0], (half as u64, entry.data.len() as u64));
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let server = StandIn::start(Behaviour {
        ignore_range: true,
        ..Behaviour::default()
    });
    let entry = server.add(REPO, "main", FILE, pattern(100_000));
    let root = tempfile::tempdir().unwrap();
    let blobs = repo_dir(root.path()).join("blobs");
    fs::create_dir_all(&blobs).unwrap();
    // A prefix that does not match: only a full restart gives the right contents.
    fs::write(
        blobs.join(format!("{}.incomplete", entry.etag)),
        vec![0xAA; 40_000],
    )
    .unwrap();
    let path = get(&hub(&server.url(), root.path(), &[]), "main", FILE).unwrap();
    assert_eq!(fs::read(path).unwrap(), *entry.data);
    assert_eq!(gets(&server)[0].header("range"), Some("bytes=40000-"));
}

#[test]
fn stalled_body_times_out_and_the_retry_resumes() {
    let server = StandIn::start(Behaviour {
        stall_at: Some(30_000),
        ..Behaviour::default()
    });
    let entry = server.add(REPO, "main", FILE, pattern(100_000));
    let root = tempfile::tempdir().unwrap();
    let hub = hub(
        &server.url(),
        root.path(),
        &[("HF_HUB_DOWNLOAD_TIMEOUT", "1")],
    )
    .with_attempts(2);
    let started = Instant::now();
    let path = get(&hub, "main", FILE).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fs::read(path).unwrap(), *entry.data);
    let gets = gets(&server);
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(gets[1].header("range"), Some("bytes=30000-"));
}

#[test]
fn truncated_body_fails_and_keeps_only_the_incomplete() {
    let server = StandIn::start(Behaviour {
        truncate_at: Some(1000),
        ..Behaviour::default()
    });
    let entry = server.add(REPO, "main", FILE, pattern(5000));
    let root = tempfile::tempdir().unwrap();
    let hub = hub(&server.url(), root.path(), &[]).with_attempts(1);
    let err = err_text(get(&hub, "main", FILE));
    assert!(
        err.contains("1 attempt(s)") && err.contains("1000"),
        "{err}"
    );
    assert_blob_missing(root.path(), &entry);
    let part = repo_dir(root.path())
        .join("blobs")
        .join(format!("{}.incomplete", entry.etag));
    assert_eq!(fs::metadata(part).unwrap().len(), 1000);
}

#[test]
fn size_mismatch_is_an_error_and_writes_no_blob() {
    let server = StandIn::start(Behaviour {
        announce_extra: 7,
        ..Behaviour::default()
    });
    let entry = server.add(REPO, "main", FILE, pattern(5000));
    let root = tempfile::tempdir().unwrap();
    let err = err_text(get(&hub(&server.url(), root.path(), &[]), "main", FILE));
    assert!(
        err.contains("size mismatch") && err.contains("5007"),
        "{err}"
    );
    assert_blob_missing(root.path(), &entry);
    assert_eq!(gets(&server).len(), 1, "a size mismatch is not retried");
}

fn assert_blob_missing(root: &Path, entry: &Entry) {
    let repo = repo_dir(root);
    assert!(!repo.join("blobs").join(&entry.etag).exists());
    assert!(!repo.join("snapshots").exists());
}

#[test]
fn commit_revisions_and_branches() {
    let server = StandIn::start(Behaviour::default());
    let entry = server.add(REPO, "main", FILE, pattern(2000));
    let root = tempfile::tempdir().unwrap();
    let online = hub(&server.url(), root.path(), &[]);
    let offline = hub(&server.url(), root.path(), &[("HF_HUB_OFFLINE", "1")]);

    let pinned = get(&online, &entry.commit, FILE).unwrap();
    assert!(
        !repo_dir(root.path()).join("refs").exists(),
        "no ref for a commit"
    );
    assert_eq!(get(&offline, &entry.commit, FILE).unwrap(), pinned);
    assert_eq!(
        offline.cached(REPO, "main", FILE),
        None,
        "main is not known yet"
    );

    // The branch resolves to the same commit: its ref is written, nothing is downloaded again.
    assert_eq!(get(&online, "main", FILE).unwrap(), pinned);
    assert_eq!(gets(&server).len(), 1);
    assert_eq!(get(&offline, "main", FILE).unwrap(), pinned);
    assert_eq!(offline.cached(REPO, "dev", FILE), None);
}

#[test]
fn offline_with_an_empty_cache_names_cache_and_url() {
    let root = tempfile::tempdir().unwrap();
    let hub = hub(
        "http://127.0.0.1:9",
        root.path(),
        &[("HF_HUB_OFFLINE", "yes")],
    );
    let err = err_text(get(&hub, "main", FILE));
    assert!(
        err.contains(&cache_of(root.path()).display().to_string()),
        "{err}"
    );
    assert!(
        err.contains("http://127.0.0.1:9/acme/net/resolve/main/model.safetensors"),
        "{err}"
    );
    assert!(err.contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn server_errors_are_retried() {
    let server = StandIn::start(Behaviour {
        fail_first_resolves: 1,
        ..Behaviour::default()
    });
    let entry = server.add(REPO, "main", FILE, pattern(100));
    let root = tempfile::tempdir().unwrap();
    let hub = hub(&server.url(), root.path(), &[]).with_attempts(2);
    let path = get(&hub, "main", FILE).unwrap();
    assert_eq!(fs::read(path).unwrap(), *entry.data);
}

#[test]
fn renamed_repository_redirect_is_followed() {
    let server = StandIn::start(Behaviour {
        renamed: Some(("acme/net".into(), "acme/net2".into())),
        ..Behaviour::default()
    });
    let entry = server.add("acme/net2", "main", FILE, pattern(100));
    let root = tempfile::tempdir().unwrap();
    let path = get(&hub(&server.url(), root.path(), &[]), "main", FILE).unwrap();
    assert_eq!(fs::read(&path).unwrap(), *entry.data);
    assert!(
        path.starts_with(repo_dir(root.path())),
        "cached under the name asked for"
    );
}

/// Loopback download rate of a 100 MB blob: `cargo test -p dfd-hub --release -- --ignored
/// --nocapture download_rate`.
#[test]
#[ignore = "a measurement, not a check"]
fn download_rate() {
    let server = StandIn::start(Behaviour::default());
    let entry = server.add(REPO, "main", FILE, pattern(100_000_000));
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let path = get(&hub(&server.url(), root.path(), &[]), "main", FILE).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(fs::metadata(path).unwrap().len(), entry.data.len() as u64);
    println!(
        "100 MB from the stand-in hub in {secs:.2} s: {:.0} MB/s",
        100.0 / secs
    );
}
