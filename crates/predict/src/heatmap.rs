//! Heatmap images: a Grad-CAM map coloured with the jet colour map and blended over the S×S
//! image the model saw, and collision-free file names for them.

use std::collections::HashSet;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dfd_imaging::RgbImage;
use image::ImageFormat;

use crate::gradcam::upsample_bilinear;

/// Weight of the colour map in the blend (the image keeps 1 − ALPHA).
pub const ALPHA: f32 = 0.45;

/// The jet colour map at `v` in [0, 1] (dark blue → blue → cyan → yellow → red → dark red), the
/// usual piecewise-linear approximation: each channel is `clamp(1.5 − |4v − k|, 0, 1)` with k = 3
/// (red), 2 (green), 1 (blue). Values outside [0, 1] are clamped.
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    [3.0, 2.0, 1.0]
        .map(|k: f32| ((1.5 - (4.0 * v - k).abs()).clamp(0.0, 1.0) * 255.0).round() as u8)
}

/// Blends the jet colours of `cam` (row-major `h×w`, values in [0, 1]) over `image`, after
/// upsampling the map bilinearly to the image's size: `out = (1 − ALPHA)·image + ALPHA·jet(cam)`.
pub fn overlay(image: &RgbImage, cam: &[f32], (h, w): (usize, usize)) -> RgbImage {
    let (width, height) = image.dimensions();
    let cam = upsample_bilinear(cam, (h, w), (height as usize, width as usize));
    let mut out = image.clone();
    for (pixel, &value) in out.pixels_mut().zip(&cam) {
        let colour = jet(value);
        for (channel, c) in pixel.0.iter_mut().zip(colour) {
            *channel = ((1.0 - ALPHA) * f32::from(*channel) + ALPHA * f32::from(c)).round() as u8;
        }
    }
    out
}

/// Writes `image` as a PNG at `path`, atomically.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, ImageFormat::Png)
        .with_context(|| format!("encoding heatmap {}", path.display()))?;
    dfd_layout::atomic::write_atomic(path, bytes.get_ref())
}

/// Hands out `<dir>/<stem>.png` for each input, in call order: the first input with a given stem
/// gets `<stem>.png`, later ones `<stem>-2.png`, `<stem>-3.png`, … (skipping any name already
/// given). Names are compared case-insensitively, so no two collide on a case-insensitive file
/// system either. Deterministic for a deterministic input order.
pub struct HeatmapNames {
    dir: PathBuf,
    taken: HashSet<String>,
}

impl HeatmapNames {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            taken: HashSet::new(),
        }
    }

    /// The heatmap path for the image at `input`.
    pub fn assign(&mut self, input: &Path) -> PathBuf {
        let stem = input
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
        let name = (1..)
            .map(|k| {
                if k == 1 {
                    stem.clone()
                } else {
                    format!("{stem}-{k}")
                }
            })
            .find(|name| self.taken.insert(name.to_lowercase()))
            .expect("an unbounded sequence of names has a free one");
        self.dir.join(format!("{name}.png"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn jet_runs_from_dark_blue_through_green_to_dark_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(-3.0), jet(0.0));
        assert_eq!(jet(f32::INFINITY), jet(1.0));
    }

    #[test]
    fn overlay_blends_each_pixel_with_its_colour() {
        let image = RgbImage::from_pixel(2, 2, Rgb([200, 100, 0]));
        // A 1×2 map stretched over 2×2: left column 0 (jet [0, 0, 128]), right column 1 ([128, 0, 0]).
        let out = overlay(&image, &[0.0, 1.0], (1, 2));
        let blend = |a: u8, b: u8| (0.55 * f32::from(a) + 0.45 * f32::from(b)).round() as u8;
        let left = Rgb([blend(200, 0), blend(100, 0), blend(0, 128)]);
        let right = Rgb([blend(200, 128), blend(100, 0), blend(0, 0)]);
        assert_eq!(out.dimensions(), (2, 2));
        assert_eq!([*out.get_pixel(0, 0), *out.get_pixel(0, 1)], [left, left]);
        assert_eq!([*out.get_pixel(1, 0), *out.get_pixel(1, 1)], [right, right]);
    }

    #[test]
    fn duplicate_stems_get_numbered_names() {
        let mut names = HeatmapNames::new(Path::new("/out"));
        let got: Vec<PathBuf> = [
            "a/face.jpg",
            "b/face.png",
            "c/Face.jpg",
            "face-2.jpg",
            "x/.jpg",
        ]
        .iter()
        .map(|p| names.assign(Path::new(p)))
        .collect();
        let expected = [
            "face.png",
            "face-2.png",
            "Face-3.png",
            "face-2-2.png",
            ".jpg.png",
        ];
        assert_eq!(got, expected.map(|n| Path::new("/out").join(n)));
    }
}
