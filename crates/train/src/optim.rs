//! Adam and AdamW exactly as `torch.optim` computes them (single-tensor path, f32 state), with
//! their state saved and restored, and PyTorch's global-norm gradient clipping.
//!
//! Per parameter `p` with gradient `g`, at step `t` (1-based), rate `lr`:
//! - Adam: `g ← g + wd·p` (L2 through the gradient);
//! - AdamW: `p ← p·(1 − lr·wd)` (decoupled decay);
//! - then `m ← m + (1−β1)(g − m)`, `v ← β2·v + (1−β2)·g²`,
//!   `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)`.
//!
//! State (`m`, `v` per variable) lives on the host as f32; the step count is kept by the caller's
//! checkpoint (see [`Optimizer::steps`]).

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Tensor, Var};
use dfd_layout::shards::{encode, TensorData};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

/// Which weight-decay flavour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    /// L2 added to the gradient (PyTorch `Adam(weight_decay=…)`).
    Adam,
    /// Decoupled weight decay (PyTorch `AdamW`).
    AdamW,
}

impl FromStr for OptimizerKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "adam" => Ok(Self::Adam),
            "adamw" => Ok(Self::AdamW),
            other => bail!("train.optimizer must be `adam` or `adamw`, got `{other}`"),
        }
    }
}

/// Hyper-parameters of the optimiser (the rate comes per step, from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub kind: OptimizerKind,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
}

/// One optimised variable and its moments.
struct Param {
    name: String,
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Adam/AdamW over named variables.
pub struct Optimizer {
    cfg: AdamConfig,
    params: Vec<Param>,
    steps: u64,
}

impl Optimizer {
    /// A fresh optimiser (zero moments, zero steps) over `vars`, in the given order.
    pub fn new(cfg: AdamConfig, vars: Vec<(String, Var)>) -> Self {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                Param {
                    name,
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                }
            })
            .collect();
        Self {
            cfg,
            params,
            steps: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Names and variables, in order.
    pub fn vars(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.params.iter().map(|p| (p.name.as_str(), &p.var))
    }

    /// Current values of every variable, flattened, as f32 on the host.
    pub fn values(&self) -> Result<Vec<Vec<f32>>> {
        self.params
            .iter()
            .map(|p| host_values(&p.var, &p.name))
            .collect()
    }

    /// One step at rate `lr` given each variable's current `values` (from [`Optimizer::values`])
    /// and gradient (`None`: the variable got no gradient and is left alone, as PyTorch does).
    pub fn step(
        &mut self,
        values: Vec<Vec<f32>>,
        grads: &[Option<Vec<f32>>],
        lr: f64,
    ) -> Result<()> {
        ensure!(
            values.len() == self.params.len() && grads.len() == self.params.len(),
            "optimiser step with {} values and {} gradients for {} variables",
            values.len(),
            grads.len(),
            self.params.len()
        );
        self.steps += 1;
        let t = self.steps as f64;
        let [b1, b2] = self.cfg.betas;
        let wd = self.cfg.weight_decay as f32;
        let step_size = (lr / (1.0 - b1.powf(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powf(t)).sqrt() as f32;
        let (one_minus_b1, b2f, one_minus_b2) = ((1.0 - b1) as f32, b2 as f32, (1.0 - b2) as f32);
        let eps = self.cfg.eps as f32;
        let decay = (1.0 - lr * self.cfg.weight_decay) as f32;
        for ((param, mut p), grad) in self.params.iter_mut().zip(values).zip(grads) {
            let Some(grad) = grad else { continue };
            ensure!(
                grad.len() == p.len(),
                "gradient of `{}` has {} values for {} parameters",
                param.name,
                grad.len(),
                p.len()
            );
            // Element-wise, so chunks in parallel give the same bits as one loop.
            const CHUNK: usize = 1 << 14;
            let kind = self.cfg.kind;
            p.par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .zip(param.m.par_chunks_mut(CHUNK))
                .zip(param.v.par_chunks_mut(CHUNK))
                .for_each(|(((p, grad), m), v)| {
                    for (((p, &g), m), v) in p.iter_mut().zip(grad).zip(m).zip(v) {
                        let g = match kind {
                            OptimizerKind::Adam if wd != 0.0 => g + wd * *p,
                            OptimizerKind::Adam => g,
                            OptimizerKind::AdamW => {
                                *p *= decay;
                                g
                            }
                        };
                        *m += one_minus_b1 * (g - *m);
                        *v = *v * b2f + one_minus_b2 * g * g;
                        let denom = v.sqrt() / bc2_sqrt + eps;
                        *p += -step_size * (*m / denom);
                    }
                });
            Tensor::from_vec(p, param.var.shape(), param.var.device())
                .and_then(|t| t.to_dtype(param.var.dtype()))
                .and_then(|t| param.var.set(&t))
                .with_context(|| format!("updating `{}`", param.name))?;
        }
        Ok(())
    }

    /// Writes the moments as safetensors (`m.<name>`, `v.<name>`, f32, flat).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>)> = self
            .params
            .iter()
            .flat_map(|p| {
                [
                    (format!("m.{}", p.name), f32_bytes(&p.m)),
                    (format!("v.{}", p.name), f32_bytes(&p.v)),
                ]
            })
            .collect();
        let tensors: Vec<TensorData> = bytes
            .iter()
            .map(|(name, data)| TensorData {
                name,
                dtype: Dtype::F32,
                shape: vec![data.len() / 4],
                data,
            })
            .collect();
        let encoded = encode(&tensors)?;
        std::fs::write(path, encoded)
            .with_context(|| format!("writing optimiser state {}", path.display()))
    }

    /// Restores moments written by [`Optimizer::save`] and sets the step count to `steps`.
    pub fn load(&mut self, path: &Path, steps: u64) -> Result<()> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading optimiser state {}", path.display()))?;
        let st = SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        for p in &mut self.params {
            for (prefix, dst) in [("m", &mut p.m), ("v", &mut p.v)] {
                let name = format!("{prefix}.{}", p.name);
                let view = st.tensor(&name).with_context(|| {
                    format!("optimiser state {} has no `{name}`", path.display())
                })?;
                ensure!(
                    view.dtype() == Dtype::F32 && view.data().len() == dst.len() * 4,
                    "optimiser state {}: `{name}` does not match the model ({} values expected)",
                    path.display(),
                    dst.len()
                );
                for (d, c) in dst.iter_mut().zip(view.data().chunks_exact(4)) {
                    *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// A variable's values, flattened, as f32 on the host.
pub fn host_values(var: &Var, name: &str) -> Result<Vec<f32>> {
    var.as_tensor()
        .flatten_all()
        .and_then(|t| t.to_dtype(candle_core::DType::F32))
        .and_then(|t| t.to_vec1())
        .with_context(|| format!("reading `{name}`"))
}

/// Scales gradients so their global L2 norm is at most `max_norm`, exactly as
/// `torch.nn.utils.clip_grad_norm_` (coefficient `max_norm / (norm + 1e-6)`, capped at 1).
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [Option<Vec<f32>>], max_norm: f64) -> f64 {
    let total = grads
        .iter()
        .flatten()
        .map(|g| g.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    let coef = (max_norm / (total + 1e-6)).min(1.0) as f32;
    for g in grads.iter_mut().flatten() {
        g.iter_mut().for_each(|x| *x *= coef);
    }
    total
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
