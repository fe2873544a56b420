//! The evaluate stage: run directory in, `eval/` out.

use anyhow::{bail, Context, Result};
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_WEIGHTS};
use dfd_layout::cli::{mark_done, progress, CommonArgs, Context as StageContext};
use dfd_layout::config::PipelineConfig;
use dfd_layout::manifest::{read_manifest, ManifestRow};
use dfd_layout::runlog::{self, LogRecord};
use dfd_layout::{backbone_key, FoldDir, Split};
use dfd_metrics::{BinaryReport, BootstrapConfig};
use dfd_model::Score;
use serde_json::json;

use crate::features::{load_head, TestFeatures};
use crate::plots::{self, CurvePoint, FoldCurves, RocLine};
use crate::report;
use crate::schema::{
    by_difficulty, difficulty_of, CvSummary, EvalMetrics, FoldEval, SCHEMA_VERSION,
};

/// Scores every trained fold of `ctx.run` and writes the eval directory and stage marker.
/// The checkpoints and test features are verified against their checksums first, even when the
/// stage marker says the outputs are up to date; `common` gives the commands that rebuild them.
pub fn run(ctx: &StageContext, common: &CommonArgs, checkpoint: Option<&str>) -> Result<()> {
    let run = &ctx.run;
    let run_id = &common.run_id;
    // The run's own resolved config decides which features its heads expect.
    let cfg = PipelineConfig::load(&run.config()).with_context(|| {
        format!(
            "reading the run config {} (train this run first)",
            run.config().display()
        )
    })?;
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
    let test_dir = ctx.data.features(
        &cfg.dataset.name,
        &backbone_key(cfg.extract.arch, &cfg.extract.weights),
        cfg.preprocess.size,
        cfg.extract.cut,
        Split::Test,
        0,
    );
    let checkpoints = folds
        .iter()
        .map(|&k| {
            let dir = run.fold(k).checkpoint(&checkpoint);
            Checkpoint::open(&dir, &common.command("dfd-train", true))
                .with_context(|| format!("opening fold {k}'s checkpoint {}", dir.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let test = TestFeatures::open(&test_dir, &common.command("dfd-extract", false))?;
    let inputs = inputs_identity(run, &checkpoint, &checkpoints, &test_dir)?;
    if dfd_layout::cli::done_with(run, "evaluate", &inputs)
        && run.eval().join("metrics.json").exists()
    {
        tracing::info!(
            "{} is up to date with its checkpoints and test features: nothing to do",
            run.eval().display()
        );
        return Ok(());
    }
    let manifest_path = ctx.data.manifest(&cfg.dataset.name);
    let manifest = read_manifest(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
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
    let mut evals = Vec::new();
    for (&k, fold_checkpoint) in folds.iter().zip(&checkpoints) {
        bar.set_message(format!("fold {k}"));
        let head = load_head(fold_checkpoint, &device)?;
        let scores = finite_scores(
            test.score(&head, &device, |n| bar.inc(n as u64))?,
            &test.ids,
            &manifest,
        )
        .with_context(|| {
            format!(
                "fold {k} ({}) cannot be evaluated: its weights may be corrupt; retrain it with \
                 `{}`",
                fold_checkpoint.dir().display(),
                common.command("dfd-train", true)
            )
        })?;
        let bootstrap = (boot.resamples > 0).then_some(&boot);
        let metrics =
            BinaryReport::compute(&test.labels, &scores, cfg.evaluate.threshold, bootstrap)
                .with_context(|| format!("metrics of fold {k} on {}", test_dir.display()))?;
        let by_difficulty =
            by_difficulty(&test.labels, &scores, &difficulty, cfg.evaluate.threshold)?;
        evals.push(FoldEval {
            fold: k,
            metrics,
            by_difficulty,
        });
    }
    bar.finish_and_clear();

    let metrics = EvalMetrics {
        schema_version: SCHEMA_VERSION,
        pipeline: ctx.pipeline.clone(),
        run_id: run_id.to_string(),
        checkpoint,
        threshold: cfg.evaluate.threshold,
        test_features: test_dir.display().to_string(),
        cross_validation: CvSummary::from_folds(&evals)?,
        folds: evals,
    };
    write_outputs(
        &metrics,
        run.eval().as_path(),
        &folds.iter().map(|&k| run.fold(k)).collect::<Vec<_>>(),
    )?;
    print!("{}", report::console_table(&metrics));
    let summary =
        json!({ "folds": folds, "metrics": run.eval().join("metrics.json"), "inputs": inputs });
    mark_done(run, "evaluate", &summary).context("writing the evaluate stage marker")
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
                accuracy,
                ..
            } => train.push(CurvePoint {
                step: step as f64,
                loss,
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
                accuracy,
            }),
        }
    }
    Ok(FoldCurves { fold, train, val })
}
