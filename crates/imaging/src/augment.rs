//! Seeded training-time augmentation: one source image → one random S×S variant.

use image::RgbImage;
use rand::Rng;

use crate::pixel_ops;
use crate::resize::{resize_center_crop, resize_region};

/// Probabilities and ranges of each augmentation step. Every `*_p` is a probability in `[0, 1]`;
/// every `[lo, hi]` range must have `lo <= hi`. Defaults are moderate, face-photo friendly values
/// (the same as `dfd_layout::config::AugmentConfig`'s).
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentParams {
    /// Probability of a random resized crop (else the plain `Resize` + `CenterCrop`).
    pub crop_p: f64,
    /// Crop area as a fraction of the source area (torchvision `RandomResizedCrop.scale`).
    pub crop_scale: [f64; 2],
    /// Crop aspect ratio width/height (torchvision `RandomResizedCrop.ratio`).
    pub crop_ratio: [f64; 2],
    /// Probability of a rotation by an angle uniform in `[-rotate_max_deg, rotate_max_deg]`.
    pub rotate_p: f64,
    /// Largest rotation, degrees.
    pub rotate_max_deg: f64,
    /// Probability of a horizontal flip.
    pub hflip_p: f64,
    /// Probability of colour jitter (brightness, contrast, saturation, in that order).
    pub jitter_p: f64,
    /// Brightness factor uniform in `[1 - brightness, 1 + brightness]`.
    pub brightness: f64,
    /// Contrast factor uniform in `[1 - contrast, 1 + contrast]`.
    pub contrast: f64,
    /// Saturation factor uniform in `[1 - saturation, 1 + saturation]`.
    pub saturation: f64,
    /// Probability of a Gaussian blur.
    pub blur_p: f64,
    /// Blur sigma range, pixels (of the S×S output).
    pub blur_sigma: [f64; 2],
    /// Probability of a JPEG re-compression.
    pub jpeg_p: f64,
    /// JPEG quality range (1..=100), inclusive.
    pub jpeg_quality: [u8; 2],
}

impl Default for AugmentParams {
    fn default() -> Self {
        AugmentParams {
            crop_p: 0.5,
            crop_scale: [0.8, 1.0],
            crop_ratio: [0.9, 1.1],
            rotate_p: 0.3,
            rotate_max_deg: 10.0,
            hflip_p: 0.5,
            jitter_p: 0.5,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
            blur_p: 0.2,
            blur_sigma: [0.1, 1.5],
            jpeg_p: 0.3,
            jpeg_quality: [60, 95],
        }
    }
}

/// An [`AugmentParams`] field outside its allowed range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid augmentation parameter {field}: {problem}")]
pub struct InvalidAugmentParams {
    pub field: &'static str,
    pub problem: String,
}

impl AugmentParams {
    /// Checks every probability and range; [`augment`] requires a valid set.
    pub fn validate(&self) -> Result<(), InvalidAugmentParams> {
        let bad = |field, problem: String| Err(InvalidAugmentParams { field, problem });
        for (field, p) in [
            ("crop_p", self.crop_p),
            ("rotate_p", self.rotate_p),
            ("hflip_p", self.hflip_p),
            ("jitter_p", self.jitter_p),
            ("blur_p", self.blur_p),
            ("jpeg_p", self.jpeg_p),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(field, format!("{p} is not a probability in [0, 1]"));
            }
        }
        for (field, [lo, hi], min) in [
            ("crop_scale", self.crop_scale, f64::MIN_POSITIVE),
            ("crop_ratio", self.crop_ratio, f64::MIN_POSITIVE),
            ("blur_sigma", self.blur_sigma, f64::MIN_POSITIVE),
        ] {
            if !(lo >= min && lo <= hi && hi.is_finite()) {
                return bad(
                    field,
                    format!("[{lo}, {hi}] is not a positive range lo <= hi"),
                );
            }
        }
        if self.crop_scale[1] > 1.0 {
            return bad("crop_scale", "the upper end must be at most 1".into());
        }
        for (field, x) in [
            ("rotate_max_deg", self.rotate_max_deg),
            ("brightness", self.brightness),
            ("contrast", self.contrast),
            ("saturation", self.saturation),
        ] {
            if !(0.0..=180.0).contains(&x) || (field != "rotate_max_deg" && x > 1.0) {
                return bad(field, format!("{x} is out of range"));
            }
        }
        let [qlo, qhi] = self.jpeg_quality;
        if !(1..=100).contains(&qlo) || !(qlo..=100).contains(&qhi) {
            return bad(
                "jpeg_quality",
                format!("[{qlo}, {qhi}] is not within 1..=100, lo <= hi"),
            );
        }
        Ok(())
    }
}

