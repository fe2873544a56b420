//! The evaluate stage: run directory in, `eval/` out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dfd_layout::atomic::write_json_atomic;
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_STATE, CHECKPOINT_WEIGHTS};
use dfd_layout::cli::{
    marker_records, progress, CommonArgs, Context as StageContext, DeviceArg, SliceArgs,
};
use dfd_layout::config::PipelineConfig;
use dfd_layout::manifest::{read_manifest, ManifestRow};
use dfd_layout::other_dataset::OtherDataset;
use dfd_layout::paths::EVAL_ON_MARKER;
use dfd_layout::runlog::{self, LogRecord};
use dfd_layout::shards::{read_index, trained_identity};
use dfd_layout::{backbone_key, backbone_of_features, FoldDir, Split};
use dfd_metrics::{BinaryReport, BootstrapConfig};
use dfd_model::{resolve_weights, with_compute, Arch, ResolvedWeights, Score, WeightsSource};
use serde_json::json;

use crate::features::{load_head, TestFeatures};
use crate::plots::{self, CurvePoint, FoldCurves, RocLine};
use crate::report;
use crate::schema::{
    by_difficulty, difficulty_of, CvSummary, DifficultyRow, EnsembleEval, EvalMetrics, FoldEval,
    SCHEMA_VERSION,
};
use crate::scores::ScoreTable;

/// Refuses test features computed with other backbone weights than the features each fold was
/// trained on (compared by the weights identity in their `index.json`). A training directory
/// that no longer exists cannot be compared: that is logged, not refused.
fn same_backbone(test_dir: &Path, folds: &[u8], checkpoints: &[Checkpoint]) -> Result<()> {
    let test = read_index(test_dir)?;
    let test_identity = test.weights_identity().unwrap_or("unknown");
    for (k, checkpoint) in folds.iter().zip(checkpoints) {
        let Some(source) = checkpoint.state().sources.first() else {
            continue;
        };
        let Some(train_identity) = trained_identity(&source.dir, &format!("fold {k}")) else {
            continue;
        };
        if train_identity != test_identity {
            bail!(
                "the test features {} were computed with backbone weights {test_identity}, but \
                 fold {k} was trained on features of weights {train_identity} ({}): extract and \
                 train with the same extract.weights",
                test_dir.display(),
                source.dir.display()
            );
        }
    }
    Ok(())
}

/// The backbone key of the features a fold was trained on (from its `state.json`), so that
/// evaluation reads the test features of that backbone and needs no weights file. A checkpoint
/// that records no feature directory falls back to resolving `extract.weights`.
fn trained_backbone(
    checkpoint: &Checkpoint,
    cfg: &PipelineConfig,
    data_dir: &Path,
) -> Result<String> {
    let recorded = checkpoint.state().sources.first();
    if let Some(key) = recorded.and_then(|s| backbone_of_features(&s.dir)) {
        return Ok(key.to_string());
    }
    let weights = run_weights(cfg, data_dir)?;
    Ok(backbone_key(cfg.extract.arch, &weights.identity))
}

/// What one evaluation scores and where its outputs go: the run's own test split, or another
/// data set scored whole (`--on`).
struct Target {
    /// The data set scored, as `metrics.json` names it.
    dataset: String,
    /// The data set the run was trained on, for another data set; `None` for its own test split.
    trained_on: Option<String>,
    /// The test feature directory scored, and the manifest its ids index.
    test_dir: PathBuf,
    manifest: PathBuf,
    /// The command that rebuilds the test features.
    rebuild: String,
    /// Where the outputs go, and the completion marker recording their inputs.
    out_dir: PathBuf,
    marker: PathBuf,
}

impl Target {
    /// The run's own test split: features under the backbone the folds were trained on, outputs
    /// in `eval/`, the marker in `stages/`.
    fn own(ctx: &StageContext, common: &CommonArgs, cfg: &PipelineConfig, backbone: &str) -> Self {
        let name = &cfg.dataset.name;
        Self {
            dataset: name.clone(),
            trained_on: None,
            test_dir: test_features(ctx, cfg, name, backbone),
            manifest: ctx.data.manifest(name),
            rebuild: common.command("dfd-extract", false),
            out_dir: ctx.run.eval(),
            marker: ctx.run.stage_marker("evaluate"),
        }
    }

