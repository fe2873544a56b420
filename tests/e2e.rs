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

    /// `dfd-demo-data` into `out`: `count` images of `size` px drawn from `seed`.
    fn demo_data(&self, out: &Path, count: u32, size: u32, seed: u64) {
        let (count, size, seed) = (count.to_string(), size.to_string(), seed.to_string());
        let out = out.to_str().unwrap();
        let args = [
            "--out", out, "--count", &count, "--size", &size, "--seed", &seed,
        ];
        self.run("dfd-demo-data", &args);
    }

    /// `dfd-evaluate --on <on>` for the pipeline's run.
    fn evaluate_on(&self, on: &Path) {
        let args = [
            "--config",
            self.pipeline.to_str().unwrap(),
            "--data-dir",
            self.data.to_str().unwrap(),
            "--on",
            on.to_str().unwrap(),
        ];
        self.run("dfd-evaluate", &args);
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

/// `dfd-predict --run` on every image under `folder`: P(fake) by path relative to `folder`.
fn predictions(env: &Env, run: &dfd_layout::RunDir, folder: &Path) -> BTreeMap<String, f64> {
    let out = env.run(
        "dfd-predict",
        &[
            "--run",
            run.path().to_str().unwrap(),
            folder.to_str().unwrap(),
        ],
    );
    let mut csv = csv::Reader::from_reader(out.stdout.as_slice());
    csv.records()
        .map(|r| {
            let r = r.unwrap();
            let rel = Path::new(&r[0]).strip_prefix(folder).unwrap();
            (rel.to_str().unwrap().to_string(), r[1].parse().unwrap())
        })
        .collect()
}

/// The `ensemble` column of an evaluation's `scores.csv`, by path.
fn ensemble_scores(path: &Path) -> BTreeMap<String, f64> {
    let mut csv = csv::Reader::from_path(path).unwrap();
    let header = csv.headers().unwrap().clone();
    let (at_path, at_ensemble) = (
        header.iter().position(|h| h == "path").unwrap(),
        header.iter().position(|h| h == "ensemble").unwrap(),
    );
    csv.records()
        .map(|r| {
            let r = r.unwrap();
            (r[at_path].to_string(), r[at_ensemble].parse().unwrap())
        })
        .collect()
}

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
    env.demo_data(&raw, 40, 48, 3);
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

    // Another data set, in both forms of --on: a folder, and a pipeline file's [dataset].
    let other = tmp.join("other faces");
    env.demo_data(&other, 12, 48, 11);
    let second = data.join("raw/second");
    env.demo_data(&second, 10, 40, 12);
    let second_pipeline = tmp.join("second.toml");
    std::fs::write(
        &second_pipeline,
        "[dataset]\nname = \"second\"\nsource = \"raw/second\"\n",
    )
    .unwrap();
    let run_files = |run: &dfd_layout::RunDir| {
        let mut files = mtimes(run.path());
        files.retain(|p, _| !p.starts_with(run.eval()));
        for stage in ["preprocess", "extract", "train", "evaluate"] {
            let marker = run.stage_marker(stage);
            files.insert(
                marker.clone(),
                std::fs::metadata(&marker).unwrap().modified().unwrap(),
            );
        }
        files
    };
    let untouched = run_files(&run);
    for (on, name, n) in [
        (&other, "other-faces", 12),
        (&second_pipeline, "second", 10),
    ] {
        env.evaluate_on(on);
        let out = run.eval_on(name);
        for file in [
            "scores.csv",
            "metrics.json",
            "curves.png",
            "confusion.png",
            "roc.png",
            "report.md",
            "report.html",
            "evaluate.done",
        ] {
            assert!(out.join(file).exists(), "{name}: {file}");
        }
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(m["dataset"], name);
        assert_eq!(m["trained_on"], "tiny");
        assert_eq!(m["ensemble"]["metrics"]["n"], n);
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            report.contains(&format!("Data set `{name}`, every image")),
            "{report}"
        );
        assert!(root.manifest(&format!("{name}@all")).exists());
        assert!(
            !root.prepared(name).exists(),
            "kept apart from a normal preparation"
        );
        // The scores are dfd-predict's on the same files (f16 layer3 maps: within 1e-3).
        let images = if name == "second" {
            second.clone()
        } else {
            other.clone()
        };
        let predicted = predictions(&env, &run, &images);
        let scored = ensemble_scores(&out.join("scores.csv"));
        assert_eq!(scored.len(), n);
        for (path, p) in &scored {
            let q = predicted[path];
            assert!((p - q).abs() < 1e-3, "{path}: evaluate {p}, predict {q}");
        }
    }
    assert_eq!(run_files(&run), untouched, "--on changed the run's files");

    // With f32 features (pooled), evaluate's scores on another data set are exactly predict's.
    let pooled = Env {
        bin: env.bin.clone(),
        data: data.clone(),
        pipeline: tmp.join("tiny-pooled.toml"),
    };
    std::fs::write(
        &pooled.pipeline,
        PIPELINE
            .replace("cut = \"layer3\"", "cut = \"pooled\"")
            .replace("head = \"finetune-layer4\"", "head = \"mlp\""),
    )
    .unwrap();
    pooled.chain();
    pooled.evaluate_on(&other);
    let pooled_run = root.run("tiny-pooled", "main");
    let predicted = predictions(&pooled, &pooled_run, &other);
    for (path, p) in ensemble_scores(&pooled_run.eval_on("other-faces").join("scores.csv")) {
        assert_eq!(p as f32, predicted[&path] as f32, "{path}");
    }

    // A second run of every stage redoes nothing, --on included.
    let before = mtimes(&data);
    env.chain();
    env.evaluate_on(&other);
    env.evaluate_on(&second_pipeline);
    let after = mtimes(&data);
    assert_eq!(before, after, "a rerun on a finished run changed files");

    std::fs::remove_dir_all(&tmp).unwrap();
}

/// `make demo` without the hub: the built-in demo set and `pipelines/demo.toml` with `random:0`
/// weights (what the Makefile falls back to) learn: test AUC of the fold ensemble ≥ 0.65.
#[test]
fn the_demo_learns_without_pretrained_weights() {
    let tmp = std::env::temp_dir().join(format!("dfd-e2e-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let demo = std::fs::read_to_string(root.join("pipelines/demo.toml")).unwrap();
    let weights = demo
        .lines()
        .find(|l| l.starts_with("weights = "))
        .expect("the demo pipeline names its weights");
    let pipeline = tmp.join("demo.toml");
    std::fs::write(&pipeline, demo.replace(weights, "weights = \"random:0\"")).unwrap();
    let env = Env {
        bin: binaries(),
        data: data.clone(),
        pipeline,
    };
    env.run(
        "dfd-demo-data",
        &["--out", data.join("raw/demo").to_str().unwrap()],
    );
    env.chain();
    let run = DataRoot::new(&data).run("demo", "main");
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.eval().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["pretrained"], false);
    let auc = metrics["ensemble"]["metrics"]["roc_auc"].as_f64().unwrap();
    assert!(auc >= 0.65, "demo test AUC {auc} with random:0 weights");
    let report = std::fs::read_to_string(run.eval().join("report.md")).unwrap();
    assert!(report.contains("NOT PRETRAINED"), "{report}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
