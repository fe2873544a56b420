//! Memory layouts of activations.

use candle_core::{Result, Tensor};

/// How a ResNet layer's activations are laid out in memory (PyTorch's `memory_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryFormat {
    /// N×C×H×W, as PyTorch.
    Nchw,
    /// C×N×H×W: every 1×1 convolution of the batch is one GEMM with no gather of images (see
    /// [`dfd_ops::conv2d_channels_major`]), and each channel's values are contiguous.
    ChannelsMajor,
}

impl MemoryFormat {
    /// Per-channel values (C of them, any shape) reshaped to broadcast over activations in this
    /// layout: 1×C×1×1 or C×1×1×1.
    pub fn per_channel(self, t: &Tensor) -> Result<Tensor> {
        match self {
            Self::Nchw => t.reshape((1, (), 1, 1)),
            Self::ChannelsMajor => t.reshape(((), 1, 1, 1)),
        }
    }
}
