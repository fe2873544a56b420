//! The whole stage: resolve and pin the config, train each fold, summarise, mark done.

use anyhow::{bail, Context, Result};
use dfd_layout::atomic::{write_atomic, write_json_atomic};
use dfd_layout::cli::mark_done;
use dfd_layout::manifest::read_manifest;
use dfd_layout::RunDir;
use dfd_metrics::{mean_std, MeanStd};
use serde::Serialize;
use serde_json::json;

use crate::cli::Cli;
use crate::data::FoldData;
use crate::fold::{completed, FoldJob, FoldSummary};

/// File name of the cross-validation summary at run level.
pub const CV_SUMMARY: &str = "cv_summary.json";

/// `cv_summary.json`: per-fold best validation metrics and their mean ± std.
#[derive(Debug, Serialize)]
pub struct CvSummary {
    pub monitor: String,
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
    if let Some(choice) = cli.fold_override() {
        cfg.train.fold = choice;
        cfg.validate().context("the --fold/--folds override")?;
    }
    pin_config(&ctx.run, &cfg.to_toml()?)?;
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
    if pending.is_empty() {
        tracing::info!(run = %ctx.run.path().display(), "every fold is already trained: nothing to do");
    } else {
        let manifest = read_manifest(&ctx.data.manifest(&cfg.dataset.name))?;
        let device = dfd_model::parse_device(&cfg.extract.device)?;
        for &k in &pending {
            let job = FoldJob {
                cfg: &cfg,
                dir: ctx.run.fold(k),
                data: FoldData::open(
                    &ctx.data,
                    &cfg,
                    &manifest,
                    k,
                    &cli.common.command("dfd-extract", false),
                )?,
                device: device.clone(),
                throttle: cli.throttle(),
                rebuild: rebuild.clone(),
            };
            summaries.push(job.run()?);
        }
        summaries.sort_by_key(|s| s.fold);
    }
    let trained = !pending.is_empty();
    let summary = cv_summary(&cfg.train.monitor, summaries)?;
    let summary_path = ctx.run.path().join(CV_SUMMARY);
    if trained || !summary_path.exists() {
        write_json_atomic(&summary_path, &summary)?;
    }
    tracing::info!(
        val_accuracy = ?summary.val_accuracy,
        val_auc = ?summary.val_auc,
        "training done"
    );
    mark_done(
        &ctx.run,
        "train",
        &json!({ "folds": folds, "summary": CV_SUMMARY }),
    )
}

/// Writes the run's `config.toml`, or checks that an existing one is byte-equal: a run directory
/// never mixes two experiments.
fn pin_config(run: &RunDir, resolved: &str) -> Result<()> {
    let path = run.config();
    if path.exists() {
        let existing = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if existing != resolved {
            bail!(
                "{} was made with a different resolved config (another pipeline file, --fold/--folds, or edited \
                 settings); refusing to mix experiments: use another --run-id, or delete {} to start over",
                path.display(),
                run.path().display()
            );
        }
        return Ok(());
    }
    write_atomic(&path, resolved.as_bytes())
}

fn stat(values: &[f64]) -> Result<Option<MeanStd>> {
    if values.is_empty() {
        return Ok(None);
    }
    mean_std(values).map(Some).context("summarising folds")
}

/// Mean ± std of each fold's best validation metrics.
pub fn cv_summary(monitor: &str, folds: Vec<FoldSummary>) -> Result<CvSummary> {
    let best: Vec<_> = folds.iter().filter_map(|f| f.best.as_ref()).collect();
    let loss: Vec<f64> = best.iter().map(|b| b.val_loss).collect();
    let acc: Vec<f64> = best.iter().map(|b| b.val_accuracy).collect();
    let auc: Vec<f64> = best.iter().filter_map(|b| b.val_auc).collect();
    Ok(CvSummary {
        monitor: monitor.to_owned(),
        val_loss: stat(&loss)?,
        val_accuracy: stat(&acc)?,
        val_auc: stat(&auc)?,
        folds,
    })
}
