//! Adam and AdamW exactly as `torch.optim` computes them (single-tensor path, f32 state), with
//! their state saved and restored, and PyTorch's global-norm gradient clipping.
//!
//! Per parameter `p` with gradient `g`, at step `t` (1-based), rate `lr`:
//! - Adam: `g ← g + wd·p` (L2 through the gradient);
//! - AdamW: `p ← p·(1 − lr·wd)` (decoupled decay);
//! - then `m ← m + (1−β1)(g − m)`, `v ← β2·v + (1−β2)·g²`,
//!   `p ← p − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)`.
//!
//! The L1 term of the loss (`l1 · sign(θ)`) is added to each gradient and PyTorch's global-norm
//! clipping applied inside the step. State (`m`, `v` per variable) is f32: for a CPU f32 variable
//! on the host, updated in place with it; on any other device (or inside
//! [`dfd_ops::fallback::with_fallbacks`]) as tensors on the variable's device, updated there by
//! candle ops, the same formula. The step count is kept by the caller's checkpoint (see
//! [`Optimizer::steps`]). The clipping norm and the L1 sum read the values on the host.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use dfd_layout::shards::{encode, TensorData};
use dfd_ops::{update_f32, with_f32};
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

/// Which weight-decay flavour: the config's typed `train.optimizer`.
pub use dfd_layout::config::OptimizerKind;

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
    moments: Moments,
}

/// The first and second moments of one variable.
enum Moments {
    /// A CPU f32 variable's, on the host, updated in place with it by [`update_chunk`].
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Any other variable's, on its device, updated by [`update_on_device`].
    Device { m: Tensor, v: Tensor },
}

impl Moments {
    /// Zero moments for `var`, where its update will run.
    fn zeros(var: &Var) -> Result<Self> {
        let t = var.as_tensor();
        Ok(if dfd_ops::cpu::all_cpu_f32(&[t]) {
            let n = t.elem_count();
            Moments::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            }
        } else {
            let zeros = t.zeros_like()?.to_dtype(DType::F32)?;
            Moments::Device {
                m: zeros.clone(),
                v: zeros,
            }
        })
    }

    /// Both moments as flat host values.
    fn to_host(&self) -> Result<[Vec<f32>; 2]> {
        Ok(match self {
            Moments::Host { m, v } => [m.clone(), v.clone()],
            Moments::Device { m, v } => [
                m.flatten_all()?.to_vec1::<f32>()?,
                v.flatten_all()?.to_vec1::<f32>()?,
            ],
        })
    }
}

/// Adam/AdamW over named variables.
pub struct Optimizer {
    cfg: AdamConfig,
    params: Vec<Param>,
    steps: u64,
}

