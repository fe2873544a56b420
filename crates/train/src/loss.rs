//! The training objective: (optionally class-weighted) cross-entropy over the two logits, plus
//! `l1 · Σ|θ|` over the trainable parameters.
//!
//! The cross-entropy goes through candle's autograd; the L1 term is added by hand (its value to
//! the loss from [`crate::optim::Optimizer::abs_sum`], `l1 · sign(θ)` to each gradient inside
//! [`crate::optim::Optimizer::step`]), which is exact and avoids building a graph over every
//! parameter.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor, D};
use dfd_layout::config::ClassWeights;

/// Mean negative log-likelihood of `targets` (u32, N) under `logits` (N×2), weighted per class
/// as PyTorch's `cross_entropy(weight=w)`: `Σ w[yᵢ]·nllᵢ / Σ w[yᵢ]`.
pub fn cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: Option<[f32; 2]>,
) -> Result<Tensor> {
    let nll = candle_nn::ops::log_softmax(logits, D::Minus1)
        .and_then(|lp| lp.gather(&targets.unsqueeze(1)?, 1))
        .and_then(|lp| lp.squeeze(1))
        .and_then(|lp| lp.neg())
        .context("computing the cross-entropy")?;
    let loss = match weights {
        None => nll.mean_all(),
        Some(w) => {
            let w = Tensor::new(&w, logits.device())
                .and_then(|w| w.gather(targets, 0))
                .context("gathering class weights")?;
            (&nll * &w)
                .and_then(|t| t.sum_all())
                .and_then(|s| s.broadcast_div(&w.sum_all()?))
        }
    };
    loss.context("reducing the cross-entropy")
}

/// The class weights `[w_real, w_fake]` for the training labels, or `None` for unweighted.
/// `balanced` is scikit-learn's `n / (2 · n_c)`.
pub fn class_weights(cfg: &ClassWeights, labels: &[u8]) -> Result<Option<[f32; 2]>> {
    Ok(match cfg {
        ClassWeights::Named(n) if n == "none" => None,
        ClassWeights::Named(_) => {
            let fake = labels.iter().filter(|&&l| l == 1).count();
            let real = labels.len() - fake;
            anyhow::ensure!(
                real > 0 && fake > 0,
                "class_weights = \"balanced\" needs both classes in the training rows ({real} real, {fake} fake)"
            );
            let n = labels.len() as f64;
            Some([
                (n / (2.0 * real as f64)) as f32,
                (n / (2.0 * fake as f64)) as f32,
            ])
        }
        ClassWeights::Explicit([r, f]) => Some([*r as f32, *f as f32]),
    })
}

/// Fraction of rows whose fake logit is at least the real one (P(fake) ≥ ½).
pub fn accuracy(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let pred = logits
        .narrow(1, 1, 1)
        .and_then(|f| f.ge(&logits.narrow(1, 0, 1)?))
        .and_then(|p| p.squeeze(1))
        .and_then(|p| p.to_dtype(DType::U32))
        .context("predicting classes")?;
    let correct = pred
        .eq(targets)
        .and_then(|c| c.to_dtype(DType::F64))
        .and_then(|c| c.sum_all())
        .and_then(|c| c.to_scalar::<f64>())
        .context("counting correct predictions")?;
    Ok(correct / targets.elem_count() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn weighted_cross_entropy_matches_the_formula() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]], &dev).unwrap();
        let y = Tensor::new(&[0u32, 1, 1], &dev).unwrap();
        let nll = |a: f64, b: f64, t: usize| -> f64 {
            let z = (a.exp() + b.exp()).ln();
            z - [a, b][t]
        };
        let n = [nll(2.0, 0.0, 0), nll(0.0, 1.0, 1), nll(1.0, 1.0, 1)];
        let plain: f64 = cross_entropy(&logits, &y, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .into();
        assert!((plain - n.iter().sum::<f64>() / 3.0).abs() < 1e-6);
        let w: f64 = cross_entropy(&logits, &y, Some([3.0, 1.0]))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .into();
        assert!((w - (3.0 * n[0] + n[1] + n[2]) / 5.0).abs() < 1e-6);
        assert!((accuracy(&logits, &y).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn balanced_weights_are_inverse_frequency() {
        let w = class_weights(&ClassWeights::Named("balanced".into()), &[0, 0, 0, 1]).unwrap();
        assert_eq!(w, Some([4.0 / 6.0, 2.0]));
        assert_eq!(
            class_weights(&ClassWeights::default(), &[0, 1]).unwrap(),
            None
        );
    }
}