    /// Another data set (`--on`), prepared and extracted whole with the run's settings and its
    /// backbone (which must still be what `extract.weights` gives); outputs and marker in
    /// `eval/<dataset>/`.
    fn other(
        on: &Path,
        ctx: &StageContext,
        common: &CommonArgs,
        cfg: &PipelineConfig,
        backbone: &str,
    ) -> Result<Self> {
        let other = OtherDataset::resolve(on, cfg)?;
        let rebuild = format!(
            "{} --on {}",
            common.command("dfd-evaluate", true),
            on.display()
        );
        let weights = run_weights(cfg, ctx.data.root())?;
        let key = backbone_key(cfg.extract.arch, &weights.identity);
        if key != backbone {
            bail!(
                "the run's folds were trained on features of the backbone {backbone}, but \
                 extract.weights = \"{}\" now gives {key}: score another data set with the \
                 weights the run was trained with",
                cfg.extract.weights
            );
        }
        let whole = SliceArgs {
            shard_index: 0,
            shard_count: 1,
        };
        let prepared = dfd_preprocess::prepare(&ctx.data, &other.config, &whole, false)
            .with_context(|| format!("preparing {} (--on {})", other.name, on.display()))?;
        tracing::info!("prepared {}", prepared.line);
        dfd_extract::stage::extract(
            &ctx.data,
            &other.config,
            &weights,
            cfg.extract.batch_size,
            &whole,
            &rebuild,
        )
        .with_context(|| format!("extracting the features of {}", other.name))?;
        let name = &other.config.dataset.name;
        let out_dir = ctx.run.eval_on(&other.name);
        Ok(Self {
            dataset: other.name.clone(),
            trained_on: Some(cfg.dataset.name.clone()),
            test_dir: test_features(ctx, cfg, name, backbone),
            manifest: ctx.data.manifest(name),
            rebuild,
            marker: out_dir.join(EVAL_ON_MARKER),
            out_dir,
        })
    }
}

/// The test feature directory of `dataset` under `backbone` at the run's size and cut.
fn test_features(
    ctx: &StageContext,
    cfg: &PipelineConfig,
    dataset: &str,
    backbone: &str,
) -> PathBuf {
    let (size, cut) = (cfg.preprocess.size, cfg.extract.cut);
    ctx.data
        .features(dataset, backbone, size, cut, Split::Test, 0)
}

/// The backbone weights of the run's `extract.weights` (relative paths against `data_root`).
fn run_weights(cfg: &PipelineConfig, data_root: &Path) -> Result<ResolvedWeights> {
    let arch: Arch = cfg.extract.arch.as_str().parse()?;
    let source = WeightsSource::from_config(cfg.extract.weights.as_str(), data_root)?;
    resolve_weights(&source, &arch)
        .with_context(|| format!("finding the backbone weights {source}"))
}

