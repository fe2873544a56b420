//! The "camera": global processing applied identically to real faces and to composites after
//! splicing (exposure, white balance, lens blur, sensor noise), so the two classes share every
//! image-wide statistic and differ only where regions were pasted.

use crate::canvas::Canvas;
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Random settings of one shot.
#[derive(Clone, Debug, PartialEq)]
pub struct Camera {
    exposure: f32,
    white_balance: [f32; 3],
    blur_sigma: f32,
    noise_sigma: f32,
}

impl Camera {
    /// Random settings for a `size x size` image: exposure 0.85..1.15, white balance within
    /// ±4% per channel, blur sigma 0.3..0.9 px at 160 px (scaled with size), noise sigma
    /// 0.6..2.5 grey levels.
    pub fn random(rng: &mut impl Rng, size: u32) -> Camera {
        let mut u = |lo: f32, hi: f32| lo + (hi - lo) * rng.random::<f32>();
        Camera {
            exposure: u(0.85, 1.15),
            white_balance: [u(0.96, 1.04), 1.0, u(0.96, 1.04)],
            blur_sigma: u(0.3, 0.9) * size as f32 / 160.0,
            noise_sigma: u(0.6, 2.5) / 255.0,
        }
    }

    /// Applies the shot to `canvas`: colour gain, blur, then Gaussian noise (per channel plus a
    /// shared luminance part) drawn from `rng`.
    pub fn develop(&self, canvas: &mut Canvas, rng: &mut impl Rng) {
        let gain = self.white_balance.map(|w| w * self.exposure);
        canvas.map_pixels(|p| [0, 1, 2].map(|c| p[c] * gain[c]));
        canvas.gaussian_blur(self.blur_sigma);
        let noise = Normal::new(0.0, self.noise_sigma).expect("noise sigma is positive and finite");
        canvas.map_pixels(|p| {
            let luma = noise.sample(rng);
            [0, 1, 2].map(|c| p[c] + 0.7 * luma + 0.5 * noise.sample(rng))
        });
    }
}
