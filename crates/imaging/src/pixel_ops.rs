//! Pixel-level building blocks of [`crate::augment`], all on small S×S images.

use image::{codecs::jpeg::JpegEncoder, ImageFormat, RgbImage};

/// Rotates `img` by `radians` (counter-clockwise as displayed) about its centre, same size,
/// bilinear sampling, coordinates outside the source clamped to the nearest edge pixel.
pub(crate) fn rotate(img: &RgbImage, radians: f64) -> RgbImage {
    let (w, h) = img.dimensions();
    let (cx, cy) = ((f64::from(w) - 1.0) / 2.0, (f64::from(h) - 1.0) / 2.0);
    let (sin, cos) = radians.sin_cos();
    let (max_x, max_y) = (f64::from(w - 1), f64::from(h - 1));
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
        // Inverse map of a counter-clockwise rotation in image coordinates (y grows downwards).
        let sx = (cos * dx - sin * dy + cx).clamp(0.0, max_x);
        let sy = (sin * dx + cos * dy + cy).clamp(0.0, max_y);
        let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (fx, fy) = (sx - f64::from(x0), sy - f64::from(y0));
        let mut px = [0u8; 3];
        for (c, out) in px.iter_mut().enumerate() {
            let at = |x: u32, y: u32| f64::from(img.get_pixel(x, y)[c]);
            let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
            let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
            *out = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
        }
        image::Rgb(px)
    })
}

/// Grey level of an RGB triple (ITU-R 601 luma, as PIL's `convert("L")`).
fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

/// Applies `[brightness, contrast, saturation]` factors in that order, in f32, rounding and clamping
/// to u8 once at the end. Contrast blends towards the image's mean grey (after brightness),
/// saturation towards each pixel's own grey.
pub(crate) fn colour_jitter(img: &mut RgbImage, [brightness, contrast, saturation]: [f32; 3]) {
    let n = (img.width() * img.height()) as f32;
    let mean_grey = img
        .pixels()
        .map(|p| luma(p.0.map(f32::from)) * brightness)
        .sum::<f32>()
        / n;
    for p in img.pixels_mut() {
        let mut v = p.0.map(|c| f32::from(c) * brightness);
        v = v.map(|c| (c - mean_grey) * contrast + mean_grey);
        let grey = luma(v);
        v = v.map(|c| (c - grey) * saturation + grey);
        p.0 = v.map(|c| c.round().clamp(0.0, 255.0) as u8);
    }
}

/// Separable Gaussian blur with standard deviation `sigma` (pixels), kernel radius `ceil(3 sigma)`,
/// edges replicated.
pub(crate) fn gaussian_blur(img: &RgbImage, sigma: f32) -> RgbImage {
    let radius = (3.0 * sigma).ceil().max(1.0) as i64;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let (w, h) = (img.width() as i64, img.height() as i64);
    let src: Vec<f32> = img.as_raw().iter().map(|&v| f32::from(v)).collect();
    let pass = |input: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; input.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0f32;
                    for (k, weight) in kernel.iter().enumerate() {
                        let off = k as i64 - radius;
                        let (sx, sy) = if horizontal {
                            ((x + off).clamp(0, w - 1), y)
                        } else {
                            (x, (y + off).clamp(0, h - 1))
                        };
                        acc += weight * input[((sy * w + sx) * 3 + c) as usize];
                    }
                    out[((y * w + x) * 3 + c) as usize] = acc;
                }
            }
        }
        out
    };
    let blurred = pass(&pass(&src, true), false);
    let bytes = blurred
        .iter()
        .map(|v| v.round().clamp(0.0, 255.0) as u8)
        .collect();
    RgbImage::from_raw(img.width(), img.height(), bytes).expect("same dimensions as the input")
}

/// Encodes `img` as a baseline JPEG at `quality` (1..=100) and decodes it back.
pub(crate) fn jpeg_roundtrip(img: &RgbImage, quality: u8) -> RgbImage {
    let mut buf = Vec::new();
    JpegEncoder::new_with_quality(&mut buf, quality)
        .encode_image(img)
        .expect("encoding an RGB8 image to memory cannot fail");
    image::load_from_memory_with_format(&buf, ImageFormat::Jpeg)
        .expect("a JPEG we just encoded decodes")
        .into_rgb8()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503);
            image::Rgb([(v >> 3) as u8, (v >> 11) as u8, (v >> 19) as u8])
        })
    }

    #[test]
    fn quarter_turn_equals_exact_rotation() {
        let img = noisy(33, 33);
        // Counter-clockwise 90° as displayed is image's clockwise 270°.
        assert_eq!(
            rotate(&img, std::f64::consts::FRAC_PI_2),
            image::imageops::rotate270(&img)
        );
        assert_eq!(rotate(&img, 0.0), img);
    }

    #[test]
    fn separable_blur_equals_direct_2d_convolution() {
        let img = noisy(20, 15);
        let sigma = 1.2f32;
        let r = (3.0 * sigma).ceil() as i64;
        let weight = |d: i64| (-((d * d) as f32) / (2.0 * sigma * sigma)).exp();
        let norm: f32 = (-r..=r).map(weight).sum::<f32>().powi(2);
        let got = gaussian_blur(&img, sigma);
        for (x, y, p) in got.enumerate_pixels() {
            for (c, &value) in p.0.iter().enumerate() {
                let mut acc = 0f32;
                for dy in -r..=r {
                    for dx in -r..=r {
                        let sx = (i64::from(x) + dx).clamp(0, 19) as u32;
                        let sy = (i64::from(y) + dy).clamp(0, 14) as u32;
                        acc += weight(dx) * weight(dy) * f32::from(img.get_pixel(sx, sy)[c]);
                    }
                }
                let want = (acc / norm).round();
                assert!((want - f32::from(value)).abs() <= 1.0, "({x},{y},{c})");
            }
        }
    }

    #[test]
    fn saturation_zero_gives_grey() {
        let mut img = noisy(8, 8);
        colour_jitter(&mut img, [1.0, 1.0, 0.0]);
        for p in img.pixels() {
            assert!(
                p[0].abs_diff(p[1]) <= 1 && p[1].abs_diff(p[2]) <= 1,
                "{p:?}"
            );
        }
    }
}
