//! The stage on synthetic separable features: every head learns, regularisation shrinks
//! weights, folds never leak, the test split is never read, bad runs stop clearly.

mod common;

use std::collections::HashSet;

use common::{checkpoint_tensors, train, val_records, write_data, write_pipeline, Synth};
use dfd_layout::manifest::read_manifest;
use dfd_layout::runlog::LogRecord;
use dfd_layout::{DataRoot, PipelineConfig, Split};
use dfd_train::data::FoldData;

fn best_val_accuracy(data: &std::path::Path, pipeline: &str, fold: u8) -> f64 {
    val_records(data, pipeline, fold)
        .iter()
        .map(|r| match r {
            LogRecord::Val { accuracy, .. } => *accuracy,
            LogRecord::Train { .. } => unreachable!("filtered"),
        })
        .fold(0.0, f64::max)
}

/// Checks `best.val_eer_threshold` of fold `fold`'s best checkpoint against a brute-force
/// reference over P(fake) of the checkpoint's head on the validation rows: it is one of the
/// scores (a ROC point), and no score as threshold has a smaller |fpr − fnr| (an image is fake
/// when P(fake) ≥ the threshold).
fn check_val_eer_threshold(data: &std::path::Path, pipeline: &str, fold: u8) {
    use candle_core::{DType, Device};
    use candle_nn::{VarBuilder, VarMap};

    let root = DataRoot::new(data);
    let dir = root.run(pipeline, "main").fold(fold).checkpoint("best");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    let recorded = state["best"]["val_eer_threshold"].as_f64().unwrap();

    let spec: dfd_model::HeadSpec =
        serde_json::from_slice(&std::fs::read(dir.join("head.json")).unwrap()).unwrap();
    let mut varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let head = dfd_model::Head::new_seeded(&spec, vb, 0).unwrap();
    varmap.load(dir.join("model.safetensors")).unwrap();
    let cfg = PipelineConfig::load(&root.run(pipeline, "main").config()).unwrap();
    let manifest = read_manifest(&root.manifest("synth")).unwrap();
    let val = FoldData::open(
        &root,
        &cfg,
        &common::backbone(&cfg),
        &manifest,
        fold,
        "dfd-extract",
    )
    .unwrap()
    .val;
    let (x, _) = val
        .batch(&(0..val.len()).collect::<Vec<_>>(), &Device::Cpu)
        .unwrap();
    let logits = head.forward(&x).unwrap();
    let scores: Vec<f64> = dfd_model::p_fake(&logits)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let labels = val.labels();
    let gap = |t: f64| {
        let count = |class: u8, fake: bool| {
            let of_class = labels.iter().filter(|&&l| l == class).count() as f64;
            let hits = labels
                .iter()
                .zip(&scores)
                .filter(|(&l, &s)| l == class && (s >= t) == fake)
                .count() as f64;
            hits / of_class
        };
        (count(0, true) - count(1, false)).abs()
    };
    let best_gap = scores.iter().map(|&t| gap(t)).fold(f64::INFINITY, f64::min);
    assert!(
        scores.iter().any(|&s| (s - recorded).abs() < 1e-6),
        "fold {fold}: the recorded {recorded} is not a validation score (a ROC point)"
    );
    assert!(
        (gap(recorded) - best_gap).abs() < 1e-12,
        "fold {fold}: |fpr - fnr| {} at the recorded {recorded}, {best_gap} at best",
        gap(recorded)
    );
}

