//! Trainable heads over cached features, and the layer4 fine-tuning block.

use std::path::Path;

use anyhow::Context;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::arch::{Arch, Cut};
use crate::blocks::{global_avg_pool, linear, Linear, ResLayer, ResLayerTape};
use crate::classifier_tape::{self, ClassifierTape};
use crate::memory_format::MemoryFormat;
use crate::norm::{BnMode, BN_MOMENTUM};
use crate::weights::ResolvedWeights;

/// Number of outputs of every head: logits for real (0) and fake (1).
pub const NUM_OUTPUTS: usize = 2;
/// Prefix of the Linear layers of `Mlp` and `Linear` heads.
const CLASSIFIER: &str = "classifier";

/// What a head is; serialised (externally tagged, snake_case) as `head.json` next to checkpoints.
///
/// Variable names: `Mlp`/`Linear` name their Linear layers by their index in the equivalent
/// PyTorch `nn.Sequential(Flatten, Dropout, Linear, ReLU, Dropout, Linear, …)`, under
/// `classifier.` (`classifier.2`, `classifier.5`, …); `FinetuneLayer4` uses torchvision's
/// `layer4.*` (including BN running statistics) and `fc`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadSpec {
    /// Flatten, Dropout, Linear, ReLU, Dropout, Linear, ReLU, …, Dropout, Linear(→2).
    Mlp {
        input: usize,
        hidden: Vec<usize>,
        dropout: f32,
    },
    /// Flatten, Dropout, Linear(input→2).
    Linear { input: usize, dropout: f32 },
    /// layer4 (BN in train mode when training) + avgpool + Flatten + Dropout + Linear(2048→2),
    /// over layer3 maps.
    FinetuneLayer4 { arch: Arch, dropout: f32 },
}

impl HeadSpec {
    fn dropout(&self) -> f32 {
        match self {
            Self::Mlp { dropout, .. }
            | Self::Linear { dropout, .. }
            | Self::FinetuneLayer4 { dropout, .. } => *dropout,
        }
    }
}

/// Plainly, for logs: `mlp 2048→512→2 (dropout 0.5)`, `linear 200704→2 (dropout 0)`,
/// `finetune-layer4 of resnext50_32x4d (dropout 0.5)`.
impl std::fmt::Display for HeadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mlp { input, hidden, .. } => {
                write!(f, "mlp {input}")?;
                for width in hidden {
                    write!(f, "→{width}")?;
                }
                f.write_str("→2")?;
            }
            Self::Linear { input, .. } => write!(f, "linear {input}→2")?,
            Self::FinetuneLayer4 { arch, .. } => write!(f, "finetune-layer4 of {arch}")?,
        }
        write!(f, " (dropout {})", self.dropout())
    }
}

enum Body {
    /// Linear layers with ReLU between them; dropout before each.
    Classifier(Vec<Linear>),
    FinetuneLayer4 {
        layer4: ResLayer,
        fc: Linear,
    },
}

/// A trainable head whose parameters live in a `VarMap`.
pub struct Head {
    spec: HeadSpec,
    body: Body,
    vars: Vec<Var>,
}

