//! Deterministic random weights (`random:<seed>`) with realistic BatchNorm statistics.
//!
//! Draw: conv weights Kaiming normal (fan_out, as torchvision), `fc` uniform ±1/sqrt(fan_in)
//! (as `nn.Linear`), BN weight 1 / bias 0; values come from a ChaCha8 stream seeded with `seed`,
//! tensor by tensor in sorted name order. Calibration: one train-mode forward (momentum 1) of a
//! seeded N(0, 1) batch sets every running mean/variance to the statistics the layer actually
//! sees, so eval-mode activations neither blow up nor vanish through the depth of the network.

use std::collections::HashMap;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::arch::{Arch, Cut};
use crate::blocks::Network;
use crate::norm::BnMode;

/// Images in the calibration batch, and their side in pixels (layer4 sees 3×3 maps).
const CALIBRATION_BATCH: usize = 4;
const CALIBRATION_SIZE: usize = 96;

/// Every parameter and running statistic of `arch` under torchvision names, on the CPU, in f32.
pub fn random_weights(arch: &Arch, seed: u64) -> anyhow::Result<HashMap<String, Tensor>> {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let network = Network::new(&vb, arch, BnMode::Trainable { momentum: 1.0 })
        .context("building the random network")?;

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let vars = varmap.data().lock().expect("VarMap lock poisoned").clone();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = &vars[name];
        let dims = var.dims().to_vec();
        let values: Vec<f32> = match dims.as_slice() {
            [c_out, _, kh, kw] => {
                let stdev = (2.0 / (c_out * kh * kw) as f32).sqrt();
                sample(Normal::new(0.0, stdev)?, var.elem_count(), &mut rng)
            }
            _ if name.starts_with("fc.") => {
                let bound = 1.0 / (arch.channels(Cut::Pooled) as f32).sqrt();
                sample(Uniform::new(-bound, bound)?, var.elem_count(), &mut rng)
            }
            _ => continue, // BatchNorm tensors keep their initial values until calibration.
        };
        var.set(&Tensor::from_vec(values, dims, &device)?)
            .with_context(|| format!("setting random `{name}`"))?;
    }

    let n = CALIBRATION_BATCH * 3 * CALIBRATION_SIZE * CALIBRATION_SIZE;
    let input = sample(Normal::new(0.0f32, 1.0)?, n, &mut rng);
    let input = Tensor::from_vec(
        input,
        (CALIBRATION_BATCH, 3, CALIBRATION_SIZE, CALIBRATION_SIZE),
        &device,
    )?;
    network
        .forward_range(&input, None, Cut::Layer4, true)
        .context("calibrating the BatchNorm statistics of the random network")?;

    Ok(vars
        .into_iter()
        .map(|(name, var)| (name, var.as_detached_tensor()))
        .collect())
}

fn sample<D: Distribution<f32>>(dist: D, count: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    dist.sample_iter(rng).take(count).collect()
}
