//! The one folder walk of the stages: what lies under a folder, judged from metadata before
//! anything is opened.
//!
//! Rules (shared by `dfd-preprocess` and `dfd-predict`):
//! - every entry is looked at with `symlink_metadata`, then, for a link, with its target's
//!   metadata; nothing is opened to find out what it is, so a FIFO, socket or device is never
//!   opened and nothing blocks;
//! - a regular file, or a link to one (under the link's own path), is a file;
//! - a directory is always walked, whatever its name (`x.jpg/` is a folder, not a file), and so is
//!   a link to a directory, unless that directory (same device and inode) is already on the path
//!   being walked: then it is a [`Reason::SymlinkLoop`];
//! - names starting with `.` are skipped (files and folders);
//! - anything else is a [`Problem`] with a [`Reason`] and a human detail, and the walk goes on: a
//!   folder that cannot be listed is one [`Reason::Unreadable`] entry, nothing else is lost.
//!
//! Entries come in path order, component by component, names compared byte-wise, so the result
//! does not depend on the order the file system lists them in.

use std::ffi::OsString;
use std::fmt;
use std::fs::{FileType, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an entry is not a file to read. [`Reason::as_str`] is the name written in `rejects.csv`
/// and in predict's `error` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// A link that leads back to itself (ELOOP), or to a folder already on the walked path.
    SymlinkLoop,
    /// A link whose target does not exist.
    DanglingLink,
    /// A FIFO, socket, or block or character device.
    NotARegularFile,
    /// Permission denied, or any other I/O error, on the entry or a folder's listing.
    Unreadable,
}

impl Reason {
    /// `symlink_loop`, `dangling_link`, `not_a_regular_file` or `unreadable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SymlinkLoop => "symlink_loop",
            Reason::DanglingLink => "dangling_link",
            Reason::NotARegularFile => "not_a_regular_file",
            Reason::Unreadable => "unreadable",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry that is not a readable regular file: why, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    pub detail: String,
}

impl Problem {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One entry found by [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The walked root joined with [`Entry::rel`] (the root itself when `rel` is empty).
    pub path: PathBuf,
    /// The path relative to the walked root, empty for the root itself.
    pub rel: PathBuf,
    /// `None` for a regular file (or a link to one); otherwise why it cannot be read.
    pub problem: Option<Problem>,
}

/// Every regular file and every problem under `root`, in path order (see the module's rules).
///
/// `root` itself is judged like any entry: a regular file gives one entry with an empty `rel`, a
/// folder is walked, anything else is one problem entry. Never fails and never blocks.
pub fn walk(root: &Path) -> Vec<Entry> {
    let mut found = Vec::new();
    visit(root, PathBuf::new(), &mut Vec::new(), &mut found);
    found
}

/// Reads a whole file that the walk found regular, refusing (instead of blocking on) anything
/// that is no longer a regular file when it is opened: it is opened non-blocking and checked
/// before any byte is read.
pub fn read_file(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            describe(meta.file_type())
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// What an entry is, from metadata only.
enum Kind {
    File,
    /// A folder (or a link to one), with its (device, inode).
    Dir((u64, u64)),
    Problem(Problem),
}

/// A folder on the path being walked: its (device, inode) and where it was entered.
type Ancestor = ((u64, u64), PathBuf);

fn visit(path: &Path, rel: PathBuf, ancestors: &mut Vec<Ancestor>, found: &mut Vec<Entry>) {
    let entry = |rel: PathBuf, problem: Option<Problem>| Entry {
        path: path.to_path_buf(),
        rel,
        problem,
    };
    let id = match inspect(path) {
        Kind::Dir(id) => id,
        Kind::File => return found.push(entry(rel, None)),
        Kind::Problem(problem) => return found.push(entry(rel, Some(problem))),
    };
    if let Some((_, first)) = ancestors.iter().find(|(a, _)| *a == id) {
        let detail = format!(
            "leads back to the folder {}, which is already being walked",
            first.display()
        );
        return found.push(entry(rel, Some(Problem::new(Reason::SymlinkLoop, detail))));
    }
    let (names, error) = list(path);
    if let Some(e) = error {
        let detail = format!("cannot list the folder: {e}");
        found.push(entry(
            rel.clone(),
            Some(Problem::new(Reason::Unreadable, detail)),
        ));
    }
    ancestors.push((id, path.to_path_buf()));
    for name in names {
        visit(&path.join(&name), rel.join(&name), ancestors, found);
    }
    ancestors.pop();
}

/// The folder's non-hidden names, sorted byte-wise, and the first listing error if any (the
/// names listed before and after it are kept).
fn list(dir: &Path) -> (Vec<OsString>, Option<io::Error>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut names = Vec::new();
    let mut error = None;
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name();
                if name.as_bytes().first() != Some(&b'.') {
                    names.push(name);
                }
            }
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }
    names.sort();
    (names, error)
}

/// Looks at `path` itself, then at a link's target, without opening either.
fn inspect(path: &Path) -> Kind {
    let own = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => return Kind::Problem(Problem::new(Reason::Unreadable, e.to_string())),
    };
    let meta = if own.file_type().is_symlink() {
        match follow(path) {
            Ok(meta) => meta,
            Err(problem) => return Kind::Problem(problem),
        }
    } else {
        own
    };
    let file_type = meta.file_type();
    if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir((meta.dev(), meta.ino()))
    } else {
        Kind::Problem(Problem::new(
            Reason::NotARegularFile,
            format!("{} is not a regular file", describe(file_type)),
        ))
    }
}

