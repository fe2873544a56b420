//! End-to-end tests of `generate` and the binary on small sets, checked through the files on
//! disk (decoded with the `image` crate), not through the generator's own bookkeeping.

use dfd_demo_data::{generate, DemoParams};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh, empty directory for one test under cargo's per-target temporary folder.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("demo-data-tests")
        .join(name);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn small() -> DemoParams {
    DemoParams {
        count: 30,
        fake_fraction: 0.5,
        size: 64,
        seed: 11,
    }
}

/// Every file under `dir` (relative path → bytes).
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for folder in ["", "real", "fake"] {
        for entry in fs::read_dir(dir.join(folder)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (scratch("det-a"), scratch("det-b"), scratch("det-c"));
    generate(&small(), &a).unwrap();
    generate(&small(), &b).unwrap();
    generate(
        &DemoParams {
            seed: 12,
            ..small()
        },
        &c,
    )
    .unwrap();
    let (fa, fb, fc) = (contents(&a), contents(&b), contents(&c));
    assert_eq!(fa.len(), 31, "30 images and the record");
    assert_eq!(fa, fb);
    assert_eq!(
        fa["real/real_00001.jpg"].len(),
        fb["real/real_00001.jpg"].len()
    );
    assert_ne!(fa["real/real_00001.jpg"], fc["real/real_00001.jpg"]);
}

#[test]
fn counts_names_and_jpeg_decoding() {
    let dir = scratch("names");
    let summary = generate(&small(), &dir).unwrap();
    assert!(!summary.reused);
    assert_eq!(
        summary.to_string(),
        format!(
            "demo data: 15 real, 15 fake (easy 4, mid 7, hard 4) in {} (written)",
            dir.display()
        )
    );

    let mut per_prefix = BTreeMap::new();
    for (rel, bytes) in contents(&dir) {
        if rel == "demo-data.json" {
            assert!(String::from_utf8(bytes).unwrap().contains("\"count\":30"));
            continue;
        }
        let (folder, name) = rel.split_once('/').unwrap();
        let prefix = name.split('_').next().unwrap();
        assert_eq!(
            folder == "real",
            prefix == "real",
            "{rel} in the wrong folder"
        );
        if folder == "fake" {
            let code = name.trim_end_matches(".jpg").rsplit('_').next().unwrap();
            assert!(
                code.len() == 4 && code.contains('1') && code.chars().all(|c| c == '0' || c == '1'),
                "{rel}"
            );
        }
        *per_prefix.entry(prefix.to_string()).or_insert(0) += 1;
        assert_eq!(
            image::guess_format(&bytes).unwrap(),
            image::ImageFormat::Jpeg,
            "{rel}"
        );
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 64), "{rel}");
    }
    let expected: BTreeMap<String, i32> = [("easy", 4), ("hard", 4), ("mid", 7), ("real", 15)]
        .map(|(k, v)| (k.to_string(), v))
        .into();
    assert_eq!(per_prefix, expected);
    assert!(dir.join("real/real_00015.jpg").is_file());
}

#[test]
fn rerun_is_a_no_op_and_new_parameters_replace_the_set() {
    let dir = scratch("rerun");
    generate(&small(), &dir).unwrap();
    let record = dir.join("demo-data.json");
    let stamp = |p: &Path| fs::metadata(p).unwrap().modified().unwrap();
    let (record_time, image_time) = (stamp(&record), stamp(&dir.join("real/real_00001.jpg")));
    let before = contents(&dir);

    let again = generate(&small(), &dir).unwrap();
    assert!(again.reused);
    assert!(again
        .to_string()
        .ends_with("(already complete, nothing written)"));
    assert_eq!(stamp(&record), record_time);
    assert_eq!(stamp(&dir.join("real/real_00001.jpg")), image_time);
    assert_eq!(contents(&dir), before);

    // A missing image (an interrupted set) is redrawn identically.
    fs::remove_file(dir.join("real/real_00003.jpg")).unwrap();
    assert!(!generate(&small(), &dir).unwrap().reused);
    assert_eq!(contents(&dir), before);

    // Other parameters: the old set is replaced, nothing of it left behind.
    let other = DemoParams {
        count: 10,
        ..small()
    };
    generate(&other, &dir).unwrap();
    let fresh = scratch("rerun-fresh");
    generate(&other, &fresh).unwrap();
    assert_eq!(contents(&dir), contents(&fresh));
}

#[test]
fn refuses_directories_it_did_not_write() {
    let dir = scratch("foreign");
    fs::create_dir_all(dir.join("real")).unwrap();
    fs::write(dir.join("real/real_00001.jpg"), b"someone's photo").unwrap();
    let err = generate(&small(), &dir).unwrap_err();
    assert!(format!("{err:#}").contains("did not write"), "{err:#}");
    assert_eq!(
        fs::read(dir.join("real/real_00001.jpg")).unwrap(),
        b"someone's photo"
    );
}

/// Real and fake images share their global statistics: the class means of brightness and of
/// each channel are close compared with the spread between images.
#[test]
fn classes_share_global_statistics() {
    let dir = scratch("stats");
    generate(
        &DemoParams {
            count: 120,
            fake_fraction: 0.5,
            size: 64,
            seed: 3,
        },
        &dir,
    )
    .unwrap();
    let mut per_class: BTreeMap<bool, Vec<[f64; 3]>> = BTreeMap::new();
    for (rel, bytes) in contents(&dir) {
        if rel.ends_with(".jpg") {
            let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
            let mut mean = [0.0; 3];
            for p in img.pixels() {
                (0..3).for_each(|c| mean[c] += p[c] as f64 / (64.0 * 64.0));
            }
            per_class
                .entry(rel.starts_with("fake"))
                .or_default()
                .push(mean);
        }
    }
    for c in 0..3 {
        let stats = |v: &[[f64; 3]]| {
            let m = v.iter().map(|x| x[c]).sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x[c] - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            (m, var.sqrt())
        };
        let ((mr, sr), (mf, sf)) = (stats(&per_class[&false]), stats(&per_class[&true]));
        assert!(
            sr > 10.0 && sf > 10.0,
            "channel {c}: images too alike ({sr}, {sf})"
        );
        assert!(
            (mr - mf).abs() < 0.5 * (sr + sf) / 2.0,
            "channel {c}: class means {mr} vs {mf}"
        );
    }
}

#[test]
fn binary_prints_one_summary_line() {
    let dir = scratch("binary");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_dfd-demo-data"))
            .args([
                "--out",
                dir.to_str().unwrap(),
                "--count",
                "6",
                "--size",
                "48",
                "--seed",
                "5",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first.lines().count(), 1);
    assert!(
        first.starts_with("demo data: 3 real, 3 fake (easy 1, mid 1, hard 1)"),
        "{first}"
    );
    assert!(run().contains("already complete"));
    let bad = Command::new(env!("CARGO_BIN_EXE_dfd-demo-data"))
        .args(["--out", dir.to_str().unwrap(), "--size", "8"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--size"));
}
