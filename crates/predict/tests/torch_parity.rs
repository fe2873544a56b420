//! PyTorch parity of one-file models: `scripts/torch_predict.py` (torchvision + safetensors,
//! no dfd code) gives the P(fake) of `dfd-predict --model` to 1e-4, for every head kind and a
//! fold ensemble. Skips, saying why, where torch is not importable (CI has no torch).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{init_layer4_from, Arch, BundleMeta, Head, HeadSpec, ResolvedWeights};
use image::{Rgb, RgbImage};

const SIZE: usize = 64;

fn small_arch() -> Arch {
    Arch {
        blocks: [1, 1, 1, 1],
        groups: 8,
        width_per_group: 4,
        num_classes: 5,
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the parity check cannot run here, if it cannot.
fn torch_missing() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import torch, torchvision, safetensors, PIL"])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        Err(e) => Some(format!("python3: {e}")),
    }
}

/// `path,p_fake` of a dfd-predict style CSV, in row order.
fn scores(csv_text: &[u8]) -> Vec<(String, f64)> {
    let mut reader = csv::Reader::from_reader(csv_text);
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].parse().unwrap())
        })
        .collect()
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `scripts/export_onnx.py` on `model`, where onnx and onnxruntime are importable: the ONNX
/// file's P(fake) must equal PyTorch's to 1e-4 (the script prints the largest difference).
fn onnx_matches_torch(model: &Path, name: &str) {
    let probe = Command::new("python3")
        .args(["-c", "import onnx, onnxruntime"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("{name}: onnx/onnxruntime not importable: the ONNX export is not checked");
        return;
    }
    let out = run(Command::new("python3")
        .arg(repo().join("scripts/export_onnx.py"))
        .arg(model)
        .arg(model.with_extension("onnx")));
    let text = String::from_utf8_lossy(&out);
    let diff: f64 = text
        .rsplit("difference| ")
        .next()
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name}: no difference printed:\n{text}"));
    assert!(diff < 1e-4, "{name}: ONNX differs from PyTorch by {diff}");
    eprintln!("{name}: ONNX vs PyTorch {diff:.2e}");
}

#[test]
fn torch_predict_matches_dfd_predict_for_every_head_kind() {
    if let Some(why) = torch_missing() {
        eprintln!("skipping the PyTorch parity check: torch is not importable ({why})");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (n, (w, h)) in [(80u32, 70u32), (64, 64), (50, 90)].into_iter().enumerate() {
        let img = RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                ((x * 7 + y * 3 + n as u32 * 40) % 256) as u8,
                ((x * y + 11) % 256) as u8,
                ((y * 5) % 256) as u8,
            ])
        });
        img.save(images.join(format!("img{n}.png"))).unwrap();
    }
    let mlp = HeadSpec::Mlp {
        input: 2048,
        hidden: vec![16],
        dropout: 0.5,
    };
    let linear = HeadSpec::Linear {
        input: 1024 * 4 * 4,
        dropout: 0.5,
    };
    let finetune = HeadSpec::FinetuneLayer4 {
        arch: small_arch(),
        dropout: 0.5,
    };
    let cases = [
        ("mlp ensemble", "pooled", vec![(0u8, &mlp), (1, &mlp)]),
        ("linear", "layer3", vec![(0, &linear)]),
        ("finetune-layer4", "layer3", vec![(0, &finetune)]),
    ];
    let mut worst = 0.0f64;
    for (name, cut, heads) in cases {
        let varmaps: Vec<VarMap> = heads
            .iter()
            .map(|(k, spec)| {
                let varmap = VarMap::new();
                let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
                Head::new_seeded(spec, vb, u64::from(*k) + 5).unwrap();
                if let HeadSpec::FinetuneLayer4 { arch, .. } = spec {
                    init_layer4_from(&varmap, &ResolvedWeights::random(100), arch).unwrap();
                }
                varmap
            })
            .collect();
        let meta = BundleMeta {
            arch: serde_json::to_string(&small_arch()).unwrap(),
            cut: cut.into(),
            input_size: SIZE,
            folds: heads.iter().map(|(k, _)| *k).collect(),
            heads: heads.iter().map(|(_, s)| (*s).clone()).collect(),
            threshold: 0.5,
            eer_thresholds: vec![None; heads.len()],
            weights_identity: "random:7".into(),
            pretrained: false,
            pipeline: format!("[preprocess]\nsize = {SIZE}\n[extract]\nbatch_size = 2\n"),
            checkpoint: "best".into(),
        };
        let model = tmp
            .path()
            .join(format!("{cut}-{}.safetensors", heads.len()));
        dfd_model::write_bundle(
            &model,
            &small_arch(),
            &ResolvedWeights::random(7),
            &varmaps.iter().collect::<Vec<_>>(),
            &meta,
        )
        .unwrap();
        let ours = scores(&run(Command::new(env!("CARGO_BIN_EXE_dfd-predict"))
            .arg("--model")
            .arg(&model)
            .arg(&images)
            .env("NO_COLOR", "1")));
        let torch = scores(&run(Command::new("python3")
            .arg(repo().join("scripts/torch_predict.py"))
            .arg(&model)
            .arg(&images)));
        onnx_matches_torch(&model, name);
        assert_eq!(ours.len(), 3, "{name}");
        assert_eq!(torch.len(), 3, "{name}");
        for ((path, a), (_, b)) in ours.iter().zip(&torch) {
            let diff = (a - b).abs();
            worst = worst.max(diff);
            assert!(diff < 1e-4, "{name}, {path}: dfd-predict {a}, PyTorch {b}");
        }
    }
    eprintln!("PyTorch parity: largest |P(fake) difference| {worst:.2e} over 3 head kinds");
}
