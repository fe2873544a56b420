//! dfd-predict: scores new images with a trained run, in one process: the test-time preprocessing
//! (decode, Resize + CenterCrop to the run's size), the backbone and the head(s), batched.

mod gradcam;
mod heatmap;
mod inputs;
mod model;
mod output;
mod threshold;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dfd_imaging::RgbImage;
use dfd_layout::config::DeviceSpec;
use dfd_layout::names::escape;
use dfd_layout::walk::Entry;
use dfd_layout::{PipelineConfig, RunDir};
use dfd_model::{imagenet_normalize, parse_device, DType, Device, Tensor};
use rayon::prelude::*;

use crate::heatmap::HeatmapNames;
use crate::model::Predictor;
use crate::output::{Format, Label, Outcome, Row, RowWriter};
use crate::threshold::ThresholdArg;

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

/// Score image files with a trained run: P(fake), a label, and optional Grad-CAM heatmaps.
///
/// Writes one row per file (path, p_fake, label, error, detail[, heatmap]) as CSV or JSON lines.
/// Each image goes through the run's test-time preprocessing (decode with EXIF orientation, resize
/// and centre-crop to preprocess.size), its backbone and its head. For a cross-validation run, P(fake)
/// is the mean over the trained folds unless --fold picks one. A file that cannot be decoded
/// gets a row with its reject reason and a warning, and does not stop the others; so does an
/// entry that is not a readable regular file (a dangling link, a link loop, a FIFO, socket or
/// device, a folder that cannot be listed). Paths that are not UTF-8 are written with %XX escapes.
/// The exit status is non-zero only for usage errors or when no file at all could be scored.
/// Logs: RUST_LOG (default info).
#[derive(Parser, Debug)]
#[command(name = "dfd-predict", version, verbatim_doc_comment)]
struct Args {
    /// Trained run directory (runs/<pipeline>/<run-id>): its config.toml and fold<k>/checkpoints/.
    #[arg(long, required_unless_present = "model", conflicts_with = "model")]
    run: Option<PathBuf>,
    /// A model file written by dfd-export, instead of --run: it holds the backbone, the head(s),
    /// the pipeline and the thresholds, so no run folder, weights file or network is needed.
    /// The device defaults to cpu.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Image files (taken whatever their extension) or folders (walked recursively for .jpg .jpeg
    /// .png .webp .bmp .tif .tiff .gif in any case, hidden entries skipped, links followed unless
    /// they loop, sorted by path).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Use only this fold's model (default: every trained fold, P(fake) averaged).
    #[arg(long)]
    fold: Option<u8>,
    /// Checkpoint of each fold: best, last, or another name under checkpoints/ (default: the
    /// config's evaluate.checkpoint).
    #[arg(long)]
    checkpoint: Option<String>,
    /// Decision threshold on P(fake) (label fake when p_fake >= it): a number in [0, 1], or `eer`
    /// for one threshold for the fold ensemble: the mean over the used folds of each fold's
    /// validation equal-error-rate threshold (best.val_eer_threshold in the checkpoint's state.json,
    /// recorded by dfd-train). Default: the config's evaluate.threshold (0.5 unless changed).
    #[arg(long)]
    threshold: Option<ThresholdArg>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    /// Write the table to this file (atomically) instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write a Grad-CAM overlay PNG per scored image into this folder: <stem>.png (then
    /// <stem>-2.png, … for repeated stems), S×S like the model's input. The map is taken over
    /// layer4 (the fine-tuned head's own layer4 for finetune runs; the head's feature maps for
    /// heads on layer3/layer4 maps) and explains the log-odds of fake.
    #[arg(long)]
    heatmaps: Option<PathBuf>,
    /// Images per forward pass (default: the config's extract.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// cpu, cuda or cuda:N (default: the config's extract.device).
    #[arg(long)]
    device: Option<DeviceSpec>,
}

fn main() -> ExitCode {
    dfd_alloc::keep_freed_memory();
    dfd_layout::cli::init_tracing();
    dfd_layout::cli::exit("dfd-predict", run(&Args::parse()))
}

/// What every batch needs to know.
struct Job<'a> {
    predictor: &'a Predictor,
    device: &'a Device,
    size: u32,
    max_pixels: u64,
    threshold: f64,
    heatmaps: Option<HeatmapNames>,
}

/// Counts for the summary line.
#[derive(Default)]
struct Tally {
    fake: usize,
    real: usize,
    rejected: usize,
    /// Of `rejected`: images the model gave a non-finite score.
    non_finite: usize,
}

/// The `error` of a row whose image decoded but whose score was not a finite number.
const NON_FINITE: &str = "non_finite_score";

/// What a run folder or a model file provides for scoring.
struct Loaded {
    config: PipelineConfig,
    predictor: Predictor,
    device: Device,
    /// Folds used, and the checkpoint tag they come from.
    folds: Vec<u8>,
    checkpoint: String,
    threshold: f64,
    threshold_source: String,
    /// The run folder or model file, for the log.
    origin: PathBuf,
}

