//! Weight sources: parsing, strict key/shape checking, identity by content across formats, random:<seed>.

use std::collections::HashMap;
use std::path::PathBuf;

mod small;

use candle_core::{DType, Device, Tensor};
use dfd_model::{resolve_weights, Arch, Backbone, Cut, ResolvedWeights, WeightsSource};
use small::{initial_tensors, save_pth, small_arch};

fn load(arch: &Arch, source: &WeightsSource) -> anyhow::Result<Backbone> {
    Backbone::load(
        arch,
        &resolve_weights(source, arch)?,
        &Device::Cpu,
        DType::F32,
    )
}

fn random_input(seed: u64) -> Tensor {
    let values: Vec<f32> = (0..2 * 3 * 64 * 64)
        .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Tensor::from_vec(values, (2, 3, 64, 64), &Device::Cpu).unwrap()
}

/// Saves `tensors` as a safetensors file and returns its path.
fn save(dir: &tempfile::TempDir, tensors: &HashMap<String, Tensor>) -> PathBuf {
    let path = dir.path().join("weights.safetensors");
    candle_core::safetensors::save(tensors, &path).unwrap();
    path
}

#[test]
fn weights_source_text_round_trips() {
    for text in [
        "hf:timm/resnext50_32x4d.tv_in1k/model.safetensors",
        "random:42",
        "/data/w.safetensors",
        "rel/w.safetensors",
    ] {
        let source: WeightsSource = text.parse().unwrap();
        assert_eq!(source.to_string(), text);
        assert_eq!(source.to_string().parse::<WeightsSource>().unwrap(), source);
    }
    let default = WeightsSource::default();
    assert_eq!(
        default,
        WeightsSource::Hub {
            repo: "timm/resnext50_32x4d.tv_in1k".into(),
            revision: None,
            file: "model.safetensors".into()
        }
    );
    assert_eq!(
        "hf:a/b/sub/f.safetensors".parse::<WeightsSource>().unwrap(),
        WeightsSource::Hub {
            repo: "a/b".into(),
            revision: None,
            file: "sub/f.safetensors".into()
        }
    );
    assert!(default.is_pretrained());
    assert!(!WeightsSource::Random { seed: 1 }.is_pretrained());
    assert!("random:x".parse::<WeightsSource>().is_err());
    assert!("hf:onlyowner".parse::<WeightsSource>().is_err());
}

#[test]
fn cut_and_arch_text_round_trips() {
    for cut in Cut::ALL {
        assert_eq!(cut.to_string().parse::<Cut>().unwrap(), cut);
    }
    assert!("layer5".parse::<Cut>().is_err());
    assert_eq!(
        "resnext50_32x4d".parse::<Arch>().unwrap(),
        Arch::resnext50_32x4d()
    );
    assert_eq!("resnet50".parse::<Arch>().unwrap(), Arch::resnet50());
    assert_eq!(
        "resnext101_32x8d".parse::<Arch>().unwrap(),
        Arch::resnext101_32x8d()
    );
    assert!("vgg16".parse::<Arch>().is_err());
    let json = serde_json::to_string(&Arch::resnext50_32x4d()).unwrap();
    assert_eq!(
        serde_json::from_str::<Arch>(&json).unwrap(),
        Arch::resnext50_32x4d()
    );
}

#[test]
fn feature_shapes_match_torchvision_and_actual_outputs() {
    let arch = Arch::resnext50_32x4d();
    // torchvision resnext50_32x4d at 224 px (from its documented architecture) and at 400 px.
    let at224: Vec<Vec<usize>> = Cut::ALL
        .iter()
        .map(|c| c.feature_shape(&arch, 224))
        .collect();
    assert_eq!(
        at224,
        [
            vec![64, 56, 56],
            vec![256, 56, 56],
            vec![512, 28, 28],
            vec![1024, 14, 14],
            vec![2048, 7, 7],
            vec![2048],
            vec![1000]
        ]
    );
    assert_eq!(Cut::Layer3.feature_shape(&arch, 400), [1024, 25, 25]);
    assert_eq!(Cut::Layer3.feature_shape(&arch, 128), [1024, 8, 8]);

    let arch = small_arch();
    let backbone = load(&arch, &WeightsSource::Random { seed: 3 }).unwrap();
    let x = random_input(0);
    for size in [64usize, 57] {
        let x = x.narrow(2, 0, size).unwrap().narrow(3, 0, size).unwrap();
        for cut in Cut::ALL {
            let y = backbone.forward_to(&x, cut).unwrap();
            assert_eq!(
                &y.dims()[1..],
                cut.feature_shape(&arch, size).as_slice(),
                "{cut} at {size}px"
            );
        }
    }
}

