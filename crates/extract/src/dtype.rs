//! How feature values are stored on disk: f16 or f32, little-endian.

use std::fmt;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use dfd_layout::config::StorageDtype;
use dfd_model::Cut;
use serde::Serialize;

/// Storage type of the `features` tensor of a feature shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    F16,
    F32,
}

impl FeatureDtype {
    /// Resolves the config value `extract.dtype`: `f16`, `f32`, or `auto` = f32 for the pooled
    /// vector (small) and f16 for spatial maps (a 400 px layer3 map is 2.56 MB per image in f32).
    pub fn resolve(setting: StorageDtype, cut: Cut) -> Self {
        match setting {
            StorageDtype::F16 => Self::F16,
            StorageDtype::F32 => Self::F32,
            StorageDtype::Auto if matches!(cut, Cut::Pooled | Cut::Logits) => Self::F32,
            StorageDtype::Auto => Self::F16,
        }
    }

    /// Bytes per stored value.
    pub fn size_in_bytes(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }

    /// The safetensors dtype tag.
    pub fn safetensors(self) -> safetensors::Dtype {
        match self {
            Self::F16 => safetensors::Dtype::F16,
            Self::F32 => safetensors::Dtype::F32,
        }
    }

    fn candle(self) -> DType {
        match self {
            Self::F16 => DType::F16,
            Self::F32 => DType::F32,
        }
    }

    /// Appends the values of `features` (any shape, any device, any float dtype) to `out` as
    /// little-endian values of this type, in row-major order. The conversion to f16 rounds to
    /// nearest (IEEE 754, as `half::f16::from_f32` and numpy's `astype(float16)`), and happens on
    /// the tensor's device, so a GPU sends half the bytes back.
    pub fn append_le_bytes(self, features: &Tensor, out: &mut Vec<u8>) -> Result<()> {
        let host = features
            .to_dtype(self.candle())
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_device(&Device::Cpu))
            .context("converting features for storage")?;
        out.reserve(host.elem_count() * self.size_in_bytes());
        match self {
            Self::F16 => {
                let values = host
                    .to_vec1::<half::f16>()
                    .context("reading f16 features")?;
                out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            }
            Self::F32 => {
                let values = host.to_vec1::<f32>().context("reading f32 features")?;
                out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            }
        }
        Ok(())
    }
}

impl fmt::Display for FeatureDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16",
            Self::F32 => "f32",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_f32_for_vectors_and_f16_for_maps() {
        let resolve = FeatureDtype::resolve;
        assert_eq!(resolve(StorageDtype::Auto, Cut::Pooled), FeatureDtype::F32);
        assert_eq!(resolve(StorageDtype::Auto, Cut::Logits), FeatureDtype::F32);
        assert_eq!(resolve(StorageDtype::Auto, Cut::Layer3), FeatureDtype::F16);
        assert_eq!(resolve(StorageDtype::F32, Cut::Layer4), FeatureDtype::F32);
        assert_eq!(resolve(StorageDtype::F16, Cut::Pooled), FeatureDtype::F16);
    }

    #[test]
    fn f16_bytes_round_to_nearest() {
        // 1 + 2^-11 is halfway between 1 and the next f16 (1 + 2^-10): ties go to even (1.0);
        // 1 + 3·2^-12 rounds up; 65504 is the largest finite f16; 1e-8 underflows to 0.
        let values = [
            1.0f32,
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-12),
            65504.0,
            -2.5,
            1e-8,
        ];
        let t = Tensor::new(&values, &Device::Cpu).unwrap();
        let mut bytes = Vec::new();
        FeatureDtype::F16.append_le_bytes(&t, &mut bytes).unwrap();
        let bits: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(bits, [0x3C00, 0x3C00, 0x3C01, 0x7BFF, 0xC100, 0x0000]);
    }

    #[test]
    fn f32_bytes_are_exact() {
        let values = [0.1f32, -3.5e-20, 7.0];
        let t = Tensor::new(&values, &Device::Cpu).unwrap();
        let mut bytes = vec![0xAA];
        FeatureDtype::F32.append_le_bytes(&t, &mut bytes).unwrap();
        assert_eq!(bytes[0], 0xAA, "appends, keeps what was there");
        let back: Vec<f32> = bytes[1..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, values);
    }
}
