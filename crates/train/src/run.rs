//! The whole stage: resolve the config, check everything the pending folds need, pin the
//! config, train each fold, summarise, mark done.

use anyhow::{Context, Result};
use candle_core::Device;
use dfd_layout::atomic::write_json_atomic;
use dfd_layout::cli::mark_done;
use dfd_layout::config::Monitor;
use dfd_layout::manifest::{read_manifest, ManifestRow};
use dfd_layout::{backbone_key, DataRoot, PipelineConfig};
use dfd_metrics::{mean_std, MeanStd};
use dfd_model::{resolve_weights, with_compute, Arch, WeightsSource};
use serde::Serialize;
use serde_json::json;

use crate::cli::Cli;
use crate::data::FoldData;
use crate::fold::{completed, FoldJob, FoldSummary, HeadPlan};

/// File name of the cross-validation summary at run level.
pub const CV_SUMMARY: &str = "cv_summary.json";

/// `cv_summary.json`: per-fold best validation metrics and their mean ± std.
#[derive(Debug, Serialize)]
pub struct CvSummary {
    pub monitor: Monitor,
    pub folds: Vec<FoldSummary>,
    pub val_loss: Option<MeanStd>,
    pub val_accuracy: Option<MeanStd>,
    /// Over the folds whose AUC is defined.
    pub val_auc: Option<MeanStd>,
}

/// Runs `dfd-train` as the command line asks.
pub fn run(cli: &Cli) -> Result<()> {
    let ctx = cli.common.load()?;
    let mut cfg = ctx.config;
    cli.device.apply(&mut cfg)?;
    if let Some(choice) = cli.fold_override() {
        cfg.train.fold = choice;
        cfg.validate().context("the --fold/--folds override")?;
    }
    let folds = cfg.train.fold.folds(cfg.split.folds)?;
    let rebuild = cli.command();
    let mut summaries = Vec::with_capacity(folds.len());
    let mut pending = Vec::new();
    for &k in &folds {
        match completed(&ctx.run.fold(k), &rebuild)? {
            Some(s) => summaries.push(s),
            None => pending.push(k),
        }
    }
    let extract_cmd = cli.common.command("dfd-extract", false);
    let setup = match pending.first() {
        Some(&first) => Some(Setup::new(&ctx.data, &cfg, first, &extract_cmd)?),
        None => None,
    };
    ctx.run.pin_config(&cfg)?;
    match setup {
        None => {
            tracing::info!(run = %ctx.run.path().display(), "every fold is already trained: nothing to do");
        }
        Some(setup) => {
            let mut first = Some(setup.first);
            for &k in &pending {
                let data = match first.take() {
                    Some(data) => data,
                    None => FoldData::open(
                        &ctx.data,
                        &cfg,
                        &setup.backbone,
                        &setup.manifest,
                        k,
                        &extract_cmd,
                    )?,
                };
                let job = FoldJob {
                    cfg: &cfg,
                    dir: ctx.run.fold(k),
                    data,
                    head: &setup.head,
                    device: setup.device.clone(),
                    throttle: cli.throttle(),
                    rebuild: rebuild.clone(),
                };
                summaries.push(with_compute(cfg.train.compute, || {
                    dfd_ops::on_pool(|| job.run())
                })?);
            }
            summaries.sort_by_key(|s| s.fold);
        }
    }
    let trained = !pending.is_empty();
    let summary = cv_summary(cfg.train.monitor, summaries)?;
    let summary_path = ctx.run.path().join(CV_SUMMARY);
    if trained || !summary_path.exists() {
        write_json_atomic(&summary_path, &summary)?;
    }
    tracing::info!(
        val_accuracy = %dfd_layout::cli::plain(summary.val_accuracy.as_ref()),
        val_auc = %dfd_layout::cli::plain(summary.val_auc.as_ref()),
        "training done"
    );
    mark_done(
        &ctx.run,
        "train",
        &json!({ "folds": folds, "summary": CV_SUMMARY }),
    )
}

/// What the pending folds share, checked before the run's config is pinned: everything that can
/// fail on config grounds (the manifest and feature directories the config names, the device,
/// the head and its layer4 weights) fails here, so a failed config never pins the run.
struct Setup {
    manifest: Vec<ManifestRow>,
    device: Device,
    head: HeadPlan,
    /// The first pending fold's rows, opened to find the features and their shape.
    first: FoldData,
    /// The feature directories' backbone key, from the resolved weights' identity.
    backbone: String,
}

impl Setup {
    /// `extract_cmd` is the command that rebuilds the features, named if one fails its check.
    fn new(data: &DataRoot, cfg: &PipelineConfig, first: u8, extract_cmd: &str) -> Result<Self> {
        let manifest = read_manifest(&data.manifest(&cfg.dataset.name))?;
        let device = dfd_model::parse_device(cfg.extract.device.as_str())?;
        let arch: Arch = cfg.extract.arch.as_str().parse()?;
        let source = WeightsSource::from_config(cfg.extract.weights.as_str(), data.root())?;
        let weights = resolve_weights(&source, &arch)
            .with_context(|| format!("finding the backbone weights {source}"))?;
        let backbone = backbone_key(cfg.extract.arch, &weights.identity);
        let first = FoldData::open(data, cfg, &backbone, &manifest, first, extract_cmd)?;
        let head = HeadPlan::new(cfg, first.train.row_shape(), weights)?;
        Ok(Self {
            manifest,
            device,
            head,
            first,
            backbone,
        })
    }
}

fn stat(values: &[f64]) -> Result<Option<MeanStd>> {
    if values.is_empty() {
        return Ok(None);
    }
    mean_std(values).map(Some).context("summarising folds")
}

/// Mean ± std of each fold's best validation metrics.
pub fn cv_summary(monitor: Monitor, folds: Vec<FoldSummary>) -> Result<CvSummary> {
    let best: Vec<_> = folds.iter().filter_map(|f| f.best.as_ref()).collect();
    let loss: Vec<f64> = best.iter().map(|b| b.val_loss).collect();
    let acc: Vec<f64> = best.iter().map(|b| b.val_accuracy).collect();
    let auc: Vec<f64> = best.iter().filter_map(|b| b.val_auc).collect();
    Ok(CvSummary {
        monitor,
        val_loss: stat(&loss)?,
        val_accuracy: stat(&acc)?,
        val_auc: stat(&auc)?,
        folds,
    })
}