impl Optimizer {
    /// A fresh optimiser (zero moments, zero steps) over `vars`, in the given order. Each
    /// variable's moments live where its update runs (see the module docs).
    pub fn new(cfg: AdamConfig, vars: Vec<(String, Var)>) -> Result<Self> {
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let moments = Moments::zeros(&var)
                    .with_context(|| format!("optimiser state for `{name}`"))?;
                Ok(Param { name, var, moments })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            cfg,
            params,
            steps: 0,
        })
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
            .map(|p| {
                with_f32(p.var.as_tensor(), <[f32]>::to_vec)
                    .with_context(|| format!("reading `{}`", p.name))
            })
            .collect()
    }

    /// `Σ|θ|` over every variable, summed in f64 in order (the L1 term of the loss).
    pub fn abs_sum(&self) -> Result<f64> {
        self.params.iter().try_fold(0.0, |sum, p| {
            let s = with_f32(p.var.as_tensor(), |v| {
                v.iter().map(|&x| f64::from(x.abs())).sum::<f64>()
            });
            Ok(sum + s.with_context(|| format!("reading `{}`", p.name))?)
        })
    }

    /// One step at rate `lr`. Each variable's gradient is its entry in `grads` plus
    /// `l1 · sign(θ)` (the L1 term; sign(0) = 0 as PyTorch's `abs` backward), scaled as
    /// `torch.nn.utils.clip_grad_norm_` does when `max_norm > 0` (coefficient
    /// `max_norm / (norm + 1e-6)`, capped at 1, from the global L2 norm of those gradients).
    /// A variable without a gradient is left alone, as PyTorch does.
    ///
    /// CPU f32 variables are updated in place and their gradients read where they lie: no copy.
    pub fn step(&mut self, grads: &GradStore, l1: f32, max_norm: f64, lr: f64) -> Result<()> {
        let grads: Vec<Option<&Tensor>> = self
            .params
            .iter()
            .map(|p| grads.get(p.var.as_tensor()))
            .collect();
        let coef = if max_norm > 0.0 {
            let norm = self.grad_norm(&grads, l1)?;
            (max_norm / (norm + 1e-6)).min(1.0) as f32
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as f64;
        let [b1, b2] = self.cfg.betas;
        let k = Coefficients {
            l1,
            coef,
            weight_decay: self.cfg.weight_decay as f32,
            decay: (1.0 - lr * self.cfg.weight_decay) as f32,
            one_minus_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            bc2_sqrt: (1.0 - b2.powf(t)).sqrt() as f32,
            step_size: (lr / (1.0 - b1.powf(t))) as f32,
            eps: self.cfg.eps as f32,
        };
        let decay = match self.cfg.kind {
            OptimizerKind::Adam if k.weight_decay != 0.0 => L2,
            OptimizerKind::Adam => NO_DECAY,
            OptimizerKind::AdamW => DECOUPLED,
        };
        let update = match decay {
            L2 => update_chunk::<L2> as UpdateFn,
            DECOUPLED => update_chunk::<DECOUPLED>,
            _ => update_chunk::<NO_DECAY>,
        };
        for (param, grad) in self.params.iter_mut().zip(grads) {
            let Some(grad) = grad else { continue };
            let updated = match &mut param.moments {
                Moments::Host { m, v } => update_f32(&param.var, grad, |p, g| {
                    // Element-wise, so chunks in parallel give the same bits as one loop.
                    const CHUNK: usize = 1 << 14;
                    p.par_chunks_mut(CHUNK)
                        .zip(g.par_chunks(CHUNK))
                        .zip(m.par_chunks_mut(CHUNK))
                        .zip(v.par_chunks_mut(CHUNK))
                        .for_each(|(((p, g), m), v)| update(&k, p, g, m, v));
                }),
                Moments::Device { m, v } => update_on_device(&k, decay, &param.var, grad, m, v),
            };
            updated.with_context(|| format!("updating `{}`", param.name))?;
        }
        Ok(())
    }

    /// Global L2 norm of the gradients with their L1 terms (per-variable sums of squares in f64,
    /// in order, as PyTorch's `clip_grad_norm_`).
    fn grad_norm(&self, grads: &[Option<&Tensor>], l1: f32) -> Result<f64> {
        let mut total = 0.0;
        for (param, grad) in self.params.iter().zip(grads) {
            let Some(grad) = grad else { continue };
            let sum = with_f32(param.var.as_tensor(), |p| {
                with_f32(grad, |g| {
                    p.iter()
                        .zip(g)
                        .map(|(&p, &g)| f64::from(with_l1(g, p, l1)).powi(2))
                        .sum::<f64>()
                })
            });
            total += sum
                .and_then(|s| s)
                .with_context(|| format!("reading the gradient of `{}`", param.name))?;
        }
        Ok(total.sqrt())
    }

    /// Writes the moments as safetensors (`m.<name>`, `v.<name>`, f32, flat).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>)> = self
            .params
            .iter()
            .map(|p| {
                let [m, v] = p.moments.to_host()?;
                Ok([
                    (format!("m.{}", p.name), f32_bytes(&m)),
                    (format!("v.{}", p.name), f32_bytes(&v)),
                ])
            })
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .flatten()
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
            let n = p.var.elem_count();
            let read = |prefix: &str| -> Result<Vec<f32>> {
                let name = format!("{prefix}.{}", p.name);
                let view = st.tensor(&name).with_context(|| {
                    format!("optimiser state {} has no `{name}`", path.display())
                })?;
                ensure!(
                    view.dtype() == Dtype::F32 && view.data().len() == n * 4,
                    "optimiser state {}: `{name}` does not match the model ({n} values expected)",
                    path.display(),
                );
                Ok(view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            };
            let (m, v) = (read("m")?, read("v")?);
            p.moments = match &p.moments {
                Moments::Host { .. } => Moments::Host { m, v },
                Moments::Device { m: like, .. } => {
                    let on =
                        |values: Vec<f32>| Tensor::from_vec(values, like.shape(), like.device());
                    Moments::Device {
                        m: on(m)?,
                        v: on(v)?,
                    }
                }
            };
        }
        self.steps = steps;
        Ok(())
    }
}

