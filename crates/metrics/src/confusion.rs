//! Confusion matrix at a threshold and the metrics derived from it.

use serde::{Deserialize, Serialize};

use crate::input::{validate, validate_threshold};
use crate::Result;

/// Counts at one decision threshold (predicted fake when `score >= threshold`).
///
/// Serialises as sklearn's `confusion_matrix(labels=[0, 1])`: `[[tn, fp], [fn, tp]]`, rows = true
/// class (real, fake), columns = predicted class (real, fake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "[[u64; 2]; 2]", into = "[[u64; 2]; 2]")]
pub struct ConfusionMatrix {
    /// Real predicted real.
    pub tn: u64,
    /// Real predicted fake.
    pub fp: u64,
    /// Fake predicted real.
    pub fn_: u64,
    /// Fake predicted fake.
    pub tp: u64,
}

impl From<[[u64; 2]; 2]> for ConfusionMatrix {
    fn from([[tn, fp], [fn_, tp]]: [[u64; 2]; 2]) -> Self {
        Self { tn, fp, fn_, tp }
    }
}

impl From<ConfusionMatrix> for [[u64; 2]; 2] {
    fn from(m: ConfusionMatrix) -> Self {
        [[m.tn, m.fp], [m.fn_, m.tp]]
    }
}

/// `num / den`, or 0 when `den == 0` (sklearn's `zero_division=0`).
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

impl ConfusionMatrix {
    /// Tallies the predictions `score >= threshold` against `labels`.
    ///
    /// Errors on empty or mismatched input, labels other than 0/1, non-finite scores or threshold.
    pub fn at_threshold(labels: &[u8], scores: &[f64], threshold: f64) -> Result<Self> {
        validate("confusion matrix", labels, scores)?;
        validate_threshold(threshold)?;
        let mut m = Self::from([[0; 2]; 2]);
        for (&label, &score) in labels.iter().zip(scores) {
            let slot = match (label == 1, score >= threshold) {
                (false, false) => &mut m.tn,
                (false, true) => &mut m.fp,
                (true, false) => &mut m.fn_,
                (true, true) => &mut m.tp,
            };
            *slot += 1;
        }
        Ok(m)
    }

    /// Number of samples.
    pub fn total(&self) -> u64 {
        self.tn + self.fp + self.fn_ + self.tp
    }

    /// Fraction of samples classified correctly.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tn + self.tp, self.total())
    }

    /// Mean of the per-class recalls over the classes **present** in the true labels (sklearn's
    /// `balanced_accuracy_score`; with a single class present it is that class's recall).
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = [(self.tn, self.fp), (self.tp, self.fn_)]
            .into_iter()
            .filter(|&(hit, miss)| hit + miss > 0)
            .map(|(hit, miss)| ratio(hit, hit + miss))
            .collect();
        recalls.iter().sum::<f64>() / recalls.len() as f64
    }

    /// tp / (tp + fp); 0 when nothing is predicted fake.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn) (true-positive rate, detection rate of fakes); 0 when there are no fakes.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall, 2tp / (2tp + fp + fn); 0 when tp = fp = fn = 0.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_at_exact_threshold_count_as_fake() {
        let m = ConfusionMatrix::at_threshold(&[0, 1, 0, 1], &[0.5, 0.5, 0.2, 0.1], 0.5).unwrap();
        assert_eq!(<[[u64; 2]; 2]>::from(m), [[1, 1], [1, 1]]);
    }

    #[test]
    fn zero_division_yields_zero_like_sklearn() {
        let m = ConfusionMatrix::at_threshold(&[0, 0, 1], &[0.1, 0.2, 0.3], 0.9).unwrap();
        assert_eq!((m.precision(), m.recall(), m.f1()), (0.0, 0.0, 0.0));
        assert_eq!(m.accuracy(), 2.0 / 3.0);
    }

    #[test]
    fn balanced_accuracy_averages_only_present_classes() {
        let m = ConfusionMatrix::at_threshold(&[1, 1, 1, 1], &[0.9, 0.8, 0.7, 0.1], 0.5).unwrap();
        assert_eq!(m.balanced_accuracy(), 0.75);
    }

    #[test]
    fn serialises_as_sklearn_matrix() {
        let m = ConfusionMatrix {
            tn: 1,
            fp: 2,
            fn_: 3,
            tp: 4,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "[[1,2],[3,4]]");
        assert_eq!(serde_json::from_str::<ConfusionMatrix>(&json).unwrap(), m);
    }
}
