//! BatchNorm2d with PyTorch semantics, in two storage modes sharing one implementation.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::memory_format::MemoryFormat;

/// PyTorch's default `eps` for `nn.BatchNorm2d`.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's default `momentum` for `nn.BatchNorm2d`.
pub const BN_MOMENTUM: f64 = 0.1;

/// How the parameters of a network are held.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BnMode {
    /// Plain tensors, BatchNorm always in eval mode, its statistics folded into a per-channel
    /// scale and shift at build time. Nothing records a graph unless the input is a `Var`.
    Frozen,
    /// Variables from a `VarMap`-backed `VarBuilder`: `weight`/`bias` are trainable, and
    /// `running_mean`/`running_var` are variables updated in place by train-mode forwards with
    /// the given momentum (`BN_MOMENTUM` for PyTorch semantics).
    Trainable { momentum: f64 },
}

/// `nn.BatchNorm2d(c)` over NCHW tensors, parameters named `weight`, `bias`, `running_mean`,
/// `running_var` under the builder's prefix (torchvision names; `num_batches_tracked` unused).
#[derive(Clone, Debug)]
pub enum BatchNorm {
    Frozen {
        scale: Tensor,
        shift: Tensor,
    },
    Trainable {
        weight: Tensor,
        bias: Tensor,
        running_mean: Var,
        running_var: Var,
        momentum: f64,
    },
}

impl BatchNorm {
    /// Reads (or, for a `VarMap`, creates with PyTorch's initial values) the four tensors.
    pub fn new(vb: &VarBuilder, channels: usize, mode: BnMode) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.0))?;
        match mode {
            BnMode::Frozen => {
                let (scale, shift) = fold(&weight, &bias, &running_mean, &running_var)?;
                Ok(Self::Frozen { scale, shift })
            }
            BnMode::Trainable { momentum } => {
                if !running_mean.is_variable() || !running_var.is_variable() {
                    candle_core::bail!(
                        "trainable BatchNorm `{}` needs a VarMap-backed VarBuilder",
                        vb.prefix()
                    )
                }
                Ok(Self::Trainable {
                    weight,
                    bias,
                    running_mean: Var::from_tensor(&running_mean)?,
                    running_var: Var::from_tensor(&running_var)?,
                    momentum,
                })
            }
        }
    }

    /// Eval mode normalises with the running statistics; train mode (only for `Trainable`)
    /// normalises with the batch statistics (biased variance) and updates the running statistics
    /// in place: `r ← (1 − momentum)·r + momentum·s`, with the unbiased variance for `running_var`.
    /// A ReLU follows when `relu` (fused into the train-mode op).
    pub fn forward_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        self.forward_in(x, train, relu, MemoryFormat::Nchw)
    }

    /// [`BatchNorm::forward_t`] on activations laid out as `layout`.
    pub fn forward_in(
        &self,
        x: &Tensor,
        train: bool,
        relu: bool,
        layout: MemoryFormat,
    ) -> Result<Tensor> {
        let y = match self {
            Self::Frozen { scale, shift } => affine(x, scale, shift, layout)?,
            Self::Trainable { weight, bias, .. } if train => {
                let norm = match layout {
                    MemoryFormat::Nchw => dfd_ops::batch_norm_train,
                    MemoryFormat::ChannelsMajor => dfd_ops::batch_norm_train_channels_major,
                };
                let out = norm(x, weight, bias, BN_EPS, relu)?;
                self.update_running_stats(
                    &out.mean,
                    &out.var,
                    x.elem_count() / weight.elem_count(),
                )?;
                return Ok(out.y);
            }
            Self::Trainable {
                weight,
                bias,
                running_mean,
                running_var,
                ..
            } => {
                let (scale, shift) = fold(
                    weight,
                    bias,
                    &running_mean.as_detached_tensor(),
                    &running_var.as_detached_tensor(),
                )?;
                affine(x, &scale, &shift, layout)?
            }
        };
        if relu {
            y.relu()
        } else {
            Ok(y)
        }
    }

    /// Train mode's update of the running statistics (nothing for `Frozen`), from a batch's
    /// per-channel `mean` and biased `var` over `count` values per channel:
    /// `r ← (1 − momentum)·r + momentum·s`, with the unbiased variance for `running_var`.
    pub(crate) fn update_running_stats(
        &self,
        mean: &Tensor,
        var: &Tensor,
        count: usize,
    ) -> Result<()> {
        if let Self::Trainable {
            running_mean,
            running_var,
            momentum,
            ..
        } = self
        {
            let count = count as f64;
            let unbiased = (var * (count / (count - 1.0)))?;
            update_running(running_mean, mean, *momentum)?;
            update_running(running_var, &unbiased, *momentum)?;
        }
        Ok(())
    }

    /// Trainable parameters (`weight`, `bias`); none for `Frozen`.
    pub fn parameters(&self) -> Vec<Tensor> {
        match self {
            Self::Frozen { .. } => Vec::new(),
            Self::Trainable { weight, bias, .. } => vec![weight.clone(), bias.clone()],
        }
    }
}

/// Eval-mode BatchNorm as `x·scale + shift` (C values each): `scale = w / sqrt(var + eps)`,
/// `shift = b − mean·scale`, computed in f32 and returned in the dtype of `weight`.
fn fold(weight: &Tensor, bias: &Tensor, mean: &Tensor, var: &Tensor) -> Result<(Tensor, Tensor)> {
    let dtype = weight.dtype();
    let f32 = |t: &Tensor| t.to_dtype(DType::F32);
    let scale = f32(weight)?.broadcast_div(&(f32(var)? + BN_EPS)?.sqrt()?)?;
    let shift = (f32(bias)? - f32(mean)?.broadcast_mul(&scale)?)?;
    Ok((scale.to_dtype(dtype)?, shift.to_dtype(dtype)?))
}

/// `x·scale + shift` per channel (C values each) over activations laid out as `layout`.
fn affine(x: &Tensor, scale: &Tensor, shift: &Tensor, layout: MemoryFormat) -> Result<Tensor> {
    x.broadcast_mul(&layout.per_channel(scale)?)?
        .broadcast_add(&layout.per_channel(shift)?)
}

fn update_running(running: &Var, batch: &Tensor, momentum: f64) -> Result<()> {
    let updated = ((running.as_detached_tensor() * (1.0 - momentum))? + (batch * momentum)?)?;
    running.set(&updated.to_dtype(running.dtype())?)
}
