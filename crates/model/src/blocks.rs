//! The building blocks of torchvision's ResNet/ResNeXt, written once and parametrised by
//! [`BnMode`]: plain frozen tensors for inference, `VarMap` variables for fine-tuning.
//!
//! Every convolution goes through [`dfd_ops::conv2d`]. Parameter names are torchvision's.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::arch::{Arch, Cut, EXPANSION, STAGE_PLANES, STAGE_STRIDES, STEM_CHANNELS};
use crate::memory_format::MemoryFormat;
use crate::norm::{BatchNorm, BnMode};

mod tape;

pub(crate) use tape::{insert_grad, ResLayerTape};

/// A bias-free `nn.Conv2d` with "same"-style padding `k / 2` (7→3, 3→1, 1→0).
#[derive(Clone, Debug)]
pub struct Conv {
    weight: Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
}

impl Conv {
    /// Reads `<prefix>.weight` of shape `c_out × c_in/groups × k × k`. A fresh variable is
    /// initialised like torchvision's ResNet (Kaiming normal, fan_out, ReLU gain).
    pub fn new(
        vb: &VarBuilder,
        (c_in, c_out): (usize, usize),
        kernel: usize,
        stride: usize,
        groups: usize,
    ) -> Result<Self> {
        let stdev = (2.0 / (c_out * kernel * kernel) as f64).sqrt();
        let weight = vb.get_with_hints(
            (c_out, c_in / groups, kernel, kernel),
            "weight",
            Init::Randn { mean: 0.0, stdev },
        )?;
        Ok(Self {
            weight,
            stride,
            padding: kernel / 2,
            groups,
        })
    }

    /// The convolution of activations laid out as `layout`.
    pub fn forward(&self, x: &Tensor, layout: MemoryFormat) -> Result<Tensor> {
        let conv = match layout {
            MemoryFormat::Nchw => dfd_ops::conv2d,
            MemoryFormat::ChannelsMajor => dfd_ops::conv2d_channels_major,
        };
        conv(x, &self.weight, self.stride, self.padding, self.groups)
    }
}

/// Conv followed by BatchNorm, the unit torchvision repeats (`convK`/`bnK`, `downsample.0`/`.1`).
#[derive(Clone, Debug)]
pub struct ConvBn {
    conv: Conv,
    norm: Norm,
}

/// The BatchNorm of a [`ConvBn`].
#[derive(Clone, Debug)]
enum Norm {
    /// `BnMode::Frozen`: the eval-mode affine map is folded into the conv weight (scaled per
    /// output channel) and this per-channel bias (C values), so conv + BN (+ ReLU) is one op.
    Folded(Tensor),
    /// `BnMode::Trainable`: a separate BatchNorm after the conv.
    Separate(BatchNorm),
}

impl ConvBn {
    /// `conv` and `bn` are the two builder prefixes (e.g. `conv1`/`bn1` or `downsample.0`/`downsample.1`).
    pub fn new(
        (conv_vb, bn_vb): (VarBuilder, VarBuilder),
        channels: (usize, usize),
        kernel: usize,
        stride: usize,
        groups: usize,
        mode: BnMode,
    ) -> Result<Self> {
        let mut conv = Conv::new(&conv_vb, channels, kernel, stride, groups)?;
        let norm = match BatchNorm::new(&bn_vb, channels.1, mode)? {
            BatchNorm::Frozen { scale, shift } => {
                conv.weight = fold_scale(&conv.weight, &scale)?;
                Norm::Folded(shift.flatten_all()?)
            }
            bn => Norm::Separate(bn),
        };
        Ok(Self { conv, norm })
    }

    /// BN(conv(x)), followed by a ReLU when `relu`, on NCHW activations.
    pub fn forward_t(&self, x: &Tensor, train: bool, relu: bool) -> Result<Tensor> {
        self.forward_in(x, train, relu, MemoryFormat::Nchw)
    }

    fn forward_in(
        &self,
        x: &Tensor,
        train: bool,
        relu: bool,
        layout: MemoryFormat,
    ) -> Result<Tensor> {
        let Conv {
            weight,
            stride,
            padding,
            groups,
        } = &self.conv;
        match (&self.norm, layout) {
            (Norm::Folded(bias), MemoryFormat::Nchw) => {
                dfd_ops::conv2d_bias_relu(x, weight, bias, *stride, *padding, *groups, relu)
            }
            (Norm::Folded(bias), MemoryFormat::ChannelsMajor) => {
                let y = self
                    .conv
                    .forward(x, layout)?
                    .broadcast_add(&layout.per_channel(bias)?)?;
                if relu {
                    y.relu()
                } else {
                    Ok(y)
                }
            }
            (Norm::Separate(bn), layout) => {
                bn.forward_in(&self.conv.forward(x, layout)?, train, relu, layout)
            }
        }
    }