/// The device of `--device`, else `default`.
fn device_of(args: &Args, default: &DeviceSpec) -> Result<Device> {
    parse_device(args.device.as_ref().unwrap_or(default).as_str())
}

/// Everything from a run folder (`--run`).
fn from_run(args: &Args, dir: &Path) -> Result<Loaded> {
    let run = RunDir::new(dir);
    let config = PipelineConfig::load(&run.config()).with_context(|| {
        format!(
            "reading the run's config (is {} a trained run directory?)",
            dir.display()
        )
    })?;
    let device = device_of(args, &config.extract.device)?;
    let folds = match args.fold {
        Some(k) => vec![k],
        None => run
            .trained_folds()
            .with_context(|| format!("listing the folds of run {}", dir.display()))?,
    };
    if folds.is_empty() {
        bail!(
            "run {} has no fold<k> directories: run dfd-train first",
            dir.display()
        );
    }
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| config.evaluate.checkpoint.clone());
    let (threshold, threshold_source) =
        threshold::resolve(args.threshold.as_ref(), &run, &config, &folds, &checkpoint)?;
    let predictor = Predictor::load(&run, &config, &folds, &checkpoint, &device)?;
    Ok(Loaded {
        config,
        predictor,
        device,
        folds,
        checkpoint,
        threshold,
        threshold_source,
        origin: dir.to_path_buf(),
    })
}

/// Everything from a model file of dfd-export (`--model`).
fn from_model(args: &Args, path: &Path) -> Result<Loaded> {
    if args.checkpoint.is_some() {
        bail!(
            "--checkpoint applies to --run; a model file holds the checkpoint it was exported from"
        );
    }
    let device = device_of(args, &DeviceSpec::default())?;
    let bundle = dfd_model::read_bundle(path, &device)?;
    let config = PipelineConfig::from_toml(
        &bundle.meta.pipeline,
        &format!("the pipeline recorded in {}", path.display()),
    )?;
    let meta = bundle.meta.clone();
    let (threshold, threshold_source) =
        threshold::from_model(args.threshold.as_ref(), &meta, args.fold)?;
    let predictor = Predictor::from_bundle(bundle, path, args.fold, &device)?;
    Ok(Loaded {
        config,
        predictor,
        device,
        folds: match args.fold {
            Some(k) => vec![k],
            None => meta.folds,
        },
        checkpoint: meta.checkpoint,
        threshold,
        threshold_source,
        origin: path.to_path_buf(),
    })
}

