//! Errors of the metric functions.

use crate::input::Class;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// No samples (or no values) at all.
    #[error("no samples to compute {metric} on")]
    Empty { metric: &'static str },
    /// `labels` and `scores` differ in length.
    #[error("{labels} labels but {scores} scores")]
    LengthMismatch { labels: usize, scores: usize },
    /// A label other than 0 (real) or 1 (fake).
    #[error("label {value} at index {index} is neither 0 (real) nor 1 (fake)")]
    InvalidLabel { index: usize, value: u8 },
    /// A NaN or infinite score (or value, for the summary statistics).
    #[error("value {value} at index {index} is not finite")]
    NonFinite { index: usize, value: f64 },
    /// A score outside `[0, 1]` where a probability is required.
    #[error("score {value} at index {index} is not a probability in [0, 1]")]
    NotAProbability { index: usize, value: f64 },
    /// The metric needs both classes, but only one is present.
    #[error("{metric} needs both real and fake samples, but all {count} samples are {present}")]
    SingleClass {
        metric: &'static str,
        present: Class,
        count: usize,
    },
    /// A parameter outside its domain (threshold, quantile, confidence, resample count).
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// Every bootstrap resample held a single class, so no interval can be formed.
    #[error("all {resamples} bootstrap resamples held a single class")]
    NoUsableResamples { resamples: usize },
}