    /// `max(BN(conv(x)) + residual, 0)`: with BatchNorm folded into NCHW inference, one fused op
    /// that adds the shortcut as the convolution's output is written (same bits as the two steps).
    fn forward_add_relu(
        &self,
        x: &Tensor,
        residual: &Tensor,
        train: bool,
        layout: MemoryFormat,
    ) -> Result<Tensor> {
        match (&self.norm, layout) {
            (Norm::Folded(bias), MemoryFormat::Nchw) => {
                let c = &self.conv;
                let (w, s, p, g) = (&c.weight, c.stride, c.padding, c.groups);
                dfd_ops::conv2d_bias_add_relu(x, w, bias, residual, s, p, g)
            }
            _ => dfd_ops::add_relu(&self.forward_in(x, train, false, layout)?, residual),
        }
    }

    fn parameters(&self) -> Vec<Tensor> {
        let mut params = vec![self.conv.weight.clone()];
        if let Norm::Separate(bn) = &self.norm {
            params.extend(bn.parameters());
        }
        params
    }
}

/// `weight · scale` per output channel (`scale`: 1×C_out×1×1), computed in f32 and returned in the
/// dtype of `weight`.
fn fold_scale(weight: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let scale = scale.to_dtype(DType::F32)?.reshape(((), 1, 1, 1))?;
    weight
        .to_dtype(DType::F32)?
        .broadcast_mul(&scale)?
        .to_dtype(weight.dtype())
}

/// torchvision's `Bottleneck` (ResNet v1.5: the stride sits on the grouped 3×3 conv).
#[derive(Clone, Debug)]
pub struct Bottleneck {
    reduce: ConvBn,
    grouped: ConvBn,
    expand: ConvBn,
    downsample: Option<ConvBn>,
}

impl Bottleneck {
    fn new(
        vb: &VarBuilder,
        c_in: usize,
        width: usize,
        c_out: usize,
        stride: usize,
        groups: usize,
        mode: BnMode,
    ) -> Result<Self> {
        let pair = |conv: &str, bn: &str| (vb.pp(conv), vb.pp(bn));
        let reduce = ConvBn::new(pair("conv1", "bn1"), (c_in, width), 1, 1, 1, mode)?;
        let grouped = ConvBn::new(
            pair("conv2", "bn2"),
            (width, width),
            3,
            stride,
            groups,
            mode,
        )?;
        let expand = ConvBn::new(pair("conv3", "bn3"), (width, c_out), 1, 1, 1, mode)?;
        let downsample = if stride != 1 || c_in != c_out {
            let pair = pair("downsample.0", "downsample.1");
            Some(ConvBn::new(pair, (c_in, c_out), 1, stride, 1, mode)?)
        } else {
            None
        };
        Ok(Self {
            reduce,
            grouped,
            expand,
            downsample,
        })
    }

    fn forward_in(&self, x: &Tensor, train: bool, layout: MemoryFormat) -> Result<Tensor> {
        let y = self.reduce.forward_in(x, train, true, layout)?;
        let y = self.grouped.forward_in(&y, train, true, layout)?;
        let identity = match &self.downsample {
            Some(downsample) => downsample.forward_in(x, train, false, layout)?,
            None => x.clone(),
        };
        self.expand.forward_add_relu(&y, &identity, train, layout)
    }

    fn parameters(&self) -> Vec<Tensor> {
        let units = [&self.reduce, &self.grouped, &self.expand]
            .into_iter()
            .chain(&self.downsample);
        units.flat_map(ConvBn::parameters).collect()
    }
}

/// One of `layer1` … `layer4`: a sequence of bottlenecks, the first one changing resolution/width.
#[derive(Clone, Debug)]
pub struct ResLayer {
    blocks: Vec<Bottleneck>,
}

