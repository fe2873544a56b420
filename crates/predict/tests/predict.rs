//! End to end: a tiny trained run (random resnet50 backbone at 64 px, a seeded MLP head), a folder
//! of good images with a corrupt one among them, the binary's table and heatmaps, checked against
//! scores computed here one image at a time with the libraries.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device, Tensor};
use common::{fixture, spec, SIZE};
use dfd_model::{imagenet_normalize, Arch, Backbone, Cut, Head, ResolvedWeights};

/// The expected scored files, in output order (sorted walk; broken.jpg sorts first).
fn good_files(images: &Path) -> Vec<PathBuf> {
    ["a/face.png", "b/face.JPG", "b/portrait.png"]
        .iter()
        .map(|f| images.join(f))
        .collect()
}

/// P(fake) of each file computed alone: decode, Resize+CenterCrop, normalise, backbone, head.
fn reference_scores(files: &[PathBuf], checkpoint: &Path) -> Vec<f32> {
    let weights = ResolvedWeights::random(1);
    let backbone = Backbone::load(&Arch::resnet50(), &weights, &Device::Cpu, DType::F32).unwrap();
    let (head, _) =
        Head::load(&spec(), &checkpoint.join("model.safetensors"), &Device::Cpu).unwrap();
    files
        .iter()
        .map(|f| {
            let image = image::open(f).unwrap().to_rgb8();
            let chw = dfd_imaging::to_chw_u8(&dfd_imaging::resize_center_crop(&image, SIZE));
            let x =
                Tensor::from_vec(chw, (1, 3, SIZE as usize, SIZE as usize), &Device::Cpu).unwrap();
            let x = imagenet_normalize(&x, DType::F32).unwrap();
            let pooled = backbone.forward_to(&x, Cut::Pooled).unwrap();
            let logits = head.forward(&pooled).unwrap().to_vec2::<f32>().unwrap();
            1.0 / (1.0 + (logits[0][0] - logits[0][1]).exp())
        })
        .collect()
}

fn predict(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfd-predict"));
    cmd.env("RUST_LOG", "warn");
    for a in args {
        cmd.arg(a);
    }
    cmd.output().expect("running dfd-predict")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn scores_a_folder_with_a_corrupt_file_and_writes_heatmaps() {
    let dir = tempfile::tempdir().unwrap();
    let (run, images) = fixture(dir.path());
    let table = dir.path().join("out/scores.csv");
    let heatmaps = dir.path().join("heatmaps");
    let out = predict(&[
        &"--run",
        &run,
        &images,
        &"--heatmaps",
        &heatmaps,
        &"--output",
        &table,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("rejected") && log.contains("broken.jpg"),
        "{log}"
    );
    assert!(
        log.contains("4 files: 3 scored") && log.contains("1 rejected"),
        "{log}"
    );

    let mut reader = csv::Reader::from_path(&table).unwrap();
    assert_eq!(
        reader.headers().unwrap(),
        vec!["path", "p_fake", "label", "error", "detail", "heatmap"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let broken = &rows[0];
    assert_eq!(
        &broken[0],
        images.join("a/broken.jpg").display().to_string()
    );
    assert_eq!(
        (&broken[1], &broken[2], &broken[3], &broken[5]),
        ("", "", "truncated", "")
    );

    let files = good_files(&images);
    let expected = reference_scores(&files, &run.join("fold0/checkpoints/best"));
    let expected_maps = ["face.png", "face-2.png", "portrait.png"].map(|n| heatmaps.join(n));
    for (i, row) in rows[1..].iter().enumerate() {
        assert_eq!(&row[0], files[i].display().to_string());
        let p: f32 = row[1].parse().unwrap();
        assert!(
            (p - expected[i]).abs() < 1e-4,
            "{}: {p} vs reference {}",
            &row[0],
            expected[i]
        );
        assert_eq!(&row[2], if p >= 0.5 { "fake" } else { "real" });
        assert_eq!((&row[3], &row[4]), ("", ""));
        assert_eq!(&row[5], expected_maps[i].display().to_string());
        let overlay = image::open(&expected_maps[i]).unwrap().to_rgb8();
        assert_eq!(overlay.dimensions(), (SIZE, SIZE));
        let resized =
            dfd_imaging::resize_center_crop(&image::open(&files[i]).unwrap().to_rgb8(), SIZE);
        assert_ne!(overlay, resized, "the overlay changes the image");
    }
    let mut written: Vec<_> = std::fs::read_dir(&heatmaps)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    written.sort();
    assert_eq!(
        written,
        ["face-2.png", "face.png", "portrait.png"].map(|n| heatmaps.join(n))
    );

    // Without heatmaps (the plain scoring path), as JSON lines on stdout, at another threshold:
    // the same scores.
    let out = predict(&[
        &"--run",
        &run,
        &images.join("b"),
        &images.join("a/face.png"),
        &"--format",
        &"jsonl",
        &"--threshold",
        &"0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let order = [1, 2, 0]; // folder b first (sorted), then the explicit file
    assert_eq!(lines.len(), 3);
    for (line, &i) in lines.iter().zip(&order) {
        assert_eq!(line["path"], files[i].display().to_string());
        assert_eq!(line["label"], "fake");
        assert!(
            line["error"].is_null() && line.get("heatmap").is_none(),
            "{line}"
        );
        let p = line["p_fake"].as_f64().unwrap() as f32;
        assert!((p - expected[i]).abs() < 1e-4, "{p} vs {}", expected[i]);
    }
}

#[test]
fn fails_when_nothing_can_be_scored_or_the_eer_threshold_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let (run, images) = fixture(dir.path());
    let broken = images.join("a/broken.jpg");
    let out = predict(&[&"--run", &run, &broken]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no file could be scored"),
        "{}",
        stderr(&out)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table.lines().count(),
        2,
        "header and the rejected row: {table}"
    );

    let out = predict(&[&"--run", &run, &"--threshold", &"eer", &images]);
    assert!(!out.status.success());
    // The fixture's checkpoint has no state.json holding the validation EER threshold.
    let expected = run.join("fold0/checkpoints/best/state.json");
    let message = stderr(&out);
    assert!(message.contains(&*expected.to_string_lossy()), "{message}");

    let out = predict(&[&"--run", &dir.path().join("nowhere"), &images]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
}

/// Runs the binary with a 30 s hang guard.
fn predict_guarded(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfd-predict"));
    cmd.env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for a in args {
        cmd.arg(a);
    }
    let mut child = cmd.spawn().expect("running dfd-predict");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("dfd-predict hung for 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_corrupted_checkpoint_fails_naming_the_file_and_writes_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (run, images) = fixture(dir.path());
    let weights = run.join("fold0/checkpoints/best/model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4].iter_mut().for_each(|b| *b ^= 0xFF);
    std::fs::write(&weights, bytes).unwrap();
    let table = dir.path().join("scores.csv");
    let out = predict_guarded(&[&"--run", &run, &images, &"--output", &table]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains(&format!("{} is corrupt", weights.display()))
            && message.contains("rebuild it with: dfd-train --config pipelines/")
            && message.contains("--run-id run"),
        "{message}"
    );
    assert!(out.stdout.is_empty() && !table.exists(), "no rows written");
}
