//! Train-mode forward and backward of the `Mlp` and `Linear` heads (dropout, Linear, ReLU, …,
//! dropout, Linear) on CPU f32, outside candle's autograd.
//!
//! candle's backward gives every parameter and activation a zeroed gradient buffer and adds the
//! incoming gradient into it: for the MLP head's first weight (2048×1024) that is a 8 MB memset
//! and an 8 MB add on every step, ~17% of the step with the spinning of candle's elementwise
//! pool. Here the forward keeps each layer's input (after dropout) and dropout mask, and the
//! backward writes every parameter's gradient once, with the kernels of [`dfd_ops::cpu`] (the
//! ones [`dfd_ops::linear`] runs). The logits are a leaf of candle's graph: the loss's backward
//! stops there, and [`ClassifierTape::backward`] carries their gradient on. Values are those of
//! the graph (same masks from the same draws, same GEMMs) up to the order of float sums.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use dfd_ops::cpu::{self, LinearShape};
use rand::Rng;

use crate::blocks::{insert_grad, Linear};
use crate::head::dropout_mask;

/// A classifier's train-mode forward, kept for its backward.
pub(crate) struct ClassifierTape<'a> {
    layers: &'a [Linear],
    /// Rows of the batch.
    n: usize,
    /// Each layer's input after its dropout (N×I).
    inputs: Vec<Vec<f32>>,
    /// Each layer's dropout mask (0 or 1/(1−p) per value); `None` without dropout.
    masks: Vec<Option<Vec<f32>>>,
    /// The logits (N×2), a leaf variable of candle's graph.
    pub logits: Var,
}

/// The train-mode forward of `layers` (dropout `p` before each, ReLU between them) on the N×…
/// `x`, masks drawn from `rng` as [`crate::dropout`] draws them; `None` (nothing run, nothing
/// drawn) unless `x` and every parameter are f32 CPU tensors.
pub(crate) fn forward_tape<'a>(
    layers: &'a [Linear],
    x: &Tensor,
    p: f32,
    rng: &mut impl Rng,
) -> Result<Option<ClassifierTape<'a>>> {
    let params: Vec<&Tensor> = layers.iter().flat_map(|l| [l.weight(), l.bias()]).collect();
    let tensors: Vec<&Tensor> = std::iter::once(x).chain(params).collect();
    if !cpu::all_cpu_f32(&tensors) {
        return Ok(None);
    }
    let x = x.flatten_from(1)?;
    let n = x.dim(0)?;
    let mut a = x.flatten_all()?.to_vec1::<f32>()?;
    let (mut inputs, mut masks) = (Vec::new(), Vec::new());
    for (l, layer) in layers.iter().enumerate() {
        let (o, i) = layer.weight().dims2()?;
        let mask = dropout_mask(a.len(), p, rng);
        if let Some(mask) = &mask {
            a.iter_mut().zip(mask).for_each(|(v, &m)| *v *= m);
        }
        let shape = LinearShape::new(n, i, o);
        let z = dfd_ops::with_f32(layer.weight(), |w| {
            dfd_ops::with_f32(layer.bias(), |b| cpu::linear_forward(&shape, &a, w, b))
        })??;
        inputs.push(std::mem::replace(&mut a, z));
        masks.push(mask);
        if l + 1 < layers.len() {
            a.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
    let outputs = a.len() / n.max(1);
    let logits = Var::from_tensor(&Tensor::from_vec(a, (n, outputs), x.device())?)?;
    Ok(Some(ClassifierTape {
        layers,
        n,
        inputs,
        masks,
        logits,
    }))
}

impl ClassifierTape<'_> {
    /// Puts the gradient of every layer's weight and bias in `grads`, given the logits'
    /// gradient `d_logits` (N×2, row-major). The input's gradient is not computed.
    pub(crate) fn backward(self, d_logits: Vec<f32>, grads: &mut GradStore) -> Result<()> {
        let mut g = d_logits;
        for (l, layer) in self.layers.iter().enumerate().rev() {
            let (o, i) = layer.weight().dims2()?;
            let shape = LinearShape::new(self.n, i, o);
            let input = &self.inputs[l];
            let dw = cpu::linear_backward_weight(&shape, &g, input);
            insert_grad(grads, layer.weight(), dw)?;
            insert_grad(grads, layer.bias(), cpu::linear_backward_bias(&shape, &g))?;
            if l == 0 {
                break;
            }
            g = dfd_ops::with_f32(layer.weight(), |w| {
                cpu::linear_backward_input(&shape, &g, w)
            })?;
            // Back through this layer's dropout (× its mask), then the previous layer's ReLU,
            // which passes the gradient where its output is positive (PyTorch's rule; candle's
            // graph also passes it at exactly 0). Where the mask kept a value, the input after
            // dropout is positive exactly there; where it dropped one, the gradient is 0 anyway.
            match &self.masks[l] {
                Some(mask) => g
                    .iter_mut()
                    .zip(mask.iter().zip(input))
                    .for_each(|(d, (&m, &u))| *d = if u > 0.0 { *d * m } else { 0.0 }),
                None => g
                    .iter_mut()
                    .zip(input)
                    .for_each(|(d, &u)| *d = if u > 0.0 { *d } else { 0.0 }),
            }
        }
        Ok(())
    }
}
