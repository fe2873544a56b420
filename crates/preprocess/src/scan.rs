//! Finding the source images: every file under each configured class folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use dfd_layout::manifest::RejectRow;
use dfd_layout::names::escape;
use dfd_layout::walk::walk;

/// One file found under a class folder.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the data set folder, `/`-separated, in its escaped text form
    /// ([`dfd_layout::names`]): `fake/easy_1_1110.jpg`.
    pub rel: String,
    /// Where to read it.
    pub path: PathBuf,
    pub label: u8,
}

/// What the walk of the class folders found.
pub struct Scan {
    /// Regular files (and links to them), sorted by `rel`.
    pub files: Vec<SourceFile>,
    /// Entries that are not readable regular files (`symlink_loop`, `dangling_link`,
    /// `not_a_regular_file`, `unreadable`), sorted by path.
    pub rejects: Vec<RejectRow>,
}

/// Walks `root/<class>` for each class of `classes` with [`dfd_layout::walk`] (hidden names
/// skipped, folders always entered, links followed unless they loop). Non-images are included:
/// deciding what is an image is the decoder's job, and whatever it refuses is reported. Entries
/// the walk cannot read become rejects. The result does not depend on directory listing order.
/// A missing class folder, or nothing at all under the class folders, is an error.
pub fn scan(root: &Path, classes: &BTreeMap<String, u8>) -> Result<Scan> {
    if !root.is_dir() {
        bail!(
            "data set folder {} does not exist or is not a folder",
            root.display()
        );
    }
    let mut files = Vec::new();
    let mut rejects = Vec::new();
    for (class, &label) in classes {
        let dir = root.join(class);
        if !dir.is_dir() {
            bail!(
                "class folder `{class}` (label {label}) is missing: expected {}",
                dir.display()
            );
        }
        for entry in walk(&dir) {
            let rel = if entry.rel.as_os_str().is_empty() {
                class.clone() // the class folder itself, when it cannot be listed
            } else {
                escape(&Path::new(class).join(&entry.rel))
            };
            match entry.problem {
                None => files.push(SourceFile {
                    rel,
                    path: entry.path,
                    label,
                }),
                Some(problem) => {
                    tracing::warn!("rejected {rel}: {}", problem.detail);
                    rejects.push(RejectRow {
                        path: rel,
                        reason: problem.reason.to_string(),
                        detail: problem.detail,
                    });
                }
            }
        }
    }
    if files.is_empty() && rejects.is_empty() {
        bail!(
            "the data set {} is empty: no files under its class folders ({})",
            root.display(),
            classes.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    rejects.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Scan { files, rejects })
}
