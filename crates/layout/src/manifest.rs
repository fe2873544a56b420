//! `manifest.csv`: one row per accepted source image, and `rejects.csv`: one per refused file.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::paths::Split;

/// One source image. `id` is the row's index once rows are sorted by `path`, so ids do not
/// depend on directory listing order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestRow {
    pub id: u32,
    /// Path relative to the data set folder, with `/` separators.
    pub path: String,
    /// 0 real, 1 fake.
    pub label: u8,
    pub split: Split,
    /// Cross-validation fold (train split only; empty for test).
    pub fold: Option<u8>,
    /// Hex blake3 of the file's bytes.
    pub hash: String,
    /// Size of the decoded image (after EXIF orientation).
    pub width: u32,
    pub height: u32,
}

/// One refused input file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectRow {
    /// Path relative to the data set folder.
    pub path: String,
    /// Short machine-readable reason (`empty`, `not_an_image`, `truncated`, `too_large`, …).
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
}

fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)
            .with_context(|| format!("serialising a row of {}", path.display()))?;
    }
    let bytes = w
        .into_inner()
        .with_context(|| format!("serialising {}", path.display()))?;
    crate::atomic::write_atomic(path, &bytes)
}

fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("opening {}", path.display()))?;
    r.deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("{}: bad row {}", path.display(), i + 2)))
        .collect()
}

/// Writes the manifest atomically (header included, even when empty).
pub fn write_manifest(path: &Path, rows: &[ManifestRow]) -> Result<()> {
    write_csv(path, rows)
}

/// Reads a manifest, checking that ids are the row indices.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>> {
    let rows: Vec<ManifestRow> = read_csv(path)?;
    if let Some((i, r)) = rows.iter().enumerate().find(|(i, r)| r.id as usize != *i) {
        anyhow::bail!(
            "{}: row {} has id {}, expected {i}",
            path.display(),
            i + 2,
            r.id
        );
    }
    Ok(rows)
}

/// Writes the rejects list atomically.
pub fn write_rejects(path: &Path, rows: &[RejectRow]) -> Result<()> {
    write_csv(path, rows)
}

/// Reads a rejects list.
pub fn read_rejects(path: &Path) -> Result<Vec<RejectRow>> {
    read_csv(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.csv");
        let rows = vec![
            ManifestRow {
                id: 0,
                path: "fake/a, b.jpg".into(),
                label: 1,
                split: Split::Train,
                fold: Some(3),
                hash: "ab".into(),
                width: 600,
                height: 400,
            },
            ManifestRow {
                id: 1,
                path: "real/c.png".into(),
                label: 0,
                split: Split::Test,
                fold: None,
                hash: "cd".into(),
                width: 1,
                height: 2,
            },
        ];
        write_manifest(&p, &rows).unwrap();
        assert_eq!(read_manifest(&p).unwrap(), rows);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("id,path,label,split,fold,hash,width,height\n"),
            "{text}"
        );
    }
}
