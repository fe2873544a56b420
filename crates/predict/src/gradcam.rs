//! Grad-CAM (Selvaraju et al., 2017) over a convolutional activation, and the bilinear upsampling
//! that brings a map to the image's size.
//!
//! The explained score is the log-odds of "fake", `logit_fake − logit_real`: it is monotone in
//! P(fake) (softmax over two logits), so the map shows where the evidence *for fake* lies, whatever
//! the predicted label.

use candle_core::{Result, Tensor, Var};

/// What [`explain`] returns for a batch of N images.
pub struct Explained {
    /// The head's logits N×2 (real, fake), detached; [`dfd_model::p_fake`] turns them into scores.
    pub logits: Tensor,
    /// Grad-CAM maps N×h×w at the activation's resolution, each in [0, 1] (see [`grad_cam`]).
    pub cam: Tensor,
}

/// Runs `tail` (activation N×C×h×w → logits N×2) with the activation `maps` as a graph leaf,
/// back-propagates the summed log-odds `Σ_n (logit_fake − logit_real)` to it, and turns the
/// gradient into Grad-CAM maps. Images of a batch do not interact in `tail` (eval mode), so the
/// gradient of the sum is each image's own gradient.
pub fn explain(maps: &Tensor, tail: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Explained> {
    let leaf = Var::from_tensor(maps)?;
    let logits = tail(leaf.as_tensor())?;
    let log_odds = (logits.narrow(1, 1, 1)? - logits.narrow(1, 0, 1)?)?;
    let grads = log_odds.sum_all()?.backward()?;
    let grad = match grads.get(leaf.as_tensor()) {
        Some(grad) => grad.clone(),
        // The score does not depend on the activation at all (e.g. an all-zero head).
        None => maps.zeros_like()?,
    };
    let cam = grad_cam(maps, &grad)?;
    Ok(Explained {
        logits: logits.detach(),
        cam,
    })
}

/// Grad-CAM maps from an activation `A` (N×C×h×w) and the gradient of the score with respect to it
/// (same shape): channel weights `α_c = mean_{h,w} ∂score/∂A_c`, map `ReLU(Σ_c α_c A_c)`, then each
/// map divided by its maximum so it lies in [0, 1] with 1 at the strongest evidence. A map with
/// no positive value (nothing in the image raises the score) stays all zeros.
pub fn grad_cam(maps: &Tensor, grads: &Tensor) -> Result<Tensor> {
    let alpha = grads.mean_keepdim((2, 3))?;
    let cam = maps.broadcast_mul(&alpha)?.sum(1)?.relu()?;
    let peak = cam.max_keepdim(2)?.max_keepdim(1)?;
    // Where the peak is 0 the map is all zeros: divide by 1 there instead.
    let safe_peak = peak.eq(0f32)?.where_cond(&peak.ones_like()?, &peak)?;
    cam.broadcast_div(&safe_peak)
}

/// Resizes a row-major `h×w` map to `out_h×out_w` bilinearly with half-pixel centres and edge
/// clamping, as PyTorch's `F.interpolate(mode="bilinear", align_corners=False)`. Every output is a
/// convex combination of inputs, so values stay within the input's range.
pub fn upsample_bilinear(
    map: &[f32],
    (h, w): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> Vec<f32> {
    assert_eq!(
        map.len(),
        h * w,
        "map of {} values is not {h}×{w}",
        map.len()
    );
    let rows: Vec<(usize, usize, f32)> = (0..out_h).map(|y| source_index(y, h, out_h)).collect();
    let cols: Vec<(usize, usize, f32)> = (0..out_w).map(|x| source_index(x, w, out_w)).collect();
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, fy) in &rows {
        for &(x0, x1, fx) in &cols {
            let top = lerp(map[y0 * w + x0], map[y0 * w + x1], fx);
            let bottom = lerp(map[y1 * w + x0], map[y1 * w + x1], fx);
            out.push(lerp(top, bottom, fy));
        }
    }
    out
}

/// `a + (b − a)·t`, kept within [min(a, b), max(a, b)] despite rounding (and exactly `a` when
/// `a == b`).
fn lerp(a: f32, b: f32, t: f32) -> f32 {
    (a + (b - a) * t).clamp(a.min(b), a.max(b))
}

/// The two source indices and the weight of the second for output index `i` of `out` along an
/// axis of `len` inputs (half-pixel centres, clamped to the edges).
fn source_index(i: usize, len: usize, out: usize) -> (usize, usize, f32) {
    let scale = len as f32 / out as f32;
    let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
    let i0 = (src.floor() as usize).min(len - 1);
    let i1 = (i0 + 1).min(len - 1);
    (i0, i1, src - i0 as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Module};
    use candle_nn::Linear;

    fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(values, shape, &Device::Cpu).unwrap()
    }

    fn flat(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn grad_cam_matches_a_hand_computed_map() {
        // One image, two channels of 2×2. α = (mean(g0), mean(g1)) = (1, −0.5).
        let maps = tensor(&[1., 2., 3., 4., 4., 2., 2., 0.], &[1, 2, 2, 2]);
        let grads = tensor(&[1., 1., 1., 1., -1., 0., -1., 0.], &[1, 2, 2, 2]);
        // Σ α A = [1−2, 2−1, 3−1, 4−0] = [−1, 1, 2, 4] → ReLU → [0, 1, 2, 4] → / 4.
        assert_eq!(
            flat(&grad_cam(&maps, &grads).unwrap()),
            [0.0, 0.25, 0.5, 1.0]
        );
    }

    #[test]
    fn grad_cam_without_positive_evidence_is_all_zero() {
        let maps = tensor(&[1., 2., 3., 4., 1., 1., 1., 1.], &[2, 1, 2, 2]);
        let grads = tensor(&[-1., -1., -1., -1., 0., 0., 0., 0.], &[2, 1, 2, 2]);
        let cam = flat(&grad_cam(&maps, &grads).unwrap());
        assert_eq!(cam, [0.0; 8]);
    }

    /// With global average pooling and a linear layer, Grad-CAM reduces to the class activation
    /// map of Zhou et al.: ReLU(Σ_c (w_fake,c − w_real,c) A_c), normalised. Computed here with
    /// plain loops as the independent reference for `explain`.
    #[test]
    fn explain_equals_the_closed_form_cam_of_a_pooled_linear_head() {
        let (n, c, h, w) = (2, 3, 2, 3);
        let values: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 37) % 11) as f32 / 5.0 - 0.6)
            .collect();
        let maps = tensor(&values, &[n, c, h, w]);
        let weight = [0.3f32, -0.2, 0.5, -0.4, 0.6, 0.1];
        let linear = Linear::new(tensor(&weight, &[2, c]), Some(tensor(&[0.1, -0.1], &[2])));
        let explained = explain(&maps, |a| linear.forward(&a.mean((2, 3))?)).unwrap();

        let diff: Vec<f32> = (0..c).map(|k| weight[c + k] - weight[k]).collect();
        let cam = flat(&explained.cam);
        let p: Vec<f64> = dfd_model::p_fake(&explained.logits)
            .unwrap()
            .into_iter()
            .map(|s| s.unwrap())
            .collect();
        for img in 0..n {
            let raw: Vec<f32> = (0..h * w)
                .map(|px| {
                    (0..c)
                        .map(|k| diff[k] * values[(img * c + k) * h * w + px])
                        .sum::<f32>()
                        .max(0.0)
                })
                .collect();
            let peak = raw.iter().copied().fold(0.0, f32::max);
            for px in 0..h * w {
                let expected = if peak > 0.0 { raw[px] / peak } else { 0.0 };
                assert!(
                    (cam[img * h * w + px] - expected).abs() < 1e-5,
                    "image {img} pixel {px}"
                );
            }
            let pooled: Vec<f32> = (0..c)
                .map(|k| {
                    values[(img * c + k) * h * w..][..h * w].iter().sum::<f32>() / (h * w) as f32
                })
                .collect();
            let logit = |row: usize, bias: f32| {
                bias + (0..c).map(|k| weight[row * c + k] * pooled[k]).sum::<f32>()
            };
            let expected_p = 1.0 / (1.0 + f64::from(logit(0, 0.1) - logit(1, -0.1)).exp());
            assert!(
                (p[img] - expected_p).abs() < 1e-6,
                "image {img}: {} vs {expected_p}",
                p[img]
            );
        }
    }

    #[test]
    fn explain_of_a_score_independent_of_the_maps_gives_zero_maps() {
        let maps = tensor(&[1., 2., 3., 4.], &[1, 1, 2, 2]);
        let explained =
            explain(&maps, |_| Tensor::zeros((1, 2), DType::F32, &Device::Cpu)).unwrap();
        assert_eq!(flat(&explained.cam), [0.0; 4]);
        assert_eq!(dfd_model::p_fake(&explained.logits).unwrap(), [Ok(0.5)]);
    }

    /// Reference values from `torch.nn.functional.interpolate(x, size=(4, 6), mode="bilinear",
    /// align_corners=False)` on x = [[0, 1, 2], [3, 4, 5]] (1×1×2×3), computed by hand from its
    /// half-pixel formula: rows map to −0.25, 0.25, 0.75, 1.25 → clamped 0, 0.25, 0.75, 1;
    /// columns to the same pattern over three inputs.
    #[test]
    fn upsampling_matches_pytorch_bilinear_without_corner_alignment() {
        let map = [0., 1., 2., 3., 4., 5.];
        let out = upsample_bilinear(&map, (2, 3), (4, 6));
        let row = |base: f32| [0.0, 0.25, 0.75, 1.25, 1.75, 2.0].map(|v: f32| v + base);
        let expected: Vec<f32> = [0.0, 0.75, 2.25, 3.0]
            .iter()
            .flat_map(|&b| row(b))
            .collect();
        assert_eq!(out.len(), expected.len());
        for (i, (o, e)) in out.iter().zip(&expected).enumerate() {
            assert!((o - e).abs() < 1e-6, "index {i}: {o} vs {e}");
        }
    }

    #[test]
    fn upsampled_maps_stay_finite_and_in_the_unit_interval() {
        let map = [0.0, 1.0, 0.3, 0.7, 0.0, 0.5, 1.0, 0.2, 0.9];
        for size in [(1, 1), (3, 3), (7, 5), (64, 64)] {
            let out = upsample_bilinear(&map, (3, 3), size);
            assert_eq!(out.len(), size.0 * size.1);
            assert!(
                out.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{size:?}"
            );
        }
        assert_eq!(upsample_bilinear(&[0.4], (1, 1), (5, 5)), vec![0.4; 25]);
    }
}
