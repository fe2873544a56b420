//! End-to-end tests of the dfd-preprocess binary on small generated data sets.

mod common;

use std::path::Path;

use common::{command, config, make_dataset, run, run_ok, snapshot};
use dfd_layout::manifest::{read_manifest, read_rejects, ManifestRow};
use dfd_layout::shards::{read_index, ShardSet};
use dfd_layout::{DataRoot, Split};
use dfd_testkit as testkit;

const CLASSES: [&str; 2] = ["real", "fake"];

/// All (ids, labels, images) of one shard directory, in order.
fn read_dir_rows(dir: &Path) -> (Vec<u32>, Vec<u8>, Vec<u8>) {
    let set = ShardSet::open(dir, "dfd-preprocess").unwrap();
    let size = set.index().meta["size"].as_u64().unwrap() as usize;
    let (mut ids, mut labels, mut images) = (Vec::new(), Vec::new(), Vec::new());
    for r in set.shards().unwrap() {
        ids.extend(r.ids().unwrap());
        labels.extend(r.labels().unwrap());
        images.extend_from_slice(r.images(size).unwrap());
    }
    assert_eq!(set.index().rows, ids.len());
    (ids, labels, images)
}

fn manifest(data: &Path) -> Vec<ManifestRow> {
    read_manifest(&DataRoot::new(data).manifest("demo")).unwrap()
}

#[test]
fn full_run_then_rerun_does_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("raw/demo"), CLASSES, 30, 25, false);
    let cfg = config(tmp.path(), "p", CLASSES, "");
    let out = run_ok(&data, &cfg, &[]);
    assert!(
        out.contains("55 accepted (44 train, 11 test), 0 rejected"),
        "{out}"
    );

    let rows = manifest(&data);
    assert_eq!(rows.len(), 55);
    let mut sorted: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    sorted.sort_unstable();
    assert!(
        rows.iter().map(|r| r.path.as_str()).eq(sorted),
        "ids follow path order"
    );
    // Stratified: round(30 * 0.2) real and round(25 * 0.2) fake in test; folds balanced per label.
    let count = |label, pred: &dyn Fn(&ManifestRow) -> bool| {
        rows.iter().filter(|r| r.label == label && pred(r)).count()
    };
    assert_eq!(count(0, &|r| r.split == Split::Test), 6);
    assert_eq!(count(1, &|r| r.split == Split::Test), 5);
    for f in 0..3 {
        assert_eq!(count(0, &|r| r.fold == Some(f)), 8);
        assert!((6..=7).contains(&count(1, &|r| r.fold == Some(f))));
    }

    let root = DataRoot::new(&data);
    let size = 32usize;
    for split in [Split::Train, Split::Test] {
        let (ids, labels, images) = read_dir_rows(&root.images("demo", 32, split, 0));
        let expected: Vec<&ManifestRow> = rows.iter().filter(|r| r.split == split).collect();
        assert!(ids.iter().copied().eq(expected.iter().map(|r| r.id)));
        assert!(labels.iter().copied().eq(expected.iter().map(|r| r.label)));
        // a0 is exactly the decoded, resized, centre-cropped source.
        for (row, img) in expected.iter().zip(images.chunks_exact(3 * size * size)) {
            let bytes = std::fs::read(data.join("raw/demo").join(&row.path)).unwrap();
            let decoded = dfd_imaging::decode(&bytes, u64::MAX).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (row.width, row.height));
            let want = dfd_imaging::to_chw_u8(&dfd_imaging::resize_center_crop(&decoded, 32));
            assert_eq!(img, &want[..], "{}", row.path);
        }
    }
    // Augmented copies: same rows (so same folds) as a0, different pixels; never for test.
    let (a0_ids, _, a0_images) = read_dir_rows(&root.images("demo", 32, Split::Train, 0));
    for k in 1..=2 {
        let (ids, _, images) = read_dir_rows(&root.images("demo", 32, Split::Train, k));
        assert_eq!(ids, a0_ids);
        assert_ne!(images, a0_images);
    }
    assert!(!root.images("demo", 32, Split::Test, 1).exists());
    // Shards are bounded: 3 rows of 3x32x32 per shard with shard_bytes = 13000.
    let index = read_index(&root.images("demo", 32, Split::Train, 1)).unwrap();
    assert_eq!(index.shards.len(), 15);
    assert!(index.shards.iter().all(|s| s.bytes <= 13000 && s.rows <= 3));

    let before = snapshot(&data);
    let again = run_ok(&data, &cfg, &[]);
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(snapshot(&data), before);
}

