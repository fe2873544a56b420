//! The content of `eval/metrics.json` (schema documented in the crate README) and the pure
//! computations that fill it from scores.

use anyhow::{Context, Result};
use dfd_metrics::{mean_std, roc_auc, BinaryReport, MeanStd};
use serde::{Deserialize, Serialize};

/// Version of the `metrics.json` layout; bumped on incompatible changes (2: the ensemble, the
/// data set, the weights and when the checkpoints were written).
pub const SCHEMA_VERSION: u32 = 2;

/// `eval/metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub schema_version: u32,
    pub pipeline: String,
    pub run_id: String,
    /// Checkpoint tag scored in every fold (`best`, `last`, …).
    pub checkpoint: String,
    /// Decision threshold on P(fake) (predicted fake when `score >= threshold`).
    pub threshold: f64,
    /// The data set whose test split was scored (`dataset.name`), or the other data set scored
    /// whole (`dfd-evaluate --on`, see `trained_on`).
    pub dataset: String,
    /// For an evaluation on another data set: the data set the run was trained on. Absent for
    /// the run's own test split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_on: Option<String>,
    /// The test feature directory that was scored.
    pub test_features: String,
    /// The backbone weights identity of those features (their `index.json`).
    pub weights_identity: Option<String>,
    /// Whether that backbone was pretrained; `false` for `random:<seed>` weights, whose numbers
    /// do not measure detection quality. `None` when the features do not say.
    pub pretrained: Option<bool>,
    /// UTC date the first scored checkpoint was written (its `state.json`), `YYYY-MM-DD`.
    pub checkpoints_written: Option<String>,
    /// The fold ensemble (mean P(fake) over the scored folds, as `dfd-predict` computes it).
    pub ensemble: EnsembleEval,
    /// One entry per trained fold, in fold order, each scored on the whole test split.
    pub folds: Vec<FoldEval>,
    /// Mean ± std over the folds; present when more than one fold was scored.
    pub cross_validation: Option<CvSummary>,
}

/// The test-split metrics of one fold's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldEval {
    pub fold: u8,
    pub metrics: BinaryReport,
    /// Per difficulty of the fakes (file names starting `easy_`, `mid_`, `hard_`); empty when
    /// no test file name carries one.
    pub by_difficulty: Vec<DifficultyRow>,
}

/// The test-split metrics of the fold ensemble, and its worst mistakes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleEval {
    /// The folds averaged.
    pub folds: Vec<u8>,
    pub metrics: BinaryReport,
    pub by_difficulty: Vec<DifficultyRow>,
    pub worst: Mistakes,
}

/// The real images scored most fake and the fakes scored least fake, worst first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mistakes {
    pub real_flagged: Vec<ScoredImage>,
    pub fakes_missed: Vec<ScoredImage>,
}

/// A test image (manifest path, escaped form) and its ensemble P(fake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredImage {
    pub path: String,
    pub p_fake: f64,
}

/// How the fakes of one difficulty fare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifficultyRow {
    /// `easy`, `mid` or `hard`.
    pub difficulty: String,
    /// Number of test fakes of this difficulty.
    pub n_fake: u64,
    /// Fraction of them predicted fake (their recall).
    pub detection_rate: f64,
    /// Their mean P(fake).
    pub mean_score: f64,
    /// ROC AUC of these fakes against all test reals; `None` without reals.
    pub auc_vs_real: Option<f64>,
}

/// Mean ± sample std (ddof = 1) over the folds of the headline metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvSummary {
    pub accuracy: MeanStd,
    pub balanced_accuracy: MeanStd,
    pub f1: MeanStd,
    pub roc_auc: MeanStd,
    pub eer: MeanStd,
    pub average_precision: MeanStd,
    pub log_loss: MeanStd,
}

impl CvSummary {
    /// Summarises `folds`; `None` for fewer than two folds.
    pub fn from_folds(folds: &[FoldEval]) -> Result<Option<Self>> {
        if folds.len() < 2 {
            return Ok(None);
        }
        let over = |metric: fn(&BinaryReport) -> f64| -> Result<MeanStd> {
            let values: Vec<f64> = folds.iter().map(|f| metric(&f.metrics)).collect();
            mean_std(&values).context("summarising the folds")
        };
        Ok(Some(Self {
            accuracy: over(|m| m.accuracy)?,
            balanced_accuracy: over(|m| m.balanced_accuracy)?,
            f1: over(|m| m.f1)?,
            roc_auc: over(|m| m.roc_auc)?,
            eer: over(|m| m.eer.rate)?,
            average_precision: over(|m| m.average_precision)?,
            log_loss: over(|m| m.log_loss)?,
        }))
    }
}

/// The difficulty prefixes of the Real and Fake Face Detection file names.
const DIFFICULTIES: [&str; 3] = ["easy", "mid", "hard"];

