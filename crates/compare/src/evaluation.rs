//! The headline of one `metrics.json` written by `dfd-evaluate` (schema in
//! `crates/evaluate/README.md`): which model was scored, and its accuracy, AUC, EER and AP.
//!
//! Only the keys read here are declared (serde ignores the others), so this crate needs neither
//! dfd-evaluate nor dfd-metrics. Schema 2 gives the fold ensemble, the data set and whether the
//! backbone was pretrained; schema 1 (before the ensemble) gives its single fold, or the mean over
//! its folds (`cross_validation`), and never says whether the backbone was pretrained.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The model whose scores a row reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Model {
    /// The fold ensemble (mean P(fake) over these folds, what `dfd-predict` uses); one fold's
    /// ensemble is that fold.
    Ensemble(Vec<u8>),
    /// One fold's model (a schema 1 file with a single fold).
    Fold(u8),
    /// The mean of the folds' metrics (a schema 1 file with several folds): no intervals.
    FoldMean(usize),
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Ensemble(folds) if folds.len() == 1 => write!(f, "fold {}", folds[0]),
            Model::Ensemble(folds) => write!(f, "ensemble of {} folds", folds.len()),
            Model::Fold(k) => write!(f, "fold {k}"),
            Model::FoldMean(n) => write!(f, "mean of {n} folds"),
        }
    }
}

/// A value and, when the evaluation bootstrapped it, its 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

/// A metric's value with its optional interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    pub value: f64,
    pub interval: Option<Interval>,
}

/// A model's headline numbers on one test set.
#[derive(Clone, Debug, PartialEq)]
pub struct Scores {
    /// Test images scored.
    pub n: u64,
    pub accuracy: Estimate,
    /// `None` when the file has none (a `null`: one class only).
    pub roc_auc: Option<Estimate>,
    /// The equal error rate.
    pub eer: Option<f64>,
    pub average_precision: Option<f64>,
}

/// What a comparison row takes from one `metrics.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The data set scored (`dataset`); `None` in schema 1.
    pub dataset: Option<String>,
    /// Whether the backbone was pretrained; `None` when the file does not say.
    pub pretrained: Option<bool>,
    /// The backbone's weights identity (`blake3:…`, `random:<seed>`), when recorded.
    pub weights_identity: Option<String>,
    pub model: Model,
    pub scores: Scores,
}

impl Evaluation {
    /// Reads and interprets `path`; an error names the file and what is wrong with it.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let file: MetricsFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("parsing {}", path.display()))?;
        file.headline()
            .with_context(|| format!("interpreting {}", path.display()))
    }
}

/// The subset of `metrics.json` read here.
#[derive(Deserialize)]
struct MetricsFile {
    schema_version: u32,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    weights_identity: Option<String>,
    #[serde(default)]
    pretrained: Option<bool>,
    #[serde(default)]
    ensemble: Option<EnsembleEval>,
    #[serde(default)]
    folds: Vec<FoldEval>,
    #[serde(default)]
    cross_validation: Option<CvSummary>,
}

#[derive(Deserialize)]
struct EnsembleEval {
    folds: Vec<u8>,
    metrics: Report,
}

#[derive(Deserialize)]
struct FoldEval {
    fold: u8,
    metrics: Report,
}

/// `dfd_metrics::BinaryReport`, the keys shown.
#[derive(Deserialize)]
struct Report {
    n: u64,
    accuracy: f64,
    roc_auc: Option<f64>,
    eer: Eer,
    average_precision: Option<f64>,
    #[serde(default)]
    bootstrap: Option<Bootstrap>,
}

#[derive(Deserialize)]
struct Eer {
    rate: Option<f64>,
}

#[derive(Deserialize)]
struct Bootstrap {
    accuracy: Interval,
    roc_auc: Interval,
}

#[derive(Deserialize)]
struct CvSummary {
    accuracy: MeanStd,
    roc_auc: MeanStd,
    eer: MeanStd,
    average_precision: MeanStd,
}

#[derive(Deserialize)]
struct MeanStd {
    mean: Option<f64>,
}

impl MetricsFile {
    fn headline(self) -> Result<Evaluation> {
        let (model, scores) = match self.schema_version {
            2 => {
                let e = self
                    .ensemble
                    .context("schema_version 2 without an `ensemble` entry")?;
                (Model::Ensemble(e.folds), e.metrics.scores())
            }
            1 => Self::schema_1(self.folds, self.cross_validation)?,
            v => bail!("unknown schema_version {v} (this dfd-compare reads versions 1 and 2)"),
        };
        Ok(Evaluation {
            dataset: self.dataset,
            pretrained: self.pretrained,
            weights_identity: self.weights_identity,
            model,
            scores,
        })
    }

