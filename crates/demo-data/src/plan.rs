//! The list of files a parameter set produces: which are real, which are fake, each fake's
//! difficulty and edited regions, and the file names (the real data set's naming scheme).

use crate::params::DemoParams;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// ChaCha stream used for the plan itself; image `i` uses stream `i`.
const PLAN_STREAM: u64 = u64::MAX;

/// How carefully a fake was blended (the real set's subjective `easy_` / `mid_` / `hard_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Difficulty {
    /// Hard seams and a visible colour mismatch.
    Easy,
    /// Soft seams, moderate mismatch.
    Mid,
    /// Wide feathering, small mismatch.
    Hard,
}

impl Difficulty {
    /// All difficulties in file-numbering order.
    pub const ALL: [Difficulty; 3] = [Difficulty::Easy, Difficulty::Mid, Difficulty::Hard];

    /// File-name prefix.
    pub fn name(self) -> &'static str {
        match self {
            Difficulty::Easy => "easy",
            Difficulty::Mid => "mid",
            Difficulty::Hard => "hard",
        }
    }
}

/// A face region that a fake may have replaced, in the order of the 4-digit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// The eye on the image's left (the subject's right eye).
    LeftEye,
    /// The eye on the image's right.
    RightEye,
    /// Nose.
    Nose,
    /// Mouth.
    Mouth,
}

impl Region {
    /// All regions in code order.
    pub const ALL: [Region; 4] = [
        Region::LeftEye,
        Region::RightEye,
        Region::Nose,
        Region::Mouth,
    ];
}

/// Which regions a fake replaced; displayed as the real set's 4-digit 0/1 code (`1100` = both
/// eyes). Never all zero for a fake. All four means the whole inner face was replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionCode(pub [bool; 4]);

impl RegionCode {
    /// Whether `region` is edited.
    pub fn contains(self, region: Region) -> bool {
        self.0[region as usize]
    }

    /// Whether every region is edited (a whole-face composite).
    pub fn is_whole_face(self) -> bool {
        self.0.iter().all(|&b| b)
    }

    /// Draws a code with roughly the real set's frequencies: a third whole faces, an eighth
    /// each both-eyes (`1100`) and nose-and-mouth (`0011`), the rest uniform over non-zero codes.
    fn random(rng: &mut impl Rng) -> RegionCode {
        let u: f32 = rng.random();
        let bits: u8 = if u < 0.33 {
            0b1111
        } else if u < 0.455 {
            0b1100
        } else if u < 0.58 {
            0b0011
        } else {
            rng.random_range(1..16)
        };
        RegionCode([bits & 8 != 0, bits & 4 != 0, bits & 2 != 0, bits & 1 != 0])
    }
}

impl fmt::Display for RegionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|&b| f.write_str(if b { "1" } else { "0" }))
    }
}

/// Real photo or composite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An untouched face.
    Real,
    /// A face with `regions` spliced in from another face.
    Fake {
        /// Blending quality.
        difficulty: Difficulty,
        /// Replaced regions.
        regions: RegionCode,
    },
}

/// One file of the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// Index in the plan; also the ChaCha stream that draws this image.
    pub index: u64,
    /// Real or fake, and how.
    pub kind: Kind,
    /// Sub-folder: `real` or `fake`.
    pub folder: &'static str,
    /// File name, e.g. `real_00001.jpg` or `mid_007_1100.jpg`.
    pub file_name: String,
}

/// Number of images of each class and difficulty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Real images.
    pub real: usize,
    /// Fakes per difficulty, in [`Difficulty::ALL`] order.
    pub fake: [usize; 3],
}

impl Counts {
    /// Splits `params` into classes: fakes are a quarter easy, half mid, a quarter hard (the
    /// real set's proportions), rounded.
    pub fn of(params: &DemoParams) -> Counts {
        let fakes = params.fake_count();
        let easy = (fakes as f64 / 4.0).round() as usize;
        let hard = ((fakes - easy) as f64 / 3.0).round() as usize;
        Counts {
            real: params.count - fakes,
            fake: [easy, fakes - easy - hard, hard],
        }
    }
}

