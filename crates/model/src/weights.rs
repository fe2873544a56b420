//! Where backbone weights come from (Hugging Face hub, a local file, or a seeded random draw),
//! and a strict safetensors reader that names the first missing or mismatching key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::arch::Arch;
use crate::random::random_weights;

/// The torchvision IMAGENET1K_V1 weights of resnext50_32x4d, as published by timm.
pub const DEFAULT_WEIGHTS: &str = "hf:timm/resnext50_32x4d.tv_in1k";
/// File fetched from a hub repository when `hf:<repo>` names none.
pub const DEFAULT_HUB_FILE: &str = "model.safetensors";

/// Where weights come from.
///
/// Text form (FromStr/Display): `hf:<owner>/<name>[/<file>]` (file defaults to
/// `model.safetensors`), `random:<seed>`, anything else is a local `.safetensors` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WeightsSource {
    Hub { repo: String, file: String },
    File(PathBuf),
    Random { seed: u64 },
}

impl WeightsSource {
    /// False only for `Random`: such a model must be labelled "not pretrained" wherever it shows.
    pub fn is_pretrained(&self) -> bool {
        !matches!(self, Self::Random { .. })
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
            let mut parts = rest.splitn(3, '/');
            let (owner, name, file) = (parts.next(), parts.next(), parts.next());
            let repo = match (owner, name) {
                (Some(owner), Some(name)) if !owner.is_empty() && !name.is_empty() => {
                    format!("{owner}/{name}")
                }
                _ => anyhow::bail!("weights `{s}`: expected hf:<owner>/<name>[/<file>]"),
            };
            let file = file
                .filter(|f| !f.is_empty())
                .unwrap_or(DEFAULT_HUB_FILE)
                .to_string();
            Ok(Self::Hub { repo, file })
        } else if let Some(seed) = s.strip_prefix("random:") {
            let seed = seed.parse().with_context(|| {
                format!("weights `{s}`: the seed after `random:` must be an unsigned integer")
            })?;
            Ok(Self::Random { seed })
        } else if s.is_empty() {
            anyhow::bail!(
                "empty weights source (expected hf:<repo>, random:<seed> or a .safetensors path)"
            )
        } else {
            Ok(Self::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for WeightsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub { repo, file } => write!(f, "hf:{repo}/{file}"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Random { seed } => write!(f, "random:{seed}"),
        }
    }
}

/// A resolved source: the local file (None for random) and a stable identity string for cache
/// hashing: `blake3:<hex>` of the file contents for hub and file sources, `random:<seed>` for
/// random weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedWeights {
    pub source: WeightsSource,
    pub path: Option<PathBuf>,
    pub identity: String,
}

impl ResolvedWeights {
    /// A `VarBuilder` over these weights for `arch`: the memory-mapped file with every requested
    /// key and shape checked, or (logged as NOT pretrained) the deterministic random draw of
    /// [`random_weights`].
    pub fn var_builder(
        &self,
        arch: &Arch,
        dtype: DType,
        device: &Device,
    ) -> anyhow::Result<VarBuilder<'static>> {
        match (&self.source, &self.path) {
            (_, Some(path)) => checked_var_builder(path, dtype, device),
            (WeightsSource::Random { seed }, None) => {
                tracing::warn!(weights = %self.source, "using RANDOM backbone weights: NOT pretrained");
                Ok(VarBuilder::from_tensors(
                    random_weights(arch, *seed)?,
                    dtype,
                    device,
                ))
            }
            (other, None) => anyhow::bail!("weights {other} were resolved without a file"),
        }
    }
}

/// Finds the weights file (downloading hub weights unless `HF_HUB_OFFLINE` is 1/true/yes/on, in
/// which case only the cache under `HF_HOME` is looked at) and hashes it.
pub fn resolve_weights(src: &WeightsSource) -> anyhow::Result<ResolvedWeights> {
    let path = match src {
        WeightsSource::Random { seed } => {
            return Ok(ResolvedWeights {
                source: src.clone(),
                path: None,
                identity: format!("random:{seed}"),
            })
        }
        WeightsSource::File(path) => path.clone(),
        WeightsSource::Hub { repo, file } => hub_file(repo, file)?,
    };
    let identity = hash_file(&path)?;
    Ok(ResolvedWeights {
        source: src.clone(),
        path: Some(path),
        identity,
    })
}

fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

fn hub_file(repo: &str, file: &str) -> anyhow::Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    if let Some(path) = cache.model(repo.to_string()).get(file) {
        return Ok(path);
    }
    let how_to_get = format!(
        "To get it: run once with network access (HF_HUB_OFFLINE unset), or download \
         https://huggingface.co/{repo}/resolve/main/{file} yourself and pass its path as the weights, \
         or use random:<seed> for an offline demo (not pretrained)."
    );
    if hub_offline() {
        anyhow::bail!(
            "weights hf:{repo}/{file} are not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set. {how_to_get}",
            cache.path().display()
        );
    }
    tracing::info!(repo, file, "downloading weights from the Hugging Face hub");
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache)
        .with_progress(false)
        .build()
        .context("setting up the Hugging Face hub client")?;
    api.model(repo.to_string())
        .get(file)
        .with_context(|| format!("downloading hf:{repo}/{file}. {how_to_get}"))
}

/// `blake3:<hex>` of the file contents.
fn hash_file(path: &Path) -> anyhow::Result<String> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening weights file {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .with_context(|| format!("hashing weights file {}", path.display()))?;
    Ok(format!("blake3:{}", hasher.finalize().to_hex()))
}

/// Safetensors reader for a `VarBuilder` that checks every requested key and shape, with errors
/// naming the key and both shapes.
struct CheckedSafetensors {
    tensors: MmapedSafetensors,
    path: PathBuf,
}

impl SimpleBackend for CheckedSafetensors {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let expected = shape.dims();
        match self.tensors.get(name).map(|view| view.shape().to_vec()) {
            Err(_) => candle_core::bail!(
                "weights file {} has no tensor `{name}` (the model expects shape {expected:?})",
                self.path.display()
            ),
            Ok(found) if found != expected => candle_core::bail!(
                "weights file {} has `{name}` with shape {found:?}, the model expects {expected:?}",
                self.path.display()
            ),
            Ok(_) => self.tensors.load(name, dev)?.to_dtype(dtype),
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.tensors.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.tensors.get(name).is_ok()
    }
}

/// A `VarBuilder` over a safetensors file that checks every key and shape it is asked for.
fn checked_var_builder(
    path: &Path,
    dtype: DType,
    device: &Device,
) -> anyhow::Result<VarBuilder<'static>> {
    // SAFETY: the file is mapped read-only; like every mmap reader we rely on nobody truncating
    // it while the model is loaded.
    let tensors = unsafe { MmapedSafetensors::new(path) }
        .with_context(|| format!("opening weights file {}", path.display()))?;
    let backend = CheckedSafetensors {
        tensors,
        path: path.to_path_buf(),
    };
    Ok(VarBuilder::from_backend(
        Box::new(backend),
        dtype,
        device.clone(),
    ))
}