fn run(args: &Args) -> Result<()> {
    let files = inputs::collect(&args.inputs)?;
    let loaded = match (&args.run, &args.model) {
        (Some(dir), _) => from_run(args, dir)?,
        (None, Some(model)) => from_model(args, model)?,
        (None, None) => bail!("give --run <run folder> or --model <model file>"),
    };
    let Loaded {
        config,
        predictor,
        device,
        folds,
        checkpoint,
        threshold,
        threshold_source,
        origin,
    } = loaded;
    let batch_size = args.batch_size.unwrap_or(config.extract.batch_size);
    if batch_size == 0 {
        bail!("--batch-size must be positive");
    }
    let heatmaps = match &args.heatmaps {
        Some(dir) => {
            let layer = predictor.heatmap_layer()?;
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the heatmap folder {}", dir.display()))?;
            tracing::info!("Grad-CAM heatmaps over {layer} into {}", dir.display());
            Some(HeatmapNames::new(dir))
        }
        None => None,
    };
    tracing::info!(
        "scoring {} files with fold(s) {} ({checkpoint}) of {}, threshold {threshold} ({threshold_source})",
        files.len(),
        dfd_layout::cli::list(&folds),
        origin.display()
    );
    let mut job = Job {
        predictor: &predictor,
        device: &device,
        size: config.preprocess.size,
        max_pixels: config.preprocess.max_pixels,
        threshold,
        heatmaps,
    };
    let tally = match &args.output {
        None => {
            score_all(
                &mut job,
                &files,
                batch_size,
                RowWriter::new(
                    args.format,
                    args.heatmaps.is_some(),
                    std::io::stdout().lock(),
                ),
            )?
            .1
        }
        Some(path) => {
            let (bytes, tally) = score_all(
                &mut job,
                &files,
                batch_size,
                RowWriter::new(args.format, args.heatmaps.is_some(), Vec::new()),
            )?;
            if tally.fake + tally.real > 0 {
                dfd_layout::atomic::write_atomic(path, &bytes)?;
            }
            tally
        }
    };
    eprintln!(
        "dfd-predict: {} files: {} scored ({} fake, {} real at threshold {threshold}), {} rejected",
        files.len(),
        tally.fake + tally.real,
        tally.fake,
        tally.real,
        tally.rejected
    );
    if tally.fake + tally.real == 0 {
        bail!(
            "no file could be scored: all {} were rejected{}",
            files.len(),
            if tally.non_finite > 0 {
                format!(
                    " ({} because the model gave non-finite scores: its checkpoint is corrupt or \
                     overflowed; retrain the run with dfd-train)",
                    tally.non_finite
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

/// Scores `files` batch by batch, writing a row per file in input order; returns the writer's
/// output and the counts.
fn score_all<W: Write>(
    job: &mut Job,
    files: &[Entry],
    batch_size: usize,
    mut rows: RowWriter<W>,
) -> Result<(W, Tally)> {
    let bar = dfd_layout::cli::progress(files.len() as u64, "img");
    bar.set_message("predict");
    let mut tally = Tally::default();
    for chunk in files.chunks(batch_size) {
        for row in score_batch(job, chunk)? {
            match &row.outcome {
                Outcome::Scored {
                    label: Label::Fake, ..
                } => tally.fake += 1,
                Outcome::Scored {
                    label: Label::Real, ..
                } => tally.real += 1,
                Outcome::Rejected { reason, detail } => {
                    tally.rejected += 1;
                    tally.non_finite += usize::from(reason == NON_FINITE);
                    bar.suspend(|| tracing::warn!("rejected {}: {detail}", row.path));
                }
            }
            rows.write(&row)?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok((rows.into_inner()?, tally))
}

/// A decoded input at the model's size, or the reject reason and message.
type Prepared = std::result::Result<RgbImage, (String, String)>;

/// Reads, decodes and resizes one file as the test split is prepared (Resize + CenterCrop); an
/// entry the walk found unreadable keeps its reason.
fn prepare(input: &Entry, size: u32, max_pixels: u64) -> Prepared {
    if let Some(problem) = &input.problem {
        return Err((problem.reason.to_string(), problem.detail.clone()));
    }
    let bytes = dfd_layout::walk::read_file(&input.path)
        .map_err(|e| ("unreadable".to_string(), format!("reading the file: {e}")))?;
    let image = dfd_imaging::decode(&bytes, max_pixels)
        .map_err(|r| (r.reason().to_string(), r.to_string()))?;
    Ok(dfd_imaging::resize_center_crop(&image, size))
}

/// The rows of one batch: decode in parallel, one forward pass over the decodable images, heatmaps.
fn score_batch(job: &mut Job, chunk: &[Entry]) -> Result<Vec<Row>> {
    let prepared: Vec<Prepared> = chunk
        .par_iter()
        .map(|input| prepare(input, job.size, job.max_pixels))
        .collect();
    let images: Vec<&RgbImage> = prepared.iter().filter_map(|p| p.as_ref().ok()).collect();
    let (p_fake, cams) = if images.is_empty() {
        (Vec::new(), None)
    } else {
        let x = batch_tensor(&images, job.size, job.device)?;
        if job.heatmaps.is_some() {
            let e = job.predictor.explain(&x)?;
            (e.p_fake, Some((e.cams, e.size)))
        } else {
            (job.predictor.p_fake(&x)?, None)
        }
    };
    let heatmap_paths =
        match (&mut job.heatmaps, &cams) {
            (Some(names), Some((maps, size))) => {
                let targets: Vec<(&Path, &RgbImage)> = chunk
                    .iter()
                    .zip(&prepared)
                    .filter_map(|(input, p)| p.as_ref().ok().map(|img| (input.path.as_path(), img)))
                    .collect();
                let outputs: Vec<PathBuf> =
                    targets.iter().map(|(path, _)| names.assign(path)).collect();
                targets.par_iter().zip(maps).zip(&outputs).try_for_each(
                    |(((_, img), cam), out)| {
                        heatmap::save_png(&heatmap::overlay(img, cam, *size), out)
                    },
                )?;
                outputs.into_iter().map(Some).collect()
            }
            _ => vec![None; images.len()],
        };
    let mut scored = p_fake.into_iter().zip(heatmap_paths);
    Ok(chunk
        .iter()
        .zip(prepared)
        .map(|(input, p)| {
            let path = escape(&input.path);
            match p {
                Ok(_) => match scored.next().expect("one score per decoded image") {
                    (Ok(p), heatmap) => {
                        let p_fake = p as f32;
                        let label = Label::at(p_fake, job.threshold);
                        Row {
                            path,
                            outcome: Outcome::Scored { p_fake, label },
                            heatmap: heatmap.map(|h| escape(&h)),
                        }
                    }
                    // Never a number: a NaN must not be thresholded into a label.
                    (Err(e), _) => Row {
                        path,
                        outcome: Outcome::Rejected {
                            reason: NON_FINITE.into(),
                            detail: e.to_string(),
                        },
                        heatmap: None,
                    },
                },
                Err((reason, detail)) => Row {
                    path,
                    outcome: Outcome::Rejected { reason, detail },
                    heatmap: None,
                },
            }
        })
        .collect())
}

/// Stacks S×S images into a normalised N×3×S×S f32 tensor on `device`.
fn batch_tensor(images: &[&RgbImage], size: u32, device: &Device) -> Result<Tensor> {
    let side = size as usize;
    let data: Vec<u8> = images
        .iter()
        .flat_map(|img| dfd_imaging::to_chw_u8(img))
        .collect();
    let x = Tensor::from_vec(data, (images.len(), 3, side, side), device)
        .context("building the input batch")?;
    imagenet_normalize(&x, DType::F32).context("normalising the input batch")
}
