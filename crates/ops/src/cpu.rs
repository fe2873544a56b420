//! The CPU f32 kernels on plain slices, for callers that run their own backward pass instead of
//! candle's autograd (dfd-model's layer4 fine-tune step): the same kernels as the candle ops of
//! this crate, on channels-major (C×N×H×W) activations.
//!
//! Every function panics when a slice's length disagrees with the shape it is given.

use crate::buffers::{written, zeros};
use crate::geometry::{gemm_kernel, ConvGeom};
use crate::kernels::{self, Epilogue};

pub use crate::batchnorm::{zip_map, SliceBatchNorm, SliceBatchNormGrads};
pub use crate::storage::all_cpu_f32;

/// The sizes of one convolution on channels-major activations (OIHW weight, dilation 1), for a
/// kernel the GEMM path takes (1×1, 3×3 or 7×7), and the arithmetic its GEMMs use: the calling
/// thread's [`crate::compute::current`] when it was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape(ConvGeom);

impl ConvShape {
    /// The convolution of `x` (C_in×N×H×W) with a `w` of dims C_out×C_in/groups×k×k; `None` when
    /// the sizes disagree or the kernel is not one the GEMM kernels take (1×1, 3×3, 7×7).
    pub fn channels_major(
        x: (usize, usize, usize, usize),
        w: (usize, usize, usize, usize),
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Option<Self> {
        let (c, n, h, wd) = x;
        if !gemm_kernel(w.2, w.3) {
            return None;
        }
        ConvGeom::new((n, c, h, wd), w, stride, padding, groups)
            .map(|g| ConvShape(g.channels_major()))
    }

    /// Output dims, C_out×N×H_out×W_out.
    pub fn y_dims(&self) -> (usize, usize, usize, usize) {
        self.0.y_dims()
    }
}

/// `y = conv(x, w)`.
pub fn conv_forward(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f32> {
    // SAFETY: `kernels::forward` writes every slot of its output.
    unsafe {
        written(s.0.y_len(), |y| {
            kernels::forward(&s.0, x, w, Epilogue::NONE, y)
        })
    }
}

/// The gradient w.r.t. the input, given the output gradient `dy` and the weight `w`.
pub fn conv_backward_input(s: &ConvShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    // SAFETY: `kernels::backward_input` writes every slot of its output.
    unsafe { written(s.0.x_len(), |dx| kernels::backward_input(&s.0, dy, w, dx)) }
}

/// The gradient w.r.t. the weight, given the input `x` and the output gradient `dy`.
pub fn conv_backward_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dw = zeros(s.0.w_len());
    kernels::backward_weight(&s.0, x, dy, &mut dw);
    dw
}
