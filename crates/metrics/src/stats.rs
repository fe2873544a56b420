//! Summary statistics: percentiles and mean ± standard deviation.

use serde::{Deserialize, Serialize};

use crate::{MetricsError, Result};

/// Mean and sample standard deviation of a set of values (e.g. one metric over CV folds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    /// Number of values.
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (ddof = 1, numpy's `std(ddof=1)`); `None` for a single value,
    /// where it is undefined.
    pub std: Option<f64>,
}

/// `0.8123 ± 0.0210 (n=5)`, or `0.8123 (n=1)` without a standard deviation.
impl std::fmt::Display for MeanStd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.std {
            Some(std) => write!(f, "{:.4} ± {std:.4} (n={})", self.mean, self.n),
            None => write!(f, "{:.4} (n={})", self.mean, self.n),
        }
    }
}

/// Mean and sample standard deviation of `values`. Errors when empty or a value is not finite.
pub fn mean_std(values: &[f64]) -> Result<MeanStd> {
    check_values("mean ± std", values)?;
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| {
        let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        (ss / (n - 1) as f64).sqrt()
    });
    Ok(MeanStd { n, mean, std })
}

/// The `q`-th percentile (`q` in `[0, 100]`) with linear interpolation between the closest
/// ranks, numpy's default `np.percentile(values, q)`. Errors when empty, a value is not finite,
/// or `q` is outside `[0, 100]`.
pub fn percentile(values: &[f64], q: f64) -> Result<f64> {
    check_values("percentile", values)?;
    if !(0.0..=100.0).contains(&q) {
        return Err(MetricsError::InvalidParameter {
            name: "q",
            value: q,
            reason: "percentile must be in [0, 100]",
        });
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted_percentile(&sorted, q))
}

/// [`percentile`] of already sorted, non-empty values.
pub(crate) fn sorted_percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

fn check_values(metric: &'static str, values: &[f64]) -> Result<()> {
    if values.is_empty() {
        return Err(MetricsError::Empty { metric });
    }
    match values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((index, &value)) => Err(MetricsError::NonFinite { index, value }),
        None => Ok(()),
    }
}
