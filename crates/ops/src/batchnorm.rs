//! Train-mode BatchNorm2d (+ optional ReLU) and the residual `relu(a + b)` as fused candle ops.
//!
//! candle composes train-mode BatchNorm from ~10 whole-tensor ops forward (and as many reductions
//! and broadcasts backward), each a full pass over memory with a fresh allocation. Here the
//! forward is two passes (channel statistics, then the affine map with the ReLU), and the backward
//! two more (per-channel gradient sums, then the input gradient), parallel over channels/planes.

use candle_core::Tensor;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape};
use rayon::prelude::*;

use crate::buffers::par_collect;
use crate::storage::{all_cpu_f32, f32_data};

/// What [`batch_norm_train`] returns: the normalised output and the batch statistics it used.
pub struct BatchNormTrain {
    /// `relu?(x̂·weight + bias)`, N×C×H×W, differentiable w.r.t. `x`, `weight` and `bias`.
    pub y: Tensor,
    /// Per-channel batch mean (C values), detached.
    pub mean: Tensor,
    /// Per-channel biased batch variance (C values), detached: the one that normalised `x`.
    pub var: Tensor,
}

/// PyTorch's train-mode `batch_norm(x, weight, bias, eps)` over an N×C×H×W `x` (statistics over
/// N, H and W; x̂ = (x − mean)/√(var + eps) with the biased variance), followed by a ReLU when
/// `relu`. Gradients flow to `x` (through the batch statistics too), `weight` and `bias`.
///
/// CPU f32 tensors take fused kernels; anything else (other devices, dtypes) runs the same maths
/// as a composition of candle ops. Updating running statistics is the caller's business: it gets
/// the batch statistics back.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<BatchNormTrain> {
    let (_, c, h, w) = x.dims4()?;
    let fallback = || composed(x, weight, bias, eps, relu);
    normalize(x, weight, bias, eps, relu, (c, h * w), fallback)
}

/// [`batch_norm_train`] over a channels-major C×N×H×W `x` (the same statistics per channel; `y`
/// has `x`'s layout).
pub fn batch_norm_train_channels_major(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<BatchNormTrain> {
    let (c, n, h, w) = x.dims4()?;
    // The NCHW maths on the 1×C×(N·H)×W view, which holds the same values per channel.
    let fallback = || {
        let out = composed(&x.reshape((1, c, n * h, w))?, weight, bias, eps, relu)?;
        Ok(BatchNormTrain {
            y: out.y.reshape((c, n, h, w))?,
            ..out
        })
    };
    normalize(x, weight, bias, eps, relu, (c, n * h * w), fallback)
}

/// Train-mode BatchNorm of `x`, whose values are runs of `plane` values of one channel, channel
/// after channel (`channels` of them), repeated per image. Tensors the fused kernels do not take
/// (other devices, dtypes) go to `fallback`, the same maths in candle ops.
fn normalize(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
    (channels, plane): (usize, usize),
    fallback: impl FnOnce() -> Result<BatchNormTrain>,
) -> Result<BatchNormTrain> {
    if x.elem_count() / channels < 2 {
        candle_core::bail!(
            "train-mode BatchNorm needs more than one value per channel, got {:?}",
            x.shape()
        )
    }
    if !all_cpu_f32(&[x, weight, bias]) {
        return fallback();
    }
    let x = x.contiguous()?;
    let stats = x.apply_op1_no_bwd(&ChannelMoments { channels, plane })?;
    let moments = stats.to_vec2::<f32>()?;
    let norm = Norm::new(
        (channels, plane),
        moments[0].clone(),
        &moments[1],
        eps,
        relu,
    );
    let op = BatchNormOp(norm);
    let y = x.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    Ok(BatchNormTrain {
        y,
        mean: stats.get(0)?,
        var: stats.get(1)?,
    })
}

/// `max(a + b, 0)` for two tensors of one shape (the end of a residual block), differentiable
/// w.r.t. both. CPU f32 runs one fused op forward and backward; anything else is candle's
/// `(a + b).relu()`.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() || !all_cpu_f32(&[a, b]) {
        return (a + b)?.relu();
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

/// The candle-op composition [`batch_norm_train`] falls back to.
fn composed(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<BatchNormTrain> {
    let count = x.elem_count() / x.dim(1)?;
    let per_channel = |t: &Tensor| t.reshape((1, (), 1, 1));
    let mean = (x.sum_keepdim((0, 2, 3))? / count as f64)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = (centred.sqr()?.sum_keepdim((0, 2, 3))? / count as f64)?;
    let normed = centred.broadcast_div(&(var.clone() + eps)?.sqrt()?)?;
    let y = normed
        .broadcast_mul(&per_channel(weight)?)?
        .broadcast_add(&per_channel(bias)?)?;
    Ok(BatchNormTrain {
        y: if relu { y.relu()? } else { y },
        mean: mean.detach().flatten_all()?,
        var: var.detach().flatten_all()?,
    })
}

/// All contiguous f32 values of `layout` in `storage`.
fn data<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    f32_data(storage, layout, layout.shape().elem_count(), what)
}

/// `f(c, offsets)` for every channel `c` in parallel, `offsets` iterating the start of each of
/// channel `c`'s H×W planes (one per image) in an N×C×plane slice of `len` values.
fn per_channel<T: Send>(
    len: usize,
    channels: usize,
    plane: usize,
    f: impl Fn(usize, &mut dyn Iterator<Item = usize>) -> T + Sync,
) -> Vec<T> {
    let images = len / (channels * plane).max(1);
    (0..channels)
        .into_par_iter()
        .map(|c| f(c, &mut (0..images).map(|n| (n * channels + c) * plane)))
        .collect()
}

/// Σ f(x[i], y[i], z[i]) over three slices of one length: 8 f32 lanes (independent chains the
/// compiler vectorises), finished in f64.
fn sum8(x: &[f32], y: &[f32], z: &[f32], f: impl Fn(f32, f32, f32) -> f32) -> f64 {
    let mut lanes = [0f32; 8];
    let (xs, ys, zs) = (x.chunks_exact(8), y.chunks_exact(8), z.chunks_exact(8));
    let tail: f32 = (xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .zip(zs.remainder()))
    .map(|((&a, &b), &c)| f(a, b, c))
    .sum();
    for ((a, b), c) in xs.zip(ys).zip(zs) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane += f(a[l], b[l], c[l]);
        }
    }
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(tail)
}

