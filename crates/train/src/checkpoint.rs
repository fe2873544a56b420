//! Checkpoints of one fold: `checkpoints/{last,best}/` with the head's weights (every VarMap
//! variable, BN running statistics included), its spec, the optimiser's moments and the loop
//! state. File names, `state.json` (with the files' checksums) and verification belong to
//! [`dfd_layout::checkpoint`]; this module moves the weights and moments in and out of them.
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
use dfd_layout::atomic::write_json_atomic;
use dfd_layout::checkpoint::{
    write_state, Checkpoint, TrainState, CHECKPOINT_FILES, CHECKPOINT_HEAD, CHECKPOINT_OPTIMIZER,
    CHECKPOINT_STATE, CHECKPOINT_WEIGHTS,
};
use dfd_layout::FoldDir;
use dfd_model::HeadSpec;

use crate::optim::Optimizer;

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    dir.with_file_name(name)
}

/// An empty `<tag>.tmp/` beside checkpoint directory `dir`.
fn fresh_tmp(dir: &Path) -> Result<PathBuf> {
    let tmp = sibling(dir, ".tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    Ok(tmp)
}

/// Swaps the filled `<tag>.tmp/` in as `dir`.
fn swap_in(dir: &Path) -> Result<()> {
    let (tmp, old) = (sibling(dir, ".tmp"), sibling(dir, ".old"));
    if dir.exists() {
        std::fs::rename(dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    }
    Ok(())
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
    let tmp = fresh_tmp(&dir)?;
    let weights = tmp.join(CHECKPOINT_WEIGHTS);
    varmap
        .save(&weights)
        .with_context(|| format!("writing weights {}", weights.display()))?;
    write_json_atomic(&tmp.join(CHECKPOINT_HEAD), spec)?;
    opt.save(&tmp.join(CHECKPOINT_OPTIMIZER))?;
    write_state(&tmp, state)?;
    swap_in(&dir)
}

/// Replaces checkpoint `to` of `fold` with a copy of the verified checkpoint `from`. Used only
/// where both were (or would have been) written at the same step from the same state, so the
/// copy holds the bytes `to` had.
pub fn copy(fold: &FoldDir, from: &Checkpoint, to: &str) -> Result<()> {
    let dir = fold.checkpoint(to);
    let tmp = fresh_tmp(&dir)?;
    for name in CHECKPOINT_FILES.iter().chain([&CHECKPOINT_STATE]) {
        let (src, dst) = (from.file(name), tmp.join(name));
        std::fs::copy(&src, &dst)
            .with_context(|| format!("copying {} to {}", src.display(), dst.display()))?;
    }
    swap_in(&dir)
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

/// The state of checkpoint `tag`, if it exists (its files are not verified).
pub fn read_state(fold: &FoldDir, tag: &str) -> Result<Option<TrainState>> {
    Ok(Checkpoint::read(&fold.checkpoint(tag))?.map(Checkpoint::into_state))
}

/// What a fold's checkpoint `tag` is found to be.
pub enum Found {
    /// No checkpoint there.
    Missing,
    /// Present, every file matching the checksums in its `state.json`.
    Intact(Checkpoint),
    /// Present but unusable: an unreadable `state.json`, or a file that fails its checksum.
    Failed(anyhow::Error),
}

/// Reads and verifies checkpoint `tag` of `fold`; `rebuild` is named in a failure.
pub fn inspect(fold: &FoldDir, tag: &str, rebuild: &str) -> Found {
    let dir = fold.checkpoint(tag);
    match Checkpoint::read(&dir) {
        Ok(None) if !dir.exists() => Found::Missing,
        Ok(None) => Found::Failed(anyhow::anyhow!(
            "{} has no {CHECKPOINT_STATE}; rebuild it with: {rebuild}",
            dir.display()
        )),
        Ok(Some(c)) => match c.verify(rebuild) {
            Ok(()) => Found::Intact(c),
            Err(e) => Found::Failed(e),
        },
        Err(e) => Found::Failed(e),
    }
}

/// Loads a verified checkpoint's weights into `varmap` and its moments into `opt`.
pub fn restore(checkpoint: &Checkpoint, varmap: &mut VarMap, opt: &mut Optimizer) -> Result<()> {
    let weights = checkpoint.file(CHECKPOINT_WEIGHTS);
    varmap
        .load(&weights)
        .with_context(|| format!("loading weights {}", weights.display()))?;
    opt.load(
        &checkpoint.file(CHECKPOINT_OPTIMIZER),
        checkpoint.state().step as u64,
    )
}
