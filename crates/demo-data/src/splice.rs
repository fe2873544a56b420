//! Composites ("fakes"): regions of one face replaced by the same regions of a donor face with
//! other colours and lighting, blended through a feathered mask, in the spirit of the real
//! data set's Photoshop edits. How wide the feathering is and how far the donor's colours,
//! lighting, feature placement, colour cast and grain are from the original's depends on the
//! difficulty. The donors' warm cast is what makes the set learnable without pretrained weights:
//! a random backbone's features keep colour but not fine texture.

use crate::canvas::{Canvas, Ellipse, Mask};
use crate::face::Face;
use crate::plan::{Difficulty, Region, RegionCode};
use rand::Rng;
use rand_distr::{Distribution, Normal};

/// How a difficulty blends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlendStyle {
    /// Width of the mask's soft edge in multiples of the head radius `R` (never below 1 px).
    pub feather: f32,
    /// How far the donor's skin, lips, brows and lighting move towards another random face (0..1).
    pub mismatch: f32,
    /// Largest shift of the donor's features, head units.
    pub misalignment: f32,
    /// Largest per-channel colour gain error of the pasted pixels (e.g. 0.12 = ±12%).
    pub colour_error: f32,
    /// The donor photos' warm colour cast: red gain `1 + cast`, blue gain `1 - cast` on the
    /// pasted pixels. Donors come from a differently white-balanced camera, a low-frequency
    /// cue that even a random (not pretrained) backbone's features carry, so the demo learns
    /// without pretrained weights.
    pub cast: f32,
    /// Standard deviation of the donor photo's own sensor grain, which the pasted pixels keep
    /// (fraction of full scale, e.g. 0.04 ≈ 10 grey levels), on top of the camera's noise.
    pub grain: f32,
}

impl BlendStyle {
    /// Easy: hard seams, visible colour mismatch and coarse grain; mid: in between; hard: wide
    /// feathering, small mismatch and grain close to the camera's.
    pub fn of(difficulty: Difficulty) -> BlendStyle {
        match difficulty {
            Difficulty::Easy => BlendStyle {
                feather: 0.0,
                mismatch: 1.0,
                misalignment: 0.05,
                colour_error: 0.12,
                cast: 0.3,
                grain: 0.05,
            },
            Difficulty::Mid => BlendStyle {
                feather: 0.06,
                mismatch: 0.55,
                misalignment: 0.025,
                colour_error: 0.06,
                cast: 0.2,
                grain: 0.035,
            },
            Difficulty::Hard => BlendStyle {
                feather: 0.15,
                mismatch: 0.25,
                misalignment: 0.01,
                colour_error: 0.025,
                cast: 0.12,
                grain: 0.02,
            },
        }
    }
}

/// A composite before the camera: the original face, the spliced result and where it was edited.
#[derive(Clone, Debug)]
pub struct Composite {
    /// The original face as drawn.
    pub base: Canvas,
    /// The original with the donor's regions blended in.
    pub spliced: Canvas,
    /// The outlines (pixels) of the replaced areas; `spliced` equals `base` farther than
    /// `feather_px / 2 + 1` pixels outside all of them.
    pub regions: Vec<Ellipse>,
    /// Width of the mask's soft edge, pixels (at least 1).
    pub feather_px: f32,
}

/// Outlines of the areas `code` replaces on `face`: the inner face for `1111`, else one outline
/// per edited region.
pub fn edited_areas(face: &Face, code: RegionCode) -> Vec<Ellipse> {
    if code.is_whole_face() {
        return vec![face.geometry.whole_face()];
    }
    Region::ALL
        .into_iter()
        .filter(|&r| code.contains(r))
        .map(|r| face.geometry.region(r))
        .collect()
}