/// Per-channel mean and biased variance of a tensor of runs of `plane` values per channel (as
/// [`normalize`] takes it), as a 2×C tensor; two passes with per-plane f32 sums accumulated in
/// f64.
struct ChannelMoments {
    channels: usize,
    plane: usize,
}

impl CustomOp1 for ChannelMoments {
    fn name(&self) -> &'static str {
        "dfd-channel-moments"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = data(s, l, "input")?;
        let (mean, var) = moments(x, self.channels, self.plane);
        Ok((
            CpuStorage::F32([mean, var].concat()),
            Shape::from((2, self.channels)),
        ))
    }
}

/// Per-channel mean and biased variance of `x` (runs of `plane` values per channel, `channels`
/// channels per image): two passes with per-plane f32 sums accumulated in f64.
fn moments(x: &[f32], channels: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let count = (x.len() / channels) as f64;
    let moments = per_channel(x.len(), channels, plane, |_, offsets| {
        let planes: Vec<&[f32]> = offsets.map(|o| &x[o..o + plane]).collect();
        let sum: f64 = planes.iter().map(|p| sum8(p, p, p, |v, _, _| v)).sum();
        let mean = (sum / count) as f32;
        let sq: f64 = planes
            .iter()
            .map(|p| sum8(p, p, p, |v, _, _| (v - mean) * (v - mean)))
            .sum();
        (mean, (sq / count) as f32)
    });
    moments.into_iter().unzip()
}

/// The constants of one train-mode BatchNorm call.
#[derive(Clone)]
struct Norm {
    channels: usize,
    plane: usize,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    relu: bool,
}

impl Norm {
    /// The constants for batch statistics `mean` and biased `var`.
    fn new(
        (channels, plane): (usize, usize),
        mean: Vec<f32>,
        var: &[f32],
        eps: f64,
        relu: bool,
    ) -> Self {
        let invstd = var
            .iter()
            .map(|&v| (1.0 / (f64::from(v) + eps).sqrt()) as f32)
            .collect();
        Norm {
            channels,
            plane,
            mean,
            invstd,
            relu,
        }
    }

    /// x̂ of value `v` in channel `c`.
    fn xhat(&self, c: usize, v: f32) -> f32 {
        (v - self.mean[c]) * self.invstd[c]
    }

    /// The gradient reaching the pre-ReLU output: `dy`, zeroed where the ReLU cut (`y ≤ 0`).
    fn masked(&self, dy: f32, y: f32) -> f32 {
        if self.relu && y <= 0.0 {
            0.0
        } else {
            dy
        }
    }