#[test]
fn mlp_head_learns_and_cross_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        f16: true,
        margin: 0.3,
        ..Synth::default()
    };
    let cfg = write_pipeline(
        tmp.path(),
        "mlp",
        &synth,
        "head = \"mlp\"\nhidden = [64, 32]\ndropout = 0.2\nlr = 1e-3\nepochs = 8\nbatch_size = 16\n\
         schedule = \"cosine\"\nwarmup_steps = 3\nlog_every = 2\nclass_weights = \"balanced\"\n\
         monitor = \"val_accuracy\"",
    );
    write_data(tmp.path(), &cfg, &synth);
    train(tmp.path(), &cfg, &["--folds", "all"]).unwrap();
    let run = DataRoot::new(tmp.path()).run("mlp", "main");
    for fold in 0..3 {
        let acc = best_val_accuracy(tmp.path(), "mlp", fold);
        assert!(acc > 0.95, "fold {fold}: best validation accuracy {acc}");
        assert!(run.fold(fold).complete_marker().exists());
        assert!(run.fold(fold).checkpoint("best").join("head.json").exists());
        check_val_eer_threshold(tmp.path(), "mlp", fold);
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.path().join("cv_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["val_accuracy"]["n"], 3);
    assert!(
        summary["val_accuracy"]["mean"].as_f64().unwrap() > 0.95,
        "{summary}"
    );
    assert!(summary["val_accuracy"]["std"].is_number(), "{summary}");
    assert!(run.stage_marker("train").exists());
    // The resolved config records the CLI override.
    let pinned = PipelineConfig::load(&run.config()).unwrap();
    assert_eq!(pinned.train.fold.folds(3).unwrap(), vec![0, 1, 2]);
    // A rerun on the finished run does nothing (no fold is retrained: logs unchanged).
    let before = std::fs::read(run.fold(1).metrics()).unwrap();
    train(tmp.path(), &cfg, &["--folds", "all"]).unwrap();
    assert_eq!(std::fs::read(run.fold(1).metrics()).unwrap(), before);
    // A different experiment in the same run directory is refused.
    let err = train(tmp.path(), &cfg, &["--fold", "1"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("different resolved config"), "{err}");
}

#[test]
fn a_failed_train_pins_nothing_so_the_corrected_rerun_proceeds() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        copies: 0,
        ..Synth::default()
    };
    let cfg = write_pipeline(tmp.path(), "fixed", &synth, "head = \"linear\"\nepochs = 1");
    write_data(tmp.path(), &cfg, &synth);
    let run = DataRoot::new(tmp.path()).run("fixed", "main");
    // A cut whose features were never extracted fails on config grounds, before any pin.
    let wrong_cut = Synth {
        cut: "layer4",
        copies: 0,
        ..Synth::default()
    };
    write_pipeline(
        tmp.path(),
        "fixed",
        &wrong_cut,
        "head = \"linear\"\nepochs = 1",
    );
    let err = format!("{:#}", train(tmp.path(), &cfg, &[]).unwrap_err());
    assert!(err.contains("layer4"), "{err}");
    assert!(!run.config().exists(), "a failed config must not be pinned");
    // The corrected pipeline, with another setting edited too, trains in the same run.
    write_pipeline(
        tmp.path(),
        "fixed",
        &synth,
        "head = \"linear\"\nepochs = 1\nlr = 5e-3",
    );
    train(tmp.path(), &cfg, &[]).unwrap();
    assert!(run.stage_marker("train").exists());
    assert_eq!(PipelineConfig::load(&run.config()).unwrap().train.lr, 5e-3);
}

#[test]
fn linear_head_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        row_shape: vec![4, 5, 5],
        margin: 0.2,
        ..Synth::default()
    };
    let cfg = write_pipeline(
        tmp.path(),
        "linear",
        &synth,
        "head = \"linear\"\ndropout = 0.5\noptimizer = \"adam\"\nlr = 3e-3\nepochs = 6\nbatch_size = 20\n\
         eval_every = 5\nmonitor = \"val_loss\"\nschedule = \"step\"\nstep_epochs = 3\nclip_grad_norm = 1.0",
    );
    write_data(tmp.path(), &cfg, &synth);
    train(tmp.path(), &cfg, &["--fold", "2"]).unwrap();
    let acc = best_val_accuracy(tmp.path(), "linear", 2);
    assert!(acc > 0.95, "best validation accuracy {acc}");
    // eval_every = 5 steps: more validations than epochs.
    assert!(val_records(tmp.path(), "linear", 2).len() > 6);
}

