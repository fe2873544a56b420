//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;

use dfd_imaging::RgbImage;

/// Path of a fixture made by `scripts/make_resize_fixtures.py`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Loads a lossless expected-output PNG.
pub fn load_png(rel: &str) -> RgbImage {
    image::open(fixture(rel))
        .unwrap_or_else(|e| panic!("opening fixture {rel}: {e}"))
        .into_rgb8()
}

/// Bit-exact port of `synthetic()` in scripts/make_resize_fixtures.py (u32 wrapping arithmetic).
pub fn synthetic(w: u32, h: u32, variant: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let mut px = [0u8; 3];
        for (c, out) in (0u32..).zip(px.iter_mut()) {
            let mut hsh = x.wrapping_mul(0x9E37_79B1)
                ^ y.wrapping_mul(0x85EB_CA77)
                ^ (c + variant * 3 + 1).wrapping_mul(0xC2B2_AE3D);
            hsh ^= hsh >> 15;
            hsh = hsh.wrapping_mul(0x2C1B_3C6D);
            hsh ^= hsh >> 12;
            let noise = (hsh >> 24) & 15;
            let base = ((x * 255) / (w - 1) * (3 - c) + (y * 255) / (h - 1) * (c + 1)) / 4;
            let stripe = ((x / (7 + variant) + y / 11 + c * 3) % 16) * 3;
            let (cx, cy, r) = (w / 3 + 17 * variant, h / 2, w.min(h) / 4);
            let (dx, dy) = (x.abs_diff(cx), y.abs_diff(cy));
            let disc = if dx * dx + dy * dy < r * r {
                70 + 20 * c
            } else {
                0
            };
            *out = (base * 5 / 8 + noise + stripe + disc).min(255) as u8;
        }
        image::Rgb(px)
    })
}

/// (number of values that differ, largest absolute difference) between two same-sized images.
pub fn diff_stats(a: &RgbImage, b: &RgbImage) -> (usize, u8) {
    assert_eq!(a.dimensions(), b.dimensions(), "dimensions differ");
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .fold((0, 0), |(n, m), (&x, &y)| {
            let d = x.abs_diff(y);
            (n + usize::from(d != 0), m.max(d))
        })
}
