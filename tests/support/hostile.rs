//! A hostile folder for the folder walk, made in the test, and a stage binary run on it under a
//! hang guard, as an unprivileged user when the test runs as root (root reads a `chmod 000` file
//! anyway). Shared by the preprocess and predict tests, which include it with `#[path]`.
#![allow(dead_code)] // each test binary uses its own subset

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a run may take before the guard kills it and fails the test.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// The unprivileged user and group the binary runs as when the test runs as root.
const NOBODY: &str = "65534";

/// A file name that is not valid UTF-8 (Latin-1 `café.png`), and its escaped text form.
pub const NON_UTF8: &[u8] = b"caf\xe9.png";
pub const NON_UTF8_ESCAPED: &str = "caf%E9.png";

/// Each entry [`make`] writes (relative to its folder), in walk order, with the walk's reason
/// (`None`: a good image; `Some("unreadable")` for `locked.png` comes from reading it).
pub fn expected(checks_permissions: bool) -> Vec<(PathBuf, Option<&'static str>)> {
    [
        (Path::new(OsStr::from_bytes(NON_UTF8)), None),
        (Path::new("dangling.jpg"), Some("dangling_link")),
        (Path::new("good.png"), None),
        (Path::new("link.png"), None),
        (Path::new("locked.png"), Some("unreadable")),
        (Path::new("loop.jpg"), Some("symlink_loop")),
        (Path::new("pipe.jpg"), Some("not_a_regular_file")),
        (Path::new("up"), Some("symlink_loop")),
        (Path::new("x.jpg/inner.png"), None),
    ]
    .into_iter()
    .filter(|(rel, _)| checks_permissions || *rel != Path::new("locked.png"))
    .map(|(rel, reason)| (rel.to_path_buf(), reason))
    .collect()
}

/// Writes into the existing folder `dir`: `good.png` (the bytes `image`), `link.png` → it, a
/// self-link `loop.jpg`, `up` → `.` (a folder link back to `dir`), `dangling.jpg` → a missing
/// file, a FIFO `pipe.jpg`, a folder `x.jpg/` holding `inner.png`, the non-UTF-8
/// [`NON_UTF8`], and (when `locked`) `locked.png` with mode 000. The images are all `image`.
pub fn make(dir: &Path, image: &[u8], locked: bool) {
    std::fs::write(dir.join("good.png"), image).unwrap();
    symlink("good.png", dir.join("link.png")).unwrap();
    symlink("loop.jpg", dir.join("loop.jpg")).unwrap();
    symlink(".", dir.join("up")).unwrap();
    symlink("nowhere.jpg", dir.join("dangling.jpg")).unwrap();
    let status = Command::new("mkfifo")
        .arg(dir.join("pipe.jpg"))
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo failed");
    std::fs::create_dir(dir.join("x.jpg")).unwrap();
    std::fs::write(dir.join("x.jpg/inner.png"), image).unwrap();
    std::fs::write(dir.join(OsStr::from_bytes(NON_UTF8)), image).unwrap();
    if locked {
        let path = dir.join("locked.png");
        std::fs::write(&path, image).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
}

/// How the binary is run: directly, or as an unprivileged user.
pub struct Runner {
    /// `setpriv` is used (the test runs as root, which reads a `chmod 000` file).
    setpriv: bool,
    /// A `chmod 000` file is unreadable to the binary (false: root without `setpriv`).
    pub checks_permissions: bool,
}

/// The results of one guarded run.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Runner {
    /// Decides how to run, printing why when an unreadable file cannot be checked.
    pub fn detect() -> Self {
        if !reads_locked_files() {
            return Self {
                setpriv: false,
                checks_permissions: true,
            };
        }
        let setpriv = Command::new("setpriv")
            .args(setpriv_args())
            .arg("true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !setpriv {
            eprintln!(
                "skipping the unreadable-file case: this process reads chmod 000 files (root) and \
                 `setpriv` cannot drop to uid {NOBODY}"
            );
        }
        Self {
            setpriv,
            checks_permissions: setpriv,
        }
    }

    /// A scratch folder under /tmp that the binary can use whoever it runs as: `<tmp>/work`
    /// is world-writable. Returned with that folder.
    pub fn scratch(&self) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::Builder::new()
            .prefix("dfd-walk-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).unwrap();
        (tmp, work)
    }

    /// Runs `bin` with `args` (writing its output to files in `scratch`, so no pipe can fill) and
    /// kills it and fails the test if it runs past [`HANG_GUARD`]. As root, runs a copy of the
    /// binary in `scratch` (the build folder may be closed to others) as uid/gid 65534; every
    /// path it needs must then be readable by that user (see [`Runner::scratch`]).
    pub fn run(&self, bin: &str, args: &[&OsStr], scratch: &Path) -> Run {
        let out_path = scratch.join("stdout");
        let err_path = scratch.join("stderr");
        let mut cmd = if self.setpriv {
            let copy = scratch.join(Path::new(bin).file_name().unwrap());
            if !copy.exists() {
                std::fs::copy(bin, &copy).unwrap();
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let mut cmd = Command::new("setpriv");
            cmd.args(setpriv_args()).arg(copy);
            cmd
        } else {
            Command::new(bin)
        };
        let mut child = cmd
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .spawn()
            .expect("starting the binary");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > HANG_GUARD {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!(
                    "{bin} hung: killed after {HANG_GUARD:?}; stderr so far:\n{}",
                    String::from_utf8_lossy(&std::fs::read(&err_path).unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            success: status.success(),
            stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
        }
    }
}

fn setpriv_args() -> [String; 3] {
    [
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
    ]
}

/// Whether this process reads a file of mode 000 (root, or any holder of CAP_DAC_OVERRIDE).
fn reads_locked_files() -> bool {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::read(file.path()).is_ok()
}
