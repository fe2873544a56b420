//! Checkpoints of one fold: `checkpoints/{last,best}/` with the head's weights (every VarMap
//! variable, BN running statistics included), its spec, the optimiser's moments and the loop
//! state.
//!
//! No RNG state is stored: shuffling is `stream(seed, "shuffle", [fold, epoch])` and dropout
//! `stream(seed, "dropout", [fold, step])`, so `(epoch, step)` fixes every future draw.
//!
//! A checkpoint is written into `<tag>.tmp/`, then swapped in (`<tag>` → `<tag>.old`,
//! `<tag>.tmp` → `<tag>`, `<tag>.old` removed); [`recover`] finishes a swap a kill interrupted,
//! so a complete checkpoint always survives.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_nn::VarMap;
use dfd_layout::atomic::{read_json, write_json_atomic};
use dfd_layout::paths::{CHECKPOINT_HEAD, CHECKPOINT_WEIGHTS};
use dfd_layout::FoldDir;
use dfd_model::HeadSpec;
use serde::{Deserialize, Serialize};

use crate::data::FeatureSource;
use crate::optim::Optimizer;

/// Optimiser moments inside a checkpoint.
pub const CHECKPOINT_OPTIMIZER: &str = "optimizer.safetensors";
/// Loop state inside a checkpoint.
pub const CHECKPOINT_STATE: &str = "state.json";

/// The best validation so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub epoch: usize,
    pub step: usize,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_auc: Option<f64>,
    /// The best model's validation equal-error-rate threshold on P(fake) (where fpr = fnr);
    /// `None` for a single-class validation fold or a checkpoint written before it was recorded.
    #[serde(default)]
    pub val_eer_threshold: Option<f64>,
}

/// Where a fold's training loop stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    pub fold: u8,
    /// Optimiser steps taken (training batches consumed).
    pub step: usize,
    /// Epoch the next step belongs to.
    pub epoch: usize,
    pub best: Option<Best>,
    /// Validations since `best` last improved (early stopping).
    pub bad_validations: usize,
    /// Records in `metrics.jsonl` up to this checkpoint (a resume truncates the log to them).
    pub records: usize,
    /// Training seconds, summed over sessions.
    pub elapsed_s: f64,
    /// Feature directories read and their input hashes.
    pub sources: Vec<FeatureSource>,
    /// Identity of the layer4 initial weights (`finetune-layer4` only).
    pub weights_identity: Option<String>,
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// Writes checkpoint `tag` of `fold`.
pub fn save(
    fold: &FoldDir,
    tag: &str,
    varmap: &VarMap,
    spec: &HeadSpec,
    opt: &Optimizer,
    state: &TrainState,
) -> Result<()> {
    let dir = fold.checkpoint(tag);
    let (tmp, old) = (sibling(&dir, ".tmp"), sibling(&dir, ".old"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let weights = tmp.join(CHECKPOINT_WEIGHTS);
    varmap
        .save(&weights)
        .with_context(|| format!("writing weights {}", weights.display()))?;
    write_json_atomic(&tmp.join(CHECKPOINT_HEAD), spec)?;
    opt.save(&tmp.join(CHECKPOINT_OPTIMIZER))?;
    write_json_atomic(&tmp.join(CHECKPOINT_STATE), state)?;
    if dir.exists() {
        std::fs::rename(&dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
}

/// Completes a swap interrupted by a kill and drops half-written checkpoints, for `tag`.
pub fn recover(fold: &FoldDir, tag: &str) -> Result<()> {
    let dir = fold.checkpoint(tag);
    let (tmp, old) = (sibling(&dir, ".tmp"), sibling(&dir, ".old"));
    if !dir.exists() && old.exists() {
        std::fs::rename(&old, &dir)
            .with_context(|| format!("restoring {} from {}", dir.display(), old.display()))?;
    }
    for stale in [tmp, old] {
        if stale.exists() {
            std::fs::remove_dir_all(&stale)
                .with_context(|| format!("removing {}", stale.display()))?;
        }
    }
    Ok(())
}

/// The state of checkpoint `tag`, if it exists.
pub fn read_state(fold: &FoldDir, tag: &str) -> Result<Option<TrainState>> {
    let path = fold.checkpoint(tag).join(CHECKPOINT_STATE);
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Loads checkpoint `tag`'s weights into `varmap` and its moments into `opt`.
pub fn restore(
    fold: &FoldDir,
    tag: &str,
    varmap: &mut VarMap,
    opt: &mut Optimizer,
    state: &TrainState,
) -> Result<()> {
    let dir = fold.checkpoint(tag);
    let weights = dir.join(CHECKPOINT_WEIGHTS);
    varmap
        .load(&weights)
        .with_context(|| format!("loading weights {}", weights.display()))?;
    opt.load(&dir.join(CHECKPOINT_OPTIMIZER), state.step as u64)
}