/// Per-step constants of the update.
#[derive(Clone, Copy)]
struct Coefficients {
    l1: f32,
    coef: f32,
    weight_decay: f32,
    decay: f32,
    one_minus_b1: f32,
    b2: f32,
    one_minus_b2: f32,
    bc2_sqrt: f32,
    step_size: f32,
    eps: f32,
}

/// Weight-decay flavours of [`update_chunk`].
const NO_DECAY: u8 = 0;
const L2: u8 = 1;
const DECOUPLED: u8 = 2;

type UpdateFn = fn(&Coefficients, &mut [f32], &[f32], &mut [f32], &mut [f32]);

/// The gradient with the L1 term `l1 · sign(p)` added (nothing for `p = 0` or `l1 = 0`).
#[inline(always)]
fn with_l1(g: f32, p: f32, l1: f32) -> f32 {
    if l1 != 0.0 && p != 0.0 {
        g + l1 * p.signum()
    } else {
        g
    }
}

/// The Adam/AdamW update of parameters `p` with raw gradients `g` and moments `m`, `v` (equal
/// lengths). The decay flavour is a constant so that the loop vectorises; every operation is
/// element-wise and correctly rounded, so vector and scalar code, of any width, give the same
/// bits. Compiled for AVX-512 too, and that copy runs where the CPU has it (its divisions and
/// square roots are what bound the loop).
fn update_chunk<const DECAY: u8>(
    k: &Coefficients,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU supports AVX-512 F, checked just above.
        return unsafe { update_avx512::<DECAY>(k, p, g, m, v) };
    }
    update_portable::<DECAY>(k, p, g, m, v)
}

/// [`update_portable`] compiled with AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn update_avx512<const DECAY: u8>(
    k: &Coefficients,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    update_portable::<DECAY>(k, p, g, m, v)
}

/// [`update_chunk`] for the build's baseline target (inlined into the feature-specific copy).
#[inline(always)]
fn update_portable<const DECAY: u8>(
    k: &Coefficients,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let k = *k;
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
        let mut g = with_l1(g, *p, k.l1) * k.coef;
        match DECAY {
            L2 => g += k.weight_decay * *p,
            DECOUPLED => *p *= k.decay,
            _ => {}
        }
        *m += k.one_minus_b1 * (g - *m);
        *v = *v * k.b2 + k.one_minus_b2 * g * g;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *p += -k.step_size * (*m / denom);
    }
}

