//! Decoding every colour type / container against Pillow's `convert("RGB")`, and every bad input.

mod common;

use common::{diff_stats, fixture, load_png};
use dfd_imaging::{decode, Reject};

const MAX_PIXELS: u64 = 50_000_000;

fn decode_fixture(rel: &str, max_pixels: u64) -> Result<dfd_imaging::RgbImage, Reject> {
    let bytes = std::fs::read(fixture(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
    decode(&bytes, max_pixels)
}

/// Lossless containers must equal Pillow exactly.
#[test]
fn lossless_colour_types_equal_pillow() {
    for name in [
        "rgb.png",
        "rgba.png",
        "grey.png",
        "grey_alpha.png",
        "palette.png",
        "palette_transparent.png",
        "rgb.bmp",
        "palette.bmp",
        "rgb.tif",
        "rgba.tif",
        "grey.tif",
        "palette.gif",
        "rgb_lossless.webp",
        "rgba_lossless.webp",
        "rgb16.png",
        "grey16.png",
        "orient3.png",
        "orient6.png",
        "orient8.png",
    ] {
        let got = decode_fixture(&format!("colour/{name}"), MAX_PIXELS)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = load_png(&format!("colour/{name}.expected.png"));
        assert_eq!(got.dimensions(), expected.dimensions(), "{name}");
        assert_eq!(diff_stats(&got, &expected), (0, 0), "{name}");
    }
}

/// Lossy codecs: decoders may differ from libjpeg-turbo / libwebp in IDCT and upsampling rounding.
#[test]
fn lossy_colour_types_match_pillow_closely() {
    for (name, max_allowed) in [
        ("rgb.jpg", 3),
        ("grey.jpg", 3),
        ("cmyk.jpg", 3),
        ("rgb.webp", 3),
        ("orient3.jpg", 3),
        ("orient6.jpg", 3),
        ("orient8.jpg", 3),
    ] {
        let got = decode_fixture(&format!("colour/{name}"), MAX_PIXELS)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected = load_png(&format!("colour/{name}.expected.png"));
        assert_eq!(got.dimensions(), expected.dimensions(), "{name}");
        let (differ, max) = diff_stats(&got, &expected);
        println!("{name}: {differ} values differ, max {max}");
        assert!(max <= max_allowed, "{name}: max diff {max}");
    }
}

#[test]
fn every_bad_input_gets_its_reason() {
    for (name, reason) in [
        ("empty.jpg", "empty"),
        ("notes.jpg", "not_an_image"),
        ("truncated.jpg", "truncated"),
        ("truncated.png", "truncated"),
        ("truncated.gif", "truncated"),
        ("truncated.bmp", "truncated"),
        ("truncated.tif", "truncated"),
        ("truncated.webp", "truncated"),
        ("bomb.png", "too_large"),
    ] {
        let err = decode_fixture(&format!("bad/{name}"), MAX_PIXELS)
            .expect_err(&format!("{name} must be rejected"));
        assert_eq!(err.reason(), reason, "{name}: {err}");
        assert!(!err.to_string().contains('\n'), "one-line message: {err}");
    }
}

#[test]
fn pixel_limit_is_checked_from_the_header() {
    // 40x30 = 1200 pixels.
    let err = decode_fixture("colour/rgb.png", 1199).unwrap_err();
    assert_eq!(
        err,
        Reject::TooLarge {
            width: 40,
            height: 30,
            max_pixels: 1199
        }
    );
    assert!(decode_fixture("colour/rgb.png", 1200).is_ok());
}

#[test]
fn recognised_but_unaccepted_formats_are_rejected() {
    // A minimal valid 1x1 binary PPM.
    let err = decode(b"P6\n1 1\n255\n\x01\x02\x03", MAX_PIXELS).unwrap_err();
    assert_eq!(err.reason(), "unsupported_format", "{err}");
}

/// Real JPEGs of varying sizes: set DFD_SHARED_DATA=/work/shared/data (the CI does).
#[test]
fn shared_ciplab_faces_all_decode() {
    let Ok(root) = std::env::var("DFD_SHARED_DATA") else {
        eprintln!("DFD_SHARED_DATA not set: skipping the shared-data test");
        return;
    };
    let mut n = 0;
    for class in ["real", "fake"] {
        let dir = std::path::Path::new(&root).join("ciplab-faces").join(class);
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let img = decode(&std::fs::read(&path).unwrap(), MAX_PIXELS)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let out = dfd_imaging::resize_center_crop(&img, 224);
            assert_eq!(out.dimensions(), (224, 224));
            n += 1;
        }
    }
    assert!(n > 2000, "expected the 2,041 CIPLab faces, found {n}");
}
