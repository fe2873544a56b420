//! End to end, as a user would: the binaries on a tiny generated data set with a random-weights
//! backbone, through preprocess → extract → train → evaluate, then predict; every artefact is
//! checked, the report must agree with metrics.json, and a second run must redo nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use dfd_layout::{manifest, runlog, shards, DataRoot, Split};

/// Builds the workspace's binaries in the profile this test was built with; returns their folder.
fn binaries() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>/deps/..
    let profile = dir.file_name().unwrap().to_str().unwrap().to_owned();
    let profile = if profile == "debug" {
        "dev".to_owned()
    } else {
        profile
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--bins", "--profile", &profile])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the binaries failed");
    dir
}

struct Env {
    bin: PathBuf,
    data: PathBuf,
    pipeline: PathBuf,
}

impl Env {
    fn run(&self, name: &str, args: &[&str]) -> Output {
        let out = Command::new(self.bin.join(name))
            .args(args)
            .env("RUST_LOG", "info")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        assert!(
            out.status.success(),
            "{name} {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn stage(&self, name: &str) -> Output {
        let args = [
            "--config",
            self.pipeline.to_str().unwrap(),
            "--data-dir",
            self.data.to_str().unwrap(),
        ];
        self.run(name, &args)
    }

    fn chain(&self) {
        for stage in ["dfd-preprocess", "dfd-extract", "dfd-train", "dfd-evaluate"] {
            self.stage(stage);
        }
    }
}

const PIPELINE: &str = r#"
seed = 5

[dataset]
name = "tiny"
source = "raw/tiny"

[split]
test_fraction = 0.25
folds = 3

[preprocess]
size = 32
copies = 1

[extract]
arch = "resnext50_32x4d"
weights = "random:1"
cut = "layer3"
batch_size = 8

[train]
head = "finetune-layer4"
optimizer = "adamw"
lr = 1e-3
epochs = 2
batch_size = 8
log_every = 2
fold = 0

[evaluate]
bootstrap = 50
"#;

/// Modification times of every file under `dir`, except the stage markers (rewritten on
/// every run to say the stage is complete).
fn mtimes(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().unwrap() != "stages" {
                    stack.push(path);
                }
            } else {
                out.insert(path, entry.metadata().unwrap().modified().unwrap());
            }
        }
    }
    out
}

