//! One reader for every backbone weights file: safetensors (memory-mapped) and PyTorch `.pth`
//! (zip or legacy, through [`dfd_pth`], which never executes the pickle). Names are the model's:
//! a `module.` prefix (as `nn.DataParallel` saves) is stripped, `num_batches_tracked` is never
//! asked for. Every key and shape the model asks for is checked, and the weights identity is the
//! hash of exactly those tensors.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use crate::arch::Arch;
use crate::blocks::Network;
use crate::norm::BnMode;

/// The prefix `nn.DataParallel` / `DistributedDataParallel` puts before every name.
const MODULE_PREFIX: &str = "module.";

/// An opened weights file.
pub struct WeightsFile {
    path: PathBuf,
    tensors: Tensors,
    /// Model name (prefix stripped) → name in the file.
    names: HashMap<String, String>,
}

enum Tensors {
    Safetensors(MmapedSafetensors),
    Pth(BTreeMap<String, dfd_pth::Tensor>),
}

/// One stored tensor as the identity hashes it.
struct Stored<'a> {
    dtype: String,
    shape: Vec<usize>,
    bytes: &'a [u8],
}

impl WeightsFile {
    /// Opens `path` as a `.pth` (zip or legacy pickle) or safetensors file, told apart by their
    /// first bytes, not by the file name.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Self::open_prefixed(path, "")
    }

    /// [`WeightsFile::open`], keeping only the tensors whose names start with `prefix`, with the
    /// prefix removed (e.g. `backbone.` in a model file of [`crate::bundle`]).
    pub fn open_prefixed(path: &Path, prefix: &str) -> anyhow::Result<Self> {
        let mut head = [0u8; 4];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .with_context(|| format!("opening weights file {}", path.display()))?;
        let tensors = if n >= 2 && (head.starts_with(b"PK") || head[0] == 0x80) {
            let dict = dfd_pth::read(path)
                .with_context(|| format!("reading PyTorch weights file {}", path.display()))?;
            Tensors::Pth(dict.into_iter().collect())
        } else {
            // SAFETY: the file is mapped read-only; like every mmap reader we rely on nobody
            // truncating it while the model is loaded.
            let tensors = unsafe { MmapedSafetensors::new(path) }.with_context(|| {
                format!(
                    "opening weights file {}: it is neither a safetensors file nor a PyTorch \
                     .pth (zip or legacy) file",
                    path.display()
                )
            })?;
            Tensors::Safetensors(tensors)
        };
        let stored: Vec<String> = match &tensors {
            Tensors::Safetensors(t) => t.tensors().into_iter().map(|(name, _)| name).collect(),
            Tensors::Pth(t) => t.keys().cloned().collect(),
        };
        let names = stored
            .into_iter()
            .filter_map(|name| {
                let own = name.strip_prefix(prefix)?;
                let model = own.strip_prefix(MODULE_PREFIX).unwrap_or(own).to_string();
                Some((model, name))
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            names,
        })
    }

    /// The file's tensor `name` (a model name), as stored.
    fn stored(&self, name: &str) -> Option<Stored<'_>> {
        let stored = self.names.get(name)?;
        match &self.tensors {
            Tensors::Safetensors(t) => {
                let view = t.get(stored).ok()?;
                Some(Stored {
                    dtype: format!("{:?}", view.dtype()).to_ascii_lowercase(),
                    shape: view.shape().to_vec(),
                    bytes: view.data(),
                })
            }
            Tensors::Pth(t) => {
                let tensor = t.get(stored)?;
                Some(Stored {
                    dtype: pth_dtype_name(tensor.dtype),
                    shape: tensor.shape.clone(),
                    bytes: &tensor.data,
                })
            }
        }
    }

    /// Tensor `name` on `device`, converted to `dtype`.
    fn load(&self, name: &str, dtype: DType, device: &Device) -> anyhow::Result<Tensor> {
        let stored = self.names.get(name).map(String::as_str).unwrap_or(name);
        let tensor = match &self.tensors {
            Tensors::Safetensors(t) => t.load(stored, device)?,
            Tensors::Pth(t) => {
                let tensor = t
                    .get(stored)
                    .with_context(|| format!("no tensor `{name}`"))?;
                let kind = candle_dtype(tensor.dtype).with_context(|| {
                    format!(
                        "tensor `{name}` is {}, which the model cannot use",
                        pth_dtype_name(tensor.dtype)
                    )
                })?;
                Tensor::from_raw_buffer(&tensor.data, kind, &tensor.shape, device)?
            }
        };
        Ok(tensor.to_dtype(dtype)?)
    }

    /// Checks every tensor `arch` reads (name and shape) and returns the weights identity:
    /// `blake3:<hex>` over the sorted (name, dtype, shape, bytes) of those tensors, so the same
    /// values give the same identity whatever the file format, name prefix or extra tensors.
    pub fn identity(&self, arch: &Arch) -> anyhow::Result<String> {
        let mut hasher = blake3::Hasher::new();
        for (name, expected) in expected_tensors(arch)? {
            let stored = self.check(&name, &expected)?;
            hasher.update(name.as_bytes());
            hasher.update(&[0]);
            hasher.update(stored.dtype.as_bytes());
            hasher.update(&[0]);
            hasher.update(&(stored.shape.len() as u64).to_le_bytes());
            for dim in &stored.shape {
                hasher.update(&(*dim as u64).to_le_bytes());
            }
            hasher.update(&(stored.bytes.len() as u64).to_le_bytes());
            hasher.update(stored.bytes);
        }
        Ok(format!("blake3:{}", hasher.finalize().to_hex()))
    }

    /// Tensor `name` if the file has it with shape `expected`; else an error naming the file,
    /// the key and both shapes.
    fn check(&self, name: &str, expected: &[usize]) -> anyhow::Result<Stored<'_>> {
        match self.stored(name) {
            None => anyhow::bail!(
                "weights file {} has no tensor `{name}` (the model expects shape {expected:?})",
                self.path.display()
            ),
            Some(found) if found.shape != expected => anyhow::bail!(
                "weights file {} has `{name}` with shape {:?}, the model expects {expected:?}",
                self.path.display(),
                found.shape
            ),
            Some(found) => Ok(found),
        }
    }
}