/// Scores every trained fold of `ctx.run` on its test split, or on the data set `on` names
/// (a pipeline file or a folder, see [`OtherDataset`]), and writes the outputs and marker.
/// The checkpoints and test features are verified against their checksums first, even when the
/// marker says the outputs are up to date; `common` gives the commands that rebuild them.
pub fn run(
    ctx: &StageContext,
    common: &CommonArgs,
    checkpoint: Option<&str>,
    on: Option<&Path>,
    device: &DeviceArg,
) -> Result<()> {
    let run = &ctx.run;
    let run_id = &common.run_id;
    // The run's own resolved config decides which features its heads expect.
    let mut cfg = PipelineConfig::load(&run.config()).with_context(|| {
        format!(
            "reading the run config {} (train this run first)",
            run.config().display()
        )
    })?;
    device.apply(&mut cfg)?;
    let checkpoint = checkpoint.unwrap_or(&cfg.evaluate.checkpoint).to_string();
    let folds = run
        .trained_folds()
        .with_context(|| format!("listing the folds of {}", run.path().display()))?;
    if folds.is_empty() {
        bail!(
            "{} has no trained fold (fold<k>/): train this run first",
            run.path().display()
        );
    }
    let checkpoints = folds
        .iter()
        .map(|&k| {
            let dir = run.fold(k).checkpoint(&checkpoint);
            Checkpoint::open(&dir, &common.command("dfd-train", true))
                .with_context(|| format!("opening fold {k}'s checkpoint {}", dir.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let backbone = trained_backbone(&checkpoints[0], &cfg, ctx.data.root())?;
    let target = match on {
        None => Target::own(ctx, common, &cfg, &backbone),
        Some(on) => Target::other(on, ctx, common, &cfg, &backbone)?,
    };
    let test_dir = &target.test_dir;
    let test = TestFeatures::open(test_dir, &target.rebuild)?;
    same_backbone(test_dir, &folds, &checkpoints)?;
    let inputs = inputs_identity(run, &checkpoint, &checkpoints, test_dir)?;
    if marker_records(&target.marker, &inputs) && target.out_dir.join("metrics.json").exists() {
        tracing::info!(
            "{} is up to date with its checkpoints and test features: nothing to do",
            target.out_dir.display()
        );
        return Ok(());
    }
    let manifest = read_manifest(&target.manifest)
        .with_context(|| format!("reading {}", target.manifest.display()))?;
    let difficulty: Vec<Option<&str>> = test
        .ids
        .iter()
        .map(|&id| {
            manifest
                .get(id as usize)
                .and_then(|row| difficulty_of(&row.path))
        })
        .collect();
    let device = dfd_model::parse_device(cfg.extract.device.as_str())?;
    let boot = BootstrapConfig {
        resamples: cfg.evaluate.bootstrap,
        seed: cfg.seed,
        confidence: 0.95,
        threshold: cfg.evaluate.threshold,
    };

    let bar = progress((test.labels.len() * folds.len()) as u64, "rows");
    let bootstrap = (boot.resamples > 0).then_some(&boot);
    let evaluate = |scores: &[f64], what: &str| -> Result<(BinaryReport, Vec<DifficultyRow>)> {
        let metrics =
            BinaryReport::compute(&test.labels, scores, cfg.evaluate.threshold, bootstrap)
                .with_context(|| format!("metrics of {what} on {}", test_dir.display()))?;
        let rows = by_difficulty(&test.labels, scores, &difficulty, cfg.evaluate.threshold)?;
        Ok((metrics, rows))
    };
    let (mut evals, mut raw, mut per_fold) = (Vec::new(), Vec::new(), Vec::new());
    for (&k, fold_checkpoint) in folds.iter().zip(&checkpoints) {
        bar.set_message(format!("fold {k}"));
        let head = load_head(fold_checkpoint, &device)?;
        let fold_raw = with_compute(cfg.train.compute, || {
            test.score(&head, &device, |n| bar.inc(n as u64))
        })?;
        let scores = finite_scores(fold_raw.clone(), &test.ids, &manifest).with_context(|| {
            format!(
                "fold {k} ({}) cannot be evaluated: its weights may be corrupt; retrain it with \
                 `{}`",
                fold_checkpoint.dir().display(),
                common.command("dfd-train", true)
            )
        })?;
        let (metrics, by_difficulty) = evaluate(&scores, &format!("fold {k}"))?;
        evals.push(FoldEval {
            fold: k,
            metrics,
            by_difficulty,
        });
        raw.push(fold_raw);
        per_fold.push(scores);
    }
    bar.finish_and_clear();

    // Every fold's scores are finite here, so their mean is too.
    let ensemble = finite_scores(dfd_model::ensemble(&raw), &test.ids, &manifest)?;
    let table = ScoreTable {
        ids: &test.ids,
        paths: test
            .ids
            .iter()
            .map(|&id| manifest.get(id as usize).map_or("?", |r| r.path.as_str()))
            .collect(),
        labels: &test.labels,
        difficulty: &difficulty,
        folds: &folds,
        per_fold: &per_fold,
        ensemble: &ensemble,
    };
    let out_dir = &target.out_dir;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    table.write_csv(&out_dir.join("scores.csv"))?;
    let (ensemble_metrics, ensemble_difficulty) = evaluate(&ensemble, "the fold ensemble")?;
    let index = read_index(test_dir)?;
    let metrics = EvalMetrics {
        schema_version: SCHEMA_VERSION,
        pipeline: ctx.pipeline.clone(),
        run_id: run_id.to_string(),
        checkpoint,
        threshold: cfg.evaluate.threshold,
        dataset: target.dataset.clone(),
        trained_on: target.trained_on.clone(),
        test_features: test_dir.display().to_string(),
        weights_identity: index.weights_identity().map(str::to_string),
        pretrained: index.meta.get("pretrained").and_then(|p| p.as_bool()),
        checkpoints_written: written_on(&checkpoints[0].dir().join(CHECKPOINT_STATE)),
        ensemble: EnsembleEval {
            folds: folds.clone(),
            metrics: ensemble_metrics,
            by_difficulty: ensemble_difficulty,
            worst: table.worst(WORST_SHOWN),
        },
        cross_validation: CvSummary::from_folds(&evals)?,
        folds: evals,
    };
    write_outputs(
        &metrics,
        out_dir,
        &folds.iter().map(|&k| run.fold(k)).collect::<Vec<_>>(),
    )?;
    print!("{}", report::console_table(&metrics));
    let summary =
        json!({ "folds": folds, "metrics": out_dir.join("metrics.json"), "inputs": inputs });
    write_json_atomic(&target.marker, &summary).context("writing the evaluate marker")
}

/// How many of the worst mistakes of each kind the report lists.
const WORST_SHOWN: usize = 5;

/// The UTC date (`YYYY-MM-DD`) `path` was last written, from the file system: a rerun reports
/// the same date.
fn written_on(path: &Path) -> Option<String> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let days = modified
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs()
        / 86_400;
    Some(civil_date(days as i64))
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The scores as numbers, or an error naming the first test image (manifest path and id) the model
/// could not score.
fn finite_scores(scores: Vec<Score>, ids: &[u32], manifest: &[ManifestRow]) -> Result<Vec<f64>> {
    scores
        .into_iter()
        .zip(ids)
        .map(|(score, &id)| {
            score.map_err(|e| {
                let path = manifest.get(id as usize).map_or("?", |r| r.path.as_str());
                anyhow::anyhow!("test image {path} (manifest id {id}): {e}")
            })
        })
        .collect()
}

/// Hash of everything the eval outputs depend on: the run's config, the scored checkpoint of
/// every fold (weights bytes) and the test features (their index).
fn inputs_identity(
    run: &dfd_layout::RunDir,
    checkpoint: &str,
    checkpoints: &[Checkpoint],
    test_dir: &std::path::Path,
) -> Result<String> {
    use dfd_layout::hash::hash_file;
    let weights = checkpoints
        .iter()
        .map(|c| hash_file(&c.file(CHECKPOINT_WEIGHTS)))
        .collect::<Result<Vec<_>>>()?;
    let test_index = hash_file(&test_dir.join(dfd_layout::shards::INDEX_FILE))?;
    let config = hash_file(&run.config())?;
    Ok(dfd_layout::hash::hash_json(&(
        config, checkpoint, weights, test_index,
    )))
}

/// Writes metrics.json, the three PNGs and both reports into `eval_dir`.
fn write_outputs(
    metrics: &EvalMetrics,
    eval_dir: &std::path::Path,
    folds: &[FoldDir],
) -> Result<()> {
    std::fs::create_dir_all(eval_dir)
        .with_context(|| format!("creating {}", eval_dir.display()))?;
    dfd_layout::atomic::write_json_atomic(&eval_dir.join("metrics.json"), metrics)?;

    let curves = folds
        .iter()
        .zip(&metrics.folds)
        .map(|(dir, f)| fold_curves(dir, f.fold))
        .collect::<Result<Vec<_>>>()?;
    plots::training_curves(&eval_dir.join("curves.png"), &curves)?;

    // The confusion matrix of the first fold (the only one outside cross-validation).
    let first = &metrics.folds[0];
    let title = format!(
        "Test confusion, fold {} (n = {})",
        first.fold, first.metrics.n
    );
    plots::confusion_matrix(
        &eval_dir.join("confusion.png"),
        &first.metrics.confusion,
        &title,
    )?;
    let lines: Vec<RocLine<'_>> = metrics
        .folds
        .iter()
        .map(|f| RocLine {
            label: format!("fold {} (AUC {:.3})", f.fold, f.metrics.roc_auc),
            curve: &f.metrics.roc,
        })
        .collect();
    plots::roc_curves(&eval_dir.join("roc.png"), &lines, "ROC on the test split")?;

    let md = report::markdown_report(metrics);
    dfd_layout::atomic::write_atomic(&eval_dir.join("report.md"), md.as_bytes())?;
    let html = report::html_report(metrics, eval_dir)?;
    dfd_layout::atomic::write_atomic(&eval_dir.join("report.html"), html.as_bytes())
}

/// The training log of a fold as plot points (missing log: empty curves).
fn fold_curves(dir: &FoldDir, fold: u8) -> Result<FoldCurves> {
    let path = dir.metrics();
    let records = if path.exists() {
        runlog::read(&path)?
    } else {
        Vec::new()
    };
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for r in records {
        match r {
            LogRecord::Train {
                step,
                loss,
                objective,
                accuracy,
                ..
            } => train.push(CurvePoint {
                step: step as f64,
                loss,
                objective: objective.unwrap_or(loss),
                accuracy,
            }),
            LogRecord::Val {
                step,
                loss,
                accuracy,
                ..
            } => val.push(CurvePoint {
                step: step as f64,
                loss,
                objective: loss,
                accuracy,
            }),
        }
    }
    Ok(FoldCurves { fold, train, val })
}

#[cfg(test)]
mod tests {
    use super::civil_date;

    #[test]
    fn day_counts_read_as_calendar_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_789), "2026-12-02");
    }
}