    /// `y = relu?(x̂·weight + bias)`.
    fn forward(&self, x: &[f32], weight: &[f32], bias: &[f32]) -> Vec<f32> {
        par_collect(x.len(), self.plane, |i| {
            let c = i % self.channels;
            let scale = self.invstd[c] * weight[c];
            let shift = bias[c] - self.mean[c] * scale;
            let relu = self.relu;
            x[i * self.plane..(i + 1) * self.plane]
                .iter()
                .map(move |&v| {
                    let z = v * scale + shift;
                    if relu {
                        z.max(0.0)
                    } else {
                        z
                    }
                })
        })
    }

    /// Per channel Σg and Σg·x̂, g = `dy` masked by the ReLU (from the output `y`).
    fn grad_sums(&self, x: &[f32], y: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let plane = self.plane;
        let sums = per_channel(x.len(), self.channels, plane, |c, offsets| {
            let (sg, sgx) = offsets.fold((0f64, 0f64), |(sg, sgx), o| {
                let (xp, yp, gp) = (&x[o..o + plane], &y[o..o + plane], &dy[o..o + plane]);
                let sum_g = sum8(xp, yp, gp, |_, y, g| self.masked(g, y));
                let sum_gx = sum8(xp, yp, gp, |x, y, g| self.masked(g, y) * self.xhat(c, x));
                (sg + sum_g, sgx + sum_gx)
            });
            (sg as f32, sgx as f32)
        });
        sums.into_iter().unzip()
    }

    /// The gradient w.r.t. the input `x`, given the sums of [`Norm::grad_sums`].
    fn grad_input(
        &self,
        [x, y, dy]: [&[f32]; 3],
        weight: &[f32],
        (sum_g, sum_gx): (&[f32], &[f32]),
    ) -> Vec<f32> {
        let count = (x.len() / self.channels) as f32;
        par_collect(x.len(), self.plane, |i| {
            let c = i % self.channels;
            let range = i * self.plane..(i + 1) * self.plane;
            let k = weight[c] * self.invstd[c] / count;
            let (sum_g, sum_gx) = (sum_g[c], sum_gx[c]);
            let parts = x[range.clone()]
                .iter()
                .zip(&y[range.clone()])
                .zip(&dy[range]);
            parts.map(move |((&v, &o), &g)| {
                let g = self.masked(g, o);
                k * (count * g - sum_g - self.xhat(c, v) * sum_gx)
            })
        })
    }
}

/// Train-mode BatchNorm (+ ReLU) on channels-major CPU f32 slices (each channel one contiguous
/// run of values), with its backward: the kernels behind [`batch_norm_train_channels_major`], for
/// callers that run their own backward pass instead of candle's autograd.
pub struct SliceBatchNorm {
    norm: Norm,
    var: Vec<f32>,
}

