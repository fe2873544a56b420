//! Train-mode forward and backward of a [`ResLayer`] on channels-major CPU f32 activations, outside
//! candle's autograd.
//!
//! candle's backward gives every node of its graph a zeroed gradient buffer and adds each
//! incoming gradient into it: a bottleneck block makes ten nodes, most of them activation-sized
//! (with the serial zeroing of outputs, ~7% of a layer4 step at 8×8 went there). Here the forward keeps what the
//! backward needs (each conv's output, each BatchNorm's output and batch statistics, each block's
//! output) and the backward writes every parameter's gradient once, with the kernels of
//! [`dfd_ops::cpu`] (the ones the candle ops run). Values are those of
//! [`ResLayer::forward_in`] in train mode, channels-major, followed by candle's backward; the running
//! statistics are updated the same way.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};
use dfd_ops::cpu::{self, ConvShape, SliceBatchNorm};

use super::{Bottleneck, ConvBn, Norm, ResLayer};
use crate::norm::{BatchNorm, BN_EPS};

/// Channels-major (C×N×H×W) values and their dims.
pub(crate) struct Activation {
    pub values: Vec<f32>,
    pub dims: (usize, usize, usize, usize),
}

/// What the backward of one [`ConvBn`] needs.
struct UnitTape {
    shape: ConvShape,
    /// The convolution's output (the BatchNorm's input).
    z: Vec<f32>,
    norm: SliceBatchNorm,
    /// The BatchNorm's output, after the ReLU when there is one.
    y: Activation,
}

/// What the backward of one [`Bottleneck`] needs.
struct BlockTape {
    reduce: UnitTape,
    grouped: UnitTape,
    expand: UnitTape,
    downsample: Option<UnitTape>,
    out: Activation,
}

/// A stage's train-mode forward, kept for its backward.
pub(crate) struct ResLayerTape {
    input: Activation,
    blocks: Vec<BlockTape>,
}

impl ConvBn {
    /// The train-mode BatchNorm, with its `weight` and `bias`.
    fn trainable_bn(&self) -> Result<(&BatchNorm, &Tensor, &Tensor)> {
        match &self.norm {
            Norm::Separate(bn @ BatchNorm::Trainable { weight, bias, .. }) => {
                Ok((bn, weight, bias))
            }
            _ => candle_core::bail!("a train-mode forward needs trainable BatchNorms"),
        }
    }

    /// BN(conv(x)) (+ ReLU) with batch statistics; updates the running statistics.
    fn forward_tape(&self, x: &Activation, relu: bool) -> Result<UnitTape> {
        let conv = &self.conv;
        let weight = &conv.weight;
        let shape = ConvShape::channels_major(
            x.dims,
            weight.dims4()?,
            conv.stride,
            conv.padding,
            conv.groups,
        )
        .ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "no CPU kernel for a conv of weight {:?} over {:?}",
                weight.shape(),
                x.dims
            ))
        })?;
        let z = dfd_ops::with_f32(weight, |w| cpu::conv_forward(&shape, &x.values, w))?;
        let (bn, bn_weight, bn_bias) = self.trainable_bn()?;
        let (norm, y) = SliceBatchNorm::forward(
            &z,
            &bn_weight.to_vec1::<f32>()?,
            &bn_bias.to_vec1::<f32>()?,
            BN_EPS,
            relu,
        );
        let stats = |v: &[f32]| Tensor::new(v, weight.device());
        bn.update_running_stats(
            &stats(norm.mean())?,
            &stats(norm.var())?,
            z.len() / norm.mean().len(),
        )?;
        Ok(UnitTape {
            shape,
            z,
            norm,
            y: Activation {
                values: y,
                dims: shape.y_dims(),
            },
        })
    }

    /// Puts the gradients of the conv weight and the BatchNorm's weight and bias in `grads`,
    /// given the forward's input `x` and the output gradient `dy`; returns the input's gradient
    /// when `want_dx`.
    fn backward_tape(
        &self,
        tape: &UnitTape,
        x: &[f32],
        dy: &[f32],
        want_dx: bool,
        grads: &mut GradStore,
    ) -> Result<Option<Vec<f32>>> {
        let (_, bn_weight, bn_bias) = self.trainable_bn()?;
        let bn = tape
            .norm
            .backward(&tape.z, &tape.y.values, dy, &bn_weight.to_vec1::<f32>()?);
        let dz = bn.x;
        insert_grad(grads, bn_weight, bn.weight)?;
        insert_grad(grads, bn_bias, bn.bias)?;
        let weight = &self.conv.weight;
        insert_grad(
            grads,
            weight,
            cpu::conv_backward_weight(&tape.shape, x, &dz),
        )?;
        want_dx
            .then(|| dfd_ops::with_f32(weight, |w| cpu::conv_backward_input(&tape.shape, &dz, w)))
            .transpose()
    }

    /// [`ConvBn::backward_tape`] with the input's gradient, for a unit whose input `x` is an
    /// activation of the block.
    fn input_grad(
        &self,
        tape: &UnitTape,
        x: &Activation,
        dy: &[f32],
        grads: &mut GradStore,
    ) -> Result<Vec<f32>> {
        let dx = self.backward_tape(tape, &x.values, dy, true, grads)?;
        Ok(dx.expect("the input gradient was asked for"))
    }
}

