//! Architecture description (torchvision's `ResNet(Bottleneck, ...)` parameters) and named cuts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Output channels of the stem (conv1 + bn1 + relu + maxpool).
pub const STEM_CHANNELS: usize = 64;
/// Bottleneck expansion: a stage's output has `planes * EXPANSION` channels.
pub const EXPANSION: usize = 4;
/// `planes` of the four stages, as in torchvision.
pub const STAGE_PLANES: [usize; 4] = [64, 128, 256, 512];
/// Stride of the first block of each stage, as in torchvision (ResNet v1.5: on the 3×3 conv).
pub const STAGE_STRIDES: [usize; 4] = [1, 2, 2, 2];

/// Architecture: blocks per stage, groups, width per group, number of classes of `fc`.
///
/// Equivalent to `torchvision.models.resnet.ResNet(Bottleneck, blocks, num_classes=num_classes,
/// groups=groups, width_per_group=width_per_group)`. All fields are free, so narrow or shallow
/// variants (used by the tests) are representable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    pub blocks: [usize; 4],
    pub groups: usize,
    pub width_per_group: usize,
    pub num_classes: usize,
}

impl Default for Arch {
    fn default() -> Self {
        Self::resnext50_32x4d()
    }
}

impl Arch {
    /// torchvision `resnext50_32x4d` (the default backbone).
    pub fn resnext50_32x4d() -> Self {
        Self {
            blocks: [3, 4, 6, 3],
            groups: 32,
            width_per_group: 4,
            num_classes: 1000,
        }
    }

    /// torchvision `resnet50`.
    pub fn resnet50() -> Self {
        Self {
            blocks: [3, 4, 6, 3],
            groups: 1,
            width_per_group: 64,
            num_classes: 1000,
        }
    }

    /// torchvision `resnext101_32x8d`.
    pub fn resnext101_32x8d() -> Self {
        Self {
            blocks: [3, 4, 23, 3],
            groups: 32,
            width_per_group: 8,
            num_classes: 1000,
        }
    }

    /// Channels of the activation at `cut`: 64 for the stem, 256/512/1024/2048 for the layers,
    /// 2048 pooled, `num_classes` for the logits.
    pub fn channels(&self, cut: Cut) -> usize {
        match cut {
            Cut::Stem => STEM_CHANNELS,
            Cut::Layer1 => STAGE_PLANES[0] * EXPANSION,
            Cut::Layer2 => STAGE_PLANES[1] * EXPANSION,
            Cut::Layer3 => STAGE_PLANES[2] * EXPANSION,
            Cut::Layer4 => STAGE_PLANES[3] * EXPANSION,
            Cut::Pooled => self.channels(Cut::Layer4),
            Cut::Logits => self.num_classes,
        }
    }

    /// Width of the grouped 3×3 convolution in the blocks of stage `stage` (0-based):
    /// `planes * width_per_group / 64 * groups`, as torchvision computes it.
    pub fn bottleneck_width(&self, stage: usize) -> usize {
        STAGE_PLANES[stage] * self.width_per_group / 64 * self.groups
    }

    /// Floating-point operations of one image's forward pass from a `size`×`size` input to
    /// `cut`: 2 per multiply-add of every convolution (and of `fc` for `Logits`); BatchNorm,
    /// ReLU and pooling are left out. ResNeXt-50 at 224 px to `pooled`: 8.5 GFLOP.
    pub fn flops(&self, size: usize, cut: Cut) -> f64 {
        let conv = |c_out: usize, c_in: usize, k: usize, side: usize| {
            2.0 * (c_out * c_in * k * k) as f64 * (side * side) as f64
        };
        let stem_side = (size + 2 * 3 - 7) / 2 + 1;
        let mut total = conv(STEM_CHANNELS, 3, 7, stem_side);
        let mut side = (stem_side + 2 - 3) / 2 + 1;
        let mut c_in = STEM_CHANNELS;
        let stages = [Cut::Layer1, Cut::Layer2, Cut::Layer3, Cut::Layer4];
        for (stage, &stage_cut) in stages.iter().enumerate() {
            if cut == Cut::Stem {
                break;
            }
            let (width, c_out) = (
                self.bottleneck_width(stage),
                STAGE_PLANES[stage] * EXPANSION,
            );
            for block in 0..self.blocks[stage] {
                let stride = if block == 0 { STAGE_STRIDES[stage] } else { 1 };
                let out_side = (side + 2 - 3) / stride + 1;
                total += conv(width, c_in, 1, side)
                    + conv(width, width / self.groups, 3, out_side)
                    + conv(c_out, width, 1, out_side);
                if block == 0 {
                    total += conv(c_out, c_in, 1, out_side);
                }
                (side, c_in) = (out_side, c_out);
            }
            if cut == stage_cut {
                break;
            }
        }
        if cut == Cut::Logits {
            total += 2.0 * (self.num_classes * c_in) as f64;
        }
        total
    }
}

