//! The text form of a weights source (`extract.weights`) and torchvision's published files.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;

/// The torchvision IMAGENET1K_V1 weights of resnext50_32x4d, as published by timm.
pub const DEFAULT_WEIGHTS: &str = "hf:timm/resnext50_32x4d.tv_in1k";
/// File fetched from a hub repository when `hf:<repo>` names none.
pub const DEFAULT_HUB_FILE: &str = "model.safetensors";

/// torchvision's IMAGENET1K_V1 weights of each architecture: the file name its downloads leave in
/// `$TORCH_HOME/hub/checkpoints`, and the timm hub repository publishing the same values.
const TORCHVISION_FILES: [(&str, &str); 3] = [
    ("resnext50_32x4d", "resnext50_32x4d-7cdf4587.pth"),
    ("resnet50", "resnet50-0676ba61.pth"),
    ("resnext101_32x8d", "resnext101_32x8d-8ba56ff5.pth"),
];

/// The file torchvision's `models.<arch>(pretrained=True)` downloads, if it publishes `arch`.
pub fn torchvision_file(arch: &str) -> Option<&'static str> {
    TORCHVISION_FILES
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|(_, file)| *file)
}

/// The timm hub repository holding torchvision's IMAGENET1K_V1 weights of `arch`.
pub fn torchvision_repo(arch: &str) -> String {
    format!("timm/{arch}.tv_in1k")
}

/// Where weights come from.
///
/// Text form (FromStr/Display):
/// - `hf:<owner>/<name>[@<revision>][/<file>]`: a Hugging Face hub file (default
///   `model.safetensors`) at a branch, tag or commit (default `main`);
/// - `torchvision:<arch>`: torchvision's IMAGENET1K_V1 weights of `<arch>` (from
///   `hf:timm/<arch>.tv_in1k`, else torch's own download cache);
/// - `random:<seed>`: a seeded random draw (not pretrained);
/// - anything else: a local `.safetensors` or PyTorch `.pth` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    Hub {
        repo: String,
        revision: Option<String>,
        file: String,
    },
    Torchvision {
        arch: String,
    },
    File(PathBuf),
    Random {
        seed: u64,
    },
}

impl WeightsSource {
    /// `extract.weights` as a stage uses it: parsed, with a relative file path taken relative to
    /// the layout root `data_dir` (like `dataset.source`), not to the working directory.
    pub fn from_config(text: &str, data_dir: &Path) -> anyhow::Result<Self> {
        let source: Self = text.parse().context("reading extract.weights")?;
        Ok(match source {
            Self::File(path) if path.is_relative() => Self::File(data_dir.join(path)),
            other => other,
        })
    }

    /// False only for `Random`: such a model must be labelled "not pretrained" wherever it shows.
    pub fn is_pretrained(&self) -> bool {
        !matches!(self, Self::Random { .. })
    }

    /// The revision asked for (`main` when none is).
    pub fn revision(revision: &Option<String>) -> &str {
        revision.as_deref().unwrap_or("main")
    }
}

impl Default for WeightsSource {
    fn default() -> Self {
        DEFAULT_WEIGHTS.parse().expect("DEFAULT_WEIGHTS parses")
    }
}

impl FromStr for WeightsSource {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if let Some(rest) = s.strip_prefix("hf:") {
            parse_hub(rest).with_context(|| {
                format!("weights `{s}`: expected hf:<owner>/<name>[@<revision>][/<file>]")
            })
        } else if let Some(arch) = s.strip_prefix("torchvision:") {
            anyhow::ensure!(
                torchvision_file(arch).is_some(),
                "weights `{s}`: torchvision publishes no IMAGENET1K_V1 weights of `{arch}` here \
                 (expected one of {})",
                TORCHVISION_FILES.map(|(a, _)| a).join(", ")
            );
            Ok(Self::Torchvision { arch: arch.into() })
        } else if let Some(seed) = s.strip_prefix("random:") {
            let seed = seed.parse().with_context(|| {
                format!("weights `{s}`: the seed after `random:` must be an unsigned integer")
            })?;
            Ok(Self::Random { seed })
        } else if s.is_empty() {
            anyhow::bail!(
                "empty weights source (expected hf:<repo>, torchvision:<arch>, random:<seed> or \
                 a .safetensors/.pth path)"
            )
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

/// `<owner>/<name>[@<revision>][/<file>]`.
fn parse_hub(rest: &str) -> anyhow::Result<WeightsSource> {
    let (owner, rest) = rest.split_once('/').context("no `/` after the owner")?;
    let (name, file) = match rest.split_once('/') {
        Some((name, file)) => (name, Some(file)),
        None => (rest, None),
    };
    let (name, revision) = match name.split_once('@') {
        Some((name, revision)) => {
            anyhow::ensure!(!revision.is_empty(), "empty revision after `@`");
            (name, Some(revision.to_string()))
        }
        None => (name, None),
    };
    anyhow::ensure!(!owner.is_empty() && !name.is_empty(), "empty owner or name");
    let file = file.filter(|f| !f.is_empty()).unwrap_or(DEFAULT_HUB_FILE);
    Ok(WeightsSource::Hub {
        repo: format!("{owner}/{name}"),
        revision,
        file: file.to_string(),
    })
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub {
                repo,
                revision,
                file,
            } => match revision {
                Some(rev) => write!(f, "hf:{repo}@{rev}/{file}"),
                None => write!(f, "hf:{repo}/{file}"),
            },
            Self::Torchvision { arch } => write!(f, "torchvision:{arch}"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Random { seed } => write!(f, "random:{seed}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_torchvision_parse_and_print_back() {
        for text in [
            "hf:timm/resnext50_32x4d.tv_in1k@a1b2c3/model.safetensors",
            "hf:timm/resnext50_32x4d.tv_in1k/model.safetensors",
            "torchvision:resnet50",
        ] {
            let source: WeightsSource = text.parse().unwrap();
            assert_eq!(source.to_string(), text);
        }
        assert_eq!(
            "hf:a/b@v1.0".parse::<WeightsSource>().unwrap(),
            WeightsSource::Hub {
                repo: "a/b".into(),
                revision: Some("v1.0".into()),
                file: DEFAULT_HUB_FILE.into()
            }
        );
        assert!("hf:a/b@".parse::<WeightsSource>().is_err());
        let err = "torchvision:vgg16".parse::<WeightsSource>().unwrap_err();
        assert!(format!("{err:#}").contains("resnext50_32x4d"), "{err:#}");
    }

    #[test]
    fn relative_files_are_relative_to_the_data_dir() {
        let base = Path::new("/data");
        assert_eq!(
            WeightsSource::from_config("w/mine.pth", base).unwrap(),
            WeightsSource::File("/data/w/mine.pth".into())
        );
        assert_eq!(
            WeightsSource::from_config("/abs/mine.pth", base).unwrap(),
            WeightsSource::File("/abs/mine.pth".into())
        );
    }
}