/// What [`SliceBatchNorm::backward`] returns.
pub struct SliceBatchNormGrads {
    pub x: Vec<f32>,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl SliceBatchNorm {
    /// Normalises `x` (`weight.len()` channels of equal runs) with its batch statistics:
    /// returns the statistics and `y = relu?(x̂·weight + bias)`. Panics when `bias` and `weight`
    /// differ in length or `x` does not split into one run per channel of at least two values.
    pub fn forward(
        x: &[f32],
        weight: &[f32],
        bias: &[f32],
        eps: f64,
        relu: bool,
    ) -> (Self, Vec<f32>) {
        let channels = weight.len();
        assert!(
            bias.len() == channels && x.len().is_multiple_of(channels) && x.len() / channels >= 2,
            "batch norm of {} values over {channels} channels",
            x.len()
        );
        let plane = x.len() / channels;
        let (mean, var) = moments(x, channels, plane);
        let norm = Norm::new((channels, plane), mean, &var, eps, relu);
        let y = norm.forward(x, weight, bias);
        (SliceBatchNorm { norm, var }, y)
    }

    /// Per-channel batch mean.
    pub fn mean(&self) -> &[f32] {
        &self.norm.mean
    }

    /// Per-channel biased batch variance (the one that normalised `x`).
    pub fn var(&self) -> &[f32] {
        &self.var
    }

    /// Gradients given the forward's `x` and `y` and the output gradient `dy` (one length).
    pub fn backward(
        &self,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        weight: &[f32],
    ) -> SliceBatchNormGrads {
        assert!(
            y.len() == x.len() && dy.len() == x.len(),
            "batch norm backward sizes"
        );
        let (sum_g, sum_gx) = self.norm.grad_sums(x, y, dy);
        SliceBatchNormGrads {
            x: self.norm.grad_input([x, y, dy], weight, (&sum_g, &sum_gx)),
            weight: sum_gx,
            bias: sum_g,
        }
    }
}

/// Arguments (x, weight, bias); the statistics are constants of the op, computed from `x`, and
/// the backward accounts for their dependence on `x`.
struct BatchNormOp(Norm);

/// Arguments (x, y, dy) → 2×C: per channel Σg and Σg·x̂, g = dy masked by the ReLU.
struct GradSums(Norm);

/// Arguments (x, y, dy) → dx, with weight and the sums from [`GradSums`] as constants.
struct GradInput {
    norm: Norm,
    weight: Vec<f32>,
    sum_g: Vec<f32>,
    sum_gx: Vec<f32>,
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "dfd-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let norm = &self.0;
        let x = data(s1, l1, "input")?;
        let weight = data(s2, l2, "weight")?;
        let bias = data(s3, l3, "bias")?;
        if weight.len() != norm.channels || bias.len() != norm.channels {
            candle_core::bail!(
                "dfd-ops batch norm: weight/bias of {}/{} values for {} channels",
                weight.len(),
                bias.len(),
                norm.channels
            )
        }
        let y = norm.forward(x, weight, bias);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let sums = x.apply_op3_no_bwd(y, &dy, &GradSums(self.0.clone()))?;
        let dx = if x.track_op() {
            let rows = sums.to_vec2::<f32>()?;
            let op = GradInput {
                norm: self.0.clone(),
                weight: weight.to_dtype(DType::F32)?.to_vec1()?,
                sum_g: rows[0].clone(),
                sum_gx: rows[1].clone(),
            };
            Some(x.apply_op3_no_bwd(y, &dy, &op)?)
        } else {
            None
        };
        let dweight = weight.track_op().then(|| sums.get(1)).transpose()?;
        let dbias = bias.track_op().then(|| sums.get(0)).transpose()?;
        Ok((dx, dweight, dbias))
    }
}

/// The three same-shape arguments (x, y, dy) of the backward ops, with their channel geometry.
fn backward_args<'a>(norm: &Norm, args: [(&'a CpuStorage, &Layout); 3]) -> Result<[&'a [f32]; 3]> {
    let [x, y, dy] = args.map(|(s, l)| data(s, l, "backward argument"));
    let (x, y, dy) = (x?, y?, dy?);
    if y.len() != x.len() || dy.len() != x.len() || x.len() % (norm.channels * norm.plane) != 0 {
        candle_core::bail!("dfd-ops batch norm backward: argument sizes disagree")
    }
    Ok([x, y, dy])
}

impl CustomOp3 for GradSums {
    fn name(&self) -> &'static str {
        "dfd-batch-norm-grad-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let [x, y, dy] = backward_args(&self.0, [(s1, l1), (s2, l2), (s3, l3)])?;
        let (sum_g, sum_gx) = self.0.grad_sums(x, y, dy);
        Ok((
            CpuStorage::F32([sum_g, sum_gx].concat()),
            Shape::from((2, self.0.channels)),
        ))
    }
}

impl CustomOp3 for GradInput {
    fn name(&self) -> &'static str {
        "dfd-batch-norm-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let args = backward_args(&self.norm, [(s1, l1), (s2, l2), (s3, l3)])?;
        let dx = self
            .norm
            .grad_input(args, &self.weight, (&self.sum_g, &self.sum_gx));
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// `max(a + b, 0)`; its gradient `dy·[y > 0]` goes to both arguments.
struct AddRelu;

/// Arguments (y, dy) → `dy·[y > 0]`.
struct ReluGrad;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "dfd-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (data(s1, l1, "left")?, data(s2, l2, "right")?);
        let y = zip_map(a, b, |a, b| (a + b).max(0.0));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = y.apply_op2_no_bwd(&dy.contiguous()?, &ReluGrad)?;
        Ok((a.track_op().then(|| g.clone()), b.track_op().then_some(g)))
    }
}

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "dfd-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, dy) = (data(s1, l1, "output")?, data(s2, l2, "output gradient")?);
        let g = zip_map(y, dy, |y, dy| if y > 0.0 { dy } else { 0.0 });
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}

/// `f(a[i], b[i])` for every `i`, in parallel chunks. Panics when the lengths differ.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map sizes");
    const CHUNK: usize = 1 << 14;
    par_collect(a.len(), CHUNK, |i| {
        let range = i * CHUNK..((i + 1) * CHUNK).min(a.len());
        a[range.clone()]
            .iter()
            .zip(&b[range])
            .map(|(&a, &b)| f(a, b))
    })
}
