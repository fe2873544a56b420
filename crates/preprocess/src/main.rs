//! dfd-preprocess: scan → split → resize → augment → image shards.
//!
//! Reads `dataset.source` (class sub-folders → labels from `dataset.classes`), writes
//! `prepared/<dataset>/manifest.csv`, `rejects.csv` and `s<S>/<split>/a<k>/` shard directories.
//! Rerunning the same command finishes only what is missing; see `--help`.

mod catalog;
mod scan;
mod shards;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dfd_imaging::AugmentParams;
use dfd_layout::cli::{CommonArgs, SliceArgs};
use dfd_layout::config::AugmentConfig;
use dfd_layout::manifest::{read_manifest, read_rejects, write_manifest, write_rejects};
use serde_json::json;

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

/// Prepare a labelled image folder: validate every file, split it (seeded, stratified holdout test
/// split + k folds), resize like torchvision Resize(S)+CenterCrop(S), augment the train split, and
/// write safetensors image shards under <data-dir>/prepared/<dataset>/.
///
/// Bad files (empty, truncated, unreadable, not an image, over preprocess.max_pixels) are listed in
/// rejects.csv and skipped, and so are symbolic link loops, dangling links, FIFOs, sockets,
/// devices and folders that cannot be listed. A killed run resumes where it stopped when rerun with the same command;
/// on a complete output it does nothing. A changed config against existing shards is an error:
/// delete that output directory or use another --data-dir. Logs: RUST_LOG (default info).
#[derive(Parser, Debug)]
#[command(name = "dfd-preprocess", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    slice: SliceArgs,
    /// Fail (non-zero exit, after writing rejects.csv) if any input file is rejected.
    #[arg(long)]
    strict: bool,
    /// Worker threads for decoding and resizing (default: one per core).
    #[arg(long, env = "DFD_THREADS")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    dfd_alloc::keep_freed_memory();
    dfd_layout::cli::init_tracing();
    dfd_layout::cli::exit("dfd-preprocess", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    args.slice.validate()?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("starting the worker threads")?;
    }
    let ctx = args.common.load()?;
    let cfg = &ctx.config;
    let pre = &cfg.preprocess;
    let augment = augment_params(&pre.augment);
    augment.validate().context("invalid preprocess.augment")?;
    let dataset = &cfg.dataset.name;
    let root = ctx.data.source(&cfg.dataset);
    dfd_layout::atomic::remove_stale_tmp(&ctx.data.prepared(dataset))?;

    let scan = scan::scan(&root, &cfg.dataset.classes)?;
    let found = scan.files.len() + scan.rejects.len();
    tracing::info!("{found} files under {}", root.display());
    let manifest_path = ctx.data.manifest(dataset);
    let previous = if manifest_path.exists() {
        read_manifest(&manifest_path)?
    } else {
        Vec::new()
    };
    let bar = dfd_layout::cli::progress(scan.files.len() as u64, "files");
    bar.set_message("checking");
    let catalog = catalog::build(&scan, &previous, cfg, &|| bar.inc(1));
    bar.finish_and_clear();
    write_if_changed(&manifest_path, &catalog.rows, read_manifest, write_manifest)?;
    write_if_changed(
        &ctx.data.rejects(dataset),
        &catalog.rejects,
        read_rejects,
        write_rejects,
    )?;
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &catalog.rejects {
        *reasons.entry(r.reason.as_str()).or_default() += 1;
    }
    if args.strict && !catalog.rejects.is_empty() {
        bail!(
            "--strict: {} input files were rejected ({}); see {}",
            catalog.rejects.len(),
            by_reason(&reasons),
            ctx.data.rejects(dataset).display()
        );
    }
    if catalog.rows.is_empty() {
        bail!(
            "no usable image in {}: all {} files were rejected (see {})",
            root.display(),
            catalog.rejects.len(),
            ctx.data.rejects(dataset).display()
        );
    }

    let jobs = shards::plan(&ctx.data, cfg, &catalog.rows)?;
    let mut todo = Vec::new();
    for (j, (job, n)) in shards::work_items(&jobs).into_iter().enumerate() {
        if args.slice.owns(j) {
            todo.extend(shards::pending(&jobs, job, n)?);
        }
    }
    let total: usize = todo.iter().map(|t| t.images).sum();
    if total == 0 {
        tracing::info!("output complete: nothing to do");
    }
    let settings = shards::Settings {
        source_root: root.clone(),
        size: pre.size,
        seed: cfg.seed,
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

    let count = |split| catalog.rows.iter().filter(|r| r.split == split).count();
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
        "images_per_s": if work_secs > 0.0 { total as f64 / work_secs } else { 0.0 },
        "directories_complete": complete,
        "seconds": started.elapsed().as_secs_f64(),
    });
    if incomplete.is_empty() {
        dfd_layout::cli::mark_done(&ctx.run, "preprocess", &summary)?;
    } else {
        tracing::info!(
            "{} shard directories still wait for other --shard-index slices (e.g. {})",
            incomplete.len(),
            incomplete[0].display()
        );
    }
    println!(
        "dfd-preprocess: {dataset} s{}: {} files, {} accepted ({} train, {} test), {} rejected{}; \
         wrote {total} images ({:.1} img/s); {complete} shard directories complete",
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
        summary["images_per_s"].as_f64().unwrap_or(0.0),
    );
    Ok(())
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
