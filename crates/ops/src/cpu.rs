//! The CPU f32 kernels on plain slices, for callers that run their own backward pass instead of
//! candle's autograd (dfd-model's layer4 fine-tune step and its classifier heads' step): the same
//! kernels as the candle ops of this crate, convolutions on channels-major (C×N×H×W)
//! activations, `nn.Linear` on row-major N×I inputs.
//!
//! Every function panics when a slice's length disagrees with the shape it is given.

use crate::buffers::{written, zeros};
use crate::geometry::{gemm_kernel, ConvGeom};
use crate::kernels::{self, Epilogue};
use crate::linear::Dims;

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

/// The sizes of one `nn.Linear` (N rows of I inputs to O outputs, weight O×I), and the arithmetic
/// its GEMMs use: the calling thread's [`crate::compute::current`] when it was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape(Dims);

impl LinearShape {
    pub fn new(n: usize, i: usize, o: usize) -> Self {
        let compute = crate::compute::current();
        LinearShape(Dims { n, i, o, compute })
    }
}

/// `y = x·wᵀ + b` (N×O), the values of [`crate::linear`].
pub fn linear_forward(s: &LinearShape, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let Dims { n, i, o, .. } = s.0;
    assert_eq!(
        (x.len(), w.len(), b.len()),
        (n * i, o * i, o),
        "linear sizes"
    );
    s.0.forward(x, w, b)
}

/// The gradient w.r.t. the input (N×I), given the output gradient `dy` (N×O) and the weight.
pub fn linear_backward_input(s: &LinearShape, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let Dims { n, i, o, .. } = s.0;
    assert_eq!((dy.len(), w.len()), (n * o, o * i), "linear sizes");
    s.0.grad_input(dy, w)
}

/// The gradient w.r.t. the weight (O×I), given the output gradient `dy` and the input `x`.
pub fn linear_backward_weight(s: &LinearShape, dy: &[f32], x: &[f32]) -> Vec<f32> {
    let Dims { n, i, o, .. } = s.0;
    assert_eq!((dy.len(), x.len()), (n * o, n * i), "linear sizes");
    s.0.grad_weight(dy, x)
}

/// The gradient w.r.t. the bias (O values): the column sums of the output gradient `dy` (N×O).
pub fn linear_backward_bias(s: &LinearShape, dy: &[f32]) -> Vec<f32> {
    let Dims { n, o, .. } = s.0;
    assert_eq!(dy.len(), n * o, "linear sizes");
    s.0.grad_bias(dy)
}
