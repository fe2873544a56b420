//! Paths of the on-disk layout: the single place that knows where every stage's files live.
//!
//! ```text
//! <data>/raw/<dataset>/...                                   the user's images (any folder, see DatasetConfig::source)
//! <data>/prepared/<dataset>/manifest.csv                     id, path, label, split, fold, hash, width, height
//! <data>/prepared/<dataset>/rejects.csv                      path, reason, detail
//! <data>/prepared/<dataset>/s<S>/<split>/a<k>/shard-NNNNN.safetensors   images u8 N×3×S×S, labels u8, ids u32
//! <data>/features/<dataset>/<backbone>/s<S>-<cut>/<split>/a<k>/shard-NNNNN.safetensors  features, labels, ids
//! <data>/runs/<pipeline>/<run-id>/config.toml                the resolved pipeline config
//! <data>/runs/<pipeline>/<run-id>/stages/<stage>.done        completion markers (the Makefile's targets)
//! <data>/runs/<pipeline>/<run-id>/fold<k>/metrics.jsonl      training log, one JSON object per line
//! <data>/runs/<pipeline>/<run-id>/fold<k>/checkpoints/<tag>/ model.safetensors, head.json, optimizer.safetensors, state.json
//! <data>/runs/<pipeline>/<run-id>/eval/                      metrics.json, *.png, report.md, report.html
//! <data>/runs/<pipeline>/<run-id>/eval/<dataset>/            an evaluation on another data set (dfd-evaluate --on):
//!                                                            the same files, and evaluate.done
//! <data>/prepared/<dataset>@all/, <data>/features/<dataset>@all/   that data set, whole, as a test split
//! <data>/runs/comparison.{md,html,csv}                     every evaluated run side by side (dfd-compare)
//! ```
//! Every shard directory also holds `index.json` once complete, and `shard-NNNNN.json` sidecars
//! while being filled (see [`crate::shards`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::DatasetConfig;

/// The two splits of a data set. Validation folds live inside `train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

/// The root of the layout (`data/` by default, `--data-dir` or `DFD_DATA_DIR` to move it).
#[derive(Clone, Debug)]
pub struct DataRoot {
    root: PathBuf,
}

impl DataRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data set's image folder: `source` as given if absolute, else under the root.
    pub fn source(&self, dataset: &DatasetConfig) -> PathBuf {
        self.root.join(&dataset.source)
    }

    /// `prepared/<dataset>`.
    pub fn prepared(&self, dataset: &str) -> PathBuf {
        self.root.join("prepared").join(dataset)
    }

    /// `prepared/<dataset>/manifest.csv`.
    pub fn manifest(&self, dataset: &str) -> PathBuf {
        self.prepared(dataset).join("manifest.csv")
    }

    /// `prepared/<dataset>/rejects.csv`.
    pub fn rejects(&self, dataset: &str) -> PathBuf {
        self.prepared(dataset).join("rejects.csv")
    }

    /// `prepared/<dataset>/s<size>/<split>/a<copy>`: image shards; copy 0 is un-augmented.
    pub fn images(&self, dataset: &str, size: u32, split: Split, copy: u32) -> PathBuf {
        self.prepared(dataset)
            .join(format!("s{size}"))
            .join(split.to_string())
            .join(format!("a{copy}"))
    }

    /// `features/<dataset>/<backbone>/s<size>-<cut>/<split>/a<copy>`; `backbone` from [`backbone_key`],
    /// `cut` the name of `extract.cut`.
    pub fn features(
        &self,
        dataset: &str,
        backbone: &str,
        size: u32,
        cut: impl AsRef<str>,
        split: Split,
        copy: u32,
    ) -> PathBuf {
        let cut = cut.as_ref();
        self.root
            .join("features")
            .join(dataset)
            .join(backbone)
            .join(format!("s{size}-{cut}"))
            .join(split.to_string())
            .join(format!("a{copy}"))
    }

    /// `runs/<pipeline>/<run_id>`.
    pub fn run(&self, pipeline: &str, run_id: &str) -> RunDir {
        RunDir {
            path: self.root.join("runs").join(pipeline).join(run_id),
        }
    }
}

/// The backbone key of a feature directory made by [`DataRoot::features`]
/// (`…/<backbone>/s<size>-<cut>/<split>/a<copy>`), e.g. the one a fold was trained on.
pub fn backbone_of_features(dir: &Path) -> Option<&str> {
    dir.ancestors().nth(3)?.file_name()?.to_str()
}

/// The directory name of a backbone's features: the architecture (`extract.arch`) and the
/// weights identity (`ResolvedWeights::identity` of dfd-model), e.g. `resnet50@random-7` for
/// `random:7`, `resnext50_32x4d@w-1a2b3c4d5e6f7a8b` for a content hash `blake3:1a2b3c4d5e6f7a8b…`.
/// Files with the same tensors (a `.pth`, a safetensors file, the hub's copy) share one
/// directory, whatever their names.
pub fn backbone_key(arch: impl AsRef<str>, identity: impl AsRef<str>) -> String {
    let (arch, identity) = (arch.as_ref(), identity.as_ref());
    let tag = if let Some(seed) = identity.strip_prefix("random:") {
        format!("random-{seed}")
    } else if let Some(hex) = identity.strip_prefix("blake3:") {
        format!("w-{}", &hex[..hex.len().min(16)])
    } else {
        identity.to_string()
    };
    let tag = path_safe(&tag);
    format!("{arch}@{tag}")
}

