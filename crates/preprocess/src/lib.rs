//! The preprocess stage as a library: scan → split → resize → augment → image shards.
//!
//! [`prepare`] reads `dataset.source` (class sub-folders → labels from `dataset.classes`) and
//! writes `prepared/<dataset>/manifest.csv`, `rejects.csv` and the `s<S>/<split>/a<k>/` shard
//! directories. Rerunning it finishes only what is missing. `dfd-preprocess` runs it for a
//! pipeline; `dfd-evaluate --on` runs it for another data set with a run's settings.

mod catalog;
mod scan;
mod shards;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dfd_imaging::AugmentParams;
use dfd_layout::cli::SliceArgs;
use dfd_layout::config::AugmentConfig;
use dfd_layout::manifest::{read_manifest, read_rejects, write_manifest, write_rejects};
use dfd_layout::{DataRoot, PipelineConfig};
use serde_json::json;

/// What [`prepare`] did.
pub struct Prepared {
    /// The stage marker's summary: counts, rejects by reason, speed.
    pub summary: serde_json::Value,
    /// One line for people: files, accepted, rejected, images written.
    pub line: String,
    /// True when every shard directory of the data set is complete (other `--shard-index`
    /// processes may still be filling some).
    pub complete: bool,
}

/// Prepares `config.dataset` under `data` with `config`'s split and preprocess settings, doing
/// the work items `slice` owns. `strict`: fail (after writing rejects.csv) if any file is
/// rejected.
pub fn prepare(
    data: &DataRoot,
    config: &PipelineConfig,
    slice: &SliceArgs,
    strict: bool,
) -> Result<Prepared> {
    let started = Instant::now();
    let pre = &config.preprocess;
    let augment = augment_params(&pre.augment);
    augment.validate().context("invalid preprocess.augment")?;
    let dataset = &config.dataset.name;
    let root = data.source(&config.dataset);
    dfd_layout::atomic::remove_stale_tmp(&data.prepared(dataset))?;

    let scan = scan::scan(&root, &config.dataset.classes)?;
    let found = scan.files.len() + scan.rejects.len();
    tracing::info!("{found} files under {}", root.display());
    let manifest_path = data.manifest(dataset);
    let previous = if manifest_path.exists() {
        read_manifest(&manifest_path)?
    } else {
        Vec::new()
    };
    let bar = dfd_layout::cli::progress(scan.files.len() as u64, "files");
    bar.set_message("checking");
    let catalog = catalog::build(&scan, &previous, config, &|| bar.inc(1));
    bar.finish_and_clear();
    write_if_changed(&manifest_path, &catalog.rows, read_manifest, write_manifest)?;
    write_if_changed(
        &data.rejects(dataset),
        &catalog.rejects,
        read_rejects,
        write_rejects,
    )?;
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &catalog.rejects {
        *reasons.entry(r.reason.as_str()).or_default() += 1;
    }
    if strict && !catalog.rejects.is_empty() {
        bail!(
            "--strict: {} input files were rejected ({}); see {}",
            catalog.rejects.len(),
            by_reason(&reasons),
            data.rejects(dataset).display()
        );
    }
    if catalog.rows.is_empty() {
        bail!(
            "no usable image in {}: all {} files were rejected (see {})",
            root.display(),
            catalog.rejects.len(),
            data.rejects(dataset).display()
        );
    }

    let jobs = shards::plan(data, config, &catalog.rows)?;
    let mut todo = Vec::new();
    for (j, (job, n)) in shards::work_items(&jobs).into_iter().enumerate() {
        if slice.owns(j) {
            todo.extend(shards::pending(&jobs, job, n)?);
        }
    }
    let total: usize = todo.iter().map(|t| t.images).sum();
    if total == 0 {
        tracing::info!("{dataset}: output complete, nothing to do");
    }
    let settings = shards::Settings {
        source_root: root.clone(),
        size: pre.size,
        seed: config.seed,
        max_pixels: pre.max_pixels,
        augment: &augment,
    };
    let bar = dfd_layout::cli::progress(total as u64, "img");
    bar.set_message(format!("s{} shards", pre.size));
    let work_started = Instant::now();
    for item in &todo {
        shards::write_item(&jobs[item.job], item.n, &item.copies, &settings, &|k| {
            bar.inc(k)
        })?;
    }
    bar.finish_and_clear();
    let work_secs = work_started.elapsed().as_secs_f64();
    let (complete, incomplete) = shards::finish(&jobs, pre.size)?;
    if let Some(first) = incomplete.first() {
        tracing::info!(
            "{} shard directories still wait for other --shard-index slices (e.g. {})",
            incomplete.len(),
            first.display()
        );
    }

    let count = |split| catalog.rows.iter().filter(|r| r.split == split).count();
    let images_per_s = if work_secs > 0.0 {
        total as f64 / work_secs
    } else {
        0.0
    };
    let summary = json!({
        "dataset": dataset,
        "size": pre.size,
        "files": found,
        "accepted": catalog.rows.len(),
        "train": count(dfd_layout::Split::Train),
        "test": count(dfd_layout::Split::Test),
        "rejected": catalog.rejects.len(),
        "rejects_by_reason": reasons,
        "shards_written": todo.iter().map(|t| t.copies.len()).sum::<usize>(),
        "images_written": total,
        "images_per_s": images_per_s,
        "directories_complete": complete,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let line = format!(
        "{dataset} s{}: {} files, {} accepted ({} train, {} test), {} rejected{}; wrote {total} \
         images ({images_per_s:.1} img/s); {complete} shard directories complete",
        pre.size,
        summary["files"],
        summary["accepted"],
        summary["train"],
        summary["test"],
        summary["rejected"],
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_reason(&reasons))
        },
    );
    Ok(Prepared {
        summary,
        line,
        complete: incomplete.is_empty(),
    })
}

/// The imaging crate's augmentation parameters from the pipeline's `[preprocess.augment]`.
fn augment_params(c: &AugmentConfig) -> AugmentParams {
    AugmentParams {
        crop_p: c.crop_prob,
        crop_scale: c.crop_scale,
        crop_ratio: c.crop_ratio,
        rotate_p: c.rotate_prob,
        rotate_max_deg: c.rotate_degrees,
        hflip_p: c.hflip_prob,
        jitter_p: c.jitter_prob,
        brightness: c.brightness,
        contrast: c.contrast,
        saturation: c.saturation,
        blur_p: c.blur_prob,
        blur_sigma: c.blur_sigma,
        jpeg_p: c.jpeg_prob,
        jpeg_quality: c.jpeg_quality,
    }
}

/// Writes `rows` to `path` with `write` unless `read` finds exactly them there already, so that
/// concurrent `--shard-index` processes do not all rewrite identical lists (and race on one temp
/// file) once the first has written them.
fn write_if_changed<T: PartialEq>(
    path: &Path,
    rows: &[T],
    read: fn(&Path) -> Result<Vec<T>>,
    write: fn(&Path, &[T]) -> Result<()>,
) -> Result<()> {
    if path.exists() && read(path).is_ok_and(|existing| existing == rows) {
        return Ok(());
    }
    write(path, rows)
}

/// Reject counts for people: `unreadable: 2, not_an_image: 1`.
fn by_reason(reasons: &BTreeMap<&str, usize>) -> String {
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    parts.join(", ")
}