#[test]
fn random_weights_are_deterministic_and_well_scaled() {
    let arch = small_arch();
    let x = random_input(1);
    let run = |seed| {
        load(&arch, &WeightsSource::Random { seed })
            .unwrap()
            .forward_to(&x, Cut::Pooled)
            .unwrap()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    let diff = (&a - &c)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff > 1e-3, "different seeds give different weights");
    // Calibrated BatchNorm: pooled features are O(1), neither exploding nor vanishing.
    let rms = a
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .sqrt()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!((0.1..10.0).contains(&rms), "pooled rms {rms}");
    assert_eq!(
        resolve_weights(&WeightsSource::Random { seed: 7 }, &arch)
            .unwrap()
            .identity,
        "random:7"
    );
}

#[test]
fn file_weights_load_and_are_identified_by_their_tensors() {
    let arch = small_arch();
    let dir = tempfile::tempdir().unwrap();
    let tensors = initial_tensors(&arch);
    let path = save(&dir, &tensors);
    let resolved = resolve_weights(&WeightsSource::File(path.clone()), &arch).unwrap();
    assert_eq!(resolved.path.as_deref(), Some(path.as_path()));
    assert!(
        resolved.identity.starts_with("blake3:"),
        "{}",
        resolved.identity
    );
    let x = random_input(5);
    let want = load(&arch, &WeightsSource::File(path))
        .unwrap()
        .forward_to(&x, Cut::Pooled)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();

    // The same tensors with a `module.` prefix, an extra tensor and `num_batches_tracked`, as a
    // safetensors file and as `.pth` files: one identity, the same model.
    let mut prefixed: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, t)| (format!("module.{k}"), t.clone()))
        .collect();
    prefixed.insert(
        "module.bn1.num_batches_tracked".into(),
        Tensor::new(7i64, &Device::Cpu).unwrap(),
    );
    prefixed.insert(
        "extra".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let other = tempfile::tempdir().unwrap();
    let variants = [
        save(&other, &prefixed),
        dir.path().join("plain.pth"),
        dir.path().join("module.pth"),
    ];
    save_pth(&variants[1], &tensors, "");
    save_pth(&variants[2], &tensors, "module.");
    for file in variants {
        let source = WeightsSource::File(file.clone());
        let same = resolve_weights(&source, &arch).unwrap();
        assert_eq!(same.identity, resolved.identity, "{}", file.display());
        let got = load(&arch, &source)
            .unwrap()
            .forward_to(&x, Cut::Pooled)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(got, want, "{}", file.display());
    }

    // Other values, other identity.
    let mut changed = tensors.clone();
    changed.insert(
        "fc.bias".into(),
        Tensor::ones(arch.num_classes, DType::F32, &Device::Cpu).unwrap(),
    );
    let changed_path = tempfile::tempdir().unwrap();
    let changed = resolve_weights(&WeightsSource::File(save(&changed_path, &changed)), &arch);
    assert_ne!(changed.unwrap().identity, resolved.identity);
}

#[test]
fn wrong_file_names_first_missing_or_mismatching_key_with_shapes() {
    let arch = small_arch();
    let dir = tempfile::tempdir().unwrap();
    let full = initial_tensors(&arch);

    let mut missing = full.clone();
    missing.remove("layer2.0.downsample.1.running_var");
    missing.remove("layer3.0.conv1.weight");
    let err = load(&arch, &WeightsSource::File(save(&dir, &missing)))
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("no tensor `layer2.0.downsample.1.running_var`"),
        "{msg}"
    );
    assert!(msg.contains("expects shape [512]"), "{msg}");

    let mut mismatching = full.clone();
    mismatching.insert(
        "layer1.0.conv2.weight".into(),
        Tensor::zeros((32, 8, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = load(&arch, &WeightsSource::File(save(&dir, &mismatching)))
        .err()
        .unwrap();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("`layer1.0.conv2.weight` with shape [32, 8, 3, 3]"),
        "{msg}"
    );
    assert!(msg.contains("expects [32, 4, 3, 3]"), "{msg}");

    // A file for another architecture fails on its first differing key (in name order).
    let err = load(
        &Arch {
            groups: 4,
            ..arch.clone()
        },
        &WeightsSource::File(save(&dir, &full)),
    )
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("layer1.0.bn1.bias"), "{err:#}");
}

#[test]
fn devices_and_dtypes_parse() {
    assert!(dfd_model::parse_device("cpu").unwrap().is_cpu());
    let err = dfd_model::parse_device("tpu").err().unwrap();
    assert!(err.to_string().contains("cpu, cuda or cuda:N"), "{err}");
    if !cfg!(feature = "cuda") {
        let err = dfd_model::parse_device("cuda:1").err().unwrap();
        assert!(err.to_string().contains("`cuda` feature"), "{err}");
    }
    assert_eq!(dfd_model::parse_dtype("bf16").unwrap(), DType::BF16);
    let arch = small_arch();
    let weights = ResolvedWeights::random(1);
    let err = Backbone::load(&arch, &weights, &Device::Cpu, DType::F16)
        .err()
        .unwrap();
    assert!(err.to_string().contains("only supported on a GPU"), "{err}");
}
