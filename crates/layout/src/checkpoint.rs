//! Checkpoints: the files of `fold<k>/checkpoints/<tag>/` and their `state.json`.
//!
//! A checkpoint holds [`CHECKPOINT_WEIGHTS`] (every head variable), [`CHECKPOINT_HEAD`] (the
//! head's spec), [`CHECKPOINT_OPTIMIZER`] (the optimiser's moments) and [`CHECKPOINT_STATE`]:
//! the training loop's [`TrainState`] plus `checksums`, the blake3 of each of the other files.
//! `state.json` is written last ([`write_state`]), so its checksums vouch for the files beside it;
//! [`Checkpoint::verify`] checks them (hashing the files on every check) before anything loads
//! them, and a mismatch names the file and the command that rebuilds it. Loading the weights into
//! a model is the stages' business; naming, reading and checking the files is this module's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::atomic::{read_json, write_json_atomic};
use crate::hash::hash_file;
pub use crate::paths::{CHECKPOINT_HEAD, CHECKPOINT_WEIGHTS};
use crate::verify::{require_file, Hashing};

/// Optimiser moments inside a checkpoint.
pub const CHECKPOINT_OPTIMIZER: &str = "optimizer.safetensors";
/// Loop state and checksums inside a checkpoint.
pub const CHECKPOINT_STATE: &str = "state.json";
/// The files whose checksums `state.json` records (the first two are required).
pub const CHECKPOINT_FILES: [&str; 3] = [CHECKPOINT_WEIGHTS, CHECKPOINT_HEAD, CHECKPOINT_OPTIMIZER];

/// A feature directory a fold was trained from, with the hash of what made it (its index's
/// `input_hash`): a resumed fold must see the same sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeatureSource {
    pub dir: PathBuf,
    pub input_hash: String,
}

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

impl TrainState {
    /// The state of fold `fold` before its first step.
    pub fn start(fold: u8, sources: Vec<FeatureSource>, weights_identity: Option<String>) -> Self {
        Self {
            fold,
            step: 0,
            epoch: 0,
            best: None,
            bad_validations: 0,
            records: 0,
            elapsed_s: 0.0,
            sources,
            weights_identity,
        }
    }
}

/// `state.json`: the loop state, then `checksums` (file name → hex blake3; empty in checkpoints
/// written before checksums were recorded).
#[derive(Serialize, Deserialize)]
struct StateFile {
    #[serde(flatten)]
    state: TrainState,
    #[serde(default)]
    checksums: BTreeMap<String, String>,
}

/// Writes `dir/state.json` for the checkpoint files already in `dir`: `state` and the blake3 of
/// each of [`CHECKPOINT_FILES`] present (weights and head spec must be).
pub fn write_state(dir: &Path, state: &TrainState) -> Result<()> {
    let mut checksums = BTreeMap::new();
    for (i, name) in CHECKPOINT_FILES.iter().enumerate() {
        let path = dir.join(name);
        if i < 2 || path.exists() {
            checksums.insert((*name).to_owned(), hash_file(&path)?);
        }
    }
    let file = StateFile {
        state: state.clone(),
        checksums,
    };
    write_json_atomic(&dir.join(CHECKPOINT_STATE), &file)
}