    /// Schema 1: the single fold, or the mean over the folds (`cross_validation`).
    fn schema_1(folds: Vec<FoldEval>, cv: Option<CvSummary>) -> Result<(Model, Scores)> {
        let n_folds = folds.len();
        let mut folds = folds.into_iter();
        let first = folds.next().context("no scored fold (`folds` is empty)")?;
        if n_folds == 1 {
            return Ok((Model::Fold(first.fold), first.metrics.scores()));
        }
        let cv =
            cv.with_context(|| format!("{n_folds} folds but no `cross_validation` summary"))?;
        let plain = |value| Estimate {
            value,
            interval: None,
        };
        let accuracy = cv
            .accuracy
            .mean
            .context("`cross_validation.accuracy.mean` is null")?;
        let scores = Scores {
            n: first.metrics.n,
            accuracy: plain(accuracy),
            roc_auc: cv.roc_auc.mean.map(plain),
            eer: cv.eer.mean,
            average_precision: cv.average_precision.mean,
        };
        Ok((Model::FoldMean(n_folds), scores))
    }
}

impl Report {
    fn scores(self) -> Scores {
        let boot = self.bootstrap.as_ref();
        Scores {
            n: self.n,
            accuracy: Estimate {
                value: self.accuracy,
                interval: boot.map(|b| b.accuracy),
            },
            roc_auc: self.roc_auc.map(|value| Estimate {
                value,
                interval: boot.map(|b| b.roc_auc),
            }),
            eer: self.eer.rate,
            average_precision: self.average_precision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Evaluation> {
        serde_json::from_str::<MetricsFile>(text)?.headline()
    }

    const REPORT: &str = r#"{"n": 10, "accuracy": 0.7, "roc_auc": 0.8, "eer": {"rate": 0.3, "threshold": 0.5},
        "average_precision": 0.75, "bootstrap": {"accuracy": {"lower": 0.6, "upper": 0.8},
        "roc_auc": {"lower": 0.7, "upper": 0.9}}}"#;

    #[test]
    fn schema_2_reads_the_ensemble() {
        let text = format!(
            r#"{{"schema_version": 2, "dataset": "d", "pretrained": false, "weights_identity": "random:0",
                "ensemble": {{"folds": [0, 1], "metrics": {REPORT}}}, "folds": []}}"#
        );
        let e = parse(&text).unwrap();
        assert_eq!(e.model, Model::Ensemble(vec![0, 1]));
        assert_eq!(e.model.to_string(), "ensemble of 2 folds");
        assert_eq!(
            (e.pretrained, e.dataset.as_deref()),
            (Some(false), Some("d"))
        );
        let s = e.scores;
        assert_eq!(s.n, 10);
        assert_eq!(
            s.accuracy.interval,
            Some(Interval {
                lower: 0.6,
                upper: 0.8
            })
        );
        assert_eq!(s.roc_auc.unwrap().value, 0.8);
        assert_eq!((s.eer, s.average_precision), (Some(0.3), Some(0.75)));
    }

    #[test]
    fn schema_1_reads_one_fold_or_the_mean() {
        let one =
            format!(r#"{{"schema_version": 1, "folds": [{{"fold": 3, "metrics": {REPORT}}}]}}"#);
        let e = parse(&one).unwrap();
        assert_eq!((e.model.to_string(), e.pretrained), ("fold 3".into(), None));
        let cv = format!(
            r#"{{"schema_version": 1, "folds": [{{"fold": 0, "metrics": {REPORT}}}, {{"fold": 1, "metrics": {REPORT}}}],
                "cross_validation": {{"accuracy": {{"n": 2, "mean": 0.65, "std": 0.1}},
                "roc_auc": {{"n": 2, "mean": 0.7, "std": null}}, "eer": {{"n": 2, "mean": 0.35}},
                "average_precision": {{"n": 2, "mean": 0.72}}}}}}"#
        );
        let e = parse(&cv).unwrap();
        assert_eq!(e.model, Model::FoldMean(2));
        let s = e.scores;
        assert_eq!(
            s.accuracy,
            Estimate {
                value: 0.65,
                interval: None
            }
        );
        assert_eq!(
            (s.n, s.eer, s.average_precision),
            (10, Some(0.35), Some(0.72))
        );
    }

    #[test]
    fn what_cannot_be_read_is_said() {
        for (text, needle) in [
            (r#"{"schema_version": 2, "folds": []}"#, "ensemble"),
            (r#"{"schema_version": 1, "folds": []}"#, "no scored fold"),
            (r#"{"schema_version": 7}"#, "schema_version 7"),
        ] {
            let msg = format!("{:#}", parse(text).unwrap_err());
            assert!(msg.contains(needle), "{msg}");
        }
    }
}