#[test]
fn whole_chain_then_nothing_redone() {
    let tmp = std::env::temp_dir().join(format!("dfd-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    let pipeline = tmp.join("tiny-e2e.toml");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let env = Env {
        bin: binaries(),
        data: data.clone(),
        pipeline,
    };

    // A user's folder: generated faces plus one corrupt file that must become a reject.
    let raw = data.join("raw/tiny");
    env.run(
        "dfd-demo-data",
        &[
            "--out",
            raw.to_str().unwrap(),
            "--count",
            "40",
            "--size",
            "48",
            "--seed",
            "3",
        ],
    );
    std::fs::write(
        raw.join("real/broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();

    env.chain();

    // Preprocess: manifest of every good image, the corrupt one rejected, shards complete.
    let root = DataRoot::new(&data);
    let rows = manifest::read_manifest(&root.manifest("tiny")).unwrap();
    assert_eq!(rows.len(), 40);
    let rejects = manifest::read_rejects(&root.rejects("tiny")).unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].path, "real/broken.jpg");
    let n_test = rows.iter().filter(|r| r.split == Split::Test).count();
    assert_eq!(n_test, 10);
    for (split, copy, n) in [
        (Split::Train, 0, 30),
        (Split::Train, 1, 30),
        (Split::Test, 0, n_test),
    ] {
        let idx = shards::read_index(&root.images("tiny", 32, split, copy)).unwrap();
        assert_eq!(idx.rows, n, "{split} a{copy}");
    }

    // Extract: layer3 maps of every image, labelled as not pretrained.
    let backbone = dfd_layout::backbone_key("resnext50_32x4d", "random:1");
    let test_features = root.features("tiny", &backbone, 32, "layer3", Split::Test, 0);
    let idx = shards::read_index(&test_features).unwrap();
    assert_eq!(idx.rows, n_test);
    let reader = shards::ShardSet::open(&test_features, "dfd-extract")
        .and_then(|set| set.shard(0))
        .unwrap();
    assert_eq!(reader.features().unwrap().row_shape(), &[1024, 2, 2]);
    assert!(
        idx.meta.to_string().contains("false"),
        "not-pretrained flag: {}",
        idx.meta
    );

    // Train: checkpoints and a log with training and validation records.
    let run = root.run("tiny-e2e", "main");
    assert!(run.config().exists());
    let fold = run.fold(0);
    for tag in ["best", "last"] {
        for file in [
            dfd_layout::paths::CHECKPOINT_WEIGHTS,
            dfd_layout::paths::CHECKPOINT_HEAD,
        ] {
            assert!(fold.checkpoint(tag).join(file).exists(), "{tag}/{file}");
        }
    }
    let log = runlog::read(&fold.metrics()).unwrap();
    assert!(log
        .iter()
        .any(|r| matches!(r, runlog::LogRecord::Train { .. })));
    assert_eq!(
        log.iter()
            .filter(|r| matches!(r, runlog::LogRecord::Val { .. }))
            .count(),
        2,
        "one validation per epoch"
    );

    // Evaluate: metrics, pictures, reports that agree with the metrics.
    let eval = run.eval();
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval.join("metrics.json")).unwrap()).unwrap();
    let fold_metrics = &metrics["folds"][0]["metrics"];
    let accuracy = fold_metrics["accuracy"].as_f64().unwrap();
    let auc = fold_metrics["roc_auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy) && (0.0..=1.0).contains(&auc));
    for png in ["curves.png", "confusion.png", "roc.png"] {
        let img = image::open(eval.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(img.width() > 100 && img.height() > 100);
    }
    let md = std::fs::read_to_string(eval.join("report.md")).unwrap();
    let html = std::fs::read_to_string(eval.join("report.html")).unwrap();
    for number in [format!("{accuracy:.3}"), format!("{auc:.3}")] {
        assert!(md.contains(&number), "report.md lacks {number}");
        assert!(html.contains(&number), "report.html lacks {number}");
    }
    assert!(html.contains("data:image/png;base64,"), "images embedded");
    for stage in ["preprocess", "extract", "train", "evaluate"] {
        assert!(run.stage_marker(stage).exists(), "{stage} marker");
    }

    // Predict: scores for good images, a reported error for the corrupt one, heatmaps.
    let heatmaps = tmp.join("heatmaps");
    let out = env.run(
        "dfd-predict",
        &[
            "--run",
            run.path().to_str().unwrap(),
            "--heatmaps",
            heatmaps.to_str().unwrap(),
            raw.join("real").to_str().unwrap(),
        ],
    );
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    let records: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    let n_real = std::fs::read_dir(raw.join("real")).unwrap().count();
    assert_eq!(records.len(), n_real);
    let broken: Vec<_> = records
        .iter()
        .filter(|r| r[0].ends_with("broken.jpg"))
        .collect();
    assert_eq!(broken.len(), 1);
    assert!(
        broken[0][1].is_empty() && !broken[0][3].is_empty(),
        "{:?}",
        broken[0]
    );
    for r in records.iter().filter(|r| !r[0].ends_with("broken.jpg")) {
        let p: f64 = r[1].parse().unwrap();
        assert!((0.0..=1.0).contains(&p), "{r:?}");
        assert!(&r[2] == "real" || &r[2] == "fake");
    }
    assert_eq!(std::fs::read_dir(&heatmaps).unwrap().count(), n_real - 1);

    // Export: one model file that predicts exactly as the run folder, with nothing else.
    let model = tmp.join("model.safetensors");
    let mut export = vec!["--config", env.pipeline.to_str().unwrap()];
    export.extend(["--data-dir", env.data.to_str().unwrap()]);
    export.extend(["-o", model.to_str().unwrap()]);
    env.run("dfd-export", &export);
    let with_model = env.run(
        "dfd-predict",
        &[
            "--model",
            model.to_str().unwrap(),
            raw.join("real").to_str().unwrap(),
        ],
    );
    let with_run = env.run(
        "dfd-predict",
        &[
            "--run",
            run.path().to_str().unwrap(),
            raw.join("real").to_str().unwrap(),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&with_model.stdout),
        String::from_utf8_lossy(&with_run.stdout)
    );

    // A second run of every stage redoes nothing.
    let before = mtimes(&data);
    env.chain();
    let after = mtimes(&data);
    assert_eq!(before, after, "a rerun on a finished run changed files");

    std::fs::remove_dir_all(&tmp).unwrap();
}
