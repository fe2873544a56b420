//! From the scanned files to `manifest.csv` and `rejects.csv`: read, hash, validate, split.

use std::collections::HashMap;
use std::path::Path;

use dfd_imaging::Reject;
use dfd_layout::config::PipelineConfig;
use dfd_layout::manifest::{ManifestRow, RejectRow};
use dfd_layout::split::assign;
use rayon::prelude::*;

use crate::scan::Scan;

/// The accepted images (ids = row indices, sorted by path) and the refused files (sorted by path).
pub struct Catalog {
    pub rows: Vec<ManifestRow>,
    pub rejects: Vec<RejectRow>,
}

/// What checking one file found.
enum Checked {
    Image {
        hash: String,
        width: u32,
        height: u32,
    },
    Refused {
        reason: String,
        detail: String,
    },
}

/// Reads and checks every file the scan found, then assigns split and fold; the scan's own
/// rejects are kept.
///
/// A file is accepted when it decodes completely (see [`dfd_imaging::decode`]); its decoded size
/// goes to the manifest. A file whose path and content hash already appear in `previous` (the
/// manifest of an earlier run) is not decoded again: its recorded size is reused, re-checked
/// against `max_pixels`. `progress` is called once per file checked.
pub fn build(
    scan: &Scan,
    previous: &[ManifestRow],
    config: &PipelineConfig,
    progress: &(dyn Fn() + Sync),
) -> Catalog {
    let max_pixels = config.preprocess.max_pixels;
    let known: HashMap<(&str, &str), (u32, u32)> = previous
        .iter()
        .map(|r| ((r.path.as_str(), r.hash.as_str()), (r.width, r.height)))
        .collect();
    let checked: Vec<Checked> = scan
        .files
        .par_iter()
        .map(|f| {
            let c = check(&f.path, &f.rel, &known, max_pixels);
            progress();
            c
        })
        .collect();
    let mut rejects = scan.rejects.clone();
    let mut accepted = Vec::new();
    for (f, c) in scan.files.iter().zip(checked) {
        match c {
            Checked::Image {
                hash,
                width,
                height,
            } => accepted.push((f, hash, width, height)),
            Checked::Refused { reason, detail } => {
                tracing::warn!("rejected {}: {detail}", f.rel);
                rejects.push(RejectRow {
                    path: f.rel.clone(),
                    reason,
                    detail,
                });
            }
        }
    }
    rejects.sort_by(|a, b| a.path.cmp(&b.path));
    let items: Vec<(&str, u8)> = accepted
        .iter()
        .map(|(f, h, ..)| (h.as_str(), f.label))
        .collect();
    let split = &config.split;
    let assignment = assign(&items, config.seed, split.test_fraction, split.folds);
    let rows = accepted
        .iter()
        .zip(assignment)
        .enumerate()
        .map(|(id, ((f, hash, width, height), a))| ManifestRow {
            id: u32::try_from(id).expect("fewer than 2^32 images"),
            path: f.rel.clone(),
            label: f.label,
            split: a.split,
            fold: a.fold,
            hash: hash.clone(),
            width: *width,
            height: *height,
        })
        .collect();
    Catalog { rows, rejects }
}

fn check(
    path: &Path,
    rel: &str,
    known: &HashMap<(&str, &str), (u32, u32)>,
    max_pixels: u64,
) -> Checked {
    let bytes = match dfd_layout::walk::read_file(path) {
        Ok(b) => b,
        Err(e) => {
            return Checked::Refused {
                reason: "unreadable".into(),
                detail: format!("cannot read the file: {e}"),
            }
        }
    };
    let hash = dfd_layout::hash::hash_bytes(&bytes);
    let decoded = match known.get(&(rel, hash.as_str())) {
        Some(&(width, height)) if u64::from(width) * u64::from(height) <= max_pixels => {
            Ok((width, height))
        }
        Some(&(width, height)) => Err(Reject::TooLarge {
            width,
            height,
            max_pixels,
        }),
        None => dfd_imaging::decode(&bytes, max_pixels).map(|img| img.dimensions()),
    };
    match decoded {
        Ok((width, height)) => Checked::Image {
            hash,
            width,
            height,
        },
        Err(r) => Checked::Refused {
            reason: r.reason().into(),
            detail: r.to_string(),
        },
    }
}
