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
//! reductions, which cost more than the convolutions of a fine-tune step. For inference, BatchNorm
//! folded into a convolution, the ReLU and a bottleneck's shortcut are applied as the convolution's
//! output is written ([`conv2d_bias_relu`], [`conv2d_bias_add_relu`]).
//!
//! [`fallback::with_fallbacks`] switches the fast paths off on a thread, so tests cover the
//! candle fallbacks other devices run.
//!
//! [`with_f32`] and [`update_f32`] read tensors and update variables in place on the host without
//! copies where candle's storage allows it (the optimiser's path).

mod batchnorm;
mod bf16;
mod buffers;
mod channels_major;
mod columns;
pub mod compute;
pub mod cpu;
mod direct;
pub mod fallback;
mod geometry;
mod grouped;
mod host;
mod kernels;
mod linear;
mod matmul;
mod op;
mod pool;
pub mod roofline;
mod scratch;
mod storage;
mod threads;
#[cfg(target_arch = "x86_64")]
mod transpose;

pub use batchnorm::{add_relu, batch_norm_train, batch_norm_train_channels_major, BatchNormTrain};
use candle_core::{Result, Tensor};
pub use direct::allow_direct_conv;
use geometry::ConvGeom;
pub use host::{update_f32, with_f32};
pub use linear::linear;
pub use pool::max_pool2d;
use storage::all_cpu_f32;
pub use threads::on_pool;

/// 2-D convolution of `x` (N×C_in×H×W) with `w` (C_out×C_in/groups×kh×kw), dilation 1.
///
/// Same result as `x.conv2d(w, padding, stride, 1, groups)`, and differentiable. CPU f32
/// convolutions with 1×1, 3×3 or 7×7 (the stem) kernels (any stride, padding and groups) take the
/// fast GEMM path; the grouped 3×3 ones (stride 1 or 2, padding 1) a direct AVX-512 kernel instead
/// where the CPU has it (`direct`, [`allow_direct_conv`]). Everything else (other kernel sizes, dtypes, devices) runs candle: its own
/// `conv2d` without groups, and a grouped convolution as one im2col and one batched matmul over
/// the groups (`grouped`; candle's `conv2d` would run one convolution per group). Non-contiguous
/// inputs are made contiguous first.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    match fast_path(x, w, x.dims4()?, stride, padding, groups) {
        Some(geom) => x
            .contiguous()?
            .apply_op2(&w.contiguous()?, op::GemmConv(geom)),
        None if groups > 1 => grouped::conv2d(x, w, stride, padding, groups),
        None => x.conv2d(w, padding, stride, 1, groups),
    }
}

/// [`conv2d`] on channels-major activations: `x` is C_in×N×H×W and the result C_out×N×H_out×W_out,
/// the same values as `conv2d` on the NCHW tensor, permuted. Differentiable.
///
/// In this layout a dense 1×1 convolution (stride dividing H) is ONE GEMM over every image: the
/// kernels see a single image N·H pixels tall, which holds the same values. Other CPU f32 1×1 and
/// 3×3 convolutions run GEMM kernels that read and write channels-major data directly (no gather
/// of images into GEMM columns); anything else permutes to NCHW and back around [`conv2d`].
pub fn conv2d_channels_major(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (c, n, h, wd) = x.dims4()?;
    match fast_path(x, w, (n, c, h, wd), stride, padding, groups) {
        Some(geom) => x
            .contiguous()?
            .apply_op2(&w.contiguous()?, op::GemmConv(geom.channels_major())),
        None => conv2d(&x.permute((1, 0, 2, 3))?, w, stride, padding, groups)?
            .permute((1, 0, 2, 3))?
            .contiguous(),
    }
}

/// `conv2d(x, w, stride, padding, groups) + bias` (bias: `C_out` values, one per output channel),
/// then ReLU when `relu`: the eval-mode conv with BatchNorm folded into `w` and `bias`.
///
/// When nothing asks for gradients (neither argument is a variable or the result of a tracked op)
/// and [`conv2d`] has a fast kernel for the call, this is ONE fused op that adds the bias and
/// applies the ReLU right after each block's GEMM (the direct grouped kernel: as it writes its
/// output), and makes a single output tensor. Otherwise it is the differentiable composition of
/// [`conv2d`], a broadcast add and `relu`, with the same values.
pub fn conv2d_bias_relu(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
    relu: bool,
) -> Result<Tensor> {
    let fused = fused_conv(x, w, bias, None, (stride, padding, groups), relu)?;
    match fused {
        Some(y) => Ok(y),
        None => {
            let y = conv2d(x, w, stride, padding, groups)?;
            let y = y.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
            if relu {
                y.relu()
            } else {
                Ok(y)
            }
        }
    }
}

/// `max(conv2d(x, w, stride, padding, groups) + bias + residual, 0)`: a ResNet bottleneck's last
/// convolution (BatchNorm folded into `w` and `bias`), its shortcut `residual` (the output's
/// shape) and the ReLU after the sum.
///
/// Fused like [`conv2d_bias_relu`] when nothing asks for gradients: the shortcut is added where
/// the bias and ReLU are applied, instead of in a pass over the activations of its own. Otherwise
/// [`conv2d_bias_relu`] then [`add_relu`]. Both give the same bits: the sums run in the same order.
pub fn conv2d_bias_add_relu(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    match fused_conv(x, w, bias, Some(residual), (stride, padding, groups), true)? {
        Some(y) => Ok(y),
        None => add_relu(
            &conv2d_bias_relu(x, w, bias, stride, padding, groups, false)?,
            residual,
        ),
    }
}

/// The fused inference op behind [`conv2d_bias_relu`] and [`conv2d_bias_add_relu`], or `None`
/// when the call has to take the differentiable composition instead (a tracked argument, no fast
/// kernel, a residual of another shape, dtype or device).
fn fused_conv(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    (stride, padding, groups): (usize, usize, usize),
    relu: bool,
) -> Result<Option<Tensor>> {
    let mut args = vec![x, w, bias];
    args.extend(residual);
    if args.iter().any(|t| t.track_op()) || !all_cpu_f32(&args) {
        return Ok(None);
    }
    let Some(geom) = fast_path(x, w, x.dims4()?, stride, padding, groups) else {
        return Ok(None);
    };
    if residual.is_some_and(|r| r.dims4().ok() != Some(geom.y_dims())) {
        return Ok(None);
    }
    let op = op::GemmConvBiasRelu {
        geom,
        residual: residual.map(Tensor::contiguous).transpose()?,
        relu,
    };
    let (w, bias) = (w.contiguous()?, bias.contiguous()?);
    Ok(Some(x.contiguous()?.apply_op3_no_bwd(&w, &bias, &op)?))
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
    x.dims4()
        .is_ok_and(|dims| fast_path(x, w, dims, stride, padding, groups).is_some())
}

/// The geometry when the call qualifies for the GEMM kernels (`x_nchw`: the input's sizes in NCHW
/// order); `None` leaves it (and any shape error) to candle.
fn fast_path(
    x: &Tensor,
    w: &Tensor,
    x_nchw: (usize, usize, usize, usize),
    stride: usize,
    padding: usize,
    groups: usize,
) -> Option<ConvGeom> {
    if !all_cpu_f32(&[x, w]) {
        return None;
    }
    let wd = w.dims4().ok()?;
    if !geometry::gemm_kernel(wd.2, wd.3) {
        return None;
    }
    ConvGeom::new(x_nchw, wd, stride, padding, groups)
}