impl Head {
    /// Builds the head in `vb`, which must be backed by a `VarMap`. Fresh variables get
    /// PyTorch-like initial values from candle's unseeded RNG; use [`Head::new_seeded`] for
    /// reproducible training. For `FinetuneLayer4`, call [`init_layer4_from`] afterwards to copy
    /// the pretrained (or `random:<seed>`) layer4 weights and running statistics.
    pub fn new(spec: &HeadSpec, vb: VarBuilder) -> candle_core::Result<Self> {
        let body = match spec {
            HeadSpec::Mlp { input, hidden, .. } => classifier(&vb, *input, hidden)?,
            HeadSpec::Linear { input, .. } => classifier(&vb, *input, &[])?,
            HeadSpec::FinetuneLayer4 { arch, .. } => {
                let mode = BnMode::Trainable {
                    momentum: BN_MOMENTUM,
                };
                let layer4 = ResLayer::new(&vb.pp("layer4"), arch, 3, mode)?;
                let fc = linear(&vb.pp("fc"), arch.channels(Cut::Pooled), NUM_OUTPUTS)?;
                Body::FinetuneLayer4 { layer4, fc }
            }
        };
        let params = match &body {
            Body::Classifier(layers) => linear_params(layers),
            Body::FinetuneLayer4 { layer4, fc } => {
                let mut params = layer4.parameters();
                params.extend(linear_params(std::slice::from_ref(fc)));
                params
            }
        };
        if params.iter().any(|p| !p.is_variable()) {
            candle_core::bail!("Head::new needs a VarMap-backed VarBuilder")
        }
        let vars = params
            .iter()
            .map(Var::from_tensor)
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            spec: spec.clone(),
            body,
            vars,
        })
    }

    /// Like [`Head::new`], then redraws every Linear layer (weight and bias uniform in
    /// ±1/sqrt(fan_in), PyTorch's default) from a ChaCha8 stream seeded with `seed`, so the
    /// initial head is a function of the seed. (layer4 of `FinetuneLayer4` is left for
    /// [`init_layer4_from`].)
    pub fn new_seeded(spec: &HeadSpec, vb: VarBuilder, seed: u64) -> candle_core::Result<Self> {
        let head = Self::new(spec, vb)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let layers = match &head.body {
            Body::Classifier(layers) => layers.as_slice(),
            Body::FinetuneLayer4 { fc, .. } => std::slice::from_ref(fc),
        };
        for layer in layers {
            let bound = 1.0 / (layer.weight().dim(1)? as f32).sqrt();
            for tensor in linear_params(std::slice::from_ref(layer)) {
                let values: Vec<f32> = (0..tensor.elem_count())
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let values = Tensor::from_vec(values, tensor.shape(), tensor.device())?
                    .to_dtype(tensor.dtype())?;
                Var::from_tensor(&tensor)?.set(&values)?;
            }
        }
        Ok(head)
    }

    pub fn spec(&self) -> &HeadSpec {
        &self.spec
    }

    /// P(fake) of each row of `x` in eval mode: [`crate::p_fake`] of [`Head::forward`]'s logits
    /// (the one place that turns logits into scores, with its finite check).
    pub fn p_fake(&self, x: &Tensor) -> candle_core::Result<Vec<crate::Score>> {
        crate::p_fake(&self.forward(x)?)
    }

    /// Logits N×2 in eval mode: no dropout, BatchNorm with its running statistics.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.logits(x, false, &mut rand::rng())
    }

    /// Logits N×2 through candle's graph, drawing dropout masks (on the CPU) from `rng` when
    /// `train`. In train mode `FinetuneLayer4` normalises with batch statistics and updates its
    /// running statistics in place (momentum 0.1, unbiased variance), as PyTorch does.
    fn logits(&self, x: &Tensor, train: bool, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
        let p = if train { self.spec.dropout() } else { 0.0 };
        match &self.body {
            Body::Classifier(layers) => {
                let mut x = x.flatten_from(1)?;
                for (i, layer) in layers.iter().enumerate() {
                    x = layer.forward(&dropout(&x, p, rng)?)?;
                    if i + 1 < layers.len() {
                        x = x.relu()?;
                    }
                }
                Ok(x)
            }
            Body::FinetuneLayer4 { layer4, fc } => {
                // Channels-major inside layer4: its 1×1 convolutions are then one GEMM each over
                // the whole batch, forward and backward.
                let x = x.permute((1, 0, 2, 3))?.contiguous()?;
                let y = layer4.forward_in(&x, train, MemoryFormat::ChannelsMajor)?;
                let pooled = global_avg_pool(&y)?.t()?; // C×N → N×C
                fc.forward(&dropout(&pooled, p, rng)?)
            }
        }
    }

    /// The train-mode forward for one optimiser step: the logits (dropout masks drawn from `rng`,
    /// reproducible for a seeded RNG), and [`TrainForward::backward`] for the gradients.
    ///
    /// On the CPU in f32, the `Mlp` and `Linear` heads run their whole classifier, and
    /// `FinetuneLayer4` its layer4, outside candle's graph: the forward keeps what the backward
    /// needs and `backward` computes those gradients itself (the same values up to the order of
    /// float sums, without the zeroed buffer and extra pass candle's autograd spends on every
    /// node). Other devices and dtypes, and any head inside
    /// [`dfd_ops::fallback::with_fallbacks`], build candle's graph instead; the dropout masks are
    /// drawn from `rng` the same way on both paths.
    pub fn forward_train(
        &self,
        x: &Tensor,
        rng: &mut impl Rng,
    ) -> candle_core::Result<TrainForward<'_>> {
        let p = self.spec.dropout();
        if let Body::Classifier(layers) = &self.body {
            if let Some(tape) = classifier_tape::forward_tape(layers, x, p, rng)? {
                return Ok(TrainForward {
                    logits: tape.logits.as_tensor().clone(),
                    tape: Tape::Classifier(tape),
                });
            }
        }
        if let Body::FinetuneLayer4 { layer4, fc } = &self.body {
            if let Some(tape) = layer4.forward_tape(x)? {
                let pooled = Var::from_tensor(&pool(
                    tape.output().values.as_slice(),
                    tape.output().dims,
                    x.device(),
                )?)?;
                let logits = fc.forward(&dropout(pooled.as_tensor(), p, rng)?)?;
                return Ok(TrainForward {
                    logits,
                    tape: Tape::Layer4(Layer4Tape {
                        stage: layer4,
                        tape,
                        pooled,
                    }),
                });
            }
        }
        Ok(TrainForward {
            logits: self.logits(x, true, rng)?,
            tape: Tape::Graph,
        })
    }

    /// Variables the optimiser must update, in network order (excludes BN running statistics,
    /// which live in the same VarMap under torchvision names and are updated by train-mode
    /// forwards).
    pub fn trainable_vars(&self) -> Vec<Var> {
        self.vars.clone()
    }

    /// Rebuilds a trained head from a checkpoint written with `VarMap::save` (every name,
    /// running statistics included), in f32 on `device`.
    pub fn load(
        spec: &HeadSpec,
        weights: &Path,
        device: &Device,
    ) -> anyhow::Result<(Self, VarMap)> {
        let mut varmap = VarMap::new();
        let head = Self::new(spec, VarBuilder::from_varmap(&varmap, DType::F32, device))
            .with_context(|| format!("building head {spec}"))?;
        varmap
            .load(weights)
            .with_context(|| format!("loading head weights from {}", weights.display()))?;
        Ok((head, varmap))
    }
}