/// A checkpoint directory, read through its `state.json`.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    dir: PathBuf,
    state: TrainState,
    checksums: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Reads `dir/state.json`, without checking the other files; `None` when it does not exist
    /// (no checkpoint there).
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(CHECKPOINT_STATE);
        if !path.exists() {
            return Ok(None);
        }
        let file: StateFile = read_json(&path)?;
        Ok(Some(Self {
            dir: dir.to_path_buf(),
            state: file.state,
            checksums: file.checksums,
        }))
    }

    /// Reads and verifies the checkpoint in `dir`; fails naming `dir` when there is none, or
    /// naming the file and `rebuild` (the command that makes it again) when one fails its check.
    pub fn open(dir: &Path, rebuild: &str) -> Result<Self> {
        let Some(this) = Self::read(dir)? else {
            bail!(
                "no checkpoint at {} (no {CHECKPOINT_STATE}): train the run first ({rebuild}), \
                 or choose another checkpoint or fold",
                dir.display()
            );
        };
        this.verify(rebuild)?;
        Ok(this)
    }

    /// Checks every recorded file against its checksum; weights and head spec must be recorded.
    /// A checkpoint written before checksums were recorded is accepted with a warning.
    pub fn verify(&self, rebuild: &str) -> Result<()> {
        let record = self.dir.join(CHECKPOINT_STATE);
        if self.checksums.is_empty() {
            tracing::warn!(
                "{} records no checksums (written by an older dfd-train): its files are not verified",
                record.display()
            );
            return Ok(());
        }
        for (i, name) in CHECKPOINT_FILES.iter().enumerate() {
            match self.checksums.get(*name) {
                Some(sum) => require_file(
                    &self.dir.join(name),
                    sum,
                    Hashing::EveryCheck,
                    &record,
                    rebuild,
                )?,
                None if i < 2 => bail!(
                    "{} records no checksum for {name}; rebuild the checkpoint with: {rebuild}",
                    record.display()
                ),
                None => {}
            }
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state(&self) -> &TrainState {
        &self.state
    }

    pub fn into_state(self) -> TrainState {
        self.state
    }

    /// Path of the file `name` (one of [`CHECKPOINT_FILES`]) of this checkpoint.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The head's spec, parsed as `T` (the model crate's type).
    pub fn head_spec<T: DeserializeOwned>(&self) -> Result<T> {
        let path = self.file(CHECKPOINT_HEAD);
        read_json(&path).with_context(|| format!("reading the head spec {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> TrainState {
        TrainState {
            fold: 1,
            step: 12,
            epoch: 3,
            best: Some(Best {
                epoch: 2,
                step: 8,
                val_loss: 0.5,
                val_accuracy: 0.75,
                val_auc: Some(0.8),
                val_eer_threshold: Some(0.25),
            }),
            bad_validations: 1,
            records: 7,
            elapsed_s: 1.5,
            sources: vec![FeatureSource {
                dir: "/d/features/x".into(),
                input_hash: "abc".into(),
            }],
            weights_identity: None,
        }
    }

    #[test]
    fn state_json_keeps_the_old_fields_first_and_reads_old_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(CHECKPOINT_WEIGHTS), b"weights").unwrap();
        std::fs::write(tmp.path().join(CHECKPOINT_HEAD), b"{}").unwrap();
        write_state(tmp.path(), &state()).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(CHECKPOINT_STATE)).unwrap();
        let old = serde_json::to_string_pretty(&state()).unwrap();
        // The old file's fields, byte for byte, then the checksums.
        assert!(
            text.starts_with(old.trim_end_matches("\n}")),
            "{text}\n---\n{old}"
        );
        assert!(text.contains("\"checksums\"") && !text.contains(CHECKPOINT_OPTIMIZER));
        let c = Checkpoint::open(tmp.path(), "dfd-train").unwrap();
        assert_eq!(c.state(), &state());
        // A state.json written before checksums: read, accepted unverified.
        std::fs::write(tmp.path().join(CHECKPOINT_STATE), &old).unwrap();
        let c = Checkpoint::open(tmp.path(), "dfd-train").unwrap();
        assert_eq!(c.into_state(), state());
    }

    #[test]
    fn a_changed_or_missing_file_fails_naming_it_and_the_command() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(Checkpoint::read(tmp.path()).unwrap().is_none());
        let err = Checkpoint::open(tmp.path(), "dfd-train --run-id r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no checkpoint at"), "{err}");
        for name in CHECKPOINT_FILES {
            std::fs::write(tmp.path().join(name), b"0123456789").unwrap();
        }
        write_state(tmp.path(), &state()).unwrap();
        Checkpoint::open(tmp.path(), "x").unwrap();
        std::fs::write(tmp.path().join(CHECKPOINT_OPTIMIZER), b"0123X56789").unwrap();
        let err = Checkpoint::open(tmp.path(), "dfd-train --run-id r")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("optimizer.safetensors is corrupt")
                && err.contains("rebuild it with: dfd-train --run-id r"),
            "{err}"
        );
        std::fs::remove_file(tmp.path().join(CHECKPOINT_WEIGHTS)).unwrap();
        let err = Checkpoint::open(tmp.path(), "x").unwrap_err().to_string();
        assert!(err.contains("model.safetensors is missing"), "{err}");
    }
}