/// [`update_chunk`] with candle ops on the variable's device: the same formula, element-wise, on
/// `var` with gradient `g` and moments `m`, `v` (tensors of its shape).
fn update_on_device(
    k: &Coefficients,
    decay: u8,
    var: &Var,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
) -> candle_core::Result<()> {
    let p = var.as_tensor();
    let mut g = g.to_dtype(DType::F32)?;
    if k.l1 != 0.0 {
        g = (g + (p.sign()? * f64::from(k.l1))?)?;
    }
    g = (g * f64::from(k.coef))?;
    let mut p = p.clone();
    match decay {
        L2 => g = (&g + (&p * f64::from(k.weight_decay))?)?,
        DECOUPLED => p = (p * f64::from(k.decay))?,
        _ => {}
    }
    *m = (&*m + ((&g - &*m)? * f64::from(k.one_minus_b1))?)?;
    *v = ((&*v * f64::from(k.b2))? + ((&g * f64::from(k.one_minus_b2))? * &g)?)?;
    let denom = ((v.sqrt()? / f64::from(k.bc2_sqrt))? + f64::from(k.eps))?;
    let step = ((&*m / denom)? * f64::from(-k.step_size))?;
    var.set(&(p + step)?)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l1_term_is_the_sign_with_sign_of_zero_zero() {
        assert_eq!(with_l1(1.0, -2.0, 0.5), 0.5);
        assert_eq!(with_l1(1.0, 0.0, 0.5), 1.0);
        assert_eq!(with_l1(1.0, 3.0, 0.5), 1.5);
        assert_eq!(with_l1(1.0, 3.0, 0.0), 1.0);
    }

    #[test]
    fn one_step_matches_the_formula() {
        let k = Coefficients {
            l1: 0.0,
            coef: 0.5,
            weight_decay: 0.1,
            decay: 0.99,
            one_minus_b1: 0.1,
            b2: 0.999,
            one_minus_b2: 0.001,
            bc2_sqrt: 0.001f32.sqrt(),
            step_size: 0.1,
            eps: 1e-8,
        };
        let (mut p, mut m, mut v) = ([2.0f32], [0.0f32], [0.0f32]);
        update_chunk::<DECOUPLED>(&k, &mut p, &[4.0], &mut m, &mut v);
        // g = 4·0.5 = 2; p = 2·0.99; m = 0.2; v = 0.004; p -= 0.1·0.2/(√0.004/√0.001 + 1e-8).
        let denom = 0.004f32.sqrt() / 0.001f32.sqrt() + 1e-8;
        assert_eq!(m, [0.2]);
        assert_eq!(p, [2.0 * 0.99 - 0.1 * (0.2 / denom)]);
    }

    /// The copy the CPU runs (AVX-512 where present) gives the portable loop's bits, for every
    /// decay flavour, with an L1 term, over a length with a vector tail.
    #[test]
    fn the_dispatched_update_equals_the_portable_loop() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut values = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.random::<f32>() - 0.5) * scale)
                .collect()
        };
        let k = Coefficients {
            l1: 1e-3,
            coef: 0.7,
            weight_decay: 0.1,
            decay: 0.99,
            one_minus_b1: 0.1,
            b2: 0.999,
            one_minus_b2: 0.001,
            bc2_sqrt: 0.3,
            step_size: 0.01,
            eps: 1e-8,
        };
        let n = 16 * 37 + 5;
        let (p, g, m) = (values(n, 2.0), values(n, 1.0), values(n, 0.1));
        let v: Vec<f32> = values(n, 0.02).iter().map(|x| x.abs()).collect();
        type Update = fn(&Coefficients, &mut [f32], &[f32], &mut [f32], &mut [f32]);
        let flavours: [(Update, Update); 3] = [
            (update_chunk::<NO_DECAY>, update_portable::<NO_DECAY>),
            (update_chunk::<L2>, update_portable::<L2>),
            (update_chunk::<DECOUPLED>, update_portable::<DECOUPLED>),
        ];
        for (dispatched, portable) in flavours {
            let run = |f: Update| {
                let (mut p, mut m, mut v) = (p.clone(), m.clone(), v.clone());
                f(&k, &mut p, &g, &mut m, &mut v);
                [p, m, v].map(|x| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>())
            };
            assert_eq!(run(dispatched), run(portable));
        }
    }
}