/// Splices the regions of `code` into `face` from a donor drawn from `rng`, blended as
/// `difficulty` says, on a `size x size` canvas.
pub fn composite(
    face: &Face,
    code: RegionCode,
    difficulty: Difficulty,
    rng: &mut impl Rng,
    size: u32,
) -> Composite {
    let style = BlendStyle::of(difficulty);
    let stranger = Face::random_appearance(rng, size);
    let donor = Face {
        geometry: face.geometry.jittered(rng, style.misalignment),
        appearance: face.appearance.towards(&stranger, style.mismatch),
    };
    let cast = [1.0 + style.cast, 1.0, 1.0 - style.cast];
    let gain = cast.map(|k| k * (1.0 + style.colour_error * (2.0 * rng.random::<f32>() - 1.0)));
    let mut pasted = donor.draw(size);
    let grain = Normal::new(0.0, style.grain).expect("grain is positive and finite");
    pasted.map_pixels(|p| {
        let luma = grain.sample(rng);
        [0, 1, 2].map(|c| p[c] * gain[c] + 0.7 * luma + 0.5 * grain.sample(rng))
    });

    let base = face.draw(size);
    let regions = edited_areas(face, code);
    let feather_px = (style.feather * face.geometry.head.rx).max(1.0);
    let mask = Mask::union_of(size as usize, size as usize, &regions, feather_px);
    let mut spliced = base.clone();
    spliced.blend_from(&pasted, &mask);
    Composite {
        base,
        spliced,
        regions,
        feather_px,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Mean absolute channel difference between `a` and `b` over pixels where `keep` holds,
    /// and how many pixels that was.
    fn mean_diff(a: &Canvas, b: &Canvas, keep: impl Fn(f32, f32) -> bool) -> (f32, usize) {
        let (mut sum, mut n) = (0.0, 0);
        for y in 0..a.height() {
            for x in 0..a.width() {
                if keep(x as f32 + 0.5, y as f32 + 0.5) {
                    let (p, q) = (a.at(x, y), b.at(x, y));
                    sum += (0..3).map(|c| (p[c] - q[c]).abs()).sum::<f32>() / 3.0;
                    n += 1;
                }
            }
        }
        (sum / n.max(1) as f32, n)
    }

    /// A fake differs from its base only near the edited outlines, and clearly inside them;
    /// seams get softer and colour mismatch smaller from easy to hard.
    #[test]
    fn composites_differ_inside_the_edited_regions_only() {
        let size = 160;
        let codes = [
            [true, false, false, false],
            [false, true, true, false],
            [false, false, false, true],
            [true; 4],
        ];
        for (k, bits) in codes.into_iter().enumerate() {
            for difficulty in Difficulty::ALL {
                let mut rng = ChaCha8Rng::seed_from_u64(100 + k as u64);
                let face = Face::random(&mut rng, size);
                let c = composite(&face, RegionCode(bits), difficulty, &mut rng, size);
                // Independent check of "outside": signed distance to each outline.
                let reach = c.feather_px / 2.0 + 1.0;
                let outside =
                    |x: f32, y: f32| c.regions.iter().all(|e| e.signed_distance(x, y) > reach);
                let core =
                    |x: f32, y: f32| c.regions.iter().any(|e| e.signed_distance(x, y) < -reach);
                let (out_diff, out_n) = mean_diff(&c.base, &c.spliced, outside);
                let (in_diff, in_n) = mean_diff(&c.base, &c.spliced, core);
                assert!(
                    out_n > 10_000 && in_n > 20,
                    "{out_n} outside, {in_n} inside"
                );
                assert_eq!(
                    out_diff, 0.0,
                    "code {bits:?} {difficulty:?}: changed outside the edited regions"
                );
                assert!(
                    in_diff > 0.01,
                    "code {bits:?} {difficulty:?}: inside barely changed ({in_diff})"
                );
            }
        }
    }

    #[test]
    fn easy_mismatches_more_than_hard() {
        let size = 160;
        let (mut easy, mut hard) = (0.0, 0.0);
        for seed in 0..12 {
            for (difficulty, total) in
                [(Difficulty::Easy, &mut easy), (Difficulty::Hard, &mut hard)]
            {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let face = Face::random(&mut rng, size);
                let c = composite(&face, RegionCode([true; 4]), difficulty, &mut rng, size);
                let inside = |x: f32, y: f32| c.regions[0].signed_distance(x, y) < 0.0;
                *total += mean_diff(&c.base, &c.spliced, inside).0;
            }
        }
        assert!(easy > 1.5 * hard, "easy {easy} vs hard {hard}");
    }
}
