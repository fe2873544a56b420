//! Augmentation: determinism, output size, and each step against an independent reference.

mod common;

use common::{diff_stats, synthetic};
use dfd_imaging::{augment, resize_center_crop, AugmentParams};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Every step switched off.
fn nothing() -> AugmentParams {
    AugmentParams {
        crop_p: 0.0,
        rotate_p: 0.0,
        hflip_p: 0.0,
        jitter_p: 0.0,
        blur_p: 0.0,
        jpeg_p: 0.0,
        ..AugmentParams::default()
    }
}

fn run(params: &AugmentParams, seed: u64) -> dfd_imaging::RgbImage {
    let src = synthetic(300, 260, 1);
    augment(&src, 96, params, &mut ChaCha8Rng::seed_from_u64(seed))
}

#[test]
fn same_rng_state_same_bytes_and_seeds_differ() {
    let all = AugmentParams {
        crop_p: 1.0,
        rotate_p: 1.0,
        hflip_p: 1.0,
        jitter_p: 1.0,
        blur_p: 1.0,
        jpeg_p: 1.0,
        ..AugmentParams::default()
    };
    let a = run(&all, 7);
    assert_eq!(a.dimensions(), (96, 96));
    assert_eq!(a, run(&all, 7));
    assert_ne!(a, run(&all, 8));
    let d = run(&AugmentParams::default(), 3);
    assert_eq!(d.dimensions(), (96, 96));
}

#[test]
fn all_steps_off_is_the_plain_resize() {
    let src = synthetic(300, 260, 1);
    assert_eq!(run(&nothing(), 1), resize_center_crop(&src, 96));
}

#[test]
fn flip_mirrors_the_plain_resize() {
    let params = AugmentParams {
        hflip_p: 1.0,
        ..nothing()
    };
    let plain = resize_center_crop(&synthetic(300, 260, 1), 96);
    let got = run(&params, 1);
    for (x, y, p) in got.enumerate_pixels() {
        assert_eq!(p, plain.get_pixel(95 - x, y));
    }
}

#[test]
fn full_area_square_crop_of_a_square_image_is_the_plain_resize() {
    let src = synthetic(200, 200, 2);
    let params = AugmentParams {
        crop_p: 1.0,
        crop_scale: [1.0, 1.0],
        crop_ratio: [1.0, 1.0],
        ..nothing()
    };
    let got = augment(&src, 64, &params, &mut ChaCha8Rng::seed_from_u64(0));
    assert_eq!(got, resize_center_crop(&src, 64));
}

#[test]
fn zero_rotation_and_unit_jitter_are_identities() {
    let params = AugmentParams {
        rotate_p: 1.0,
        rotate_max_deg: 0.0,
        jitter_p: 1.0,
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        ..nothing()
    };
    assert_eq!(run(&params, 5), run(&nothing(), 5));
}

#[test]
fn brightness_scales_every_value_by_one_factor() {
    let params = AugmentParams {
        jitter_p: 1.0,
        brightness: 0.3,
        contrast: 0.0,
        saturation: 0.0,
        ..nothing()
    };
    let plain = run(&nothing(), 9);
    let got = run(&params, 9);
    // Estimate the factor from bright unclipped values, then every value must follow it within 1.
    let (num, den) = plain
        .as_raw()
        .iter()
        .zip(got.as_raw())
        .filter(|(&p, &g)| p > 100 && g < 255)
        .fold((0.0, 0.0), |(n, d), (&p, &g)| {
            (n + f64::from(g), d + f64::from(p))
        });
    let factor = num / den;
    assert!(
        (factor - 1.0).abs() > 1e-3 && (0.7..=1.3).contains(&factor),
        "{factor}"
    );
    for (&p, &g) in plain.as_raw().iter().zip(got.as_raw()) {
        let want = (f64::from(p) * factor).round().min(255.0);
        assert!(
            (want - f64::from(g)).abs() <= 1.0,
            "{p} -> {g}, factor {factor}"
        );
    }
}

#[test]
fn jpeg_recompression_stays_close() {
    let params = AugmentParams {
        jpeg_p: 1.0,
        jpeg_quality: [90, 90],
        ..nothing()
    };
    let plain = run(&nothing(), 2);
    let got = run(&params, 2);
    assert_ne!(plain, got);
    let mse = plain
        .as_raw()
        .iter()
        .zip(got.as_raw())
        .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
        .sum::<f64>()
        / plain.as_raw().len() as f64;
    let psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
    assert!(psnr > 28.0, "PSNR {psnr:.1} dB");
}

#[test]
fn blur_smooths_but_keeps_the_mean() {
    let params = AugmentParams {
        blur_p: 1.0,
        blur_sigma: [1.5, 1.5],
        ..nothing()
    };
    let plain = run(&nothing(), 4);
    let got = run(&params, 4);
    let mean = |img: &dfd_imaging::RgbImage| {
        img.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / img.as_raw().len() as f64
    };
    // Sum of absolute horizontal differences: a measure of high-frequency content.
    let roughness = |img: &dfd_imaging::RgbImage| {
        img.as_raw()
            .windows(4)
            .map(|w| f64::from(w[0].abs_diff(w[3])))
            .sum::<f64>()
    };
    assert!((mean(&plain) - mean(&got)).abs() < 1.0);
    let (r_got, r_plain) = (roughness(&got), roughness(&plain));
    assert!(r_got < 0.9 * r_plain, "{r_got} vs {r_plain}");
    assert_ne!(diff_stats(&plain, &got).0, 0);
}

#[test]
fn invalid_parameters_are_reported() {
    let bad = AugmentParams {
        hflip_p: 1.5,
        ..AugmentParams::default()
    };
    let err = bad.validate().unwrap_err();
    assert_eq!(err.field, "hflip_p");
    let bad = AugmentParams {
        jpeg_quality: [90, 80],
        ..AugmentParams::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "jpeg_quality");
    assert!(AugmentParams::default().validate().is_ok());
}
