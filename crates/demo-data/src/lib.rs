//! Built-in demo data set: procedurally drawn face photos, real ones and composites whose eyes,
//! nose, mouth or whole inner face were spliced in from another face, named like the Yonsei
//! "Real and Fake Face Detection" set (`real/real_00001.jpg`, `fake/mid_007_1100.jpg`).
//!
//! Everything derives from [`DemoParams::seed`] through ChaCha streams (one per image), so the
//! same parameters always give the same bytes, whatever the thread count.

pub mod camera;
pub mod canvas;
pub mod face;
pub mod output;
pub mod params;
pub mod plan;
pub mod splice;

pub use params::DemoParams;
pub use plan::{plan, Counts, Difficulty, ImageSpec, Kind, Region, RegionCode};

use anyhow::{Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::fmt;
use std::path::{Path, PathBuf};

/// JPEG quality of the written files.
pub const JPEG_QUALITY: u8 = 90;

/// What [`generate`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The output directory.
    pub out_dir: PathBuf,
    /// Images per class and difficulty.
    pub counts: Counts,
    /// True when the directory already held this exact set and nothing was written.
    pub reused: bool,
}

impl fmt::Display for Summary {
    /// One line: `demo data: 254 real, 226 fake (easy 57, mid 113, hard 56) in data/raw/demo (written)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [easy, mid, hard] = self.counts.fake;
        write!(
            f,
            "demo data: {} real, {} fake (easy {easy}, mid {mid}, hard {hard}) in {} ({})",
            self.counts.real,
            easy + mid + hard,
            self.out_dir.display(),
            if self.reused {
                "already complete, nothing written"
            } else {
                "written"
            }
        )
    }
}

/// Draws image `spec` of the set seeded by `seed` at `size x size` pixels: a random face (for a
/// fake, with regions spliced in from a donor), then the shared camera processing.
pub fn render(spec: &ImageSpec, size: u32, seed: u64) -> RgbImage {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(spec.index);
    let face = face::Face::random(&mut rng, size);
    let camera = camera::Camera::random(&mut rng, size);
    let mut canvas = match spec.kind {
        Kind::Real => face.draw(size),
        Kind::Fake {
            difficulty,
            regions,
        } => splice::composite(&face, regions, difficulty, &mut rng, size).spliced,
    };
    camera.develop(&mut canvas, &mut rng);
    canvas.to_rgb8()
}

/// Encodes `image` as a baseline JPEG of quality [`JPEG_QUALITY`].
pub fn encode_jpeg(image: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY)
        .encode_image(image)
        .context("encoding JPEG")?;
    Ok(bytes)
}

/// Writes the demo set `params` describes under `out_dir` (`real/`, `fake/`, then
/// `demo-data.json` last), in parallel. If `out_dir` already holds exactly this set it does
/// nothing (`reused`); an interrupted or differently parameterised set of ours is replaced;
/// a directory holding files it did not write is refused (see [`output`]).
pub fn generate(params: &DemoParams, out_dir: &Path) -> Result<Summary> {
    params.validate()?;
    let specs = plan(params);
    let record = params.record_json();
    let mut summary = Summary {
        out_dir: out_dir.to_path_buf(),
        counts: Counts::of(params),
        reused: true,
    };
    if output::is_complete(out_dir, &record, &specs)? {
        return Ok(summary);
    }
    output::prepare(out_dir, &specs)?;
    specs.par_iter().try_for_each(|spec| {
        let path = out_dir.join(spec.folder).join(&spec.file_name);
        let bytes = encode_jpeg(&render(spec, params.size, params.seed))
            .with_context(|| format!("drawing {}", path.display()))?;
        dfd_layout::atomic::write_atomic(&path, &bytes)
    })?;
    output::finish(out_dir, &record)?;
    summary.reused = false;
    Ok(summary)
}