/// One random augmentation of `img` to `size`×`size`: a pure function of `(img, size, params, rng
/// state)`. Steps, in this order, each taken with its probability:
/// 1. geometry at source resolution: random resized crop (torchvision `RandomResizedCrop` sampling)
///    to S×S, otherwise the plain [`resize_center_crop`];
/// 2. rotation about the centre (bilinear, edges replicated, so no black corners appear);
/// 3. horizontal flip;
/// 4. colour jitter: brightness, then contrast (towards the mean grey), then saturation (towards each
///    pixel's grey), each factor uniform in `[1 - x, 1 + x]`;
/// 5. Gaussian blur with sigma uniform in `blur_sigma`;
/// 6. JPEG re-compression at a quality uniform in `jpeg_quality`.
///
/// # Panics
/// If `params` fails [`AugmentParams::validate`] or `size` is 0.
pub fn augment(img: &RgbImage, size: u32, params: &AugmentParams, rng: &mut impl Rng) -> RgbImage {
    if let Err(e) = params.validate() {
        panic!("augment: {e}");
    }
    let mut out = if rng.random_bool(params.crop_p) {
        let window = random_resized_crop_window(img.width(), img.height(), params, rng);
        resize_region(img, window.map(f64::from), size, size)
    } else {
        resize_center_crop(img, size)
    };
    if rng.random_bool(params.rotate_p) {
        let deg = rng.random_range(-params.rotate_max_deg..=params.rotate_max_deg);
        out = pixel_ops::rotate(&out, deg.to_radians());
    }
    if rng.random_bool(params.hflip_p) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    if rng.random_bool(params.jitter_p) {
        let mut factor = |x: f64| rng.random_range(1.0 - x..=1.0 + x) as f32;
        let factors = [
            factor(params.brightness),
            factor(params.contrast),
            factor(params.saturation),
        ];
        pixel_ops::colour_jitter(&mut out, factors);
    }
    if rng.random_bool(params.blur_p) {
        let [lo, hi] = params.blur_sigma;
        out = pixel_ops::gaussian_blur(&out, rng.random_range(lo..=hi) as f32);
    }
    if rng.random_bool(params.jpeg_p) {
        let [lo, hi] = params.jpeg_quality;
        out = pixel_ops::jpeg_roundtrip(&out, rng.random_range(lo..=hi));
    }
    out
}

/// torchvision `RandomResizedCrop.get_params`: `[left, top, width, height]` in source pixels.
/// Ten tries at a random area fraction and log-uniform aspect ratio; then the central crop with the
/// ratio clamped into range.
fn random_resized_crop_window(
    width: u32,
    height: u32,
    params: &AugmentParams,
    rng: &mut impl Rng,
) -> [u32; 4] {
    let area = f64::from(width) * f64::from(height);
    let [s_lo, s_hi] = params.crop_scale;
    let [r_lo, r_hi] = params.crop_ratio;
    let (log_lo, log_hi) = (r_lo.ln(), r_hi.ln());
    for _ in 0..10 {
        let target = area * rng.random_range(s_lo..=s_hi);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * aspect).sqrt().round_ties_even() as u32;
        let h = (target / aspect).sqrt().round_ties_even() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return [left, top, w, h];
        }
    }
    let in_ratio = f64::from(width) / f64::from(height);
    let (w, h) = if in_ratio < r_lo {
        (width, (f64::from(width) / r_lo).round_ties_even() as u32)
    } else if in_ratio > r_hi {
        ((f64::from(height) * r_hi).round_ties_even() as u32, height)
    } else {
        (width, height)
    };
    let (w, h) = (w.clamp(1, width), h.clamp(1, height));
    [(width - w) / 2, (height - h) / 2, w, h]
}
