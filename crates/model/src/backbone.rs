//! The inference backbone: frozen plain tensors, BatchNorm folded, no graph recorded.

use anyhow::Context;
use candle_core::{DType, Device, Tensor};

use crate::arch::{Arch, Cut};
use crate::blocks::Network;
use crate::norm::BnMode;
use crate::weights::ResolvedWeights;

/// Inference backbone: plain (non-Var) tensors, BatchNorm in eval mode, no graph recorded
/// (unless the input itself is a `Var`, in which case gradients flow to it and the weights act
/// as constants — what Grad-CAM needs).
pub struct Backbone {
    arch: Arch,
    network: Network,
}

impl Backbone {
    /// Loads `arch` from `weights` onto `device` in `dtype` (f32 on the CPU; bf16/f16 only on a
    /// GPU). Files are memory-mapped and every expected key and shape is checked, in torchvision
    /// order: the error names the first missing or mismatching key with both shapes. `random:<seed>`
    /// builds deterministic random weights with calibrated BatchNorm statistics and is logged as
    /// not pretrained.
    pub fn load(
        arch: &Arch,
        weights: &ResolvedWeights,
        device: &Device,
        dtype: DType,
    ) -> anyhow::Result<Self> {
        if device.is_cpu() && dtype != DType::F32 {
            anyhow::bail!(
                "dtype {} is only supported on a GPU device; use f32 on the CPU",
                dtype.as_str()
            );
        }
        let vb = weights.var_builder(arch, dtype, device)?;
        let network = Network::new(&vb, arch, BnMode::Frozen)
            .with_context(|| format!("loading {arch} from weights {}", weights.source))?;
        Ok(Self {
            arch: arch.clone(),
            network,
        })
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Runs from the normalised input image (N×3×H×W) to `cut`.
    pub fn forward_to(&self, x: &Tensor, cut: Cut) -> candle_core::Result<Tensor> {
        self.network.forward_range(x, None, cut, false)
    }

    /// Runs from the activation at `from` (e.g. cached layer3 maps) to `to`, which must come
    /// after `from`.
    pub fn forward_between(&self, x: &Tensor, from: Cut, to: Cut) -> candle_core::Result<Tensor> {
        if to <= from {
            candle_core::bail!("forward_between: `{to}` does not come after `{from}`")
        }
        self.network.forward_range(x, Some(from), to, false)
    }
}
