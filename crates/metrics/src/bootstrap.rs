//! Seeded bootstrap percentile intervals for accuracy and ROC AUC.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::curve::{descending_order, operating_points, trapezoid_auc};
use crate::input::{validate, validate_threshold};
use crate::stats::sorted_percentile;
use crate::{MetricsError, Result};

/// How to bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// Number of resamples drawn (each of the input's size, with replacement).
    pub resamples: usize,
    /// Seed of the ChaCha8 generator: the same seed and input give the same intervals.
    pub seed: u64,
    /// Central coverage of the interval, in `(0, 1)`; 0.95 gives the 2.5th–97.5th percentiles.
    pub confidence: f64,
    /// Decision threshold for the accuracy (predicted fake when `score >= threshold`).
    pub threshold: f64,
}

impl Default for BootstrapConfig {
    /// 1000 resamples, seed 0, 95 %, threshold 0.5.
    fn default() -> Self {
        Self {
            resamples: 1000,
            seed: 0,
            confidence: 0.95,
            threshold: 0.5,
        }
    }
}

/// A percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lower: f64,
    pub upper: f64,
}

impl Interval {
    /// Whether `value` lies in `[lower, upper]`.
    pub fn contains(&self, value: f64) -> bool {
        (self.lower..=self.upper).contains(&value)
    }
}

/// Bootstrap percentile intervals and how they were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bootstrap {
    pub config: BootstrapConfig,
    /// Resamples that held both classes and entered the intervals.
    pub used: usize,
    /// Resamples skipped because they held a single class (AUC undefined); skipped for the
    /// accuracy too, so both intervals come from the same resamples.
    pub skipped_single_class: usize,
    pub accuracy: Interval,
    pub roc_auc: Interval,
}

/// Draws `config.resamples` resamples of the samples with replacement (indices uniform from a
/// ChaCha8 generator seeded with `config.seed`), computes accuracy and ROC AUC on each, and
/// returns the `(1 − confidence)/2` and `(1 + confidence)/2` percentiles (numpy's linear
/// interpolation) of each.
///
/// Errors on invalid input, a single-class input, zero resamples, a confidence outside `(0, 1)`,
/// or when every resample holds a single class.
pub fn bootstrap(labels: &[u8], scores: &[f64], config: &BootstrapConfig) -> Result<Bootstrap> {
    validate("bootstrap", labels, scores)?.require_both("bootstrap")?;
    validate_threshold(config.threshold)?;
    if config.resamples == 0 {
        return Err(MetricsError::InvalidParameter {
            name: "resamples",
            value: 0.0,
            reason: "need at least one resample",
        });
    }
    if !(config.confidence > 0.0 && config.confidence < 1.0) {
        return Err(MetricsError::InvalidParameter {
            name: "confidence",
            value: config.confidence,
            reason: "must be in (0, 1)",
        });
    }
    let n = labels.len();
    let order = descending_order(scores);
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut multiplicity = vec![0u64; n];
    let (mut accuracies, mut aucs) = (Vec::new(), Vec::new());
    for _ in 0..config.resamples {
        multiplicity.fill(0);
        for _ in 0..n {
            multiplicity[rng.random_range(0..n)] += 1;
        }
        let (mut real, mut fake, mut correct) = (0, 0, 0);
        for ((&m, &y), &s) in multiplicity.iter().zip(labels).zip(scores) {
            if y == 1 {
                fake += m;
            } else {
                real += m;
            }
            if (s >= config.threshold) == (y == 1) {
                correct += m;
            }
        }
        if real == 0 || fake == 0 {
            continue;
        }
        accuracies.push(correct as f64 / n as f64);
        let points = operating_points(&order, labels, scores, |i| multiplicity[i]);
        aucs.push(trapezoid_auc(&points, real, fake));
    }
    if accuracies.is_empty() {
        return Err(MetricsError::NoUsableResamples {
            resamples: config.resamples,
        });
    }
    let tail = 100.0 * (1.0 - config.confidence) / 2.0;
    let interval = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        Interval {
            lower: sorted_percentile(&values, tail),
            upper: sorted_percentile(&values, 100.0 - tail),
        }
    };
    Ok(Bootstrap {
        config: *config,
        used: accuracies.len(),
        skipped_single_class: config.resamples - accuracies.len(),
        accuracy: interval(accuracies),
        roc_auc: interval(aucs),
    })
}