impl FromStr for Arch {
    type Err = anyhow::Error;

    /// Parses a preset name: `resnext50_32x4d`, `resnet50` or `resnext101_32x8d`.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "resnext50_32x4d" => Ok(Self::resnext50_32x4d()),
            "resnet50" => Ok(Self::resnet50()),
            "resnext101_32x8d" => Ok(Self::resnext101_32x8d()),
            other => anyhow::bail!(
                "unknown architecture `{other}` (expected resnext50_32x4d, resnet50 or resnext101_32x8d)"
            ),
        }
    }
}

/// The torchvision name of a preset (`resnext50_32x4d`, …); other shapes read as
/// `resnet(blocks 1-1-1-1, 8x4d, 5 classes)`.
impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let preset = [
            ("resnext50_32x4d", Self::resnext50_32x4d()),
            ("resnet50", Self::resnet50()),
            ("resnext101_32x8d", Self::resnext101_32x8d()),
        ]
        .into_iter()
        .find(|(_, arch)| arch == self);
        match preset {
            Some((name, _)) => f.write_str(name),
            None => {
                let [a, b, c, d] = self.blocks;
                write!(
                    f,
                    "resnet(blocks {a}-{b}-{c}-{d}, {}x{}d, {} classes)",
                    self.groups, self.width_per_group, self.num_classes
                )
            }
        }
    }
}

/// Named cut points, in network order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cut {
    /// conv1 + bn1 + relu + maxpool.
    Stem,
    Layer1,
    Layer2,
    Layer3,
    Layer4,
    /// Global average pool of layer4, flattened (N×C).
    Pooled,
    /// `fc` applied to `Pooled`.
    Logits,
}

impl Cut {
    /// Every cut, in network order.
    pub const ALL: [Cut; 7] = [
        Cut::Stem,
        Cut::Layer1,
        Cut::Layer2,
        Cut::Layer3,
        Cut::Layer4,
        Cut::Pooled,
        Cut::Logits,
    ];

    /// The name used by Display/FromStr.
    pub fn name(self) -> &'static str {
        match self {
            Cut::Stem => "stem",
            Cut::Layer1 => "layer1",
            Cut::Layer2 => "layer2",
            Cut::Layer3 => "layer3",
            Cut::Layer4 => "layer4",
            Cut::Pooled => "pooled",
            Cut::Logits => "logits",
        }
    }

    /// 0-based stage index for `Layer1`..`Layer4`, `None` otherwise.
    pub fn stage_index(self) -> Option<usize> {
        match self {
            Cut::Layer1 => Some(0),
            Cut::Layer2 => Some(1),
            Cut::Layer3 => Some(2),
            Cut::Layer4 => Some(3),
            _ => None,
        }
    }

    /// Output shape (without batch) for a square input of `size` px.
    pub fn feature_shape(self, arch: &Arch, size: usize) -> Vec<usize> {
        let channels = arch.channels(self);
        match self {
            Cut::Pooled | Cut::Logits => vec![channels],
            _ => {
                // conv1: 7×7, stride 2, padding 3; maxpool: 3×3, stride 2, padding 1.
                let mut side = (size + 2 * 3 - 7) / 2 + 1;
                side = (side + 2 - 3) / 2 + 1;
                for &stride in &STAGE_STRIDES[..self.stage_index().map_or(0, |i| i + 1)] {
                    // 3×3 conv with padding 1 (and the 1×1 downsample) at `stride`.
                    side = (side - 1) / stride + 1;
                }
                vec![channels, side, side]
            }
        }
    }
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cut {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Cut::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown cut `{s}` (expected one of stem, layer1, layer2, layer3, layer4, pooled, logits)"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// torchvision's published multiply-adds: ResNeXt-50 32x4d 4.23 G, ResNet-50 4.09 G at 224 px.
    #[test]
    fn flops_match_the_published_counts() {
        let gflops = |arch: Arch, cut| arch.flops(224, cut) / 1e9;
        let resnext = gflops(Arch::resnext50_32x4d(), Cut::Logits);
        assert!((resnext - 2.0 * 4.23).abs() < 0.1, "{resnext}");
        let resnet = gflops(Arch::resnet50(), Cut::Logits);
        assert!((resnet - 2.0 * 4.09).abs() < 0.1, "{resnet}");
        let arch = Arch::resnext50_32x4d();
        let (l3, l4) = (
            gflops(arch.clone(), Cut::Layer3),
            gflops(arch.clone(), Cut::Layer4),
        );
        assert!(l3 < l4 && l4 == gflops(arch, Cut::Pooled), "{l3} {l4}");
    }
}
