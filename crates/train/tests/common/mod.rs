//! Synthetic, linearly separable feature sets written with the layout crate (manifest + feature
//! shard directories), and helpers to run the stage on them.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};

use dfd_layout::manifest::{write_manifest, ManifestRow};
use dfd_layout::shards::{u32_bytes, ShardDir, TensorData};
use dfd_layout::{DataRoot, PipelineConfig, Split};
use rand::Rng;
use safetensors::Dtype;

/// What to generate.
pub struct Synth {
    /// Manifest rows (every 5th is test split).
    pub images: u32,
    pub folds: u8,
    /// Augmented copies a1..aK written besides a0.
    pub copies: u32,
    /// Shape of a feature row.
    pub row_shape: Vec<usize>,
    pub f16: bool,
    /// `extract.cut` in the pipeline.
    pub cut: &'static str,
    /// Half the distance between the class means, per element.
    pub margin: f32,
    /// A manifest id whose feature rows are all NaN.
    pub poison: Option<u32>,
}

impl Default for Synth {
    fn default() -> Self {
        Self {
            images: 150,
            folds: 3,
            copies: 1,
            row_shape: vec![32],
            f16: false,
            cut: "pooled",
            margin: 1.0,
            poison: None,
        }
    }
}

/// A pipeline file at `<data>/<name>.toml` with the synthetic data set's sections and `train`.
pub fn write_pipeline(data: &Path, name: &str, synth: &Synth, train: &str) -> PathBuf {
    let text = format!(
        "seed = 11\n[dataset]\nname = \"synth\"\n[split]\nfolds = {}\n[preprocess]\nsize = 32\ncopies = {}\n\
         [extract]\narch = \"resnext50_32x4d\"\nweights = \"random:0\"\ncut = \"{}\"\n[train]\n{train}\n",
        synth.folds, synth.copies, synth.cut
    );
    let path = data.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// The manifest rows of `synth`: label alternates, every 5th row is test, folds round-robin.
pub fn manifest(synth: &Synth) -> Vec<ManifestRow> {
    (0..synth.images)
        .map(|id| {
            let test = id % 5 == 4;
            ManifestRow {
                id,
                path: format!("img{id:04}.jpg"),
                label: (id % 2) as u8,
                split: if test { Split::Test } else { Split::Train },
                fold: (!test).then_some((id % u32::from(synth.folds)) as u8),
                hash: format!("{id:x}"),
                width: 32,
                height: 32,
            }
        })
        .collect()
}

/// Writes the manifest and the train split's feature directories a0..a`copies` for the pipeline
/// at `config` (two shards each). Fake rows are shifted by `+margin`, real ones by `−margin`,
/// on top of unit Gaussian noise drawn per (id, copy).
pub fn write_data(data: &Path, config: &Path, synth: &Synth) {
    let cfg = PipelineConfig::load(config).unwrap();
    let root = DataRoot::new(data);
    let rows = manifest(synth);
    std::fs::create_dir_all(root.prepared("synth")).unwrap();
    write_manifest(&root.manifest("synth"), &rows).unwrap();
    let train: Vec<&ManifestRow> = rows.iter().filter(|r| r.split == Split::Train).collect();
    let d: usize = synth.row_shape.iter().product();
    for copy in 0..=synth.copies {
        let dir = dfd_train::data::train_features_dir(&root, &cfg, &backbone(&cfg), copy);
        let shards = ShardDir::open(&dir, "synthetic", 2).unwrap();
        let half = train.len() / 2;
        for (n, part) in [&train[..half], &train[half..]].into_iter().enumerate() {
            let mut values = Vec::with_capacity(part.len() * d);
            for r in part {
                let mut rng =
                    dfd_layout::rng::stream(1, "synthetic", &[u64::from(r.id), u64::from(copy)]);
                let shift = if r.label == 1 {
                    synth.margin
                } else {
                    -synth.margin
                };
                let poison = synth.poison == Some(r.id);
                values.extend((0..d).map(|_| {
                    let v = rng.random::<f32>() * 2.0 - 1.0 + shift;
                    if poison {
                        f32::NAN
                    } else {
                        v
                    }
                }));
            }
            let (bytes, dtype): (Vec<u8>, Dtype) = if synth.f16 {
                let b = values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect();
                (b, Dtype::F16)
            } else {
                (
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    Dtype::F32,
                )
            };
            let labels: Vec<u8> = part.iter().map(|r| r.label).collect();
            let ids = u32_bytes(&part.iter().map(|r| r.id).collect::<Vec<_>>());
            let mut shape = vec![part.len()];
            shape.extend(&synth.row_shape);
            shards
                .write(
                    n,
                    &[
                        TensorData {
                            name: "features",
                            dtype,
                            shape,
                            data: &bytes,
                        },
                        TensorData {
                            name: "labels",
                            dtype: Dtype::U8,
                            shape: vec![part.len()],
                            data: &labels,
                        },
                        TensorData {
                            name: "ids",
                            dtype: Dtype::U32,
                            shape: vec![part.len()],
                            data: &ids,
                        },
                    ],
                )
                .unwrap();
        }
        assert!(shards
            .finish(serde_json::json!({ "shape": synth.row_shape }))
            .unwrap());
    }
}

/// Runs the stage in-process, as `dfd-train --config <config> --data-dir <data> <extra…>`.
pub fn train(data: &Path, config: &Path, extra: &[&str]) -> anyhow::Result<()> {
    use clap::Parser;
    let mut args = vec![
        "dfd-train".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    dfd_train::run::run(&dfd_train::cli::Cli::parse_from(args))
}

/// Reads the `kind = "val"` records of a fold's log.
pub fn val_records(data: &Path, pipeline: &str, fold: u8) -> Vec<dfd_layout::runlog::LogRecord> {
    let run = DataRoot::new(data).run(pipeline, "main");
    dfd_layout::runlog::read(&run.fold(fold).metrics())
        .unwrap()
        .into_iter()
        .filter(|r| matches!(r, dfd_layout::runlog::LogRecord::Val { .. }))
        .collect()
}

/// Loads a checkpoint's tensors by name.
pub fn checkpoint_tensors(
    data: &Path,
    pipeline: &str,
    fold: u8,
    tag: &str,
) -> Vec<(String, Vec<f32>)> {
    let path = DataRoot::new(data)
        .run(pipeline, "main")
        .fold(fold)
        .checkpoint(tag)
        .join(dfd_layout::paths::CHECKPOINT_WEIGHTS);
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The feature directories' backbone key of a test pipeline: its weights are `random:<seed>`,
/// whose identity is that text.
pub fn backbone(cfg: &PipelineConfig) -> String {
    assert!(cfg.extract.weights.as_str().starts_with("random:"));
    dfd_layout::backbone_key(cfg.extract.arch, cfg.extract.weights.as_str())
}