/// The metadata of a link's target, or why there is none.
fn follow(link: &Path) -> Result<Metadata, Problem> {
    std::fs::metadata(link).map_err(|e| {
        let target =
            std::fs::read_link(link).map_or_else(|_| "?".to_string(), |t| t.display().to_string());
        if e.raw_os_error() == Some(libc::ELOOP) {
            Problem::new(
                Reason::SymlinkLoop,
                format!("the link to {target} never ends: {e}"),
            )
        } else if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        ) {
            Problem::new(
                Reason::DanglingLink,
                format!("the link's target {target} does not exist"),
            )
        } else {
            Problem::new(
                Reason::Unreadable,
                format!("cannot follow the link to {target}: {e}"),
            )
        }
    })
}

/// "a FIFO", "a socket", … for a file type that is not a regular file or folder.
fn describe(file_type: FileType) -> &'static str {
    if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_dir() {
        "a folder"
    } else {
        "this kind of file"
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    /// `(rel, reason)` of every entry, `None` for files.
    fn summary(root: &Path) -> Vec<(PathBuf, Option<Reason>)> {
        walk(root)
            .into_iter()
            .map(|e| {
                assert_eq!(e.path, root.join(&e.rel));
                (e.rel, e.problem.map(|p| p.reason))
            })
            .collect()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    fn rows(expected: &[(&str, Option<Reason>)]) -> Vec<(PathBuf, Option<Reason>)> {
        expected
            .iter()
            .map(|(rel, reason)| (PathBuf::from(rel), *reason))
            .collect()
    }

    #[test]
    fn files_come_in_path_order_and_hidden_names_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b/z.jpg",
            "b.png",
            "a/c/d.png",
            ".hidden/x.png",
            "b/.y.png",
            "x.jpg/in.jpg",
        ] {
            touch(&dir.path().join(name));
        }
        assert_eq!(
            summary(dir.path()),
            rows(&[
                ("a/c/d.png", None),
                ("b/z.jpg", None),
                ("b.png", None),
                ("x.jpg/in.jpg", None),
            ])
        );
    }

    #[test]
    fn a_file_root_is_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("one.jpg");
        touch(&file);
        assert_eq!(summary(&file), rows(&[("", None)]));
    }

    #[test]
    fn links_to_files_count_under_their_own_path_and_bad_links_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("real/a.jpg"));
        symlink(root.join("real/a.jpg"), root.join("real/link.jpg")).unwrap();
        symlink(
            root.join("real/nowhere.jpg"),
            root.join("real/dangling.jpg"),
        )
        .unwrap();
        symlink("self.jpg", root.join("real/self.jpg")).unwrap();
        let entries = walk(&root.join("real"));
        let got: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.rel.to_str().unwrap(),
                    e.problem.as_ref().map(|p| p.reason),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.jpg", None),
                ("dangling.jpg", Some(Reason::DanglingLink)),
                ("link.jpg", None),
                ("self.jpg", Some(Reason::SymlinkLoop)),
            ]
        );
        let detail = &entries[1].problem.as_ref().unwrap().detail;
        assert!(detail.contains("nowhere.jpg"), "{detail}");
    }

    #[test]
    fn directory_links_are_followed_unless_they_loop() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("data/sub/a.jpg"));
        touch(&root.join("elsewhere/b.jpg"));
        symlink(root.join("data"), root.join("data/sub/up")).unwrap();
        symlink(root.join("elsewhere"), root.join("data/other")).unwrap();
        let entries = walk(&root.join("data"));
        assert_eq!(
            summary(&root.join("data")),
            rows(&[
                ("other/b.jpg", None),
                ("sub/a.jpg", None),
                ("sub/up", Some(Reason::SymlinkLoop)),
            ])
        );
        let detail = &entries[2].problem.as_ref().unwrap().detail;
        assert!(
            detail.contains(&*root.join("data").to_string_lossy()),
            "{detail}"
        );
    }

    #[test]
    fn fifos_are_problems_and_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.jpg");
        let path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
        touch(&dir.path().join("z.jpg"));
        // Opening the FIFO for reading would block this test forever: the walk must not.
        let entries = walk(dir.path());
        assert_eq!(entries.len(), 2);
        let problem = entries[0].problem.as_ref().unwrap();
        assert_eq!(problem.reason, Reason::NotARegularFile);
        assert!(problem.detail.contains("FIFO"), "{}", problem.detail);
        let err = read_file(&fifo).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert_eq!(read_file(&dir.path().join("z.jpg")).unwrap(), b"x");
    }

    #[test]
    fn non_utf8_names_are_files_like_any_other() {
        let dir = tempfile::tempdir().unwrap();
        let name = OsStr::from_bytes(b"caf\xe9.jpg");
        touch(&dir.path().join(name));
        assert_eq!(summary(dir.path()), vec![(PathBuf::from(name), None)]);
    }

    #[test]
    fn an_unlistable_folder_is_one_problem_and_the_rest_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("a.jpg"));
        touch(&dir.path().join("b/c.jpg"));
        touch(&dir.path().join("d.jpg"));
        let (names, error) = list(&dir.path().join("a.jpg"));
        assert!(
            names.is_empty() && error.is_some(),
            "a file cannot be listed"
        );
        assert_eq!(
            summary(&dir.path().join("gone")),
            rows(&[("", Some(Reason::Unreadable))])
        );
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("running as root, which may list any folder: chmod 000 not checked here");
            return;
        }
        let locked = dir.path().join("b");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let got = summary(dir.path());
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            got,
            rows(&[
                ("a.jpg", None),
                ("b", Some(Reason::Unreadable)),
                ("d.jpg", None)
            ])
        );
    }
}