impl ResLayer {
    /// Builds ResNet layer `index` (0-based: `layer1` is 0) of `arch` from `vb`, which must already carry the
    /// `layer{index+1}` prefix.
    pub fn new(vb: &VarBuilder, arch: &Arch, index: usize, mode: BnMode) -> Result<Self> {
        let c_in = if index == 0 {
            STEM_CHANNELS
        } else {
            STAGE_PLANES[index - 1] * EXPANSION
        };
        let c_out = STAGE_PLANES[index] * EXPANSION;
        let width = arch.bottleneck_width(index);
        let blocks = (0..arch.blocks[index])
            .map(|b| {
                let (c_in, stride) = if b == 0 {
                    (c_in, STAGE_STRIDES[index])
                } else {
                    (c_out, 1)
                };
                Bottleneck::new(&vb.pp(b), c_in, width, c_out, stride, arch.groups, mode)
            })
            .collect::<Result<_>>()?;
        Ok(Self { blocks })
    }

    /// The layer on NCHW activations; BatchNorm in train mode when `train`.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_in(x, train, MemoryFormat::Nchw)
    }

    /// The layer on activations laid out as `layout` (the result has the same layout).
    pub fn forward_in(&self, x: &Tensor, train: bool, layout: MemoryFormat) -> Result<Tensor> {
        self.blocks
            .iter()
            .try_fold(x.clone(), |x, block| block.forward_in(&x, train, layout))
    }

    /// Trainable tensors in torchvision's state_dict order (conv weights, BN weight/bias).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.blocks
            .iter()
            .flat_map(Bottleneck::parameters)
            .collect()
    }
}

/// `nn.Linear` with a bias, computed by [`dfd_ops::linear`] (fused GEMM forward and backward on
/// the CPU) on 2-D inputs.
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    /// `weight` C_out×C_in, `bias` C_out values.
    pub fn new(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        dfd_ops::linear(x, &self.weight, &self.bias)
    }
}

/// `nn.Linear(c_in, c_out)` read from `vb`; a fresh variable gets PyTorch's default init
/// (weight and bias uniform in ±1/sqrt(c_in)).
pub fn linear(vb: &VarBuilder, c_in: usize, c_out: usize) -> Result<Linear> {
    let bound = 1.0 / (c_in as f64).sqrt();
    let init = Init::Uniform {
        lo: -bound,
        up: bound,
    };
    let weight = vb.get_with_hints((c_out, c_in), "weight", init)?;
    let bias = vb.get_with_hints(c_out, "bias", init)?;
    Ok(Linear::new(weight, bias))
}

/// Global average pooling over the last two axes (H and W): N×C for NCHW activations, C×N for
/// channels-major ones.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    x.mean((2, 3))
}

/// The whole torchvision network: stem, four ResNet layers (`layer1`…`layer4`), `fc`.
#[derive(Clone, Debug)]
pub struct Network {
    stem: ConvBn,
    stages: Vec<ResLayer>,
    fc: Linear,
}

impl Network {
    /// Reads every parameter in torchvision's state_dict order, so a checking backend reports
    /// the first missing or mismatching key.
    pub fn new(vb: &VarBuilder, arch: &Arch, mode: BnMode) -> Result<Self> {
        let stem = ConvBn::new(
            (vb.pp("conv1"), vb.pp("bn1")),
            (3, STEM_CHANNELS),
            7,
            2,
            1,
            mode,
        )?;
        let stages = (0..4)
            .map(|i| ResLayer::new(&vb.pp(format!("layer{}", i + 1)), arch, i, mode))
            .collect::<Result<_>>()?;
        let fc = linear(&vb.pp("fc"), arch.channels(Cut::Pooled), arch.num_classes)?;
        Ok(Self { stem, stages, fc })
    }

    /// Runs the steps strictly after `after` (`None` = from the normalised image) up to and
    /// including `to`. BatchNorm runs in train mode only when `train`.
    pub fn forward_range(
        &self,
        x: &Tensor,
        after: Option<Cut>,
        to: Cut,
        train: bool,
    ) -> Result<Tensor> {
        let mut steps = Cut::ALL
            .into_iter()
            .filter(|&cut| Some(cut) > after && cut <= to);
        steps.try_fold(x.clone(), |x, cut| self.step(&x, cut, train))
    }

    /// The computation that turns the activation before `cut` into the one at `cut`.
    fn step(&self, x: &Tensor, cut: Cut, train: bool) -> Result<Tensor> {
        match cut {
            Cut::Stem => {
                let y = self.stem.forward_t(x, train, true)?;
                dfd_ops::max_pool2d(&y, 3, 2, 1)
            }
            Cut::Pooled => global_avg_pool(x),
            Cut::Logits => self.fc.forward(x),
            layer => {
                let index = layer.stage_index().expect("every other cut is a stage");
                self.stages[index].forward_t(x, train)
            }
        }
    }
}
