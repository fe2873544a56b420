//! The whole stage on a tiny hand-made run: two folds with known linear heads over 4-d test
//! features. Scores are recomputed here in f64 and the metrics checked by brute force.

use std::path::{Path, PathBuf};
use std::process::Command;

use dfd_layout::manifest::{write_manifest, ManifestRow};
use dfd_layout::runlog::{append, LogRecord};
use dfd_layout::shards::{encode, ShardDir, TensorData};
use dfd_layout::{DataRoot, PipelineConfig, Split};
use safetensors::Dtype;
use serde_json::Value;

const N: usize = 40;
const DIM: usize = 4;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Deterministic features: column 0 leans towards the label, the rest is noise.
fn features() -> (Vec<f32>, Vec<u8>) {
    let mut state = 12345u64;
    let mut next = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    };
    let labels: Vec<u8> = (0..N).map(|i| (i % 2) as u8).collect();
    let x = labels
        .iter()
        .flat_map(|&y| {
            let first = next() + 0.4 * f32::from(y);
            [first, next(), next(), next()]
        })
        .collect::<Vec<f32>>();
    (x, labels)
}

fn write_head(dir: &Path, weight: [f32; 8], bias: [f32; 2]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("head.json"),
        r#"{"linear":{"input":4,"dropout":0.5}}"#,
    )
    .unwrap();
    let (w, b) = (f32_bytes(&weight), f32_bytes(&bias));
    let bytes = encode(&[
        TensorData {
            name: "classifier.2.weight",
            dtype: Dtype::F32,
            shape: vec![2, DIM],
            data: &w,
        },
        TensorData {
            name: "classifier.2.bias",
            dtype: Dtype::F32,
            shape: vec![2],
            data: &b,
        },
    ])
    .unwrap();
    std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    // Trained on the train split of the test features' backbone (a directory these tests do not
    // make unless they say so: evaluate reads the backbone from its path, and compares the
    // weights identity in its index.json when it exists). `dir` is
    // `<data>/runs/toy/main/fold<k>/checkpoints/best`.
    let trained_on = train_features(&DataRoot::new(dir.ancestors().nth(6).unwrap()));
    let source = dfd_layout::checkpoint::FeatureSource {
        dir: trained_on,
        input_hash: "train-input".into(),
    };
    let state = dfd_layout::checkpoint::TrainState::start(0, vec![source], None);
    dfd_layout::checkpoint::write_state(dir, &state).unwrap();
}

/// P(fake) of the linear head, in f64.
fn reference_scores(x: &[f32], weight: [f32; 8], bias: [f32; 2]) -> Vec<f64> {
    x.chunks(DIM)
        .map(|row| {
            let logit = |c: usize| {
                f64::from(bias[c])
                    + row
                        .iter()
                        .zip(&weight[c * DIM..])
                        .map(|(a, b)| f64::from(*a) * f64::from(*b))
                        .sum::<f64>()
            };
            1.0 / (1.0 + (logit(0) - logit(1)).exp())
        })
        .collect()
}