/// Every file `params` produces: reals first (`real_00001.jpg`, ...), then easy, mid and hard
/// fakes, each numbered from 1 (`easy_001_1111.jpg`, ...). Deterministic in `params.seed`.
pub fn plan(params: &DemoParams) -> Vec<ImageSpec> {
    let counts = Counts::of(params);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    rng.set_stream(PLAN_STREAM);
    let reals = (1..=counts.real).map(|n| (Kind::Real, "real", format!("real_{n:05}.jpg")));
    let fakes = Difficulty::ALL
        .iter()
        .zip(counts.fake)
        .flat_map(|(&difficulty, count)| (1..=count).map(move |n| (difficulty, n)));
    let fakes: Vec<_> = fakes
        .map(|(difficulty, n)| {
            let regions = RegionCode::random(&mut rng);
            let name = format!("{}_{n:03}_{regions}.jpg", difficulty.name());
            (
                Kind::Fake {
                    difficulty,
                    regions,
                },
                "fake",
                name,
            )
        })
        .collect();
    reals
        .chain(fakes)
        .enumerate()
        .map(|(index, (kind, folder, file_name))| ImageSpec {
            index: index as u64,
            kind,
            folder,
            file_name,
        })
        .collect()
}

/// Whether `name` has the shape of a file this generator writes (`real_<digits>.jpg` or
/// `<easy|mid|hard>_<digits>_<4 binary digits>.jpg`), whatever its parameters.
pub fn is_generated_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(stem) = name.strip_suffix(".jpg") else {
        return false;
    };
    if let Some(n) = stem.strip_prefix("real_") {
        return digits(n);
    }
    let mut parts = stem.split('_');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(d), Some(n), Some(code), None) => {
            Difficulty::ALL.iter().any(|x| x.name() == d)
                && digits(n)
                && code.len() == 4
                && code.bytes().all(|b| b == b'0' || b == b'1')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_real_set_proportions() {
        let c = Counts::of(&DemoParams::default());
        assert_eq!(
            c,
            Counts {
                real: 254,
                fake: [57, 113, 56]
            }
        );
        let c = Counts::of(&DemoParams {
            count: 3,
            fake_fraction: 1.0,
            ..DemoParams::default()
        });
        assert_eq!(c.real + c.fake.iter().sum::<usize>(), 3);
    }

    #[test]
    fn plan_names_and_codes() {
        let p = plan(&DemoParams::default());
        assert_eq!(p.len(), 480);
        assert_eq!(p[0].file_name, "real_00001.jpg");
        assert_eq!(p[253].file_name, "real_00254.jpg");
        assert!(p[254].file_name.starts_with("easy_001_"));
        assert!(p.last().unwrap().file_name.starts_with("hard_056_"));
        for spec in &p {
            assert!(is_generated_name(&spec.file_name), "{}", spec.file_name);
            if let Kind::Fake { regions, .. } = spec.kind {
                assert!(regions.0.iter().any(|&b| b));
                assert!(spec.file_name.ends_with(&format!("_{regions}.jpg")));
            }
        }
        let whole = p
            .iter()
            .filter(|s| s.file_name.ends_with("_1111.jpg"))
            .count();
        assert!(
            (40..=120).contains(&whole),
            "{whole} whole-face fakes of 226"
        );
    }

    #[test]
    fn generated_name_shapes() {
        for ok in ["real_00001.jpg", "easy_1_1110.jpg", "hard_240_0001.jpg"] {
            assert!(is_generated_name(ok), "{ok}");
        }
        for bad in [
            "real_.jpg",
            "easy_1_111.jpg",
            "mid_1_1120.jpg",
            "photo.jpg",
            "real_1.png",
            "odd_1_1111.jpg",
        ] {
            assert!(!is_generated_name(bad), "{bad}");
        }
    }
}
