//! Binary cross-entropy of probabilistic predictions.

use crate::input::validate;
use crate::{MetricsError, Result};

/// Clipping bound: probabilities are clipped to `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]` before the
/// logarithm, as sklearn ≥ 1.5 does (`np.finfo(float64).eps` = 2⁻⁵²), so a confidently wrong
/// prediction costs at most `−ln(2⁻⁵²) ≈ 36.04` instead of infinity.
pub const LOG_LOSS_EPS: f64 = f64::EPSILON;

/// Mean negative log-likelihood (natural log): `−mean(y·ln p + (1 − y)·ln(1 − p))`, clipping
/// `p` for fakes and `1 − p` for reals to `[eps, 1 − eps]` exactly like sklearn's `log_loss`
/// (which clips both columns of `[1 − p, p]`).
///
/// Errors on invalid input or a score outside `[0, 1]`. A single class is fine.
pub fn log_loss(labels: &[u8], scores: &[f64]) -> Result<f64> {
    validate("log loss", labels, scores)?;
    if let Some((index, &value)) = scores
        .iter()
        .enumerate()
        .find(|(_, s)| !(0.0..=1.0).contains(*s))
    {
        return Err(MetricsError::NotAProbability { index, value });
    }
    let clip = |p: f64| p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
    let total: f64 = labels
        .iter()
        .zip(scores)
        .map(|(&y, &p)| -(if y == 1 { clip(p) } else { clip(1.0 - p) }).ln())
        .sum();
    Ok(total / labels.len() as f64)
}
