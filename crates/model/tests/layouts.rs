//! A stage run channels-major (C×N×H×W, the fine-tune head's layout) equals the same stage run
//! NCHW: outputs, gradients of the input and of every parameter, and the BatchNorm running
//! statistics a train-mode pass leaves behind; also in eval mode and with BatchNorm folded.

use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{Arch, BnMode, MemoryFormat, ResLayer, BN_MOMENTUM};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

fn arch() -> Arch {
    Arch {
        blocks: [1, 2, 1, 1],
        groups: 8,
        width_per_group: 4,
        num_classes: 5,
    }
}

/// Standard normal values of `dims`, drawn from `rng`. Seeded draws keep every run the same:
/// with unseeded ones a train-mode BatchNorm over a batch of 3 at 4×4 now and then amplified the
/// two layouts' rounding past the tolerance (3 runs in 200).
fn normal(dims: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
    let normal = Normal::new(0f32, 1.0).unwrap();
    let values: Vec<f32> = normal
        .sample_iter(rng)
        .take(dims.iter().product())
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

/// layer2 of [`arch`] (strided first block with a downsample, then an identity block), its
/// variables drawn from `seed`, running statistics made non-trivial.
fn layer2(mode: BnMode, seed: u64) -> (ResLayer, VarMap) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let stage = ResLayer::new(&vb.pp("layer2"), &arch(), 1, mode).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut vars: Vec<_> = varmap.data().lock().unwrap().clone().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (name, var)) in vars.iter().enumerate() {
        let noise = normal(var.dims(), &mut rng);
        let value = match name.rsplit('.').next() {
            Some("running_var") => (noise.abs().unwrap() + 0.5).unwrap(),
            Some("weight") if var.rank() == 1 => noise.affine(0.2, 1.0).unwrap(),
            _ => (noise * (0.1 + 0.01 * ((seed as usize + i) % 3) as f64)).unwrap(),
        };
        var.set(&value).unwrap();
    }
    (stage, varmap)
}

fn snapshot(varmap: &VarMap) -> Vec<(String, Tensor)> {
    let data = varmap.data().lock().unwrap();
    let mut all: Vec<_> = data
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().copy().unwrap()))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

fn restore(varmap: &VarMap, values: &[(String, Tensor)]) {
    let data = varmap.data().lock().unwrap();
    for (name, value) in values {
        data[name].set(value).unwrap();
    }
}

fn to_cm(t: &Tensor) -> Result<Tensor> {
    t.permute((1, 0, 2, 3))?.contiguous()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let max = |t: &Tensor| -> f32 {
        t.abs()
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.max(0))
            .and_then(|t| t.to_scalar::<f32>())
            .unwrap()
    };
    let diff = max(&(got - want).unwrap());
    let scale = max(want).max(1.0);
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max|diff| {diff:e}, magnitude {scale}"
    );
}

/// Output, input gradient, parameter gradients (by name) and the values left in the VarMap.
type Pass = (Tensor, Tensor, Vec<(String, Tensor)>, Vec<(String, Tensor)>);

fn pass(stage: &ResLayer, varmap: &VarMap, x: &Tensor, train: bool, layout: MemoryFormat) -> Pass {
    let xv = Var::from_tensor(x).unwrap();
    let input = match layout {
        MemoryFormat::Nchw => xv.as_tensor().clone(),
        MemoryFormat::ChannelsMajor => to_cm(&xv).unwrap(),
    };
    let y = stage.forward_in(&input, train, layout).unwrap();
    let y = match layout {
        MemoryFormat::Nchw => y,
        MemoryFormat::ChannelsMajor => to_cm(&y).unwrap(),
    };
    let weights = ramp(y.dims());
    let grads = (&y * &weights)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let dx = grads.get(&xv).cloned().expect("input gradient");
    let params = snapshot(varmap)
        .into_iter()
        .filter_map(|(name, _)| {
            let var = varmap.data().lock().unwrap()[&name].clone();
            grads.get(var.as_tensor()).map(|g| (name, g.clone()))
        })
        .collect();
    (y, dx, params, snapshot(varmap))
}

fn ramp(dims: &[usize]) -> Tensor {
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 997) as f32 / 997.0 - 0.5)
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
}

fn compare(mode: BnMode, train: bool, hw: usize) {
    let (stage, varmap) = layer2(mode, hw as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + hw as u64);
    let x = (normal(&[3, 256, hw, hw], &mut rng) * 0.5).unwrap();
    let start = snapshot(&varmap);
    let want = pass(&stage, &varmap, &x, train, MemoryFormat::Nchw);
    restore(&varmap, &start);
    let got = pass(&stage, &varmap, &x, train, MemoryFormat::ChannelsMajor);
    let label = format!("{mode:?} train {train} {hw}x{hw}");
    assert_close(&format!("{label}: y"), &got.0, &want.0);
    assert_close(&format!("{label}: dx"), &got.1, &want.1);
    if matches!(mode, BnMode::Trainable { .. }) {
        // conv weight, BN weight and bias for 7 convs (3 + downsample, then 3).
        assert_eq!(want.2.len(), 21, "{label}: parameters with gradients");
    }
    let names = |p: &[(String, Tensor)]| p.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&got.2), names(&want.2), "{label}: gradient names");
    for ((name, g), (_, w)) in got.2.iter().zip(&want.2) {
        assert_close(&format!("{label}: d{name}"), g, w);
    }
    for ((name, g), (_, w)) in got.3.iter().zip(&want.3) {
        assert_close(&format!("{label}: {name} after the pass"), g, w);
    }
}

#[test]
fn trainable_stage_in_train_mode() {
    compare(
        BnMode::Trainable {
            momentum: BN_MOMENTUM,
        },
        true,
        8,
    );
    compare(
        BnMode::Trainable {
            momentum: BN_MOMENTUM,
        },
        true,
        7,
    );
}

#[test]
fn trainable_stage_in_eval_mode() {
    compare(
        BnMode::Trainable {
            momentum: BN_MOMENTUM,
        },
        false,
        8,
    );
}

#[test]
fn frozen_stage() {
    compare(BnMode::Frozen, false, 6);
}
