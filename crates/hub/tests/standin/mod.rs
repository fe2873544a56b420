//! A stand-in Hugging Face hub on 127.0.0.1 for the tests: hand-written HTTP/1.1, one thread per
//! connection, one request per connection (`Connection: close`).
//!
//! `HEAD`/`GET /{owner}/{name}/resolve/{revision}/{file}` answers as the real hub does for LFS
//! files: 302 with `X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size` (and a git `ETag` that must
//! not be used) and a `Location` of `/blobs/{etag}` on this server, or on another base URL (a
//! CDN) when [`Behaviour::blob_base`] is set. `/blobs/{etag}` serves the contents with `Range:
//! bytes=N-` support (206 + `Content-Range`). The [`Behaviour`] switches inject the failures
//! under test; every request is recorded.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// One file of one repository.
#[derive(Clone, Debug)]
pub struct Entry {
    pub repo: String,
    pub branch: String,
    pub file: String,
    pub commit: String,
    pub etag: String,
    pub data: Arc<Vec<u8>>,
}

/// Failure switches (all off by default).
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Answer 401 to resolve requests without `Authorization: Bearer <this>`.
    pub require_token: Option<String>,
    /// Absolute base URL of the `Location` (a second stand-in playing the CDN).
    pub blob_base: Option<String>,
    /// Announce this many bytes more than the blob has (`X-Linked-Size`).
    pub announce_extra: u64,
    /// Blob GETs announce the full length but send only this many bytes, then close.
    pub truncate_at: Option<usize>,
    /// The first blob GET sends this many bytes, then stalls (until the server stops).
    pub stall_at: Option<usize>,
    /// Answer Range requests with 200 and the whole blob.
    pub ignore_range: bool,
    /// The first this-many resolve requests get 500.
    pub fail_first_resolves: usize,
    /// `(old, new)`: resolve requests for repository `old` get a relative 307 to `new`, without
    /// file metadata (a renamed repository).
    pub renamed: Option<(String, String)>,
}

/// A recorded request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    behaviour: Behaviour,
    files: Mutex<Vec<Entry>>,
    log: Mutex<Vec<Request>>,
    resolves: AtomicUsize,
    blob_gets: AtomicUsize,
    stop: AtomicBool,
}

