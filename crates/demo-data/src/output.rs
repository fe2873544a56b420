//! The output directory: atomic file writes, the `demo-data.json` record of a finished set, and
//! the ownership rules that keep a rerun from mixing sets or touching files it did not write.
//!
//! Rules: a directory whose `real/` and `fake/` hold no files, or that carries
//! `demo-data.json` or the in-progress marker, belongs to the generator; anything else with
//! files there is refused. In an owned directory, generated-looking files that the new plan does
//! not contain (a set with other parameters) and stale `*.tmp` files are removed; any other
//! file is refused.

use crate::plan::{is_generated_name, ImageSpec};
use anyhow::{bail, Context, Result};
use dfd_layout::atomic::write_atomic;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// Name of the record written last when a set is complete.
pub const RECORD: &str = "demo-data.json";
/// Marker present while a set is being written.
const IN_PROGRESS: &str = ".demo-data.in-progress";
/// The class folders.
const FOLDERS: [&str; 2] = ["real", "fake"];

/// The file a temporary name stands for: `<name>.<host>.<pid>.tmp` (see
/// [`dfd_layout::atomic::tmp_path`]) → `<name>`; `None` for other names.
fn tmp_target(name: &str) -> Option<&str> {
    dfd_layout::atomic::parse_tmp_name(name).map(|t| t.target)
}

/// Whether `dir` already holds the complete set `plan` described by `record`: the record
/// matches byte for byte and every planned file exists.
pub fn is_complete(dir: &Path, record: &str, plan: &[ImageSpec]) -> Result<bool> {
    let path = dir.join(RECORD);
    match fs::read_to_string(&path) {
        Ok(found) if found == record => {}
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    Ok(plan
        .iter()
        .all(|spec| dir.join(spec.folder).join(&spec.file_name).is_file()))
}

/// Makes `dir` ready to receive `plan`: checks ownership, marks the set in progress, removes
/// the old record and every stale file (see the module rules).
pub fn prepare(dir: &Path, plan: &[ImageSpec]) -> Result<()> {
    let planned: BTreeSet<(&str, &str)> = plan
        .iter()
        .map(|s| (s.folder, s.file_name.as_str()))
        .collect();
    let owned = dir.join(RECORD).exists() || dir.join(IN_PROGRESS).exists();
    let mut stale = Vec::new();
    for folder in FOLDERS {
        let sub = dir.join(folder);
        fs::create_dir_all(&sub).with_context(|| format!("creating {}", sub.display()))?;
        for entry in fs::read_dir(&sub).with_context(|| format!("listing {}", sub.display()))? {
            let entry = entry.with_context(|| format!("listing {}", sub.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let tmp = tmp_target(&name);
            let ours = tmp.unwrap_or(&name);
            if !owned {
                bail!(
                    "refusing to write into {}: {} holds {name}, which dfd-demo-data did not write \
                     (no {RECORD}); choose an empty or new --out",
                    dir.display(),
                    sub.display()
                );
            }
            if !is_generated_name(ours) {
                bail!("{} holds {name}, which is not part of a demo set; remove it or choose another --out", sub.display());
            }
            if tmp.is_some() || !planned.contains(&(folder, ours)) {
                stale.push(entry.path());
            }
        }
    }
    write_atomic(
        &dir.join(IN_PROGRESS),
        b"dfd-demo-data is writing this set\n",
    )?;
    remove_if_present(&dir.join(RECORD))?;
    stale.iter().try_for_each(|path| remove_if_present(path))
}

/// Records the finished set: writes `record` to `demo-data.json` (atomically) and drops the
/// in-progress marker.
pub fn finish(dir: &Path, record: &str) -> Result<()> {
    write_atomic(&dir.join(RECORD), record.as_bytes())?;
    remove_if_present(&dir.join(IN_PROGRESS))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_map_to_their_target() {
        let tmp = dfd_layout::atomic::tmp_path(Path::new("real/real_00001.jpg"));
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(tmp_target(name), Some("real_00001.jpg"));
        assert_eq!(tmp_target("real_00001.jpg"), None);
        assert_eq!(tmp_target("notes.tmp"), None);
        assert_eq!(tmp_target("real_00001.jpg.x1.tmp"), None);
        assert_eq!(tmp_target("real_00001.jpg.h.x1.tmp"), None);
    }
}
