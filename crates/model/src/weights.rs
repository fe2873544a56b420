//! Where backbone weights come from (Hugging Face hub, torchvision's downloads, a local
//! safetensors or `.pth` file, or a seeded random draw), and a strict reader that names the first
//! missing or mismatching key.

mod file;
mod resolve;
mod source;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::arch::Arch;
use crate::random::random_weights;

pub(crate) use file::expected_tensors;
pub use file::WeightsFile;
pub use resolve::TORCH_HOME_VAR;
pub use source::{torchvision_file, WeightsSource, DEFAULT_HUB_FILE, DEFAULT_WEIGHTS};

/// A resolved source: the local file (None for random weights), where it was found, and the
/// weights identity used in cache hashes: [`WeightsFile::identity`] (a hash of the tensors the
/// architecture reads) for files, `random:<seed>` for random weights.
#[derive(Clone)]
pub struct ResolvedWeights {
    pub source: WeightsSource,
    pub path: Option<PathBuf>,
    /// `local file`, `Hugging Face cache`, `Hugging Face hub <url>`, `torch hub cache`, `random`.
    pub served_by: String,
    pub identity: String,
    file: Option<Arc<WeightsFile>>,
}

impl std::fmt::Debug for ResolvedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedWeights")
            .field("source", &self.source)
            .field("path", &self.path)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl ResolvedWeights {
    /// Weights read from an opened file, with their identity.
    pub(crate) fn from_file(
        source: WeightsSource,
        path: PathBuf,
        served_by: &str,
        identity: String,
        file: Arc<WeightsFile>,
    ) -> Self {
        Self {
            source,
            path: Some(path),
            served_by: served_by.into(),
            identity,
            file: Some(file),
        }
    }

    /// `random:<seed>`: the seeded random draw (no file; identity `random:<seed>`).
    pub fn random(seed: u64) -> Self {
        Self {
            source: WeightsSource::Random { seed },
            path: None,
            served_by: "random".into(),
            identity: format!("random:{seed}"),
            file: None,
        }
    }

    /// A `VarBuilder` over these weights for `arch`: the file with every requested key and shape
    /// checked, or (logged as NOT pretrained) the deterministic random draw of [`random_weights`].
    pub fn var_builder(
        &self,
        arch: &Arch,
        dtype: DType,
        device: &Device,
    ) -> anyhow::Result<VarBuilder<'static>> {
        match (&self.source, &self.file) {
            (_, Some(file)) => Ok(VarBuilder::from_backend(
                Box::new(Shared(file.clone())),
                dtype,
                device.clone(),
            )),
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

/// Finds the weights file of `src` (see [`resolve::find`]), checks every key and shape `arch`
/// reads, and computes the identity.
pub fn resolve_weights(src: &WeightsSource, arch: &Arch) -> anyhow::Result<ResolvedWeights> {
    let found = match (src, resolve::find(src)?) {
        (WeightsSource::Random { seed }, _) => return Ok(ResolvedWeights::random(*seed)),
        (_, Some(found)) => found,
        (other, None) => anyhow::bail!("weights {other} were found without a file"),
    };
    let file = WeightsFile::open(&found.path)?;
    let identity = file
        .identity(arch)
        .with_context(|| format!("checking the weights {src} against {arch}"))?;
    Ok(ResolvedWeights::from_file(
        src.clone(),
        found.path,
        &found.served_by,
        identity,
        Arc::new(file),
    ))
}

/// A weights file shared between the resolved weights and the `VarBuilder`s over it.
struct Shared(Arc<WeightsFile>);

impl SimpleBackend for Shared {
    fn get(
        &self,
        shape: candle_core::Shape,
        name: &str,
        init: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        self.0.get(shape, name, init, dtype, dev)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<candle_core::Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}
