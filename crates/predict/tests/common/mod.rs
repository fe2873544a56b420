//! The trained run every predict test scores with: a random resnet50 backbone at 64 px and a
//! seeded MLP head, and a folder of test images.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{Head, HeadSpec};
use image::{ImageFormat, Rgb, RgbImage};

pub const SIZE: u32 = 64;
pub const CONFIG: &str = r#"
seed = 3
[preprocess]
size = 64
[extract]
arch = "resnet50"
weights = "random:1"
cut = "pooled"
batch_size = 2
"#;

pub fn spec() -> HeadSpec {
    HeadSpec::Mlp {
        input: 2048,
        hidden: vec![8],
        dropout: 0.5,
    }
}

/// Writes `<root>/run` (config + fold0/checkpoints/best) and `<root>/images`; returns both.
pub fn fixture(root: &Path) -> (PathBuf, PathBuf) {
    let run = root.join("run");
    let checkpoint = run.join("fold0/checkpoints/best");
    std::fs::create_dir_all(&checkpoint).unwrap();
    std::fs::write(run.join("config.toml"), CONFIG).unwrap();
    let varmap = VarMap::new();
    Head::new_seeded(
        &spec(),
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        5,
    )
    .unwrap();
    varmap.save(checkpoint.join("model.safetensors")).unwrap();
    // safetensors writes the file 0600; the hostile-folder test reads it as another user.
    std::fs::set_permissions(
        checkpoint.join("model.safetensors"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(
        checkpoint.join("head.json"),
        serde_json::to_string(&spec()).unwrap(),
    )
    .unwrap();
    let state = dfd_layout::checkpoint::TrainState::start(0, Vec::new(), None);
    dfd_layout::checkpoint::write_state(&checkpoint, &state).unwrap();

    let images = root.join("images");
    std::fs::create_dir_all(images.join("a")).unwrap();
    std::fs::create_dir_all(images.join("b")).unwrap();
    let pattern = |w: u32, h: u32, k: u32| {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 3 + k * 40) as u8,
                (y * 5 + x) as u8,
                ((x ^ y) * k) as u8,
            ])
        })
    };
    pattern(80, 60, 1)
        .save_with_format(images.join("a/face.png"), ImageFormat::Png)
        .unwrap();
    pattern(64, 64, 2)
        .save_with_format(images.join("b/face.JPG"), ImageFormat::Jpeg)
        .unwrap();
    pattern(90, 120, 3)
        .save_with_format(images.join("b/portrait.png"), ImageFormat::Png)
        .unwrap();
    // A JPEG cut in half: its end-of-image marker is gone.
    let mut jpeg = std::io::Cursor::new(Vec::new());
    pattern(64, 64, 4)
        .write_to(&mut jpeg, ImageFormat::Jpeg)
        .unwrap();
    let bytes = jpeg.into_inner();
    std::fs::write(images.join("a/broken.jpg"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(images.join("notes.txt"), b"not scanned").unwrap();
    (run, images)
}
