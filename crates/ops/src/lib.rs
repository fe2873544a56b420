//! dfd-ops: fast CPU kernels for the convolutions of ResNet/ResNeXt, as candle ops.
//!
//! Knows nothing of models or files. Every function here has the semantics of the candle op it
//! replaces (NCHW tensors, differentiable through candle's autograd) and falls back to candle's own
//! implementation where no fast kernel applies (other devices, dtypes or shapes).
//!
//! The fast path is im2col + GEMM (`gemm` crate, rayon) per block of (group, images), forward and
//! backward (gradients w.r.t. input and weight), registered as a candle `CustomOp2`. It replaces
//! candle's per-group convolutions and its naive transposed-convolution backward.

mod columns;
mod geometry;
mod kernels;
mod matmul;
mod op;
mod scratch;

use candle_core::{DType, Result, Tensor};
use geometry::ConvGeom;

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
    let on_cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !on_cpu_f32(x) || !on_cpu_f32(w) {
        return None;
    }
    let wd = w.dims4().ok()?;
    if !matches!((wd.2, wd.3), (1, 1) | (3, 3)) {
        return None;
    }
    ConvGeom::new(x.dims4().ok()?, wd, stride, padding, groups)
}
