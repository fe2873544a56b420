//! The pipeline configuration: one TOML file per experiment, shared by every stage.
//!
//! Every section has defaults, so a pipeline file states only what differs. Unknown keys and
//! wrong types are errors that name the key (serde's `deny_unknown_fields`, toml's spans). The
//! pipeline's name is the file stem of its path (`pipelines/exp1-mlp-224.toml` → `exp1-mlp-224`).
//!
//! Enum-valued keys (`arch`, `weights`, `cut`, `dtype`, `device`, `head`, `optimizer`,
//! `schedule`, `monitor`) are typed here ([`values`]), so a bad value fails when the file is
//! parsed, in whichever stage reads it first, naming the key, the value and what is accepted.
//! This crate still knows nothing of models: the stages turn these values into `dfd-model` types
//! through their text form.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::paths::Split;

pub mod compute;
mod values;

pub use values::{
    ArchName, BadValue, ComputeType, CutName, DeviceSpec, HeadKind, Monitor, OptimizerKind,
    ScheduleKind, StorageDtype, WeightsSpec,
};

/// A whole pipeline file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Root of every random choice: split, folds, augmentation, shuffling, dropout, init.
    pub seed: u64,
    pub dataset: DatasetConfig,
    pub split: SplitConfig,
    pub preprocess: PreprocessConfig,
    pub extract: ExtractConfig,
    pub train: TrainConfig,
    pub evaluate: EvaluateConfig,
    /// What the study reported for the experiment this pipeline reproduces: documentation only,
    /// read by `dfd-compare`, used by no stage (none hashes it into its inputs, though evaluate's
    /// inputs include the pinned `config.toml`'s bytes).
    /// [`RunDir::pin_config`](crate::paths::RunDir::pin_config) ignores it when comparing. Written
    /// out only when set, so pipelines without it resolve to the same text as before it existed.
    #[serde(skip_serializing_if = "StudyConfig::is_empty")]
    pub study: StudyConfig,
}

/// Where the images are and how folders map to labels (0 real, 1 fake).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Names the outputs: `prepared/<name>/`, `features/<name>/`.
    pub name: String,
    /// The image folder; relative paths are taken from the data directory.
    pub source: PathBuf,
    /// Class sub-folder → label (0 real, 1 fake).
    pub classes: BTreeMap<String, u8>,
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            name: "demo".into(),
            source: PathBuf::from("raw/demo"),
            classes: BTreeMap::from([("real".into(), 0), ("fake".into(), 1)]),
        }
    }
}

/// Holdout test split and k folds over the rest, stratified by label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    pub test_fraction: f64,
    pub folds: u8,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            test_fraction: 0.2,
            folds: 5,
        }
    }
}

/// Image preparation: size, augmentation of the train split, limits, shard size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessConfig {
    /// Side of the square images (shorter side resized to it, then centre-cropped).
    pub size: u32,
    /// Augmented copies per training image (a1..aK); a0 is the un-augmented image.
    pub copies: u32,
    /// Images with more pixels than this (read from the header) are rejected before decoding.
    pub max_pixels: u64,
    /// Upper bound on a shard file's size in bytes.
    pub shard_bytes: u64,
    pub augment: AugmentConfig,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            size: 224,
            copies: 0,
            max_pixels: 100_000_000,
            shard_bytes: 256 << 20,
            augment: AugmentConfig::default(),
        }
    }
}

/// Probabilities and ranges of each training-time augmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    pub hflip_prob: f64,
    pub rotate_prob: f64,
    /// Maximum absolute rotation in degrees.
    pub rotate_degrees: f64,
    pub crop_prob: f64,
    /// Random resized crop: area fraction range and aspect-ratio range.
    pub crop_scale: [f64; 2],
    pub crop_ratio: [f64; 2],
    pub jitter_prob: f64,
    /// Colour jitter factors: each drawn from [1 - x, 1 + x].
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    pub blur_prob: f64,
    /// Gaussian blur sigma range in pixels.
    pub blur_sigma: [f64; 2],
    pub jpeg_prob: f64,
    /// JPEG re-compression quality range (inclusive).
    pub jpeg_quality: [u8; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self {
            hflip_prob: 0.5,
            rotate_prob: 0.3,
            rotate_degrees: 10.0,
            crop_prob: 0.5,
            crop_scale: [0.8, 1.0],
            crop_ratio: [0.9, 1.1],
            jitter_prob: 0.5,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
            blur_prob: 0.2,
            blur_sigma: [0.1, 1.5],
            jpeg_prob: 0.3,
            jpeg_quality: [60, 95],
        }
    }
}

