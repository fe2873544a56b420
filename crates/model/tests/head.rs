//! Heads: spec serialisation, names, seeded dropout, checkpoints, layer4 initialisation, and the
//! backbone pieces heads and Grad-CAM rely on.

mod small;

use candle_core::{DType, Device, Module, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{
    init_layer4_from, resolve_weights, Arch, Backbone, Cut, Head, HeadSpec, ResolvedWeights,
    WeightsSource,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use small::small_arch;

fn new_head(spec: &HeadSpec, seed: u64) -> (Head, VarMap) {
    let varmap = VarMap::new();
    let head = Head::new_seeded(
        spec,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        seed,
    )
    .unwrap();
    (head, varmap)
}

fn ramp(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|i| ((i * 7919) % 997) as f32 / 997.0).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

fn random_backbone(arch: &Arch, seed: u64) -> Backbone {
    let weights = ResolvedWeights::random(seed);
    Backbone::load(arch, &weights, &Device::Cpu, DType::F32).unwrap()
}

#[test]
fn head_spec_json_is_externally_tagged_snake_case() {
    let spec = HeadSpec::Mlp {
        input: 2048,
        hidden: vec![1024, 512],
        dropout: 0.5,
    };
    let json = serde_json::to_value(&spec).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"mlp": {"input": 2048, "hidden": [1024, 512], "dropout": 0.5}})
    );
    let ft = HeadSpec::FinetuneLayer4 {
        arch: Arch::resnext50_32x4d(),
        dropout: 0.5,
    };
    let json = serde_json::to_string(&ft).unwrap();
    assert!(
        json.starts_with(r#"{"finetune_layer4":{"arch":{"blocks":[3,4,6,3]"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<HeadSpec>(&json).unwrap(), ft);
}

#[test]
fn mlp_head_names_shapes_and_seeded_init() {
    let spec = HeadSpec::Mlp {
        input: 48,
        hidden: vec![16, 8],
        dropout: 0.5,
    };
    let (head, varmap) = new_head(&spec, 11);
    let mut names: Vec<(String, Vec<usize>)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect();
    names.sort();
    let expected = [
        ("classifier.2.bias", vec![16]),
        ("classifier.2.weight", vec![16, 48]),
        ("classifier.5.bias", vec![8]),
        ("classifier.5.weight", vec![8, 16]),
        ("classifier.8.bias", vec![2]),
        ("classifier.8.weight", vec![2, 8]),
    ];
    assert_eq!(names, expected.map(|(n, s)| (n.to_string(), s)));
    assert_eq!(head.trainable_vars().len(), 6);

    let x = ramp(&[3, 3, 4, 4]); // flattened to 48 features
    let logits = head.forward(&x).unwrap();
    assert_eq!(logits.dims(), [3, 2]);
    let (again, _) = new_head(&spec, 11);
    assert_eq!(
        again.forward(&x).unwrap().to_vec2::<f32>().unwrap(),
        logits.to_vec2::<f32>().unwrap()
    );
    // PyTorch's default bound 1/sqrt(fan_in).
    let w = varmap.data().lock().unwrap()["classifier.2.weight"]
        .as_tensor()
        .abs()
        .unwrap();
    assert!(w.max_all().unwrap().to_scalar::<f32>().unwrap() <= 1.0 / 48f32.sqrt());
}

#[test]
fn dropout_is_reproducible_from_the_callers_rng_and_only_in_train() {
    let spec = HeadSpec::Linear {
        input: 64,
        dropout: 0.5,
    };
    let (head, _) = new_head(&spec, 1);
    let x = ramp(&[4, 64]);
    let run = |seed| {
        head.forward_train(&x, &mut ChaCha8Rng::seed_from_u64(seed))
            .unwrap()
            .logits
            .to_vec2::<f32>()
            .unwrap()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
    let eval = head.forward(&x).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(eval, head.forward(&x).unwrap().to_vec2::<f32>().unwrap());
    assert_ne!(eval, run(5), "dropout only in training");

    let ones = Tensor::ones((100, 100), DType::F32, &Device::Cpu).unwrap();
    let dropped = dfd_model::dropout(&ones, 0.25, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    let values = dropped.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values
        .iter()
        .all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    let zeros = values.iter().filter(|&&v| v == 0.0).count();
    assert!(
        (2200..2800).contains(&zeros),
        "{zeros} of 10000 dropped at p=0.25"
    );
    // The bulk draw drops exactly the values one `random::<f32>() < p` per value would, for a p
    // that is not a multiple of 2⁻²⁴ too.
    for p in [0.25f32, 0.3] {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        rng.random::<u64>(); // a stream not at a block boundary
        let mut reference = rng.clone();
        let dropped = dfd_model::dropout(&ones, p, &mut rng).unwrap();
        let kept: Vec<bool> = dropped
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v != 0.0)
            .collect();
        let expected: Vec<bool> = (0..kept.len())
            .map(|_| reference.random::<f32>() >= p)
            .collect();
        assert_eq!(kept, expected, "p = {p}");
        assert_eq!(
            rng.random::<u64>(),
            reference.random::<u64>(),
            "stream position"
        );
    }
}

#[test]
fn finetune_head_from_random_layer4_matches_backbone_and_checkpoints_round_trip() {
    let arch = small_arch();
    let spec = HeadSpec::FinetuneLayer4 {
        arch: arch.clone(),
        dropout: 0.5,
    };
    let (head, varmap) = new_head(&spec, 3);
    init_layer4_from(&varmap, &ResolvedWeights::random(9), &arch).unwrap();

    // Eval mode: layer4 + avgpool from the head equals the backbone's, followed by the head's fc.
    let maps = ramp(&[2, 1024, 4, 4]);
    let pooled = random_backbone(&arch, 9)
        .forward_between(&maps, Cut::Layer3, Cut::Pooled)
        .unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    let fc = candle_nn::Linear::new(
        vars["fc.weight"].as_tensor().clone(),
        Some(vars["fc.bias"].as_tensor().clone()),
    );
    let expected = fc.forward(&pooled).unwrap();
    let logits = head.forward(&maps).unwrap();
    let diff = (&logits - &expected)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-4, "head vs backbone: {diff}");

    // A train step moves the running statistics; a checkpoint keeps them.
    let before = vars["layer4.0.bn1.running_mean"]
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap();
    head.forward_train(&maps, &mut ChaCha8Rng::seed_from_u64(0))
        .unwrap();
    let after = vars["layer4.0.bn1.running_mean"]
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap();
    assert_ne!(before, after);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("head.safetensors");
    varmap.save(&path).unwrap();
    let (loaded, loaded_vars) = Head::load(&spec, &path, &Device::Cpu).unwrap();
    let stats = loaded_vars.data().lock().unwrap()["layer4.0.bn1.running_mean"]
        .as_tensor()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(stats, after);
    let eval = |h: &Head| h.forward(&maps).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(eval(&loaded), eval(&head));
}

#[test]
fn a_partial_weights_file_reports_its_first_missing_key() {
    let arch = small_arch();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("partial.safetensors");
    let partial = [(
        "layer4.0.conv1.weight".to_string(),
        Tensor::zeros((256, 1024, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    )];
    candle_core::safetensors::save(&partial.into_iter().collect(), &path).unwrap();
    // Resolving the file already checks every tensor the architecture reads.
    let err = resolve_weights(&WeightsSource::File(path), &arch)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("has no tensor `bn1.bias`"),
        "{err:#}"
    );

    let empty = VarMap::new();
    assert!(init_layer4_from(&empty, &ResolvedWeights::random(0), &arch).is_err());
}

#[test]
fn forward_between_layer3_and_logits_equals_forward_to_logits() {
    let arch = small_arch();
    let backbone = random_backbone(&arch, 4);
    let x = ramp(&[2, 3, 64, 64]);
    let direct = backbone.forward_to(&x, Cut::Logits).unwrap();
    let layer3 = backbone.forward_to(&x, Cut::Layer3).unwrap();
    let resumed = backbone
        .forward_between(&layer3, Cut::Layer3, Cut::Logits)
        .unwrap();
    assert_eq!(
        direct.to_vec2::<f32>().unwrap(),
        resumed.to_vec2::<f32>().unwrap()
    );
    assert!(backbone
        .forward_between(&layer3, Cut::Layer3, Cut::Layer3)
        .is_err());
}

#[test]
fn gradients_flow_to_a_var_input_of_forward_between() {
    let arch = small_arch();
    let backbone = random_backbone(&arch, 4);
    let maps = Var::from_tensor(&ramp(&[1, 1024, 4, 4])).unwrap();
    let layer4 = backbone
        .forward_between(maps.as_tensor(), Cut::Layer3, Cut::Layer4)
        .unwrap();
    let grads = layer4.sum_all().unwrap().backward().unwrap();
    let grad = grads.get(maps.as_tensor()).expect("gradient for the input");
    assert_eq!(grad.dims(), maps.dims());
    assert!(
        grad.abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            > 0.0
    );
}

/// Largest |a − b| over two tensors of one shape, relative to the largest |b| (at least 1e-3).
fn relative_diff(a: &Tensor, b: &Tensor) -> f32 {
    let scalar = |t: Tensor| t.max_all().unwrap().to_scalar::<f32>().unwrap();
    let diff = scalar((a - b).unwrap().abs().unwrap());
    diff / scalar(b.abs().unwrap()).max(1e-3)
}

#[test]
fn forward_train_matches_the_graph_in_logits_gradients_and_running_statistics() {
    // Two layer4 blocks (a strided one with downsample, then an identity one) and dropout.
    let arch = Arch {
        blocks: [1, 1, 1, 2],
        ..small_arch()
    };
    let spec = HeadSpec::FinetuneLayer4 {
        arch: arch.clone(),
        dropout: 0.5,
    };
    let weights = ResolvedWeights::random(9);
    let twin = || {
        let (head, varmap) = new_head(&spec, 3);
        init_layer4_from(&varmap, &weights, &arch).unwrap();
        (head, varmap)
    };
    let ((graph, graph_vars), (taped, taped_vars)) = (twin(), twin());
    let maps = ramp(&[4, 1024, 4, 4]);
    let labels = Tensor::new(&[0u32, 1, 1, 0], &Device::Cpu).unwrap();
    let loss = |logits: &Tensor| candle_nn::loss::cross_entropy(logits, &labels).unwrap();

    let rng = || ChaCha8Rng::seed_from_u64(1);
    // The reference is the path other devices take: candle's graph, fast CPU ops switched off.
    let (expected_logits, expected) = dfd_ops::fallback::with_fallbacks(|| {
        let forward = graph.forward_train(&maps, &mut rng()).unwrap();
        let logits = forward.logits.clone();
        let grads = forward.backward(&loss(&logits)).unwrap();
        (logits, grads)
    });
    let forward = taped.forward_train(&maps, &mut rng()).unwrap();
    let logits = forward.logits.clone();
    let grads = forward.backward(&loss(&logits)).unwrap();

    assert!(relative_diff(&logits, &expected_logits) < 1e-5);
    let (graph_vars, taped_vars) = (
        graph_vars.data().lock().unwrap(),
        taped_vars.data().lock().unwrap(),
    );
    for (name, var) in graph_vars.iter() {
        let taped_var = &taped_vars[name];
        let diff = if name.contains("running_") {
            relative_diff(taped_var.as_tensor(), var.as_tensor())
        } else {
            let got = grads
                .get(taped_var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            relative_diff(got, expected.get(var.as_tensor()).unwrap())
        };
        assert!(diff < 1e-4, "{name}: {diff}");
    }
}

#[test]
fn classifier_heads_train_forward_matches_the_graph_in_logits_and_gradients() {
    // The MLP and Linear heads run outside candle's graph on the CPU: the same logits, the same
    // gradients, and the RNG left where the graph leaves it, with and without dropout, and with
    // everything dropped.
    let mlp = |dropout| HeadSpec::Mlp {
        input: 48,
        hidden: vec![40, 24],
        dropout,
    };
    let specs = [
        mlp(0.5),
        mlp(0.0),
        mlp(1.0),
        HeadSpec::Linear {
            input: 48,
            dropout: 0.3,
        },
    ];
    // 2-D features, and 4-D ones the heads flatten.
    for (spec, shape) in
        specs
            .iter()
            .zip([[5, 48, 1, 1], [5, 48, 1, 1], [5, 3, 4, 4], [5, 48, 1, 1]])
    {
        let ((graph, graph_vars), (taped, taped_vars)) = (new_head(spec, 3), new_head(spec, 3));
        let x = (ramp(&shape) - 0.4).unwrap();
        let labels = Tensor::new(&[0u32, 1, 1, 0, 1], &Device::Cpu).unwrap();
        let loss = |logits: &Tensor| candle_nn::loss::cross_entropy(logits, &labels).unwrap();
        let (mut graph_rng, mut taped_rng) =
            (ChaCha8Rng::seed_from_u64(1), ChaCha8Rng::seed_from_u64(1));
        let (expected_logits, expected) = dfd_ops::fallback::with_fallbacks(|| {
            let forward = graph.forward_train(&x, &mut graph_rng).unwrap();
            let logits = forward.logits.clone();
            let grads = forward.backward(&loss(&logits)).unwrap();
            (logits, grads)
        });
        let forward = taped.forward_train(&x, &mut taped_rng).unwrap();
        let logits = forward.logits.clone();
        let grads = forward.backward(&loss(&logits)).unwrap();

        assert!(relative_diff(&logits, &expected_logits) < 1e-5, "{spec}");
        assert_eq!(
            graph_rng.random::<u64>(),
            taped_rng.random::<u64>(),
            "{spec}"
        );
        let (graph_vars, taped_vars) = (
            graph_vars.data().lock().unwrap(),
            taped_vars.data().lock().unwrap(),
        );
        for (name, var) in graph_vars.iter() {
            let got = grads
                .get(taped_vars[name].as_tensor())
                .unwrap_or_else(|| panic!("{spec}: no gradient for {name}"));
            assert_eq!(got.dims(), var.dims(), "{spec}: {name}");
            match expected.get(var.as_tensor()) {
                Some(want) => assert!(relative_diff(got, want) < 1e-5, "{spec}: {name}"),
                // Everything dropped: the graph reaches no earlier layer; the tape gives the
                // zeros PyTorch's autograd gives.
                None => {
                    let values = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    assert!(values.iter().all(|&v| v == 0.0), "{spec}: {name}");
                }
            }
        }
    }
}
