//! One-file models (`dfd-export` writes them, `dfd-predict --model` and
//! `scripts/torch_predict.py` read them): a safetensors file holding everything that turns an
//! image into P(fake).
//!
//! Tensors: `backbone.<torchvision name>` for every tensor of the architecture (f32), and
//! `heads.<k>.<name>` for the head of fold `k` (names as in its checkpoint: `classifier.2.weight`,
//! `layer4.0.conv1.weight`, `fc.bias`, …). Metadata (all strings): `format` =
//! [`BUNDLE_FORMAT`], `arch` (`resnext50_32x4d`…), `cut`, `input_size`, `resize`, `mean`, `std`
//! (JSON arrays), `folds` (JSON array), `heads` (JSON array of head specs, `head.json`'s form, in
//! fold order), `threshold` (the pipeline's `evaluate.threshold`), `eer_thresholds` (JSON array,
//! each fold's validation EER threshold or null), `weights_identity`, `pretrained`
//! (`true`/`false`), `pipeline` (the run's resolved pipeline TOML), `checkpoint`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::device::{IMAGENET_MEAN, IMAGENET_STD};
use crate::head::{Head, HeadSpec};
use crate::weights::{expected_tensors, ResolvedWeights, WeightsFile, WeightsSource};

/// The `format` metadata value of a model file of this version.
pub const BUNDLE_FORMAT: &str = "dfd-model/1";
/// How images are brought to `input_size`, in words (the `resize` metadata value).
pub const RESIZE_RULE: &str =
    "decode (EXIF orientation applied) to RGB; resize the shorter side to \
     input_size with Pillow's antialiased bilinear filter; centre crop input_size x input_size; \
     scale to [0, 1]; normalise with mean/std";

/// What a model file says about itself (its metadata, parsed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BundleMeta {
    pub arch: String,
    pub cut: String,
    pub input_size: usize,
    pub folds: Vec<u8>,
    pub heads: Vec<HeadSpec>,
    pub threshold: f64,
    pub eer_thresholds: Vec<Option<f64>>,
    pub weights_identity: String,
    pub pretrained: bool,
    pub pipeline: String,
    pub checkpoint: String,
}

impl BundleMeta {
    /// The architecture: a preset name (`resnext50_32x4d`…), or the JSON of [`Arch`] for other
    /// shapes (tests).
    pub fn arch(&self) -> anyhow::Result<Arch> {
        self.arch
            .parse()
            .or_else(|e| serde_json::from_str(&self.arch).map_err(|_| e))
    }
}

/// A model file read back: its metadata, the backbone weights, and each fold's head.
pub struct Bundle {
    pub meta: BundleMeta,
    pub weights: ResolvedWeights,
    /// `(fold, head, its variables)` in fold order.
    pub heads: Vec<(u8, Head, VarMap)>,
}

/// Writes the model file `path` (atomically): every tensor `arch` reads from `weights`, each
/// fold's head variables, and `meta` (see the module documentation).
pub fn write_bundle(
    path: &Path,
    arch: &Arch,
    weights: &ResolvedWeights,
    heads: &[&VarMap],
    meta: &BundleMeta,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        heads.len() == meta.folds.len() && heads.len() == meta.heads.len(),
        "one head per fold"
    );
    let vb = weights.var_builder(arch, DType::F32, &Device::Cpu)?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, shape) in expected_tensors(arch)? {
        let t = vb
            .get(shape.as_slice(), &name)
            .with_context(|| format!("reading backbone tensor {name}"))?;
        tensors.push((format!("backbone.{name}"), t));
    }
    for (k, varmap) in meta.folds.iter().zip(heads) {
        let vars = varmap.data().lock().expect("VarMap lock poisoned");
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            tensors.push((format!("heads.{k}.{name}"), vars[name].as_detached_tensor()));
        }
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| -> anyhow::Result<_> {
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            Ok((name, t.dims().to_vec(), data))
        })
        .collect::<anyhow::Result<_>>()?;
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                .map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata: HashMap<String, String> = [
        ("format", BUNDLE_FORMAT.to_string()),
        ("arch", meta.arch.clone()),
        ("cut", meta.cut.clone()),
        ("input_size", meta.input_size.to_string()),
        ("resize", RESIZE_RULE.to_string()),
        ("mean", json(&IMAGENET_MEAN.to_vec())),
        ("std", json(&IMAGENET_STD.to_vec())),
        ("folds", json(&meta.folds)),
        ("heads", json(&meta.heads)),
        ("threshold", meta.threshold.to_string()),
        ("eer_thresholds", json(&meta.eer_thresholds)),
        ("weights_identity", meta.weights_identity.clone()),
        ("pretrained", meta.pretrained.to_string()),
        ("pipeline", meta.pipeline.clone()),
        ("checkpoint", meta.checkpoint.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let data = safetensors::serialize(views, Some(metadata))
        .with_context(|| format!("encoding {}", path.display()))?;
    dfd_layout::atomic::write_atomic(path, &data)
}

/// A metadata value written as JSON.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("metadata serialises")
}