impl SimpleBackend for WeightsFile {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.check(name, shape.dims())
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        self.get_unchecked(name, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dtype, dev).map_err(|e| {
            candle_core::Error::Msg(format!("weights file {}: {e:#}", self.path.display()))
        })
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }
}

/// Every (name, shape) `arch` reads from a weights file, sorted by name.
pub(crate) fn expected_tensors(arch: &Arch) -> anyhow::Result<BTreeMap<String, Vec<usize>>> {
    let recorder = Recorder::default();
    let vb = VarBuilder::from_backend(Box::new(recorder.clone()), DType::F32, Device::Cpu);
    Network::new(&vb, arch, BnMode::Frozen).context("listing the tensors of the architecture")?;
    let names = recorder.0.lock().expect("recorder lock poisoned").clone();
    Ok(names)
}

/// A backend that records what is asked for and hands out zeros.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<usize>>>>);

impl SimpleBackend for Recorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .expect("recorder lock poisoned")
            .insert(name.to_string(), shape.dims().to_vec());
        Tensor::zeros(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("the architecture asked for `{name}` without a shape")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// The safetensors spelling of a `.pth` dtype (`f32`, `f16`, `bf16`, `i64`, …), so both formats
/// hash alike.
fn pth_dtype_name(dtype: dfd_pth::DType) -> String {
    use dfd_pth::DType as P;
    match dtype {
        P::Bool => "bool",
        P::U8 => "u8",
        P::I8 => "i8",
        P::I16 => "i16",
        P::I32 => "i32",
        P::I64 => "i64",
        P::F16 => "f16",
        P::BF16 => "bf16",
        P::F32 => "f32",
        P::F64 => "f64",
    }
    .to_string()
}

/// The candle dtype of a `.pth` dtype, where candle has one.
fn candle_dtype(dtype: dfd_pth::DType) -> Option<DType> {
    use dfd_pth::DType as P;
    match dtype {
        P::U8 => Some(DType::U8),
        P::I64 => Some(DType::I64),
        P::F16 => Some(DType::F16),
        P::BF16 => Some(DType::BF16),
        P::F32 => Some(DType::F32),
        P::F64 => Some(DType::F64),
        _ => None,
    }
}
