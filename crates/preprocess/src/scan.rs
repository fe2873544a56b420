//! Finding the source images: every file under each configured class folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One file found under a class folder.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Path relative to the data set folder, `/`-separated (`fake/easy_1_1110.jpg`).
    pub rel: String,
    pub label: u8,
}

/// Lists every regular file (recursively, hidden names skipped) under `root/<class>` for each
/// class of `classes`, sorted by relative path, so the result does not depend on directory listing
/// order. Non-images are included: deciding what is an image is the decoder's job, and whatever
/// it refuses is reported. A missing class folder, or no file at all, is an error.
///
/// A file name that is not UTF-8 cannot be recorded in the manifest: such files are returned in
/// the second list, to be reported as rejects.
pub fn scan(root: &Path, classes: &BTreeMap<String, u8>) -> Result<(Vec<SourceFile>, Vec<String>)> {
    if !root.is_dir() {
        bail!(
            "data set folder {} does not exist or is not a folder",
            root.display()
        );
    }
    let mut files = Vec::new();
    let mut bad_names = Vec::new();
    for (class, &label) in classes {
        let dir = root.join(class);
        if !dir.is_dir() {
            bail!(
                "class folder `{class}` (label {label}) is missing: expected {}",
                dir.display()
            );
        }
        walk(&dir, class, &mut |rel| match rel {
            Ok(rel) => files.push(SourceFile { rel, label }),
            Err(lossy) => bad_names.push(lossy),
        })?;
    }
    if files.is_empty() && bad_names.is_empty() {
        bail!(
            "the data set {} is empty: no files under its class folders ({})",
            root.display(),
            classes.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    bad_names.sort();
    Ok((files, bad_names))
}

/// Calls `found` with each file's relative path (`Err(lossy name)` when not UTF-8), in sorted order.
fn walk(dir: &Path, rel: &str, found: &mut dyn FnMut(Result<String, String>)) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap_or_default();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let meta =
            std::fs::metadata(&path).with_context(|| format!("inspecting {}", path.display()))?;
        match name.to_str() {
            Some(name) if meta.is_dir() => walk(&path, &format!("{rel}/{name}"), found)?,
            Some(name) => found(Ok(format!("{rel}/{name}"))),
            None => found(Err(format!("{rel}/{}", name.to_string_lossy()))),
        }
    }
    Ok(())
}
