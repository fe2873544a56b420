//! Finding every evaluation under `runs/` and making one [`Row`] of each.
//!
//! An evaluation is `runs/<pipeline>/<run-id>/eval/metrics.json` (the run's own test split) or
//! `runs/<pipeline>/<run-id>/eval/<data set>/metrics.json` (another data set's). The run's pinned
//! `config.toml` gives what the run was made with. What cannot be read (a run without a readable
//! config, a broken `metrics.json`, a folder that cannot be listed) is one warning line naming
//! the file, and is left out; the other rows are still made.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dfd_layout::{PipelineConfig, RunDir};

use crate::evaluation::{Evaluation, Model, Scores};

/// The name of the file an evaluation writes.
const METRICS: &str = "metrics.json";

/// One evaluation of one run: a row of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub pipeline: String,
    pub run_id: String,
    /// The data set evaluated.
    pub dataset: String,
    /// The data set the run was trained on (`dataset.name` of its config).
    pub trained_on: String,
    /// False for an evaluation on another data set (`eval/<data set>/metrics.json`).
    pub in_domain: bool,
    /// The `metrics.json`, relative to `runs/`, with `/`.
    pub source: String,
    /// `preprocess.size`.
    pub size: u32,
    /// `extract.cut`.
    pub cut: String,
    /// `train.head`.
    pub head: String,
    /// `extract.weights`, as written in the config.
    pub weights: String,
    /// Whether the backbone was pretrained: the evaluation's record, else `false` for
    /// `random:<seed>` weights (never pretrained), else unknown.
    pub pretrained: Option<bool>,
    pub weights_identity: Option<String>,
    pub model: Model,
    pub scores: Scores,
    /// The study's figure, for in-domain rows of a pipeline whose config has `[study]`.
    pub study: Option<StudyFigure>,
}

/// What the study reported for the experiment a pipeline reproduces.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyFigure {
    /// `study.experiment`, when given.
    pub experiment: Option<String>,
    /// `study.test_accuracy`.
    pub test_accuracy: f64,
}

impl Row {
    /// True when the backbone is known not to have been pretrained: the row's numbers then do
    /// not measure detection quality.
    pub fn not_pretrained(&self) -> bool {
        self.pretrained == Some(false)
    }
}

/// Every readable evaluation under `runs`, sorted by pipeline, run, data set (then source), so
/// the same layout always gives the same rows in the same order. A missing `runs` gives none.
pub fn collect(runs: &Path) -> Vec<Row> {
    let mut rows = Vec::new();
    for pipeline in subdirs(runs) {
        for run in subdirs(&pipeline) {
            rows.extend(run_rows(runs, &RunDir::new(run)));
        }
    }
    rows.sort_by(|a, b| {
        (&a.pipeline, &a.run_id, &a.dataset, &a.source).cmp(&(
            &b.pipeline,
            &b.run_id,
            &b.dataset,
            &b.source,
        ))
    });
    rows
}

/// The rows of one run: its in-domain evaluation and those on other data sets, if any.
fn run_rows(runs: &Path, run: &RunDir) -> Vec<Row> {
    let eval = run.eval();
    let mut files: Vec<PathBuf> = subdirs(&eval)
        .into_iter()
        .map(|d| d.join(METRICS))
        .filter(|f| f.is_file())
        .collect();
    let own = eval.join(METRICS);
    if own.is_file() {
        files.insert(0, own.clone());
    }
    if files.is_empty() {
        return Vec::new();
    }
    let config = match PipelineConfig::load(&run.config()) {
        Ok(config) => config,
        Err(e) => {
            tracing::warn!(
                "skipping the evaluations of {}: its config {} cannot be read: {e:#}",
                run.path().display(),
                run.config().display()
            );
            return Vec::new();
        }
    };
    files
        .into_iter()
        .filter_map(|file| {
            let in_domain = file == own;
            match Evaluation::read(&file) {
                Ok(eval) => Some(row(runs, run, &config, &file, in_domain, eval)),
                Err(e) => {
                    tracing::warn!("skipping {}: {e:#}", file.display());
                    None
                }
            }
        })
        .collect()
}

/// The row of one readable evaluation `file` of `run`.
fn row(
    runs: &Path,
    run: &RunDir,
    config: &PipelineConfig,
    file: &Path,
    in_domain: bool,
    eval: Evaluation,
) -> Row {
    let name = |p: &Path| p.file_name().map_or_else(String::new, lossy);
    let dataset = eval.dataset.clone().unwrap_or_else(|| match in_domain {
        true => config.dataset.name.clone(),
        false => file.parent().map_or_else(String::new, name),
    });
    let weights = config.extract.weights.as_str().to_string();
    let random = weights.starts_with("random:");
    let study = config
        .study
        .test_accuracy
        .filter(|_| in_domain)
        .map(|a| StudyFigure {
            experiment: config.study.experiment.clone(),
            test_accuracy: a,
        });
    Row {
        pipeline: run.path().parent().map_or_else(String::new, name),
        run_id: name(run.path()),
        dataset,
        trained_on: config.dataset.name.clone(),
        in_domain,
        source: relative(runs, file),
        size: config.preprocess.size,
        cut: config.extract.cut.to_string(),
        head: config.train.head.to_string(),
        weights,
        pretrained: eval.pretrained.or(random.then_some(false)),
        weights_identity: eval.weights_identity,
        model: eval.model,
        scores: eval.scores,
        study,
    }
}

/// The folders directly in `dir` (following links), sorted; names starting with `.` are left
/// out. A `dir` that does not exist has none; one that cannot be listed is a warning.
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!("skipping {}: cannot list it: {e}", dir.display());
            return Vec::new();
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|entry| {
            entry
                .with_context(|| format!("listing {}", dir.display()))
                .inspect_err(|e| tracing::warn!("skipping an entry of {}: {e:#}", dir.display()))
                .ok()
        })
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// `path` relative to `base`, components joined with `/`.
fn relative(base: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.iter().map(lossy).collect::<Vec<_>>().join("/")
}

/// A file name as text (not-UTF-8 bytes replaced).
fn lossy(name: &std::ffi::OsStr) -> String {
    name.to_string_lossy().into_owned()
}