#[test]
fn manifest_depends_on_seed_and_content_not_listing_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_dataset(&a.join("raw/demo"), CLASSES, 20, 20, false);
    make_dataset(&b.join("raw/demo"), CLASSES, 20, 20, true);
    let cfg = config(tmp.path(), "p", CLASSES, "copies = 0");
    run_ok(&a, &cfg, &[]);
    run_ok(&b, &cfg, &[]);
    let m = |d: &Path| std::fs::read(DataRoot::new(d).manifest("demo")).unwrap();
    assert_eq!(m(&a), m(&b));
    let other_seed = tmp.path().join("p.toml");
    let text = std::fs::read_to_string(&other_seed)
        .unwrap()
        .replace("seed = 7", "seed = 8");
    let other_seed = tmp.path().join("q.toml");
    std::fs::write(&other_seed, text).unwrap();
    let c = tmp.path().join("c");
    make_dataset(&c.join("raw/demo"), CLASSES, 20, 20, false);
    run_ok(&c, &other_seed, &[]);
    assert_ne!(m(&a), m(&c));
}

#[test]
fn bad_inputs_become_rejects_not_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let src = data.join("raw/demo");
    make_dataset(&src, CLASSES, 6, 6, false);
    std::fs::write(src.join("real/empty.jpg"), b"").unwrap();
    std::fs::write(src.join("fake/readme.txt"), b"notes about the fakes\n").unwrap();
    let good = std::fs::read(src.join("real/img_000.png")).unwrap();
    std::fs::write(src.join("real/cut.png"), &good[..good.len() / 2]).unwrap();
    let mut garbled = good.clone();
    let mid = garbled.len() / 2;
    garbled[mid - 20..mid + 20].fill(0x5A);
    std::fs::write(src.join("real/garbled.png"), &garbled).unwrap();
    common::picture(200, 100, 3)
        .save(src.join("fake/huge.png"))
        .unwrap();
    let cfg = config(tmp.path(), "p", CLASSES, "max_pixels = 10000\ncopies = 0");

    let out = run_ok(&data, &cfg, &[]);
    assert!(out.contains("12 accepted"), "{out}");
    assert!(out.contains("5 rejected"), "{out}");
    assert_eq!(
        out.matches("WARN").count(),
        5,
        "one warning per reject:\n{out}"
    );
    let rejects = read_rejects(&DataRoot::new(&data).rejects("demo")).unwrap();
    let got: Vec<(&str, &str)> = rejects
        .iter()
        .map(|r| (r.path.as_str(), r.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("fake/huge.png", "too_large"),
            ("fake/readme.txt", "not_an_image"),
            ("real/cut.png", "truncated"),
            ("real/empty.jpg", "empty"),
            ("real/garbled.png", "unreadable"),
        ]
    );
    assert!(manifest(&data)
        .iter()
        .all(|r| !r.path.contains("cut") && !r.path.contains("huge")));

    let strict = run(&data, &cfg, &["--strict"]);
    assert!(!strict.status.success());
    assert!(
        String::from_utf8_lossy(&strict.stderr).contains("--strict: 5 input files were rejected")
    );
}

#[test]
fn class_folders_come_from_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let classes = ["training_real", "training_fake"];
    make_dataset(&data.join("raw/demo"), classes, 5, 5, false);
    let out = run_ok(&data, &config(tmp.path(), "ok", classes, "copies = 0"), &[]);
    assert!(out.contains("10 accepted"), "{out}");

    // The default names do not exist there: one clear error, non-zero exit.
    let missing = run(&data, &config(tmp.path(), "missing", CLASSES, ""), &[]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("class folder `fake` (label 1) is missing"),
        "{err}"
    );

    let empty = tmp.path().join("empty");
    for c in CLASSES {
        std::fs::create_dir_all(empty.join("raw/demo").join(c)).unwrap();
    }
    let out = run(&empty, &config(tmp.path(), "e", CLASSES, ""), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is empty"));
}

#[test]
fn changed_settings_against_existing_output_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("raw/demo"), CLASSES, 8, 8, false);
    run_ok(&data, &config(tmp.path(), "p", CLASSES, ""), &[]);
    let changed = config(
        tmp.path(),
        "p",
        CLASSES,
        "[preprocess.augment]\nhflip_prob = 0.9",
    );
    let out = run(&data, &changed, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("train/a1") && err.contains("refusing to mix"),
        "{err}"
    );
}