/// `grads[param] = values` (in `param`'s shape).
pub(crate) fn insert_grad(grads: &mut GradStore, param: &Tensor, values: Vec<f32>) -> Result<()> {
    grads.insert(
        param,
        Tensor::from_vec(values, param.shape(), param.device())?,
    );
    Ok(())
}

impl Bottleneck {
    fn forward_tape(&self, x: &Activation) -> Result<BlockTape> {
        let reduce = self.reduce.forward_tape(x, true)?;
        let grouped = self.grouped.forward_tape(&reduce.y, true)?;
        let expand = self.expand.forward_tape(&grouped.y, false)?;
        let downsample = match &self.downsample {
            Some(unit) => Some(unit.forward_tape(x, false)?),
            None => None,
        };
        let identity = downsample.as_ref().map_or(&x.values, |d| &d.y.values);
        let out = cpu::zip_map(&expand.y.values, identity, |a, b| (a + b).max(0.0));
        let dims = expand.y.dims;
        Ok(BlockTape {
            reduce,
            grouped,
            expand,
            downsample,
            out: Activation { values: out, dims },
        })
    }

    /// Puts every parameter's gradient in `grads`, given the block's input `x` and output
    /// gradient `d_out`; returns the input's gradient when `want_dx`.
    fn backward_tape(
        &self,
        tape: &BlockTape,
        x: &[f32],
        d_out: &[f32],
        want_dx: bool,
        grads: &mut GradStore,
    ) -> Result<Option<Vec<f32>>> {
        // Through the final ReLU: the gradient of both branches.
        let g = cpu::zip_map(
            &tape.out.values,
            d_out,
            |y, d| if y > 0.0 { d } else { 0.0 },
        );
        let d = self
            .expand
            .input_grad(&tape.expand, &tape.grouped.y, &g, grads)?;
        let d = self
            .grouped
            .input_grad(&tape.grouped, &tape.reduce.y, &d, grads)?;
        let main = self
            .reduce
            .backward_tape(&tape.reduce, x, &d, want_dx, grads)?;
        let skip = match (&self.downsample, &tape.downsample) {
            (Some(unit), Some(t)) => unit.backward_tape(t, x, &g, want_dx, grads)?,
            _ => want_dx.then_some(g),
        };
        Ok(main.zip(skip).map(|(mut main, skip)| {
            main.iter_mut().zip(&skip).for_each(|(m, s)| *m += s);
            main
        }))
    }
}

impl ResLayer {
    /// The train-mode forward of [`ResLayer::forward_in`] on the N×C×H×W `x`, run channels-major
    /// and kept for [`ResLayerTape::backward`]; `None` (nothing run) unless `x` and every parameter
    /// are f32 CPU tensors.
    pub(crate) fn forward_tape(&self, x: &Tensor) -> Result<Option<ResLayerTape>> {
        let params = self.parameters();
        let tensors: Vec<&Tensor> = std::iter::once(x).chain(&params).collect();
        if !cpu::all_cpu_f32(&tensors) {
            return Ok(None);
        }
        let x = x.permute((1, 0, 2, 3))?.contiguous()?;
        let input = Activation {
            values: x.flatten_all()?.to_vec1::<f32>()?,
            dims: x.dims4()?,
        };
        let mut blocks: Vec<BlockTape> = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let tape = block.forward_tape(blocks.last().map_or(&input, |b| &b.out))?;
            blocks.push(tape);
        }
        Ok(Some(ResLayerTape { input, blocks }))
    }
}

impl ResLayerTape {
    /// The stage's output.
    pub(crate) fn output(&self) -> &Activation {
        self.blocks.last().map_or(&self.input, |b| &b.out)
    }

    /// Puts the gradient of every parameter of `stage` (the one that made this tape) in `grads`,
    /// given the output gradient `d_out` (channels-major). The input's gradient is not computed.
    pub(crate) fn backward(
        &self,
        stage: &ResLayer,
        d_out: Vec<f32>,
        grads: &mut GradStore,
    ) -> Result<()> {
        let mut d = d_out;
        for (i, (block, tape)) in stage.blocks.iter().zip(&self.blocks).enumerate().rev() {
            let x = match i {
                0 => &self.input,
                _ => &self.blocks[i - 1].out,
            };
            match block.backward_tape(tape, &x.values, &d, i > 0, grads)? {
                Some(dx) => d = dx,
                None => break,
            }
        }
        Ok(())
    }
}