/// A train-mode forward pass whose backward is still to run ([`Head::forward_train`]).
pub struct TrainForward<'a> {
    /// Logits N×2.
    pub logits: Tensor,
    tape: Tape<'a>,
}

/// How [`TrainForward::backward`] reaches the parameters.
enum Tape<'a> {
    /// All through candle's graph.
    Graph,
    /// The classifier outside it: the logits are the graph's leaf.
    Classifier(ClassifierTape<'a>),
    /// layer4 outside it: the pooled features are the graph's leaf.
    Layer4(Layer4Tape<'a>),
}

/// layer4 run outside candle's graph: the pooled features are a leaf variable of the graph that
/// computes the logits, and the backward carries their gradient on through the tape.
struct Layer4Tape<'a> {
    stage: &'a ResLayer,
    tape: ResLayerTape,
    pooled: Var,
}

impl TrainForward<'_> {
    /// Gradients of `loss` (a scalar computed from [`TrainForward::logits`]) w.r.t. every
    /// trainable variable of the head.
    pub fn backward(self, loss: &Tensor) -> candle_core::Result<GradStore> {
        let mut grads = loss.backward()?;
        match self.tape {
            Tape::Graph => {}
            Tape::Classifier(tape) => {
                // A loss that does not depend on the logits reaches no parameter, as in the graph.
                if let Some(d_logits) = grads.remove(tape.logits.as_tensor()) {
                    tape.backward(d_logits.flatten_all()?.to_vec1::<f32>()?, &mut grads)?;
                }
            }
            Tape::Layer4(Layer4Tape {
                stage,
                tape,
                pooled,
            }) => {
                // No gradient reaches the features when dropout dropped everything: nor does one
                // reach layer4's parameters in candle's graph.
                if let Some(d_pooled) = grads.remove(pooled.as_tensor()) {
                    let d_out = unpool(&d_pooled.to_vec2::<f32>()?, tape.output().dims);
                    tape.backward(stage, d_out, &mut grads)?;
                }
            }
        }
        Ok(grads)
    }
}

/// Global average pooling of channels-major values (`dims` C×N×H×W) to an N×C tensor.
fn pool(
    values: &[f32],
    (c, n, h, w): (usize, usize, usize, usize),
    device: &Device,
) -> candle_core::Result<Tensor> {
    let plane = h * w;
    let mut pooled = vec![0f32; n * c];
    for (i, run) in values.chunks_exact(plane).enumerate() {
        pooled[(i % n) * c + i / n] = run.iter().sum::<f32>() / plane as f32;
    }
    Tensor::from_vec(pooled, (n, c), device)
}

