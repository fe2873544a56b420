//! The stage: which backbone and which directories a pipeline config asks for, and filling them.

use std::time::Instant;

use anyhow::{Context, Result};
use dfd_layout::cli::{progress, SliceArgs};
use dfd_layout::config::DeviceSpec;
use dfd_layout::{backbone_key, DataRoot, PipelineConfig, Split};
use dfd_model::{parse_device, Arch, Backbone, Cut, DType, ResolvedWeights};
use tracing::info;

use crate::dtype::FeatureDtype;
use crate::plan::{DirPlan, FeatureSpec};
use crate::run::{extract_dir, DirJob};

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
        device_class: if x.device.as_str().starts_with("cuda") {
            "cuda"
        } else {
            "cpu"
        },
        compute: x.compute,
    })
}

/// The `(split, copy)` image directories the stage turns into features: train a0..aK
/// (K = `preprocess.copies`) and test a0, or only test a0 for a data set evaluated whole
/// ([`PipelineConfig::splits`]).
pub fn directories(config: &PipelineConfig) -> Vec<(Split, u32)> {
    let train = config.splits().contains(&Split::Train);
    (0..=config.preprocess.copies)
        .filter(|_| train)
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

/// What [`extract`] did.
pub struct Extracted {
    /// The stage marker's summary: backbone, feature meta, directories, images, seconds.
    pub summary: serde_json::Value,
    /// True when every directory is complete (other `--shard-index` processes may still be
    /// filling some).
    pub complete: bool,
}

/// Fills every feature directory of `config` (those of [`directories`]) from the image shards,
/// with the backbone `weights` on `extract.device`, `batch_size` images per forward pass, doing
/// the shards `slice` owns. `rebuild` is the command that makes the image shards again.
pub fn extract(
    data: &DataRoot,
    config: &PipelineConfig,
    weights: &ResolvedWeights,
    batch_size: usize,
    slice: &SliceArgs,
    rebuild: &str,
) -> Result<Extracted> {
    let spec = feature_spec(config, weights)?;
    let jobs = plan_all(data, config, &spec, rebuild)?
        .into_iter()
        .map(|plan| DirJob::open(plan, slice))
        .collect::<Result<Vec<_>>>()?;
    let todo: usize = jobs.iter().map(DirJob::todo_rows).sum();
    let seconds = if todo == 0 {
        info!("nothing to do: every feature shard of this process is already written");
        0.0
    } else {
        let device = &config.extract.device;
        compute(&jobs, &spec, weights, device, batch_size.max(1), todo)?
    };
    let mut complete = true;
    for job in &jobs {
        complete &= job.finish(&spec)?;
    }
    let peak_rss_mib = crate::peak_rss_bytes().map_or("n/a".into(), |b| {
        format!("{:.1}", b as f64 / f64::from(1 << 20))
    });
    info!(
        images = todo,
        seconds = %format!("{seconds:.1}"),
        img_per_s = %format!("{:.2}", todo as f64 / seconds.max(1e-9)),
        %peak_rss_mib,
        "extract finished"
    );
    let directories: Vec<_> = jobs
        .iter()
        .map(|j| serde_json::json!({"dir": j.plan.output, "rows": j.plan.input.index().rows, "shards": j.plan.n_shards()}))
        .collect();
    let summary = serde_json::json!({
        "backbone": backbone_key(config.extract.arch, &weights.identity),
        "meta": spec.meta(),
        "directories": directories,
        "images_computed": todo,
        "seconds": seconds,
    });
    Ok(Extracted { summary, complete })
}

/// Loads the backbone on `device` and fills every job's missing shards, with a progress bar.
/// Returns the seconds spent extracting (reading, computing, writing; not loading the model).
fn compute(
    jobs: &[DirJob],
    spec: &FeatureSpec,
    weights: &ResolvedWeights,
    device: &DeviceSpec,
    batch_size: usize,
    todo: usize,
) -> Result<f64> {
    let device = parse_device(device.as_str())?;
    let backbone = Backbone::load(&spec.arch, weights, &device, DType::F32)
        .with_context(|| format!("loading the {} backbone", spec.arch_name))?;
    info!(
        images = todo,
        cut = %spec.cut,
        dtype = %spec.dtype,
        compute = %spec.compute,
        shape = %spec.row_shape().iter().map(ToString::to_string).collect::<Vec<_>>().join("x"),
        batch_size,
        "extracting features"
    );
    let started = Instant::now();
    let bar = progress(todo as u64, "img");
    for job in jobs.iter().filter(|j| !j.todo.is_empty()) {
        bar.set_message(job.plan.output.display().to_string());
        info!(dir = %job.plan.output.display(), to_write = job.todo.len(), of = job.plan.n_shards(), "feature shards");
        extract_dir(job, spec, &backbone, &device, batch_size, &bar)?;
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
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