/// The frozen backbone and where to cut it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractConfig {
    pub arch: ArchName,
    pub weights: WeightsSpec,
    pub cut: CutName,
    pub dtype: StorageDtype,
    /// The backbone's arithmetic (`f32` or `bf16`), wherever it runs: extract, predict.
    #[serde(skip_serializing_if = "ComputeType::is_f32")]
    pub compute: ComputeType,
    pub batch_size: usize,
    /// Needs a build with the `cuda` feature for `cuda`/`cuda:N`.
    pub device: DeviceSpec,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            arch: ArchName::ResNeXt50,
            weights: WeightsSpec::default(),
            cut: CutName::Pooled,
            dtype: StorageDtype::Auto,
            compute: ComputeType::F32,
            batch_size: 32,
            device: DeviceSpec::default(),
        }
    }
}

/// Which folds a training run covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FoldChoice {
    /// Train on the other folds, validate on this one.
    One(u8),
    /// `"all"`: k-fold cross-validation, a fresh model per fold.
    All(AllFolds),
}

/// The literal string `"all"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllFolds {
    All,
}

impl FoldChoice {
    /// The folds to train, given the number of folds of the split.
    pub fn folds(&self, k: u8) -> Result<Vec<u8>> {
        match self {
            FoldChoice::One(f) if *f < k => Ok(vec![*f]),
            FoldChoice::One(f) => {
                bail!("train.fold = {f} but the split has only {k} folds (0..{k})")
            }
            FoldChoice::All(_) => Ok((0..k).collect()),
        }
    }
}

impl std::str::FromStr for FoldChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "all" {
            return Ok(FoldChoice::All(AllFolds::All));
        }
        s.parse()
            .map(FoldChoice::One)
            .with_context(|| format!("fold must be a number or `all`, got `{s}`"))
    }
}

/// What is trained on the cached features, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub head: HeadKind,
    /// The trained part's arithmetic (`f32` or `bf16`): training, validation, and scoring by
    /// evaluate and predict.
    #[serde(skip_serializing_if = "ComputeType::is_f32")]
    pub compute: ComputeType,
    /// Hidden layer sizes of the `mlp` head.
    pub hidden: Vec<usize>,
    pub dropout: f64,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Factor of the L1 penalty Σ|θ| over trainable parameters added to the loss.
    pub l1: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub schedule: ScheduleKind,
    /// Linear warm-up steps (step and cosine schedules).
    pub warmup_steps: usize,
    /// Step schedule: multiply the rate by `gamma` every `step_epochs` epochs.
    pub step_epochs: usize,
    pub gamma: f64,
    /// Clip the global gradient norm to this value (0 = off).
    pub clip_grad_norm: f64,
    /// `none`, `balanced`, or two weights `[w_real, w_fake]`.
    pub class_weights: ClassWeights,
    /// Log the batch loss/accuracy every this many steps.
    pub log_every: usize,
    /// Validate every this many steps (0 = at the end of every epoch).
    pub eval_every: usize,
    /// Early-stopping patience in validations (0 = off).
    pub patience: usize,
    pub monitor: Monitor,
    /// Fold to validate on, or `"all"` for k-fold cross-validation.
    pub fold: FoldChoice,
    /// Which augmented copies to train on: a0 plus this many of a1..aK (all when larger).
    pub copies: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            head: HeadKind::Mlp,
            compute: ComputeType::F32,
            hidden: vec![1024, 512],
            dropout: 0.5,
            optimizer: OptimizerKind::AdamW,
            lr: 1e-4,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-2,
            l1: 0.0,
            epochs: 10,
            batch_size: 64,
            schedule: ScheduleKind::None,
            warmup_steps: 0,
            step_epochs: 10,
            gamma: 0.1,
            clip_grad_norm: 0.0,
            class_weights: ClassWeights::default(),
            log_every: 10,
            eval_every: 0,
            patience: 0,
            monitor: Monitor::ValAuc,
            fold: FoldChoice::One(0),
            copies: u32::MAX,
        }
    }
}

