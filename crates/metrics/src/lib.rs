//! dfd-metrics: binary-classification metrics over scores, as pure functions.
//!
//! Conventions used throughout:
//! - `labels[i]` is 0 (real) or 1 (fake); **fake is the positive class**.
//! - `scores[i]` is the model's P(fake) (any finite real for the ranking metrics; within `[0, 1]`
//!   for [`log_loss`]). Higher means "more fake".
//! - At a decision threshold `t`, a sample is **predicted fake when `score >= t`** — the same rule
//!   as the ROC thresholds, so an [`Eer::threshold`] can be used as a decision threshold directly.
//! - Functions that are undefined unless both classes are present ([`roc_auc`], [`eer`],
//!   [`average_precision`], [`roc_curve`]) return [`MetricsError::SingleClass`], never NaN.
//!
//! Every metric is checked against scikit-learn on committed fixtures
//! (`scripts/make_metric_fixtures.py` → `tests/fixtures/sklearn_reference.json`).

mod bootstrap;
mod confusion;
mod curve;
mod error;
mod input;
mod log_loss;
mod ranking;
mod report;
mod stats;

pub use bootstrap::{bootstrap, Bootstrap, BootstrapConfig, Interval};
pub use confusion::ConfusionMatrix;
pub use error::MetricsError;
pub use input::Class;
pub use log_loss::{log_loss, LOG_LOSS_EPS};
pub use ranking::{average_precision, eer, roc_auc, roc_curve, Eer, RocCurve};
pub use report::BinaryReport;
pub use stats::{mean_std, percentile, MeanStd};

/// Result alias of this crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