/// A running stand-in hub; stopped (and its port closed) by [`StandIn::stop`] or on drop.
pub struct StandIn {
    addr: SocketAddr,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl StandIn {
    pub fn start(behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the stand-in hub");
        let addr = listener.local_addr().expect("stand-in address");
        let state = Arc::new(State {
            behaviour,
            files: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            resolves: AtomicUsize::new(0),
            blob_gets: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let shared = Arc::clone(&state);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                thread::spawn(move || serve(stream, &state));
            }
        });
        Self {
            addr,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Publishes `data` as `file` of `repo` on `branch`: the branch's commit (one per repository
    /// and branch) and a fresh ETag.
    pub fn add(&self, repo: &str, branch: &str, file: &str, data: Vec<u8>) -> Entry {
        let n = self.state.files.lock().unwrap().len() as u64 + 1;
        let seed = fnv(&data) ^ fnv(file.as_bytes()) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let entry = Entry {
            repo: repo.to_owned(),
            branch: branch.to_owned(),
            file: file.to_owned(),
            commit: hex(fnv(format!("{repo}@{branch}").as_bytes()), 40),
            etag: hex(seed, 64),
            data: Arc::new(data),
        };
        self.serve_entry(entry.clone());
        entry
    }

    /// Serves an entry published elsewhere (the CDN side of a redirect).
    pub fn serve_entry(&self, entry: Entry) {
        self.state.files.lock().unwrap().push(entry);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.log.lock().unwrap().clone()
    }

    /// Stops accepting and waits for the accept loop to end; stalled answers end too.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A listener that completes TCP handshakes (the kernel does) but never reads or answers.
pub fn silent_server() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("binding the silent server")
}

/// Deterministic test data.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex(seed: u64, len: usize) -> String {
    let mut out = String::new();
    let mut x = seed;
    while out.len() < len {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

fn serve(stream: TcpStream, state: &State) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    state.log.lock().unwrap().push(request.clone());
    let mut out = stream;
    if let Some(etag) = request.path.strip_prefix("/blobs/") {
        let entry = state
            .files
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.etag == etag)
            .cloned();
        match entry {
            Some(entry) => serve_blob(&mut out, &request, &entry, state),
            None => respond(&mut out, "404 Not Found", &[], b""),
        }
    } else {
        resolve(&mut out, &request, state);
    }
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

fn respond(out: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !headers.iter().any(|(n, _)| *n == "Content-Length") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body);
}

/// `/{owner}/{name}/resolve/{revision}/{file}`.
fn resolve(out: &mut TcpStream, request: &Request, state: &State) {
    let b = &state.behaviour;
    let parts: Vec<&str> = request
        .path
        .trim_start_matches('/')
        .splitn(5, '/')
        .collect();
    let [owner, name, "resolve", revision, file] = parts[..] else {
        return respond(out, "404 Not Found", &[], b"");
    };
    let repo = format!("{owner}/{name}");
    if let Some((old, new)) = &b.renamed {
        if repo == *old {
            let location = format!("/{new}/resolve/{revision}/{file}");
            return respond(
                out,
                "307 Temporary Redirect",
                &[("Location", location)],
                b"",
            );
        }
    }
    if let Some(token) = &b.require_token {
        if request.header("authorization") != Some(&format!("Bearer {token}")) {
            let message = (
                "X-Error-Message",
                "Invalid credentials in Authorization header".into(),
            );
            return respond(out, "401 Unauthorized", &[message], b"");
        }
    }
    if state.resolves.fetch_add(1, Ordering::SeqCst) < b.fail_first_resolves {
        return respond(out, "500 Internal Server Error", &[], b"");
    }
    let entry = state
        .files
        .lock()
        .unwrap()
        .iter()
        .find(|e| {
            e.repo == repo && e.file == file && (e.branch == revision || e.commit == revision)
        })
        .cloned();
    let Some(entry) = entry else {
        let code = ("X-Error-Code", "EntryNotFound".to_owned());
        return respond(out, "404 Not Found", &[code], b"Entry not found");
    };
    let base = b.blob_base.clone().unwrap_or_default();
    let size = entry.data.len() as u64 + b.announce_extra;
    let headers = [
        ("X-Repo-Commit", entry.commit.clone()),
        ("X-Linked-Etag", format!("\"{}\"", entry.etag)),
        ("X-Linked-Size", size.to_string()),
        ("ETag", "W/\"0123456789abcdef-git-oid\"".to_owned()),
        ("Location", format!("{base}/blobs/{}", entry.etag)),
    ];
    respond(out, "302 Found", &headers, b"");
}

fn serve_blob(out: &mut TcpStream, request: &Request, entry: &Entry, state: &State) {
    let b = &state.behaviour;
    let data = &entry.data[..];
    let len = data.len();
    let from = request
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|_| !b.ignore_range);
    let (status, from) = match from {
        Some(from) if from >= len => {
            let range = ("Content-Range", format!("bytes */{len}"));
            return respond(out, "416 Range Not Satisfiable", &[range], b"");
        }
        Some(from) => ("206 Partial Content", from),
        None => ("200 OK", 0),
    };
    let mut headers = vec![("Content-Length", (len - from).to_string())];
    if from > 0 {
        headers.push(("Content-Range", format!("bytes {from}-{}/{len}", len - 1)));
    }
    if request.method == "HEAD" {
        return respond(out, status, &headers, b"");
    }
    let first_get = state.blob_gets.fetch_add(1, Ordering::SeqCst) == 0;
    let body = &data[from..];
    match (b.stall_at, b.truncate_at) {
        (Some(at), _) if first_get => {
            respond(out, status, &headers, &body[..at.min(body.len())]);
            let _ = out.flush();
            let until = Instant::now() + Duration::from_secs(30);
            while !state.stop.load(Ordering::SeqCst) && Instant::now() < until {
                thread::sleep(Duration::from_millis(20));
            }
        }
        (_, Some(at)) => respond(out, status, &headers, &body[..at.min(body.len())]),
        _ => respond(out, status, &headers, body),
    }
}
