//! Device, dtype and arithmetic choice, and the ImageNet input normalisation.

use candle_core::{DType, Device, Tensor};
use dfd_layout::config::ComputeType;
use dfd_ops::compute::Compute;

/// ImageNet channel means (RGB), as used by torchvision's pretrained weights.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Parses "cpu" | "cuda" | "cuda:N" into a candle Device. CUDA needs the crate's `cuda`
/// feature; without it the error says so.
pub fn parse_device(s: &str) -> anyhow::Result<Device> {
    let ordinal = match s.trim() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => anyhow::bail!("unknown device `{s}` (expected cpu, cuda or cuda:N)"),
        },
    };
    if !cfg!(feature = "cuda") {
        anyhow::bail!(
            "device `{s}` needs a build with the `cuda` feature (cargo build --features cuda)"
        );
    }
    Device::new_cuda(ordinal).map_err(|e| anyhow::anyhow!("opening CUDA device {ordinal}: {e}"))
}

/// Runs `f` with the model's matrix products in `compute` on this thread
/// ([`dfd_ops::compute::with_compute`]): how the stages apply `extract.compute` and
/// `train.compute`, which [`dfd_layout::PipelineConfig::check_compute`] checked against the
/// machine.
pub fn with_compute<R>(compute: ComputeType, f: impl FnOnce() -> R) -> R {
    let compute = match compute {
        ComputeType::F32 => Compute::F32,
        ComputeType::Bf16 => Compute::Bf16,
    };
    dfd_ops::compute::with_compute(compute, f)
}

/// Parses "f32" | "bf16" | "f16". Half precisions are for GPU devices only.
pub fn parse_dtype(s: &str) -> anyhow::Result<DType> {
    match s.trim() {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => anyhow::bail!("unknown dtype `{other}` (expected f32, bf16 or f16)"),
    }
}

/// u8 NCHW images (0..=255) → `dtype` tensor `(x / 255 − mean) / std` per channel, computed in
/// f32 exactly like torchvision's `ToTensor` + `Normalize`.
pub fn imagenet_normalize(images: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let device = images.device();
    let mean = Tensor::from_slice(&IMAGENET_MEAN, (1, 3, 1, 1), device)?;
    let std = Tensor::from_slice(&IMAGENET_STD, (1, 3, 1, 1), device)?;
    let x = images
        .to_dtype(DType::F32)?
        .broadcast_div(&Tensor::new(255f32, device)?)?;
    x.broadcast_sub(&mean)?.broadcast_div(&std)?.to_dtype(dtype)
}
