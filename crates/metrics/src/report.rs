//! All metrics of one scored set, in one serialisable struct.

use serde::{Deserialize, Serialize};

use crate::{
    average_precision, bootstrap, eer, log_loss, roc_auc, roc_curve, Bootstrap, BootstrapConfig,
    ConfusionMatrix, Eer, Result, RocCurve,
};

/// Every metric of a binary scored set (fake = positive), ready to be written as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinaryReport {
    /// Number of samples.
    pub n: u64,
    /// Number of real (label 0) samples.
    pub n_real: u64,
    /// Number of fake (label 1) samples.
    pub n_fake: u64,
    /// Decision threshold of the threshold metrics: predicted fake when `score >= threshold`.
    pub threshold: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// `[[tn, fp], [fn, tp]]`, rows = true (real, fake), columns = predicted (real, fake).
    pub confusion: ConfusionMatrix,
    pub roc_auc: f64,
    pub eer: Eer,
    pub average_precision: f64,
    /// Natural-log cross-entropy with sklearn's clipping (see [`crate::log_loss`]).
    pub log_loss: f64,
    pub roc: RocCurve,
    /// Intervals for accuracy and AUC, when asked for.
    pub bootstrap: Option<Bootstrap>,
}

impl BinaryReport {
    /// Computes every metric of `scores` = P(fake) against `labels` at `threshold`, and the
    /// bootstrap intervals when `bootstrap_config` is given (its own threshold is replaced by
    /// `threshold`, so the accuracy interval matches [`BinaryReport::accuracy`]).
    ///
    /// Errors on invalid input, scores outside `[0, 1]`, or a single class (AUC, EER and AP are
    /// undefined then).
    pub fn compute(
        labels: &[u8],
        scores: &[f64],
        threshold: f64,
        bootstrap_config: Option<&BootstrapConfig>,
    ) -> Result<Self> {
        let confusion = ConfusionMatrix::at_threshold(labels, scores, threshold)?;
        let bootstrap = bootstrap_config
            .map(|c| bootstrap(labels, scores, &BootstrapConfig { threshold, ..*c }))
            .transpose()?;
        Ok(Self {
            n: confusion.total(),
            n_real: confusion.tn + confusion.fp,
            n_fake: confusion.fn_ + confusion.tp,
            threshold,
            accuracy: confusion.accuracy(),
            balanced_accuracy: confusion.balanced_accuracy(),
            precision: confusion.precision(),
            recall: confusion.recall(),
            f1: confusion.f1(),
            confusion,
            roc_auc: roc_auc(labels, scores)?,
            eer: eer(labels, scores)?,
            average_precision: average_precision(labels, scores)?,
            log_loss: log_loss(labels, scores)?,
            roc: roc_curve(labels, scores)?,
            bootstrap,
        })
    }
}
