//! Test-only helpers for the stages' integration tests (a dev-dependency, never linked into a
//! binary): running a stage with a hang guard, killing it at a chosen write
//! ([`FAULT_AT_WRITE`]), finding leftovers, a small tmpfs to fill the disk, and PyTorch `.pth`
//! files ([`pth`]).

pub mod pth;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The hang guard of every spawned stage: a guard, not a performance claim.
pub const HANG_GUARD: Duration = Duration::from_secs(30);

/// The layout's test-only fault injection (`dfd_layout::atomic`): `<n>` SIGKILLs the stage at its
/// n-th atomic write, after writing half of the temporary file; `<n>:pause` makes it wait there,
/// holding its locks, until the test kills it.
pub const FAULT_AT_WRITE: &str = "DFD_TEST_FAULT_AT_WRITE";

/// How a guarded run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Whether the process died of SIGKILL (as [`FAULT_AT_WRITE`] makes it).
    pub fn was_killed(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        self.status.signal() == Some(9)
    }
}

/// Runs `cmd` to its end with stdout and stderr captured (in files: no pipe can fill up); kills
/// it and panics when it runs past [`HANG_GUARD`].
pub fn run_guarded(cmd: &mut Command) -> Finished {
    let (out, err) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .expect("spawning the stage");
    let status = wait_guarded(&mut child);
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut text = String::new();
        f.rewind().unwrap();
        f.read_to_string(&mut text).unwrap();
        text
    };
    Finished {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

/// Waits for `child` to exit; kills it and panics after [`HANG_GUARD`].
pub fn wait_guarded(child: &mut Child) -> ExitStatus {
    wait_for(child, "the stage to exit", || false);
    child.wait().unwrap()
}

/// Polls until `ready()` holds or `child` exits (returns whether `ready()` held); kills the
/// child and panics after [`HANG_GUARD`].
pub fn wait_for(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if ready() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hang guard: no sign of {what} after {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` with [`FAULT_AT_WRITE`]` = n` and checks that it was killed there (not finished
/// before its n-th write, nor failed otherwise).
pub fn kill_at_write(cmd: &mut Command, n: usize) {
    let run = run_guarded(cmd.env(FAULT_AT_WRITE, n.to_string()));
    assert!(
        run.was_killed(),
        "expected a kill at write {n}, got {}:\n{}",
        run.status,
        run.stderr
    );
}

/// Spawns `cmd` with stdout and stderr discarded.
pub fn spawn_quiet(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the stage")
}

/// Every file or directory under `root` (recursively) whose name ends in `.tmp` or `.lock`.
pub fn leftovers(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.ends_with(".lock") {
                out.push(path);
            } else if path.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

/// A tmpfs mounted on a directory, unmounted on drop: a disk that fills up. Mounting needs root
/// (CAP_SYS_ADMIN); [`Tmpfs::mount`] says why it could not, so that the test can skip.
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` (rounded up to whole pages) on `dir`, creating it.
    pub fn mount(dir: &Path, bytes: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        mount(
            &["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"],
            dir,
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Grows (or shrinks) the file system to `bytes`, keeping its files.
    pub fn resize(&self, bytes: u64) {
        mount(&["-o", &format!("remount,size={bytes}")], &self.dir).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn mount(args: &[&str], dir: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {args:?} {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Bytes the files under `root` take on a tmpfs (each rounded up to whole 4 KiB pages).
pub fn tmpfs_bytes(root: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    std::fs::metadata(&path).unwrap().len().div_ceil(4096) * 4096
                }
            })
            .sum()
    }
    walk(root)
}