#[test]
fn finetune_layer4_head_learns() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        images: 100,
        copies: 0,
        row_shape: vec![1024, 2, 2],
        f16: true,
        cut: "layer3",
        margin: 0.5,
        ..Synth::default()
    };
    let cfg = write_pipeline(
        tmp.path(),
        "ft",
        &synth,
        "head = \"finetune-layer4\"\ndropout = 0.5\noptimizer = \"adam\"\nlr = 1e-4\nepochs = 4\nbatch_size = 16\n\
         weight_decay = 1e-2\nl1 = 1e-6",
    );
    write_data(tmp.path(), &cfg, &synth);
    train(tmp.path(), &cfg, &[]).unwrap();
    let acc = best_val_accuracy(tmp.path(), "ft", 0);
    assert!(acc > 0.95, "best validation accuracy {acc}");
    let names: Vec<String> = checkpoint_tensors(tmp.path(), "ft", 0, "last")
        .into_iter()
        .map(|t| t.0)
        .collect();
    assert!(
        names.iter().any(|n| n == "layer4.0.bn1.running_mean"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n == "fc.weight"), "{names:?}");
}

/// Σ|θ| and Σθ² of the weights (not biases) of a checkpoint.
fn norms(data: &std::path::Path, pipeline: &str) -> (f64, f64) {
    checkpoint_tensors(data, pipeline, 0, "last")
        .iter()
        .filter(|(n, _)| n.ends_with("weight"))
        .flat_map(|(_, v)| v.iter())
        .fold((0.0, 0.0), |(a, s), &x| {
            (a + f64::from(x.abs()), s + f64::from(x) * f64::from(x))
        })
}

#[test]
fn l1_and_weight_decay_shrink_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        copies: 0,
        ..Synth::default()
    };
    let base =
        "head = \"linear\"\ndropout = 0.0\nlr = 1e-2\nepochs = 10\nbatch_size = 10\nlog_every = 0";
    let runs = [
        (
            "plain",
            "optimizer = \"adamw\"\nweight_decay = 0.0\nl1 = 0.0",
        ),
        ("l1", "optimizer = \"adamw\"\nweight_decay = 0.0\nl1 = 0.05"),
        (
            "adamw",
            "optimizer = \"adamw\"\nweight_decay = 20.0\nl1 = 0.0",
        ),
        (
            "adam_l2",
            "optimizer = \"adam\"\nweight_decay = 1.0\nl1 = 0.0",
        ),
    ];
    for (i, (name, extra)) in runs.iter().enumerate() {
        let cfg = write_pipeline(tmp.path(), name, &synth, &format!("{base}\n{extra}"));
        if i == 0 {
            write_data(tmp.path(), &cfg, &synth);
        }
        train(tmp.path(), &cfg, &[]).unwrap();
    }
    let (plain_abs, plain_sq) = norms(tmp.path(), "plain");
    let (l1_abs, _) = norms(tmp.path(), "l1");
    let (_, adamw_sq) = norms(tmp.path(), "adamw");
    let (_, l2_sq) = norms(tmp.path(), "adam_l2");
    assert!(
        l1_abs < 0.5 * plain_abs,
        "L1: Σ|w| {l1_abs} vs {plain_abs} without"
    );
    assert!(
        adamw_sq < 0.5 * plain_sq,
        "AdamW decay: Σw² {adamw_sq} vs {plain_sq} without"
    );
    assert!(
        l2_sq < 0.5 * plain_sq,
        "Adam L2: Σw² {l2_sq} vs {plain_sq} without"
    );
}

