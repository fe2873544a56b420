//! The stage's reading of the pipeline config: which backbone, which directories.

use anyhow::{Context, Result};
use dfd_layout::{backbone_key, DataRoot, PipelineConfig, Split};
use dfd_model::{Arch, Cut, ResolvedWeights};

use crate::dtype::FeatureDtype;
use crate::plan::{DirPlan, FeatureSpec};

/// The feature spec of `config.extract` at `config.preprocess.size`, with resolved `weights`.
pub fn feature_spec(config: &PipelineConfig, weights: &ResolvedWeights) -> Result<FeatureSpec> {
    let x = &config.extract;
    let arch: Arch = x.arch.parse().context("reading extract.arch")?;
    let cut: Cut = x.cut.parse().context("reading extract.cut")?;
    let dtype = FeatureDtype::resolve(&x.dtype, cut)?;
    Ok(FeatureSpec {
        arch_name: x.arch.clone(),
        arch,
        weights_identity: weights.identity.clone(),
        pretrained: weights.source.is_pretrained(),
        cut,
        size: config.preprocess.size as usize,
        dtype,
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
    let backbone = backbone_key(&config.extract.arch, &config.extract.weights);
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