#[test]
fn killed_anywhere_resumes_to_identical_bytes_without_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let (reference, killed) = (tmp.path().join("ref"), tmp.path().join("killed"));
    make_dataset(&reference.join("raw/demo"), CLASSES, 60, 60, false);
    make_dataset(&killed.join("raw/demo"), CLASSES, 60, 60, false);
    let cfg = config(tmp.path(), "p", CLASSES, "copies = 3");
    run_ok(&reference, &cfg, &[]);

    // SIGKILL in the middle of the work, as soon as a first shard is recorded…
    let mut child = testkit::spawn_quiet(&mut command(&killed, &cfg, &[]));
    let first = DataRoot::new(&killed)
        .images("demo", 32, Split::Test, 0)
        .join("shard-00000.json");
    assert!(
        testkit::wait_for(&mut child, "a first shard", || first.exists()),
        "the run ended before writing a shard"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // …then at chosen writes, each leaving a torn temporary file: of a shard (the first write
    // of a resumed run), of its sidecar (the second: that shard has no sidecar and is redone),
    // and of a later shard; the killed processes also leave their shard locks.
    for at in [1, 2, 40] {
        testkit::kill_at_write(&mut command(&killed, &cfg, &[]), at);
    }
    let partial = snapshot(&killed);
    assert!(
        !partial.contains_key("s32/train/a3/index.json"),
        "the run finished before it could be killed; make the data set bigger"
    );
    let left = testkit::leftovers(&killed.join("prepared"));
    assert!(
        left.iter().any(|p| p.to_string_lossy().ends_with(".tmp"))
            && left.iter().any(|p| p.to_string_lossy().ends_with(".lock")),
        "the kills left no temporary file or lock: {left:?}"
    );

    let out = run_ok(&killed, &cfg, &[]);
    assert!(!out.contains("nothing to do"), "{out}");
    let (a, b) = (snapshot(&reference), snapshot(&killed));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "no stale temporary file or lock remains"
    );
    for (k, v) in &a {
        assert!(b[k] == *v, "{k} differs after resume");
    }
}

#[test]
fn a_full_disk_stops_with_one_message_and_the_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let (clean, full) = (tmp.path().join("clean"), tmp.path().join("full"));
    make_dataset(&clean.join("raw/demo"), CLASSES, 20, 20, false);
    make_dataset(&full.join("raw/demo"), CLASSES, 20, 20, false);
    let cfg = config(tmp.path(), "p", CLASSES, "");
    run_ok(&clean, &cfg, &[]);
    let need = testkit::tmpfs_bytes(&clean.join("prepared"));
    let disk = match testkit::Tmpfs::mount(&full.join("prepared"), need / 2) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small tmpfs to fill ({why})");
            return;
        }
    };
    let failed = testkit::run_guarded(&mut command(&full, &cfg, &[]));
    assert!(!failed.status.success(), "{}", failed.stderr);
    let last = failed.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dfd-preprocess: error: no space left to write ")
            && last.contains("prepared/demo/s32/")
            && last.contains("rerun the same command"),
        "{}",
        failed.stderr
    );
    assert_eq!(
        failed.stderr.matches("error").count(),
        1,
        "{}",
        failed.stderr
    );
    assert_eq!(
        testkit::leftovers(&full.join("prepared")),
        Vec::<std::path::PathBuf>::new()
    );
    let marker = DataRoot::new(&full)
        .run("p", "main")
        .stage_marker("preprocess");
    assert!(!marker.exists());

    disk.resize(need * 2);
    run_ok(&full, &cfg, &[]);
    assert!(marker.exists());
    assert_eq!(snapshot(&clean), snapshot(&full));
}

#[test]
fn sharded_runs_equal_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, many) = (tmp.path().join("one"), tmp.path().join("many"));
    make_dataset(&one.join("raw/demo"), CLASSES, 12, 10, false);
    make_dataset(&many.join("raw/demo"), CLASSES, 12, 10, false);
    let cfg = config(tmp.path(), "p", CLASSES, "");
    run_ok(&one, &cfg, &[]);
    for i in 0..3 {
        let index = i.to_string();
        run_ok(
            &many,
            &cfg,
            &["--shard-index", &index, "--shard-count", "3"],
        );
        let done = DataRoot::new(&many)
            .run("p", "main")
            .stage_marker("preprocess");
        assert_eq!(done.exists(), i == 2, "complete only after the last slice");
    }
    assert_eq!(snapshot(&one), snapshot(&many));
}

/// The real CIPLab face crops (2,041 JPEGs): set DFD_SHARED_DATA=/work/shared/data (CI does).
#[test]
fn shared_ciplab_faces() {
    let Ok(shared) = std::env::var("DFD_SHARED_DATA") else {
        eprintln!("DFD_SHARED_DATA not set: skipping the shared-data test");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let source = Path::new(&shared).join("ciplab-faces");
    let cfg = config(tmp.path(), "c", CLASSES, "copies = 1")
        .to_string_lossy()
        .into_owned();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("\"raw/demo\"", &format!("{:?}", source.to_string_lossy()))
        .replace("shard_bytes = 13000", "shard_bytes = 4000000");
    std::fs::write(&cfg, text).unwrap();
    let out = run_ok(tmp.path(), Path::new(&cfg), &[]);
    // round(1081 * 0.2) + round(960 * 0.2) = 216 + 192 held out.
    assert!(
        out.contains("2041 accepted (1633 train, 408 test), 0 rejected"),
        "{out}"
    );
    let (ids, _, _) = read_dir_rows(&DataRoot::new(tmp.path()).images("demo", 32, Split::Train, 1));
    assert_eq!(ids.len(), 1633);
}