/// `name` with every character other than ASCII letters, digits, `.`, `_` and `-` replaced by
/// `-`, so that it can name a directory.
pub fn path_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// One training run: `runs/<pipeline>/<run-id>`.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout root holding this run (`<root>/runs/<pipeline>/<run-id>`), against which the
    /// run config's relative paths (`extract.weights`) are taken.
    pub fn data_root(&self) -> &Path {
        self.path
            .ancestors()
            .nth(3)
            .unwrap_or_else(|| Path::new("."))
    }

    /// `config.toml`: the resolved pipeline config the run was made with.
    pub fn config(&self) -> PathBuf {
        self.path.join("config.toml")
    }

    /// `stages/<stage>.done`: written by a stage when it has finished for this run (also when
    /// there was nothing left to do), so `make` can tell what is complete.
    pub fn stage_marker(&self, stage: &str) -> PathBuf {
        self.path.join("stages").join(format!("{stage}.done"))
    }

    /// `fold<k>`: one model, trained on the other folds and validated on fold k.
    pub fn fold(&self, k: u8) -> FoldDir {
        FoldDir {
            path: self.path.join(format!("fold{k}")),
        }
    }

    /// The folds this run has trained, in order (directories `fold<k>` that exist).
    pub fn trained_folds(&self) -> std::io::Result<Vec<u8>> {
        let mut folds = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let name = entry?.file_name();
            if let Some(k) = name.to_str().and_then(|n| n.strip_prefix("fold")) {
                if let Ok(k) = k.parse() {
                    folds.push(k);
                }
            }
        }
        folds.sort_unstable();
        Ok(folds)
    }

    /// `eval/`: evaluate's outputs.
    pub fn eval(&self) -> PathBuf {
        self.path.join("eval")
    }

    /// `eval/<dataset>/`: the outputs of evaluating another data set (`dfd-evaluate --on`), the
    /// same files as [`RunDir::eval`]'s plus their completion marker [`EVAL_ON_MARKER`].
    pub fn eval_on(&self, dataset: &str) -> PathBuf {
        self.eval().join(dataset)
    }
}

/// One fold of a run: `fold<k>/`.
#[derive(Clone, Debug)]
pub struct FoldDir {
    path: PathBuf,
}

impl FoldDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `metrics.jsonl`: one JSON object per logged step or validation.
    pub fn metrics(&self) -> PathBuf {
        self.path.join("metrics.jsonl")
    }

    /// `checkpoints/<tag>/` (`best`, `last`): holds [`CHECKPOINT_WEIGHTS`], [`CHECKPOINT_HEAD`],
    /// `optimizer.safetensors` and `state.json`.
    pub fn checkpoint(&self, tag: &str) -> PathBuf {
        self.path.join("checkpoints").join(tag)
    }

    /// `complete.json`: written when this fold's training has finished (epochs done or early stop).
    pub fn complete_marker(&self) -> PathBuf {
        self.path.join("complete.json")
    }
}

/// The completion marker of an evaluation on another data set, inside its `eval/<dataset>/`
/// (the run's `stages/` are left alone): JSON with the hash of its inputs under `"inputs"`.
pub const EVAL_ON_MARKER: &str = "evaluate.done";

/// Weights of a checkpoint (every variable of the head's VarMap, running stats included).
pub const CHECKPOINT_WEIGHTS: &str = "model.safetensors";
/// The head's spec (JSON of `dfd_model::HeadSpec`), enough to rebuild it for inference.
pub const CHECKPOINT_HEAD: &str = "head.json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_paths() {
        let d = DataRoot::new("/d");
        assert_eq!(
            d.images("ciplab", 224, Split::Train, 3),
            Path::new("/d/prepared/ciplab/s224/train/a3")
        );
        assert_eq!(
            d.features("ciplab", "resnet50@random-1", 128, "layer3", Split::Test, 0),
            Path::new("/d/features/ciplab/resnet50@random-1/s128-layer3/test/a0")
        );
        let run = d.run("exp1", "main");
        assert_eq!(
            run.stage_marker("extract"),
            Path::new("/d/runs/exp1/main/stages/extract.done")
        );
        assert_eq!(
            run.fold(2).checkpoint("best"),
            Path::new("/d/runs/exp1/main/fold2/checkpoints/best")
        );
    }

    #[test]
    fn a_feature_directory_names_its_backbone() {
        let root = DataRoot::new("/d");
        let dir = root.features("ds", "resnet50@random-7", 224, "pooled", Split::Train, 2);
        assert_eq!(backbone_of_features(&dir), Some("resnet50@random-7"));
    }

    #[test]
    fn backbone_keys_are_path_safe() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(
            backbone_key("resnext50_32x4d", format!("blake3:{hex}")),
            "resnext50_32x4d@w-0123456789abcdef"
        );
        assert_eq!(backbone_key("resnet50", "random:7"), "resnet50@random-7");
        assert_eq!(backbone_key("resnet50", "odd id/x"), "resnet50@odd-id-x");
    }
}