/// Class weighting of the cross-entropy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `"none"` or `"balanced"` (inverse class frequency of the training rows).
    Named(String),
    /// Explicit `[w_real, w_fake]`.
    Explicit([f64; 2]),
}

impl Default for ClassWeights {
    fn default() -> Self {
        ClassWeights::Named("none".into())
    }
}

/// Scoring of the test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvaluateConfig {
    /// `best`, `last`, or a checkpoint directory name.
    pub checkpoint: String,
    /// Decision threshold on P(fake).
    pub threshold: f64,
    /// Bootstrap resamples for the 95% intervals.
    pub bootstrap: usize,
}

impl Default for EvaluateConfig {
    fn default() -> Self {
        Self {
            checkpoint: "best".into(),
            threshold: 0.5,
            bootstrap: 1000,
        }
    }
}

/// The study's figure for the experiment a pipeline reproduces (`[study]`, every key optional).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudyConfig {
    /// Which experiment of the study, in words (e.g. "exp. 2: Linear on 400 px layer3 maps").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The study's reported test accuracy, a fraction in [0, 1].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
}

impl StudyConfig {
    /// True when no key is set: the section is then left out of the resolved text.
    pub fn is_empty(&self) -> bool {
        self.experiment.is_none() && self.test_accuracy.is_none()
    }
}

impl PipelineConfig {
    /// Parses a pipeline from TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: Self =
            toml::from_str(text).with_context(|| format!("invalid pipeline config {origin}"))?;
        cfg.validate()
            .with_context(|| format!("invalid pipeline config {origin}"))?;
        Ok(cfg)
    }

    /// Reads and parses a pipeline file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading pipeline config {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The fully resolved config as TOML (every default written out).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serialising the pipeline config")
    }

    /// The splits this config prepares: both, or only `test` for a data set evaluated whole
    /// (`split.test_fraction = 1`, which only [`crate::other_dataset`] sets: a pipeline file must
    /// keep it below 1).
    pub fn splits(&self) -> &'static [Split] {
        if self.split.test_fraction >= 1.0 {
            &[Split::Test]
        } else {
            &[Split::Test, Split::Train]
        }
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> Result<()> {
        let s = &self.split;
        if !(0.0..1.0).contains(&s.test_fraction) {
            bail!(
                "split.test_fraction must be in [0, 1), got {}",
                s.test_fraction
            );
        }
        if s.folds < 2 {
            bail!("split.folds must be at least 2, got {}", s.folds);
        }
        if self.dataset.classes.is_empty() {
            bail!("dataset.classes must map at least one folder to a label");
        }
        if let Some((dir, l)) = self.dataset.classes.iter().find(|(_, l)| **l > 1) {
            bail!("dataset.classes.{dir} = {l}: labels are 0 (real) or 1 (fake)");
        }
        if self.preprocess.size == 0 {
            bail!("preprocess.size must be positive");
        }
        if self.extract.batch_size == 0 || self.train.batch_size == 0 {
            bail!("extract.batch_size and train.batch_size must be positive");
        }
        if let Some(arch) = self.extract.weights.torchvision_arch() {
            if arch != self.extract.arch.to_string() {
                bail!(
                    "extract.weights = \"torchvision:{arch}\" must name extract.arch \
                     (\"{}\"): torchvision's weights of one architecture do not fit another",
                    self.extract.arch
                );
            }
        }
        self.validate_train()?;
        if let ClassWeights::Named(n) = &self.train.class_weights {
            if n != "none" && n != "balanced" {
                bail!(
                    "train.class_weights must be `none`, `balanced` or [w_real, w_fake], got `{n}`"
                );
            }
        }
        self.train.fold.folds(s.folds)?;
        self.check_compute()?;
        if let Some(a) = self.study.test_accuracy {
            if !(0.0..=1.0).contains(&a) {
                bail!("study.test_accuracy must be a fraction in [0, 1], got {a}");
            }
        }
        Ok(())
    }

    /// `extract.compute` and `train.compute` against this machine: `bf16` needs the CPU device
    /// and a CPU with AVX512-BF16, or `DFD_BF16=emulate` ([`compute::BF16_ENV`]). Never a
    /// silent fallback to f32.
    pub fn check_compute(&self) -> Result<()> {
        let keys = [
            ("extract.compute", self.extract.compute),
            ("train.compute", self.train.compute),
        ];
        for (key, _) in keys.iter().filter(|(_, c)| *c == ComputeType::Bf16) {
            if self.extract.device.as_str() != "cpu" {
                bail!(
                    "{key} = \"bf16\" runs on the CPU kernels, but the device is {} \
                     (set {key} = \"f32\", or use --device cpu)",
                    self.extract.device.as_str()
                );
            }
            compute::bf16_usable().with_context(|| format!("{key} = \"bf16\""))?;
        }
        Ok(())
    }

    /// This config with the documentation-only `[study]` section cleared and `extract.device` at
    /// its default: what two configs must share to describe the same experiment. (Which device
    /// computes is not part of it: `--device` may differ between runs of the same experiment.)
    pub fn settings(&self) -> Self {
        Self {
            study: StudyConfig::default(),
            extract: ExtractConfig {
                device: DeviceSpec::default(),
                ..self.extract.clone()
            },
            ..self.clone()
        }
    }

    /// The `[train]` checks that need more than one key.
    fn validate_train(&self) -> Result<()> {
        let t = &self.train;
        if !(0.0..1.0).contains(&t.dropout) {
            bail!("train.dropout must be in [0, 1), got {}", t.dropout);
        }
        if t.schedule == ScheduleKind::Step && t.step_epochs == 0 {
            bail!("train.step_epochs must be positive with train.schedule = \"step\"");
        }
        if t.head == HeadKind::FinetuneLayer4 && self.extract.cut != CutName::Layer3 {
            bail!(
                "train.head = \"finetune-layer4\" trains on layer3 maps, but extract.cut = \"{}\" \
                 (set extract.cut = \"layer3\")",
                self.extract.cut
            );
        }
        Ok(())
    }

    /// The stable identity of a serialisable part of the config (hex blake3 of its JSON).
    pub fn hash_of<T: Serialize>(part: &T) -> String {
        crate::hash::hash_json(part)
    }
}

