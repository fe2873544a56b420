//! dfd-ops: fast CPU kernels for the convolutions of ResNet/ResNeXt, as candle ops.
//!
//! Knows nothing of models or files. Every function here has the semantics of the candle op it
//! replaces (NCHW tensors, differentiable through candle's autograd) and falls back to candle's own
//! implementation where no fast kernel applies (other devices, dtypes or shapes).
//!
//! The fast path is im2col + GEMM (`gemm` crate, rayon) per block of (group, images), forward and
//! backward (gradients w.r.t. input and weight), registered as a candle `CustomOp2`. It replaces
//! candle's per-group convolutions and its naive transposed-convolution backward.
//!
//! Train-mode BatchNorm (+ ReLU), the residual `relu(a + b)` and `nn.Linear` are fused ops too
//! ([`batch_norm_train`], [`add_relu`], [`linear`]): candle builds them from many whole-tensor ops and
//! reductions, which cost more than the convolutions of a fine-tune step.
//!
//! [`with_f32`] and [`update_f32`] read tensors and update variables in place on the host without
//! copies where candle's storage allows it (the optimiser's path).

mod batchnorm;
mod columns;
mod geometry;
mod host;
mod kernels;
mod linear;
mod matmul;
mod op;
mod scratch;
mod storage;

pub use batchnorm::{add_relu, batch_norm_train, BatchNormTrain};
use candle_core::{Result, Tensor};
use geometry::ConvGeom;
pub use host::{update_f32, with_f32};
pub use linear::linear;
use storage::all_cpu_f32;

/// 2-D convolution of `x` (N×C_in×H×W) with `w` (C_out×C_in/groups×kh×kw), dilation 1.
///
/// Same result as `x.conv2d(w, padding, stride, 1, groups)`, and differentiable. CPU f32
/// convolutions with 1×1 or 3×3 kernels (any stride, padding and groups) take the fast GEMM path;
/// everything else (other kernel sizes such as the 7×7 stem, other dtypes, other devices) runs
/// candle's own `conv2d`. Non-contiguous inputs are made contiguous first.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    match fast_path(x, w, stride, padding, groups) {
        Some(geom) => x
            .contiguous()?
            .apply_op2(&w.contiguous()?, op::GemmConv(geom)),
        None => x.conv2d(w, padding, stride, 1, groups),
    }
}

/// `conv2d(x, w, stride, padding, groups) + bias` (bias: `C_out` values, one per output channel),
/// then ReLU when `relu`: the eval-mode conv with BatchNorm folded into `w` and `bias`.
///
/// When nothing asks for gradients (neither argument is a variable or the result of a tracked op)
/// and [`conv2d`] has a fast kernel for the call, this is ONE fused op that adds the bias and
/// applies the ReLU inside the GEMM's output loop and makes a single output tensor. Otherwise it is
/// the differentiable composition of [`conv2d`], a broadcast add and `relu`, with the same values.
pub fn conv2d_bias_relu(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
    relu: bool,
) -> Result<Tensor> {
    let untracked = !x.track_op() && !w.track_op() && !bias.track_op();
    let fused =
        fast_path(x, w, stride, padding, groups).filter(|_| untracked && all_cpu_f32(&[bias]));
    match fused {
        Some(geom) => x.contiguous()?.apply_op3_no_bwd(
            &w.contiguous()?,
            &bias.contiguous()?,
            &op::GemmConvBiasRelu { geom, relu },
        ),
        None => {
            let y = conv2d(x, w, stride, padding, groups)?.broadcast_add(&bias.reshape((
                1,
                (),
                1,
                1,
            ))?)?;
            if relu {
                y.relu()
            } else {
                Ok(y)
            }
        }
    }
}

/// Whether [`conv2d`] runs its own GEMM kernels (rather than candle's `conv2d`) for these
/// arguments.
pub fn has_fast_kernel(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> bool {
    fast_path(x, w, stride, padding, groups).is_some()
}

/// The geometry when the call qualifies for the GEMM kernels; `None` leaves it (and any shape
/// error) to candle.
fn fast_path(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Option<ConvGeom> {
    if !all_cpu_f32(&[x, w]) {
        return None;
    }
    let wd = w.dims4().ok()?;
    if !matches!((wd.2, wd.3), (1, 1) | (3, 3)) {
        return None;
    }
    ConvGeom::new(x.dims4().ok()?, wd, stride, padding, groups)
}
