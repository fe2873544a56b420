//! Two Adam and two AdamW steps (class-weighted cross-entropy + L1, gradient clipping) equal
//! PyTorch's on the committed fixture from `scripts/make_optim_fixtures.py`, on the CPU's fast
//! path and on the path other devices take.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{Head, HeadSpec};
use dfd_train::optim::{AdamConfig, Optimizer, OptimizerKind};
use dfd_train::step::{named_trainable, train_step, StepSettings};
use serde::Deserialize;

#[derive(Deserialize)]
struct Hyper {
    lr: f64,
    betas: [f64; 2],
    eps: f64,
    weight_decay: f64,
    l1: f32,
    clip_grad_norm: f64,
    class_weights: [f32; 2],
}

#[derive(Deserialize)]
struct Step {
    loss: f64,
    params: HashMap<String, Vec<f32>>,
}

#[derive(Deserialize)]
struct Reference {
    hyper: Hyper,
    x: Vec<f32>,
    x_shape: Vec<usize>,
    y: Vec<u32>,
    init: HashMap<String, Vec<f32>>,
    shapes: HashMap<String, Vec<usize>>,
    adam: Vec<Step>,
    adamw: Vec<Step>,
}

fn reference() -> Reference {
    let text = include_str!("fixtures/optim_reference.json");
    serde_json::from_str(text).unwrap()
}

fn check(kind: OptimizerKind, steps: &[Step], r: &Reference) {
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let spec = HeadSpec::Mlp {
        input: 8,
        hidden: vec![6],
        dropout: 0.0,
    };
    let head = Head::new(&spec, VarBuilder::from_varmap(&varmap, DType::F32, &dev)).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let init = Tensor::from_vec(r.init[name].clone(), r.shapes[name].clone(), &dev).unwrap();
        var.set(&init).unwrap();
    }
    let cfg = AdamConfig {
        kind,
        betas: r.hyper.betas,
        eps: r.hyper.eps,
        weight_decay: r.hyper.weight_decay,
    };
    let mut opt = Optimizer::new(cfg, named_trainable(&head, &varmap).unwrap()).unwrap();
    let settings = StepSettings {
        l1: r.hyper.l1,
        clip_grad_norm: r.hyper.clip_grad_norm,
        class_weights: Some(r.hyper.class_weights),
    };
    let x = Tensor::from_vec(r.x.clone(), r.x_shape.clone(), &dev).unwrap();
    let y = Tensor::from_vec(r.y.clone(), r.y.len(), &dev).unwrap();
    for (i, expected) in steps.iter().enumerate() {
        let mut rng = dfd_layout::rng::stream(0, "unused", &[]);
        let out = train_step(&head, &mut opt, &x, &y, &settings, r.hyper.lr, &mut rng).unwrap();
        // The reference's loss is the optimised one: weighted cross-entropy + L1 penalty.
        assert!(
            (out.objective - expected.loss).abs() < 1e-5,
            "{kind:?} step {i}: loss {} vs torch {}",
            out.objective,
            expected.loss
        );
        let names: Vec<String> = opt.vars().map(|(n, _)| n.to_owned()).collect();
        for (name, got) in names.iter().zip(opt.values().unwrap()) {
            let want = &expected.params[name];
            let worst = got
                .iter()
                .zip(want)
                .map(|(g, w)| (g - w).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 2e-6,
                "{kind:?} step {i}: `{name}` differs from torch by {worst}"
            );
        }
    }
    // The steps moved the parameters (lr 0.01): the comparison is not vacuous.
    let moved =
        (r.init["classifier.2.weight"][0] - steps[1].params["classifier.2.weight"][0]).abs();
    assert!(moved > 1e-3, "{moved}");
}

#[test]
fn adam_matches_torch() {
    let r = reference();
    check(OptimizerKind::Adam, &r.adam, &r);
}

#[test]
fn adamw_matches_torch() {
    let r = reference();
    check(OptimizerKind::AdamW, &r.adamw, &r);
}

/// The update other devices run (moments on the device, candle ops), forced on the CPU.
#[test]
fn adam_and_adamw_match_torch_on_the_path_other_devices_take() {
    let r = reference();
    dfd_ops::fallback::with_fallbacks(|| {
        check(OptimizerKind::Adam, &r.adam, &r);
        check(OptimizerKind::AdamW, &r.adamw, &r);
    });
}

#[test]
fn optimiser_state_round_trips() {
    round_trip();
}

#[test]
fn optimiser_state_on_the_device_round_trips() {
    dfd_ops::fallback::with_fallbacks(round_trip);
}

/// One step, save, load into a fresh optimiser, save again: the same bytes.
fn round_trip() {
    let r = reference();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let spec = HeadSpec::Linear {
        input: 8,
        dropout: 0.0,
    };
    let head =
        Head::new_seeded(&spec, VarBuilder::from_varmap(&varmap, DType::F32, &dev), 5).unwrap();
    let cfg = AdamConfig {
        kind: OptimizerKind::Adam,
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut opt = Optimizer::new(cfg, named_trainable(&head, &varmap).unwrap()).unwrap();
    let x = Tensor::from_vec(r.x.clone(), r.x_shape.clone(), &dev).unwrap();
    let y = Tensor::from_vec(r.y.clone(), r.y.len(), &dev).unwrap();
    let settings = StepSettings {
        l1: 0.0,
        clip_grad_norm: 0.0,
        class_weights: None,
    };
    let mut rng = dfd_layout::rng::stream(0, "unused", &[]);
    train_step(&head, &mut opt, &x, &y, &settings, 0.01, &mut rng).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("opt.safetensors");
    opt.save(&path).unwrap();
    let mut fresh = Optimizer::new(cfg, named_trainable(&head, &varmap).unwrap()).unwrap();
    fresh.load(&path, opt.steps()).unwrap();
    let path2 = tmp.path().join("opt2.safetensors");
    fresh.save(&path2).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(&path2).unwrap()
    );
    assert_eq!(fresh.steps(), 1);
}