/// The pipeline's name: its file stem.
pub fn pipeline_name(path: &Path) -> Result<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
        .with_context(|| format!("pipeline path {} has no usable file name", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = PipelineConfig::from_toml("", "test").unwrap();
        assert_eq!(cfg, PipelineConfig::default());
        assert_eq!(cfg.dataset.classes["fake"], 1);
    }

    #[test]
    fn resolved_config_round_trips() {
        let mut cfg = PipelineConfig::default();
        cfg.train.fold = FoldChoice::All(AllFolds::All);
        cfg.train.class_weights = ClassWeights::Explicit([1.0, 2.0]);
        let back = PipelineConfig::from_toml(&cfg.to_toml().unwrap(), "round trip").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn unknown_key_is_named() {
        let err =
            PipelineConfig::from_toml("[train]\nlearning_rate = 1.0\n", "p.toml").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("learning_rate"), "{msg}");
        assert!(msg.contains("p.toml"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let err =
            PipelineConfig::from_toml("[preprocess]\nsize = \"big\"\n", "p.toml").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("size"), "{msg}");
    }

    #[test]
    fn a_bad_enum_value_names_key_value_and_accepted_values() {
        let err =
            PipelineConfig::from_toml("[train]\noptimizer = \"sgd\"\n", "p.toml").unwrap_err();
        let msg = format!("{err:#}");
        for needle in [
            "p.toml",
            "train.optimizer",
            "\"sgd\"",
            "adam, adamw",
            "line 2",
        ] {
            assert!(msg.contains(needle), "no {needle:?} in {msg}");
        }
    }

    #[test]
    fn cross_key_checks_fail_at_parse() {
        for (text, needle) in [
            ("[train]\ndropout = 1.0\n", "train.dropout"),
            (
                "[train]\nschedule = \"step\"\nstep_epochs = 0\n",
                "train.step_epochs",
            ),
            (
                "[train]\nhead = \"finetune-layer4\"\n",
                "extract.cut = \"pooled\"",
            ),
        ] {
            let msg = format!("{:#}", PipelineConfig::from_toml(text, "t").unwrap_err());
            assert!(msg.contains(needle), "no {needle:?} in {msg}");
        }
        let ok = "[extract]\ncut = \"layer3\"\n[train]\nhead = \"finetune-layer4\"\n";
        assert!(PipelineConfig::from_toml(ok, "t").is_ok());
    }

    #[test]
    fn torchvision_weights_must_name_the_architecture() {
        let ok = "[extract]\narch = \"resnet50\"\nweights = \"torchvision:resnet50\"\n";
        PipelineConfig::from_toml(ok, "t.toml").unwrap();
        let bad = "[extract]\narch = \"resnet50\"\nweights = \"torchvision:resnext50_32x4d\"\n";
        let err = PipelineConfig::from_toml(bad, "t.toml").unwrap_err();
        assert!(
            format!("{err:#}").contains("must name extract.arch"),
            "{err:#}"
        );
    }

    #[test]
    fn class_mapping_is_configurable() {
        let cfg = PipelineConfig::from_toml(
            "[dataset]\nclasses = { training_real = 0, training_fake = 1 }\n",
            "t",
        )
        .unwrap();
        assert_eq!(cfg.dataset.classes["training_real"], 0);
        assert_eq!(cfg.dataset.classes["training_fake"], 1);
    }

    #[test]
    fn folds_all_and_one() {
        let cfg = PipelineConfig::from_toml("[train]\nfold = \"all\"\n", "t").unwrap();
        assert_eq!(cfg.train.fold.folds(5).unwrap(), vec![0, 1, 2, 3, 4]);
        let cfg = PipelineConfig::from_toml("[train]\nfold = 3\n", "t").unwrap();
        assert_eq!(cfg.train.fold.folds(5).unwrap(), vec![3]);
        assert!(PipelineConfig::from_toml("[train]\nfold = 7\n", "t").is_err());
        assert!(PipelineConfig::from_toml("[train]\nclass_weights = \"odd\"\n", "t").is_err());
    }

    #[test]
    fn study_is_documentation_written_only_when_set() {
        let plain = PipelineConfig::default().to_toml().unwrap();
        assert!(!plain.contains("[study]"), "{plain}");
        let empty = PipelineConfig::from_toml("[study]\n", "t").unwrap();
        assert_eq!(
            empty.to_toml().unwrap(),
            plain,
            "an empty [study] resolves to nothing"
        );
        let text = "[study]\nexperiment = \"exp. 9\"\ntest_accuracy = 0.677\n";
        let cfg = PipelineConfig::from_toml(text, "t").unwrap();
        assert_eq!(cfg.study.experiment.as_deref(), Some("exp. 9"));
        assert_eq!(cfg.study.test_accuracy, Some(0.677));
        let resolved = cfg.to_toml().unwrap();
        assert!(
            resolved.starts_with(&plain),
            "[study] comes last:\n{resolved}"
        );
        assert_eq!(PipelineConfig::from_toml(&resolved, "t").unwrap(), cfg);
        assert_eq!(cfg.settings(), PipelineConfig::default());
    }

    #[test]
    fn study_accuracy_is_a_fraction() {
        for bad in ["1.5", "-0.1", "nan", "67.7"] {
            let text = format!("[study]\ntest_accuracy = {bad}\n");
            let msg = format!("{:#}", PipelineConfig::from_toml(&text, "t").unwrap_err());
            assert!(msg.contains("study.test_accuracy"), "{bad}: {msg}");
        }
        for ok in ["0", "1", "0.53"] {
            let text = format!("[study]\ntest_accuracy = {ok}\n");
            PipelineConfig::from_toml(&text, "t").unwrap();
        }
        let msg = format!(
            "{:#}",
            PipelineConfig::from_toml("[study]\naccuracy = 0.5\n", "t").unwrap_err()
        );
        assert!(msg.contains("accuracy"), "{msg}");
    }
}
