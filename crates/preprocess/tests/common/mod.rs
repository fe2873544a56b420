//! A tiny data set on disk, a config, and running the binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{ImageFormat, RgbImage};

pub const BIN: &str = env!("CARGO_BIN_EXE_dfd-preprocess");

/// A photo-like test image: gradients, a disc and hash noise, different for each `seed`.
pub fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(0x9E37_79B1)
            ^ y.wrapping_mul(0x85EB_CA77)
            ^ seed.wrapping_mul(0xC2B2_AE3D))
        .wrapping_mul(0x2C1B_3C6D)
            >> 27;
        let (dx, dy) = (x.abs_diff(w / 2 + seed % 7), y.abs_diff(h / 2));
        let disc = if dx * dx + dy * dy < (w.min(h) / 3).pow(2) {
            60
        } else {
            0
        };
        let r = (x * 200 / w + n + disc) as u8;
        let g = (y * 200 / h + n + (seed * 13) % 50) as u8;
        let b = ((x + y) * 100 / (w + h) + n * 2 + disc / 2) as u8;
        image::Rgb([r, g, b])
    })
}

const FORMATS: [(ImageFormat, &str); 4] = [
    (ImageFormat::Png, "png"),
    (ImageFormat::Jpeg, "jpg"),
    (ImageFormat::Bmp, "bmp"),
    (ImageFormat::WebP, "webp"),
];

/// Writes `n_real` + `n_fake` images of assorted sizes and formats under `dir/<real>` and
/// `dir/<fake>`; `reverse` creates the files in the opposite order (same names, same bytes).
pub fn make_dataset(dir: &Path, classes: [&str; 2], n_real: u32, n_fake: u32, reverse: bool) {
    let mut jobs: Vec<(PathBuf, u32)> = Vec::new();
    for (class, n, base) in [(classes[0], n_real, 0), (classes[1], n_fake, 1000)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..n {
            let (_, ext) = FORMATS[(i % 4) as usize];
            jobs.push((dir.join(class).join(format!("img_{i:03}.{ext}")), base + i));
        }
    }
    if reverse {
        jobs.reverse();
    }
    for (path, seed) in jobs {
        let (w, h) = (40 + seed % 17 * 3, 36 + seed % 11 * 4);
        let format = FORMATS[(seed % 1000 % 4) as usize].0;
        picture(w, h, seed).save_with_format(&path, format).unwrap();
    }
}

/// Writes a pipeline config `<dir>/<name>.toml`; `extra` is appended to `[preprocess]` (which
/// has `copies = 2` unless `extra` sets it).
pub fn config(dir: &Path, name: &str, classes: [&str; 2], extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let copies = if extra.contains("copies") {
        ""
    } else {
        "copies = 2"
    };
    let text = format!(
        r#"seed = 7

[dataset]
name = "demo"
source = "raw/demo"
classes = {{ {} = 0, {} = 1 }}

[split]
test_fraction = 0.2
folds = 3

[preprocess]
size = 32
shard_bytes = 13000
{copies}
{extra}
"#,
        classes[0], classes[1]
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The binary's command on `data_dir` with `config` and extra arguments.
pub fn command(data_dir: &Path, config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info");
    cmd
}

/// Runs the binary on `data_dir` with `config` and extra arguments.
pub fn run(data_dir: &Path, config: &Path, args: &[&str]) -> Output {
    command(data_dir, config, args)
        .output()
        .expect("running dfd-preprocess")
}

/// Runs and requires success; returns stdout + stderr.
pub fn run_ok(data_dir: &Path, config: &Path, args: &[&str]) -> String {
    let out = run(data_dir, config, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "dfd-preprocess failed:\n{text}");
    text
}

/// Every file under `<data_dir>/prepared`, by relative path.
pub fn snapshot(data_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &data_dir.join("prepared"),
        &data_dir.join("prepared"),
        &mut out,
    );
    out
}
