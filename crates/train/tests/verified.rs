//! Checksums on read: a feature shard or checkpoint file whose bytes changed fails its read,
//! naming the file and the command that rebuilds it, and a rerun of dfd-train retrains a fold
//! whose checkpoint fails, ending bit-identical to a run that was never damaged.

mod common;

use std::path::{Path, PathBuf};

use common::{train, write_data, write_pipeline, Synth};
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_OPTIMIZER, CHECKPOINT_WEIGHTS};
use dfd_layout::{DataRoot, FoldDir};

const TRAIN: &str =
    "head = \"mlp\"\nhidden = [16]\ndropout = 0.3\noptimizer = \"adam\"\nlr = 1e-3\n\
                     epochs = 4\nbatch_size = 16\neval_every = 5\nlog_every = 3";

/// Flips a few bytes in the middle of `path`, keeping its size.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4].iter_mut().for_each(|b| *b ^= 0xA5);
    std::fs::write(path, bytes).unwrap();
}

/// Weights and moments of both checkpoints of `fold`.
fn weights(fold: &FoldDir) -> Vec<Vec<u8>> {
    ["best", "last"]
        .iter()
        .flat_map(|tag| [CHECKPOINT_WEIGHTS, CHECKPOINT_OPTIMIZER].map(|f| (tag, f)))
        .map(|(tag, f)| std::fs::read(fold.checkpoint(tag).join(f)).unwrap())
        .collect()
}

/// The fold's log, without wall-clock times.
fn log_without_times(fold: &FoldDir) -> Vec<serde_json::Value> {
    std::fs::read_to_string(fold.metrics())
        .unwrap()
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().remove("time_s");
            record
        })
        .collect()
}

fn setup(data: &Path) -> (PathBuf, FoldDir) {
    let synth = Synth::default();
    let cfg = write_pipeline(data, "verified", &synth, TRAIN);
    write_data(data, &cfg, &synth);
    (cfg, DataRoot::new(data).run("verified", "main").fold(0))
}

#[test]
fn a_corrupted_checkpoint_is_named_and_retrained_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, fold) = setup(tmp.path());
    train(tmp.path(), &cfg, &[]).unwrap();
    let want = weights(&fold);
    let log = log_without_times(&fold);

    let cases: [&[(&str, &str)]; 4] = [
        &[("last", CHECKPOINT_WEIGHTS)],
        &[("best", CHECKPOINT_WEIGHTS)],
        &[("last", CHECKPOINT_OPTIMIZER), ("best", "head.json")],
        &[("last", "state.json")],
    ];
    for damaged in cases {
        for (tag, file) in damaged {
            corrupt(&fold.checkpoint(tag).join(file));
        }
        let (tag, file) = damaged[0];
        if file != "state.json" {
            let err = Checkpoint::open(&fold.checkpoint(tag), "dfd-train --config p.toml")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("{tag}/{file} is corrupt"))
                    && err.contains("rebuild it with: dfd-train --config p.toml"),
                "{err}"
            );
        }
        train(tmp.path(), &cfg, &[]).unwrap();
        assert!(weights(&fold) == want, "{damaged:?}: not bit-identical");
        assert_eq!(log_without_times(&fold), log, "{damaged:?}");
        for tag in ["best", "last"] {
            Checkpoint::open(&fold.checkpoint(tag), "x").unwrap();
        }
    }
}

#[test]
fn a_corrupted_feature_shard_fails_naming_it_and_the_extract_command() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, _) = setup(tmp.path());
    let config = dfd_layout::PipelineConfig::load(&cfg).unwrap();
    let shard = dfd_train::data::train_features_dir(
        &DataRoot::new(tmp.path()),
        &config,
        &common::backbone(&config),
        1,
    )
    .join("shard-00001.safetensors");
    corrupt(&shard);
    let err = format!("{:#}", train(tmp.path(), &cfg, &[]).unwrap_err());
    let command = format!(
        "dfd-extract --config {} --data-dir {}",
        cfg.display(),
        tmp.path().display()
    );
    assert!(
        err.contains(&format!("{} is corrupt", shard.display()))
            && err.contains(&format!("rebuild it with: {command}")),
        "{err}"
    );
}