/// Mann-Whitney AUC by enumerating all (real, fake) pairs.
fn pairwise_auc(labels: &[u8], scores: &[f64]) -> f64 {
    let (mut won, mut pairs) = (0.0, 0.0);
    for (i, &yi) in labels.iter().enumerate() {
        for (j, &yj) in labels.iter().enumerate() {
            if yi == 1 && yj == 0 {
                pairs += 1.0;
                won += if scores[i] > scores[j] {
                    1.0
                } else if scores[i] == scores[j] {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    won / pairs
}

/// The two folds' linear heads: (weight 2×4, bias).
const HEADS: [([f32; 8], [f32; 2]); 2] = [
    ([0.0, 0.1, 0.0, 0.0, 2.0, 0.0, -0.3, 0.0], [0.1, 0.0]),
    ([0.5, 0.0, 0.0, 0.2, -1.0, 0.4, 0.0, 0.0], [0.0, 0.2]),
];

/// Under `dir`: the pipeline `toy.toml` and a layout with the test split's features, the
/// manifest and a run `toy/main` with two trained folds ([`HEADS`]).
fn make_run(dir: &Path) -> (DataRoot, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let data = DataRoot::new(dir.join("data"));
    let config_path = dir.join("toy.toml");
    std::fs::write(
        &config_path,
        "seed = 3\n[dataset]\nname = \"toy\"\n[evaluate]\nbootstrap = 200\n",
    )
    .unwrap();
    let cfg = PipelineConfig::load(&config_path).unwrap();

    let (x, labels) = features();
    let ids: Vec<u32> = (0..N as u32).collect();
    let feature_dir = test_features(&data, &cfg);
    let shards = ShardDir::open(&feature_dir, "test-input", 1).unwrap();
    let (xb, idb) = (f32_bytes(&x), dfd_layout::shards::u32_bytes(&ids));
    shards
        .write(
            0,
            &[
                TensorData {
                    name: "features",
                    dtype: Dtype::F32,
                    shape: vec![N, DIM],
                    data: &xb,
                },
                TensorData {
                    name: "labels",
                    dtype: Dtype::U8,
                    shape: vec![N],
                    data: &labels,
                },
                TensorData {
                    name: "ids",
                    dtype: Dtype::U32,
                    shape: vec![N],
                    data: &idb,
                },
            ],
        )
        .unwrap();
    assert!(shards.finish(serde_json::json!({})).unwrap());

    let rows: Vec<ManifestRow> = (0..N)
        .map(|i| ManifestRow {
            id: i as u32,
            path: match (labels[i], i % 3) {
                (0, _) => format!("real/real_{i:05}.jpg"),
                (_, 0) => format!("fake/easy_{i}_1111.jpg"),
                (_, 1) => format!("fake/mid_{i}_0101.jpg"),
                _ => format!("fake/hard_{i}_0001.jpg"),
            },
            label: labels[i],
            split: Split::Test,
            fold: None,
            hash: String::new(),
            width: 600,
            height: 600,
        })
        .collect();
    std::fs::create_dir_all(data.prepared("toy")).unwrap();
    write_manifest(&data.manifest("toy"), &rows).unwrap();

    let run = data.run("toy", "main");
    std::fs::create_dir_all(run.path()).unwrap();
    std::fs::copy(&config_path, run.config()).unwrap();
    for (k, (w, b)) in HEADS.iter().enumerate() {
        let fold = run.fold(k as u8);
        write_head(&fold.checkpoint("best"), *w, *b);
        let log: Vec<LogRecord> = (1..=5)
            .flat_map(|s| {
                [
                    LogRecord::Train {
                        epoch: 0,
                        step: s * 10,
                        loss: 0.7 / s as f64,
                        objective: Some(0.9 / s as f64),
                        l1_penalty: Some(0.2 / s as f64),
                        accuracy: 0.5 + 0.05 * s as f64,
                        lr: 1e-4,
                        time_s: s as f64,
                    },
                    LogRecord::Val {
                        epoch: 0,
                        step: s * 10,
                        loss: 0.65,
                        accuracy: 0.6,
                        auc: Some(0.6),
                        time_s: s as f64,
                    },
                ]
            })
            .collect();
        append(&fold.metrics(), &log).unwrap();
    }
    (data, config_path)
}

/// The backbone directory of the features (a weights identity's key).
const BACKBONE: &str = "resnext50_32x4d@w-0123456789abcdef";

/// The train split's feature directory the toy folds were trained on.
fn train_features(data: &DataRoot) -> PathBuf {
    data.features("toy", BACKBONE, 224, "pooled", Split::Train, 0)
}

/// The test split's feature directory of the pipeline `cfg`.
fn test_features(data: &DataRoot, cfg: &PipelineConfig) -> PathBuf {
    data.features(
        "toy",
        BACKBONE,
        cfg.preprocess.size,
        cfg.extract.cut,
        Split::Test,
        0,
    )
}

/// The stage's command on `data` with the pipeline `config`.
fn evaluate(data: &DataRoot, config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfd-evaluate"));
    cmd.arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data.root());
    cmd
}

/// `scores.csv` has one row per test image with each fold's P(fake) and their mean, and the
/// ensemble entry of `metrics.json` is what its `ensemble` column gives.
fn ensemble_matches_scores_csv(eval: &Path, metrics: &Value, labels: &[u8]) {
    let text = std::fs::read_to_string(eval.join("scores.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "id,path,true_label,difficulty,p_fake_fold0,p_fake_fold1,ensemble"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), N);
    let (mut truth, mut ensemble) = (Vec::new(), Vec::new());
    for row in &rows {
        let (f0, f1, mean): (f64, f64, f64) = (
            row[4].parse().unwrap(),
            row[5].parse().unwrap(),
            row[6].parse().unwrap(),
        );
        assert_eq!(mean, (f0 + f1) / 2.0, "{row:?}");
        let id: usize = row[0].parse().unwrap();
        assert_eq!(row[2], labels[id].to_string());
        truth.push(labels[id]);
        ensemble.push(mean);
    }
    let want = dfd_metrics::BinaryReport::compute(&truth, &ensemble, 0.5, None).unwrap();
    let got = &metrics["ensemble"]["metrics"];
    assert_eq!(metrics["ensemble"]["folds"], serde_json::json!([0, 1]));
    assert_eq!(got["accuracy"].as_f64().unwrap(), want.accuracy);
    assert_eq!(got["roc_auc"].as_f64().unwrap(), want.roc_auc);
    assert_eq!(
        got["average_precision"].as_f64().unwrap(),
        want.average_precision
    );
    assert_eq!(got["log_loss"].as_f64().unwrap(), want.log_loss);
    let worst = &metrics["ensemble"]["worst"];
    assert!(!worst["real_flagged"].as_array().unwrap().is_empty());
    assert!(!worst["fakes_missed"].as_array().unwrap().is_empty());
}

#[test]
fn evaluates_a_two_fold_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, config_path) = make_run(tmp.path());
    let (x, labels) = features();
    let run = data.run("toy", "main");

    let out = evaluate(&data, &config_path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("mean ± std"), "{stdout}");

    let eval = run.eval();
    let metrics: Value =
        serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["folds"].as_array().unwrap().len(), 2);
    let mut accuracies = Vec::new();
    for (k, (w, b)) in HEADS.iter().enumerate() {
        let scores = reference_scores(&x, *w, *b);
        let m = &metrics["folds"][k]["metrics"];
        let correct = labels
            .iter()
            .zip(&scores)
            .filter(|(&y, &s)| (s >= 0.5) == (y == 1))
            .count();
        let accuracy = correct as f64 / N as f64;
        accuracies.push(accuracy);
        assert_eq!(m["n"], N as u64);
        assert!(
            (m["accuracy"].as_f64().unwrap() - accuracy).abs() < 1e-12,
            "fold {k}"
        );
        let auc = pairwise_auc(&labels, &scores);
        assert!(
            (m["roc_auc"].as_f64().unwrap() - auc).abs() < 1e-9,
            "fold {k}: {} vs {auc}",
            m["roc_auc"]
        );
        let boot = &m["bootstrap"];
        assert_eq!(boot["config"]["resamples"], 200);
        assert!(
            boot["roc_auc"]["lower"].as_f64().unwrap()
                <= boot["roc_auc"]["upper"].as_f64().unwrap()
        );
        let difficulties: Vec<&str> = metrics["folds"][k]["by_difficulty"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["difficulty"].as_str().unwrap())
            .collect();
        assert_eq!(difficulties, ["easy", "mid", "hard"]);
    }
    let mean = (accuracies[0] + accuracies[1]) / 2.0;
    let cv_mean = metrics["cross_validation"]["accuracy"]["mean"]
        .as_f64()
        .unwrap();
    assert!((cv_mean - mean).abs() < 1e-12);

    for (file, size) in [
        ("curves.png", (1200, 450)),
        ("confusion.png", (480, 440)),
        ("roc.png", (560, 520)),
    ] {
        let img = image::open(eval.join(file)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), size, "{file}");
        let first = img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| p != first), "{file} is blank");
    }
    let html = std::fs::read_to_string(eval.join("report.html")).unwrap();
    assert_eq!(html.matches("data:image/png;base64,").count(), 3);
    let md = std::fs::read_to_string(eval.join("report.md")).unwrap();
    assert!(md.contains("](roc.png)"));
    // The features do not say they were pretrained: every report says so first.
    assert!(md.contains("> **NOT PRETRAINED") && html.contains("class=\"banner\""));
    assert!(stdout.starts_with("*** NOT PRETRAINED"), "{stdout}");
    ensemble_matches_scores_csv(&eval, &metrics, &labels);
    assert!(run.stage_marker("evaluate").exists());

    // The stage marker never hides a file that fails its checksum: a changed test shard or
    // checkpoint is named, with the command that rebuilds it, even though eval/ is up to date.
    let rerun = || evaluate_guarded(&config_path, data.root());
    let (ok, log) = rerun();
    assert!(ok && log.contains("nothing to do"), "{log}");
    let command = |stage: &str| {
        format!(
            "rebuild it with: {stage} --config {} --data-dir {}",
            config_path.display(),
            data.root().display()
        )
    };
    for (file, stage) in [
        (
            test_features(&data, &PipelineConfig::load(&config_path).unwrap())
                .join("shard-00000.safetensors"),
            "dfd-extract",
        ),
        (
            run.fold(1).checkpoint("best").join("model.safetensors"),
            "dfd-train",
        ),
    ] {
        let good = std::fs::read(&file).unwrap();
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid..mid + 4].iter_mut().for_each(|b| *b ^= 0x3C);
        std::fs::write(&file, bad).unwrap();
        let (ok, log) = rerun();
        assert!(
            !ok && log.contains(&format!("{} is corrupt", file.display()))
                && log.contains(&command(stage)),
            "{log}"
        );
        std::fs::write(&file, good).unwrap();
    }
    assert!(rerun().0);

    // Folds trained on features of other backbone weights than the test features: refused.
    let train_dir = train_features(&data);
    std::fs::create_dir_all(&train_dir).unwrap();
    std::fs::write(
        train_dir.join("index.json"),
        r#"{"input_hash":"x","rows":0,"shards":[],"meta":{"weights":"blake3:other"}}"#,
    )
    .unwrap();
    let (ok, log) = rerun();
    assert!(
        !ok && log.contains("trained on features of weights blake3:other"),
        "{log}"
    );
}

