//! P(fake): the one place where a head's two logits become the probability that an image is fake.
//!
//! Every stage that reports a score (train's validation, evaluate, predict and its fold ensemble)
//! goes through [`p_fake`] and [`ensemble`], so the formula and the finite check exist once. A
//! row whose logits are not finite (corrupt weights, overflow) is a [`NonFinite`] error, never a
//! number: a NaN can never be thresholded into the label `real`.

use std::fmt;

use candle_core::{DType, Tensor};

/// A row whose logits are NaN or infinite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonFinite {
    /// The row within the batch.
    pub row: usize,
    /// Its logits (real, fake); at least one is NaN or infinite.
    pub logits: [f32; 2],
}

impl fmt::Display for NonFinite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the model gave non-finite logits ({}, {}): its weights are corrupt or the values overflowed",
            self.logits[0], self.logits[1]
        )
    }
}

impl std::error::Error for NonFinite {}

/// One row's score: P(fake) in [0, 1], or why there is none.
pub type Score = Result<f64, NonFinite>;

/// P(fake) of each row of `logits` (N×2, real then fake, any float dtype): the softmax's second
/// column, `1 / (1 + exp(l_real − l_fake))`, computed in f64. Always in [0, 1] for finite logits;
/// a row with a NaN or infinite logit gives [`NonFinite`].
pub fn p_fake(logits: &Tensor) -> candle_core::Result<Vec<Score>> {
    let (_, classes) = logits.dims2()?;
    if classes != 2 {
        candle_core::bail!("P(fake) needs N×2 logits (real, fake), got {classes} columns");
    }
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    Ok(rows
        .into_iter()
        .enumerate()
        .map(|(row, l)| {
            let logits = [l[0], l[1]];
            if logits.iter().all(|v| v.is_finite()) {
                Ok(1.0 / (1.0 + (f64::from(l[0]) - f64::from(l[1])).exp()))
            } else {
                Err(NonFinite { row, logits })
            }
        })
        .collect())
}

/// The fold ensemble: for each image, the mean of the heads' P(fake) (`per_head[h][i]`). An image
/// any head could not score is not scored (that head's [`NonFinite`] is kept).
///
/// # Panics
/// When the heads scored different numbers of images, or there is no head.
pub fn ensemble(per_head: &[Vec<Score>]) -> Vec<Score> {
    let n = per_head.first().expect("at least one head").len();
    assert!(
        per_head.iter().all(|h| h.len() == n),
        "every head scores the same images"
    );
    (0..n)
        .map(|i| {
            let mut sum = 0.0;
            for head in per_head {
                sum += head[i]?;
            }
            Ok(sum / per_head.len() as f64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn softmax_column_and_non_finite_rows() {
        let logits = Tensor::new(
            &[
                [0.0f32, 0.0],
                [1.0, 3.0],
                [f32::NAN, 0.0],
                [0.0, f32::INFINITY],
                [-200.0, 200.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let s = p_fake(&logits).unwrap();
        assert_eq!(s[0], Ok(0.5));
        let want = (3.0f64).exp() / ((1.0f64).exp() + (3.0f64).exp());
        assert!((s[1].unwrap() - want).abs() < 1e-12);
        assert_eq!(s[2].unwrap_err().row, 2);
        assert_eq!(s[3].unwrap_err().row, 3);
        assert_eq!(s[4], Ok(1.0), "large finite logits saturate, never NaN");
        let msg = s[2].unwrap_err().to_string();
        assert!(msg.contains("NaN") && msg.contains("corrupt"), "{msg}");
    }

    #[test]
    fn ensemble_is_the_mean_and_keeps_failures() {
        let bad = NonFinite {
            row: 1,
            logits: [f32::NAN, 0.0],
        };
        let a = vec![Ok(0.2), Err(bad), Ok(1.0)];
        let b = vec![Ok(0.4), Ok(0.5), Ok(0.0)];
        let e = ensemble(&[a, b]);
        assert!((e[0].unwrap() - 0.3).abs() < 1e-15);
        assert_eq!(e[1].unwrap_err().row, bad.row);
        assert_eq!(e[2], Ok(0.5));
    }

    #[test]
    fn wrong_width_is_refused() {
        let logits = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(p_fake(&logits).is_err());
    }
}