/// Reads the model file `path` (see the module documentation) onto `device`: its metadata, its
/// backbone (every key and shape checked, identity recomputed and compared with the recorded
/// one) and each fold's head.
pub fn read_bundle(path: &Path, device: &Device) -> anyhow::Result<Bundle> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let fields = header.metadata().clone().unwrap_or_default();
    let field = |key: &str| -> anyhow::Result<&String> {
        fields.get(key).with_context(|| {
            format!(
                "{} has no `{key}` metadata: it is not a model file written by dfd-export",
                path.display()
            )
        })
    };
    let format = field("format")?;
    if format != BUNDLE_FORMAT {
        bail!(
            "{} is a `{format}` model file; this version reads `{BUNDLE_FORMAT}`",
            path.display()
        );
    }
    let parse = |key: &str| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(field(key)?)
            .with_context(|| format!("{}: metadata `{key}` is not JSON", path.display()))
    };
    let meta = BundleMeta {
        arch: field("arch")?.clone(),
        cut: field("cut")?.clone(),
        input_size: field("input_size")?.parse().context("reading input_size")?,
        folds: serde_json::from_value(parse("folds")?).context("reading folds")?,
        heads: serde_json::from_value(parse("heads")?).context("reading heads")?,
        threshold: field("threshold")?.parse().context("reading threshold")?,
        eer_thresholds: serde_json::from_value(parse("eer_thresholds")?)
            .context("reading eer_thresholds")?,
        weights_identity: field("weights_identity")?.clone(),
        pretrained: field("pretrained")? == "true",
        pipeline: field("pipeline")?.clone(),
        checkpoint: field("checkpoint")?.clone(),
    };
    let arch = meta.arch()?;
    let file = WeightsFile::open_prefixed(path, "backbone.")?;
    let identity = file
        .identity(&arch)
        .with_context(|| format!("checking the backbone of {}", path.display()))?;
    // A pretrained backbone's identity is the hash of its tensors: recomputed, it must match.
    // Random weights keep their `random:<seed>` identity (that of the run's features).
    if meta.weights_identity.starts_with("blake3:") && identity != meta.weights_identity {
        bail!(
            "{}: its backbone tensors have identity {identity}, but the file records {} (it was \
             changed after export)",
            path.display(),
            meta.weights_identity
        );
    }
    let weights = ResolvedWeights::from_file(
        WeightsSource::File(path.to_path_buf()),
        PathBuf::from(path),
        "model file",
        meta.weights_identity.clone(),
        Arc::new(file),
    );
    let tensors = candle_core::safetensors::load_buffer(&bytes, device)
        .with_context(|| format!("reading the tensors of {}", path.display()))?;
    let heads = meta
        .folds
        .iter()
        .zip(&meta.heads)
        .map(|(&k, spec)| {
            let varmap = VarMap::new();
            let head = Head::new(spec, VarBuilder::from_varmap(&varmap, DType::F32, device))
                .with_context(|| format!("building fold {k}'s head {spec}"))?;
            let prefix = format!("heads.{k}.");
            {
                let vars = varmap.data().lock().expect("VarMap lock poisoned");
                for (name, var) in vars.iter() {
                    let t = tensors.get(&format!("{prefix}{name}")).with_context(|| {
                        format!("{} has no tensor `{prefix}{name}`", path.display())
                    })?;
                    var.set(t)
                        .with_context(|| format!("loading `{prefix}{name}`"))?;
                }
            }
            Ok((k, head, varmap))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Bundle {
        meta,
        weights,
        heads,
    })
}
