//! The stage's reading of the pipeline config: which backbone, which directories.

use anyhow::{Context, Result};
use dfd_layout::{backbone_key, DataRoot, PipelineConfig, Split};
use dfd_model::{Arch, Cut, ResolvedWeights};

use crate::dtype::FeatureDtype;
use crate::plan::{DirPlan, FeatureSpec};

/// The feature spec of `config.extract` at `config.preprocess.size`, with resolved `weights`.
pub fn feature_spec(config: &PipelineConfig, weights: &ResolvedWeights) -> Result<FeatureSpec> {
    let x = &config.extract;
    let arch: Arch = x.arch.as_str().parse().context("reading extract.arch")?;
    let cut: Cut = x.cut.as_str().parse().context("reading extract.cut")?;
    Ok(FeatureSpec {
        arch_name: x.arch.to_string(),
        arch,
        weights_identity: weights.identity.clone(),
        pretrained: weights.source.is_pretrained(),
        cut,
        size: config.preprocess.size as usize,
        dtype: FeatureDtype::resolve(x.dtype, cut),
    })
}

/// The `(split, copy)` image directories the stage turns into features: train a0..aK
/// (K = `preprocess.copies`) and test a0.
pub fn directories(config: &PipelineConfig) -> Vec<(Split, u32)> {
    (0..=config.preprocess.copies)
        .map(|k| (Split::Train, k))
        .chain([(Split::Test, 0)])
        .collect()
}

/// Plans every directory of [`directories`]: inputs under `prepared/`, outputs under `features/`.
/// `rebuild` is the command that makes the inputs again (`dfd-preprocess …`).
pub fn plan_all(
    data: &DataRoot,
    config: &PipelineConfig,
    spec: &FeatureSpec,
    rebuild: &str,
) -> Result<Vec<DirPlan>> {
    let name = &config.dataset.name;
    let size = config.preprocess.size;
    let backbone = backbone_key(config.extract.arch, &spec.weights_identity);
    directories(config)
        .into_iter()
        .map(|(split, k)| {
            let input = data.images(name, size, split, k);
            let output = data.features(name, &backbone, size, spec.cut.name(), split, k);
            DirPlan::new(
                &input,
                &output,
                spec,
                config.preprocess.shard_bytes,
                rebuild,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use dfd_layout::config::{ArchName, CutName, DeviceSpec, WeightsSpec};
    use dfd_model::{parse_device, WeightsSource};

    use super::*;

    /// Every value the config accepts turns into the model's type through its text form (the
    /// conversion the stages use), and the model reads it as the same value.
    #[test]
    fn every_config_value_converts_to_the_model() {
        for &name in ArchName::ALL {
            let arch: Arch = name.as_str().parse().unwrap();
            let preset = match name {
                ArchName::ResNeXt50 => Arch::resnext50_32x4d(),
                ArchName::ResNet50 => Arch::resnet50(),
                ArchName::ResNeXt101 => Arch::resnext101_32x8d(),
            };
            assert_eq!(arch, preset, "{name}");
        }
        for &name in CutName::ALL {
            let cut: Cut = name.as_str().parse().unwrap();
            assert_eq!(cut.name(), name.as_str());
        }
        for text in [
            "hf:a/b",
            "hf:a/b/c.safetensors",
            "hf:a/b/",
            "hf:a/b@v2/c.safetensors",
            "torchvision:resnet50",
            "random:7",
            "w.pth",
            "w.safetensors",
        ] {
            let spec: WeightsSpec = text.parse().unwrap();
            let source: WeightsSource = spec.as_str().parse().unwrap();
            assert_eq!(
                source.is_pretrained(),
                !text.starts_with("random:"),
                "{text}"
            );
        }
        for text in ["cpu", "cuda", "cuda:1"] {
            let spec: DeviceSpec = text.parse().unwrap();
            if let Err(e) = parse_device(spec.as_str()) {
                // Without the `cuda` feature (or a GPU) the device cannot open, but its
                // syntax is never what fails.
                assert!(!e.to_string().contains("unknown device"), "{text}: {e}");
            }
        }
    }
}