/// `easy`, `mid` or `hard` when the file name of `path` (after the last `/`) starts with
/// `easy_`, `mid_` or `hard_`.
pub fn difficulty_of(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    DIFFICULTIES.into_iter().find(|d| {
        name.strip_prefix(d)
            .is_some_and(|rest| rest.starts_with('_'))
    })
}

/// Per-difficulty rows for the fakes whose `difficulty[i]` is set, in easy, mid, hard order
/// (absent difficulties are left out). `labels`, `scores` and `difficulty` are parallel.
pub fn by_difficulty(
    labels: &[u8],
    scores: &[f64],
    difficulty: &[Option<&str>],
    threshold: f64,
) -> Result<Vec<DifficultyRow>> {
    let reals: Vec<f64> = labels
        .iter()
        .zip(scores)
        .filter(|(&y, _)| y == 0)
        .map(|(_, &s)| s)
        .collect();
    let mut rows = Vec::new();
    for d in DIFFICULTIES {
        let fakes: Vec<f64> = (0..labels.len())
            .filter(|&i| labels[i] == 1 && difficulty[i] == Some(d))
            .map(|i| scores[i])
            .collect();
        if fakes.is_empty() {
            continue;
        }
        let auc_vs_real = if reals.is_empty() {
            None
        } else {
            let mut y = vec![0u8; reals.len()];
            y.resize(reals.len() + fakes.len(), 1);
            let s: Vec<f64> = reals.iter().chain(&fakes).copied().collect();
            Some(roc_auc(&y, &s).with_context(|| format!("AUC of the {d} fakes"))?)
        };
        let n = fakes.len() as f64;
        rows.push(DifficultyRow {
            difficulty: d.to_string(),
            n_fake: fakes.len() as u64,
            detection_rate: fakes.iter().filter(|&&s| s >= threshold).count() as f64 / n,
            mean_score: fakes.iter().sum::<f64>() / n,
            auc_vs_real,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difficulty_comes_from_the_file_name_prefix() {
        assert_eq!(difficulty_of("fake/easy_100_1111.jpg"), Some("easy"));
        assert_eq!(difficulty_of("training_fake/mid_5_0001.jpg"), Some("mid"));
        assert_eq!(difficulty_of("hard_33_1000.jpg"), Some("hard"));
        assert_eq!(difficulty_of("easy_dir/real_00001.jpg"), None);
        assert_eq!(difficulty_of("fake/easyish.jpg"), None);
    }

    #[test]
    fn difficulty_rows_against_hand_counts() {
        let labels = [0, 0, 1, 1, 1, 1, 1];
        let scores = [0.2, 0.6, 0.9, 0.4, 0.7, 0.1, 0.55];
        let diff = [
            None,
            None,
            Some("easy"),
            Some("easy"),
            Some("hard"),
            Some("hard"),
            None,
        ];
        let rows = by_difficulty(&labels, &scores, &diff, 0.5).unwrap();
        assert_eq!(rows.len(), 2, "no mid fakes, the unnamed fake is ignored");
        let easy = &rows[0];
        assert_eq!((easy.difficulty.as_str(), easy.n_fake), ("easy", 2));
        assert_eq!(easy.detection_rate, 0.5);
        assert!((easy.mean_score - 0.65).abs() < 1e-12);
        // easy fakes {0.9, 0.4} vs reals {0.2, 0.6}: pairs won 2 + 1 of 4.
        assert_eq!(easy.auc_vs_real, Some(0.75));
        let hard = &rows[1];
        // hard fakes {0.7, 0.1} vs reals {0.2, 0.6}: 2 + 0 of 4.
        assert_eq!(
            (hard.n_fake, hard.detection_rate, hard.auc_vs_real),
            (2, 0.5, Some(0.5))
        );
    }

    #[test]
    fn cv_summary_needs_two_folds() {
        let report =
            BinaryReport::compute(&[0, 1, 0, 1], &[0.1, 0.8, 0.6, 0.7], 0.5, None).unwrap();
        let fold = |k, metrics: BinaryReport| FoldEval {
            fold: k,
            metrics,
            by_difficulty: vec![],
        };
        assert_eq!(
            CvSummary::from_folds(&[fold(0, report.clone())]).unwrap(),
            None
        );
        let mut other = report.clone();
        other.accuracy = 0.25;
        let s = CvSummary::from_folds(&[fold(0, report), fold(1, other)])
            .unwrap()
            .unwrap();
        assert_eq!(s.accuracy.mean, 0.5);
        // Sample std of {0.75, 0.25}: sqrt(2 · 0.25² / 1).
        assert!((s.accuracy.std.unwrap() - 0.125f64.sqrt()).abs() < 1e-12);
    }
}
