//! Validation of `(labels, scores)` inputs, shared by every metric.

use serde::{Deserialize, Serialize};

use crate::{MetricsError, Result};

/// One of the two classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Label 0.
    Real,
    /// Label 1, the positive class.
    Fake,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Real => "real",
            Class::Fake => "fake",
        })
    }
}

/// How many samples of each class a validated input holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassCounts {
    pub real: u64,
    pub fake: u64,
}

impl ClassCounts {
    /// Errors with [`MetricsError::SingleClass`] unless both classes are present.
    pub fn require_both(self, metric: &'static str) -> Result<Self> {
        let present = match (self.real, self.fake) {
            (0, _) => Class::Fake,
            (_, 0) => Class::Real,
            _ => return Ok(self),
        };
        Err(MetricsError::SingleClass {
            metric,
            present,
            count: (self.real + self.fake) as usize,
        })
    }
}

/// Checks that the input is non-empty, equally long, labels are 0/1 and scores finite; returns
/// the class counts. `metric` names the caller in the [`MetricsError::Empty`] message.
pub(crate) fn validate(metric: &'static str, labels: &[u8], scores: &[f64]) -> Result<ClassCounts> {
    if labels.len() != scores.len() {
        return Err(MetricsError::LengthMismatch {
            labels: labels.len(),
            scores: scores.len(),
        });
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty { metric });
    }
    if let Some((index, &value)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        return Err(MetricsError::NonFinite { index, value });
    }
    let mut counts = ClassCounts { real: 0, fake: 0 };
    for (index, &value) in labels.iter().enumerate() {
        match value {
            0 => counts.real += 1,
            1 => counts.fake += 1,
            _ => return Err(MetricsError::InvalidLabel { index, value }),
        }
    }
    Ok(counts)
}

/// Checks that `threshold` is finite (an infinite threshold would be a constant classifier that
/// the caller almost certainly did not mean).
pub(crate) fn validate_threshold(threshold: f64) -> Result<()> {
    if threshold.is_finite() {
        Ok(())
    } else {
        Err(MetricsError::InvalidParameter {
            name: "threshold",
            value: threshold,
            reason: "must be finite",
        })
    }
}