/// Runs dfd-evaluate (30 s hang guard); returns whether it succeeded, and its stderr.
fn evaluate_guarded(config: &std::path::Path, data: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dfd-evaluate"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("dfd-evaluate hung for 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file of the eval directory, by name.
fn eval_files(data: &DataRoot) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(data.run("toy", "main").eval())
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn killed_anywhere_resumes_to_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, clean_config) = make_run(&tmp.path().join("clean"));
    let finished = dfd_testkit::run_guarded(&mut evaluate(&clean, &clean_config));
    assert!(finished.status.success(), "{}", finished.stderr);
    let want = eval_files(&clean);
    assert_eq!(
        want.len(),
        7,
        "scores.csv, metrics.json, 3 plots, 2 reports"
    );

    // Killed at writes 1 (scores.csv), 2 (metrics.json), 4 (a plot), 7 (report.html) and 8 (the
    // stage marker),
    // each time with a torn temporary file left behind; then rerun.
    let (killed, killed_config) = make_run(&tmp.path().join("killed"));
    for at in [1, 2, 4, 7, 8] {
        dfd_testkit::kill_at_write(&mut evaluate(&killed, &killed_config), at);
        assert!(!dfd_testkit::leftovers(killed.root()).is_empty());
    }
    let run = killed.run("toy", "main");
    assert!(!run.stage_marker("evaluate").exists());
    let resumed = dfd_testkit::run_guarded(&mut evaluate(&killed, &killed_config));
    assert!(resumed.status.success(), "{}", resumed.stderr);
    assert!(run.stage_marker("evaluate").exists());
    // The reports name the test features' folder, which differs between the two layouts.
    let (from, to) = (
        clean.root().display().to_string(),
        killed.root().display().to_string(),
    );
    let want: Vec<(String, Vec<u8>)> = want
        .into_iter()
        .map(|(name, bytes)| match String::from_utf8(bytes) {
            Ok(text) => (name, text.replace(&from, &to).into_bytes()),
            Err(e) => (name, e.into_bytes()),
        })
        .collect();
    assert_eq!(eval_files(&killed), want);
    assert_eq!(dfd_testkit::leftovers(killed.root()), Vec::<PathBuf>::new());
}