/// The gradient of [`pool`]'s input (channels-major, `dims`) given its output's (N rows of C).
fn unpool(d_pooled: &[Vec<f32>], (c, n, h, w): (usize, usize, usize, usize)) -> Vec<f32> {
    let plane = h * w;
    let mut d = vec![0f32; c * n * plane];
    for (i, run) in d.chunks_exact_mut(plane).enumerate() {
        run.fill(d_pooled[i % n][i / n] / plane as f32);
    }
    d
}

/// Copies layer4 weights and BN running statistics from `weights` (the pretrained file, or the
/// same deterministic draw `Backbone::load` makes for `random:<seed>`) into every `layer4.*`
/// variable of `varmap`, checking names and shapes.
pub fn init_layer4_from(
    varmap: &VarMap,
    weights: &ResolvedWeights,
    arch: &Arch,
) -> anyhow::Result<()> {
    let vars = varmap.data().lock().expect("VarMap lock poisoned");
    let mut names: Vec<&String> = vars
        .keys()
        .filter(|name| name.starts_with("layer4."))
        .collect();
    names.sort();
    let Some(first) = names.first() else {
        anyhow::bail!("the VarMap holds no layer4 variables: build the FinetuneLayer4 head first");
    };
    let (dtype, device) = (vars[*first].dtype(), vars[*first].device().clone());
    let source = weights.var_builder(arch, dtype, &device)?;
    for name in names {
        let var = &vars[name];
        let value = source
            .get(var.shape(), name)
            .with_context(|| format!("reading `{name}` from weights {}", weights.source))?;
        var.set(&value)
            .with_context(|| format!("initialising `{name}`"))?;
    }
    Ok(())
}

/// Builds Linear layers `classifier.{2 + 3i}`: input → hidden… → NUM_OUTPUTS.
fn classifier(vb: &VarBuilder, input: usize, hidden: &[usize]) -> candle_core::Result<Body> {
    let widths: Vec<usize> = std::iter::once(input)
        .chain(hidden.iter().copied())
        .chain([NUM_OUTPUTS])
        .collect();
    let layers = widths
        .windows(2)
        .enumerate()
        .map(|(i, w)| linear(&vb.pp(CLASSIFIER).pp(2 + 3 * i), w[0], w[1]))
        .collect::<candle_core::Result<_>>()?;
    Ok(Body::Classifier(layers))
}

fn linear_params(layers: &[Linear]) -> Vec<Tensor> {
    layers
        .iter()
        .flat_map(|l| [l.weight().clone(), l.bias().clone()])
        .collect()
}

/// Inverted dropout with probability `p`: keeps each value with probability 1 − p and scales it
/// by 1/(1 − p), like `nn.Dropout` in train mode; the mask is drawn on the CPU from `rng`
/// ([`dropout_mask`]).
pub fn dropout(x: &Tensor, p: f32, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    if p >= 1.0 {
        return x.zeros_like();
    }
    let Some(mask) = dropout_mask(x.elem_count(), p, rng) else {
        return Ok(x.clone());
    };
    let mask = Tensor::from_vec(mask, x.shape(), &Device::Cpu)?
        .to_device(x.device())?
        .to_dtype(x.dtype())?;
    x * mask
}

/// The factors [`dropout`] multiplies `len` values by (0 or 1/(1 − p)); `None` when `p ≤ 0`
/// (nothing drawn), all zeros when `p ≥ 1` (nothing drawn).
///
/// Value `i` is dropped when the `i`-th `rng.random::<f32>()` would be below `p`. That draw is
/// `(u >> 8)·2⁻²⁴` of the `i`-th `u32`, so the mask is computed from one bulk fill of `u32`s,
/// compared with `p·2²⁴` (both sides exact), which gives the same mask several times faster.
pub(crate) fn dropout_mask(len: usize, p: f32, rng: &mut impl Rng) -> Option<Vec<f32>> {
    if p <= 0.0 {
        return None;
    }
    if p >= 1.0 {
        return Some(vec![0.0; len]);
    }
    let scale = 1.0 / (1.0 - p);
    let mut draws = vec![0u32; len];
    rng.fill(&mut draws[..]);
    let threshold = p * (1u32 << 24) as f32;
    let mask = draws
        .iter()
        .map(|&u| {
            if ((u >> 8) as f32) < threshold {
                0.0
            } else {
                scale
            }
        })
        .collect();
    Some(mask)
}