#[test]
fn a_fold_k_image_is_never_trained_on() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        copies: 2,
        folds: 4,
        ..Synth::default()
    };
    // Train on a0 and one augmented copy (min(train.copies, preprocess.copies) = 1).
    let cfg_path = write_pipeline(tmp.path(), "leak", &synth, "copies = 1");
    write_data(tmp.path(), &cfg_path, &synth);
    let cfg = PipelineConfig::load(&cfg_path).unwrap();
    let root = DataRoot::new(tmp.path());
    let manifest = read_manifest(&root.manifest("synth")).unwrap();
    let fold_of = |id: u32| manifest[id as usize].fold;
    for k in 0..4u8 {
        let data = FoldData::open(
            &root,
            &cfg,
            &common::backbone(&cfg),
            &manifest,
            k,
            "dfd-extract",
        )
        .unwrap();
        let others: Vec<u32> = manifest
            .iter()
            .filter(|r| r.split == Split::Train && r.fold != Some(k))
            .map(|r| r.id)
            .collect();
        for epoch in 0..3 {
            let batches = data.epoch_batch_ids(cfg.seed, epoch, 7);
            let mut seen: Vec<u32> = batches.concat();
            assert!(
                seen.iter().all(|&id| fold_of(id) != Some(k)),
                "fold {k} epoch {epoch}: leaked"
            );
            assert!(
                seen.iter()
                    .all(|&id| manifest[id as usize].split == Split::Train),
                "test row in training"
            );
            // Each other-fold image exactly twice (a0 and a1), never a2.
            seen.sort_unstable();
            let expected: Vec<u32> = others.iter().flat_map(|&id| [id, id]).collect();
            assert_eq!(seen, expected, "fold {k} epoch {epoch}");
        }
        assert_ne!(
            data.epoch_batch_ids(cfg.seed, 0, 7),
            data.epoch_batch_ids(cfg.seed, 1, 7)
        );
        let val: HashSet<u32> = data.val.ids().iter().copied().collect();
        let expected: HashSet<u32> = manifest
            .iter()
            .filter(|r| r.fold == Some(k))
            .map(|r| r.id)
            .collect();
        assert_eq!(val, expected);
        assert_eq!(data.val.len(), expected.len(), "validation uses a0 only");
    }
}

#[test]
fn the_test_split_is_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = Synth {
        copies: 0,
        ..Synth::default()
    };
    let cfg_path = write_pipeline(
        tmp.path(),
        "notest",
        &synth,
        "head = \"linear\"\nlr = 1e-2\nepochs = 2",
    );
    write_data(tmp.path(), &cfg_path, &synth);
    let cfg = PipelineConfig::load(&cfg_path).unwrap();
    // Poison the test split's feature directory: any attempt to read it fails.
    let test_dir = DataRoot::new(tmp.path()).features(
        "synth",
        &common::backbone(&cfg),
        cfg.preprocess.size,
        cfg.extract.cut,
        Split::Test,
        0,
    );
    std::fs::create_dir_all(&test_dir).unwrap();
    std::fs::write(test_dir.join("index.json"), b"{ not json").unwrap();
    std::fs::write(test_dir.join("shard-00000.safetensors"), b"poison").unwrap();
    train(tmp.path(), &cfg_path, &[]).unwrap();
    assert!(best_val_accuracy(tmp.path(), "notest", 0) > 0.5);
}

#[test]
fn a_non_finite_loss_stops_clearly_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = Synth {
        copies: 0,
        ..Synth::default()
    };
    let train_cfg = "head = \"linear\"\nepochs = 3\nbatch_size = 10\neval_every = 1";
    // Find a row that the 4th batch of epoch 0 trains on, then poison it with NaN features.
    let probe = tmp.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let probe_cfg = write_pipeline(&probe, "nan", &clean, train_cfg);
    write_data(&probe, &probe_cfg, &clean);
    let cfg = PipelineConfig::load(&probe_cfg).unwrap();
    let root = DataRoot::new(&probe);
    let manifest = read_manifest(&root.manifest("synth")).unwrap();
    let poisoned = FoldData::open(
        &root,
        &cfg,
        &common::backbone(&cfg),
        &manifest,
        0,
        "dfd-extract",
    )
    .unwrap()
    .epoch_batch_ids(cfg.seed, 0, 10)[3][0];
    let synth = Synth {
        poison: Some(poisoned),
        ..clean
    };
    let cfg_path = write_pipeline(tmp.path(), "nan", &synth, train_cfg);
    write_data(tmp.path(), &cfg_path, &synth);
    let err = format!("{:#}", train(tmp.path(), &cfg_path, &[]).unwrap_err());
    assert!(
        err.contains("not finite")
            && err.contains("last good checkpoint")
            && err.contains("step 4"),
        "{err}"
    );
    let fold = DataRoot::new(tmp.path()).run("nan", "main").fold(0);
    let state = dfd_train::checkpoint::read_state(&fold, "last")
        .unwrap()
        .expect("a checkpoint survives");
    assert_eq!(state.step, 3);
    assert!(!fold.complete_marker().exists());
    let weights = checkpoint_tensors(tmp.path(), "nan", 0, "last");
    assert!(weights.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
}
