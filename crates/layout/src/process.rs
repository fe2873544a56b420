//! Who is writing: this host's name and pid, and whether another process of this host is alive.
//! Temporary files ([`crate::atomic`]) and locks ([`crate::lock`]) carry both, so that a stage
//! can tell the leftovers of a dead process from the work of a live one, on one host or on many
//! sharing a file system.

use std::sync::OnceLock;

/// This host's name as it appears in file names: `gethostname`, with every character other than
/// ASCII letters, digits, `-` and `_` replaced by `_` (so `node1.cluster` → `node1_cluster`);
/// `unknown-host` when the name is empty or cannot be read.
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| sanitise_host(&raw_host_name()))
}

/// This process's id.
pub fn pid() -> u32 {
    std::process::id()
}

fn raw_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname writes at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The file-name form of a host name (see [`host`]).
pub fn sanitise_host(name: &str) -> String {
    if name.is_empty() {
        return "unknown-host".to_owned();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `name` could be a [`host`] value (what parsers of file names accept).
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether process `pid` of this host exists (`kill(pid, 0)` does not answer ESRCH). A zombie
/// (exited, not yet reaped by its parent) still counts as alive. Pids that are not positive
/// process ids (0, or beyond `i32::MAX`) are reported alive: they never name a dead writer.
pub fn is_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether the writer `(host, pid)` is known to be gone: it ran on this host, is not this
/// process, and no process `pid` exists. A writer on another host is never known to be gone.
pub fn is_dead_writer(host: &str, pid: u32) -> bool {
    host == self::host() && pid != self::pid() && !is_alive(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_file_name_safe() {
        assert_eq!(sanitise_host("node1.cluster.local"), "node1_cluster_local");
        assert_eq!(sanitise_host("a-b_c9"), "a-b_c9");
        assert_eq!(sanitise_host(""), "unknown-host");
        assert!(is_host_name(host()), "{}", host());
        assert!(!is_host_name("a.b") && !is_host_name(""));
    }

    #[test]
    fn liveness_of_this_and_a_reaped_process() {
        assert!(is_alive(pid()));
        assert!(!is_dead_writer(host(), pid()), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        assert!(!is_alive(gone));
        assert!(is_dead_writer(host(), gone));
        assert!(
            !is_dead_writer("some-other-host", gone),
            "other hosts are never judged"
        );
        assert!(is_alive(0) && is_alive(u32::MAX), "not process ids");
    }
}
