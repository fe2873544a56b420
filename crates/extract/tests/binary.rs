//! The `dfd-extract` binary on generated image shards with a random `resnet50` at 32 px:
//! kill-and-resume and `--shard-index` slices give the bytes of an uninterrupted run, a finished
//! run has nothing to do, Python reads the shards, and peak memory does not grow with the data.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{f16s, f32s, read_features, write_image_dir};
use dfd_testkit as testkit;

const SIZE: usize = 32;

/// A data directory with image shards and a pipeline config.
struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
}

impl Setup {
    /// Train a0 and a1 with `train_rows` images each, test a0 with `test_rows`, input shards of
    /// at most `input_shard` rows; `extract` is the pipeline's `[extract]` section body.
    fn new(
        train_rows: usize,
        test_rows: usize,
        input_shard: usize,
        shard_bytes: usize,
        extract: &str,
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let config = tmp.path().join("tiny.toml");
        std::fs::write(
            &config,
            format!(
                "[dataset]\nname = \"t\"\n[preprocess]\nsize = {SIZE}\ncopies = 1\nshard_bytes = {shard_bytes}\n\
                 [extract]\narch = \"resnet50\"\nweights = \"random:4\"\n{extract}\n"
            ),
        )
        .unwrap();
        let split = |rows: usize| -> Vec<usize> {
            (0..rows)
                .step_by(input_shard)
                .map(|s| input_shard.min(rows - s))
                .collect()
        };
        let prepared = data.join("prepared/t/s32");
        write_image_dir(&prepared.join("train/a0"), SIZE, &split(train_rows), 0);
        write_image_dir(&prepared.join("train/a1"), SIZE, &split(train_rows), 0);
        write_image_dir(&prepared.join("test/a0"), SIZE, &split(test_rows), 100_000);
        Self {
            _tmp: tmp,
            data,
            config,
        }
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfd-extract"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        cmd
    }

    /// Runs the binary to the end and returns its stderr; panics on failure.
    fn run(&self, extra: &[&str]) -> String {
        let out: Output = self.command(extra).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "dfd-extract {extra:?} failed:\n{stderr}"
        );
        stderr
    }

    fn features(&self) -> PathBuf {
        self.data.join("features/t/resnet50@random-4")
    }

    fn marker(&self) -> PathBuf {
        self.data.join("runs/tiny/main/stages/extract.done")
    }
}

/// Relative paths and bytes of the shard files and indexes under `root` (not sidecars or
/// leftover temporaries).
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, root, out);
            } else if name.ends_with(".safetensors") || name == "index.json" {
                out.push((
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

const POOLED: &str = "cut = \"pooled\"\nbatch_size = 4";

/// 8 pooled f32 rows (2048 × 4 bytes) per feature shard.
fn pooled_setup() -> Setup {
    Setup::new(48, 16, 10, 8 * 2048 * 4, POOLED)
}

#[test]
fn kill_and_resume_and_slices_give_the_bytes_of_one_run() {
    let whole = pooled_setup();
    whole.run(&[]);
    assert!(whole.marker().exists());
    let want = tree(&whole.features());
    // train a0 (6 shards), train a1 (6), test a0 (2), each with index.json.
    assert_eq!(want.len(), 14 + 3);
    let again = whole.run(&[]);
    assert!(again.contains("nothing to do"), "{again}");

    // Killed (SIGKILL) as soon as the first shard is written, then resumed.
    let killed = pooled_setup();
    let first = killed
        .features()
        .join("s32-pooled/train/a0/shard-00000.safetensors");
    let mut child = killed.command(&[]).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !first.exists() {
        assert!(Instant::now() < deadline, "no shard after 300 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the first shard was seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Then killed at chosen writes, each leaving a torn temporary file and its locks: in a shard
    // file (the first write of a resumed run) and in a later shard's sidecar.
    for at in [1, 4] {
        testkit::kill_at_write(&mut killed.command(&[]), at);
    }
    assert!(
        !killed
            .features()
            .join("s32-pooled/test/a0/index.json")
            .exists(),
        "the run finished before it was killed: nothing was resumed"
    );
    assert!(!killed.marker().exists());
    assert!(!testkit::leftovers(&killed.features()).is_empty());
    let resumed = killed.run(&[]);
    assert!(resumed.contains("to_write"), "{resumed}");
    assert_eq!(
        tree(&killed.features()),
        want,
        "resumed run differs from an uninterrupted one"
    );
    assert_eq!(testkit::leftovers(&killed.data), Vec::<PathBuf>::new());

    // Two slices fill the same directories; only the one that completes them writes the marker.
    let sliced = pooled_setup();
    sliced.run(&["--shard-index", "1", "--shard-count", "2"]);
    assert!(!sliced.marker().exists());
    assert!(!sliced
        .features()
        .join("s32-pooled/train/a0/index.json")
        .exists());
    sliced.run(&["--shard-index", "0", "--shard-count", "2"]);
    assert!(sliced.marker().exists());
    assert_eq!(
        tree(&sliced.features()),
        want,
        "sliced run differs from a single one"
    );
}

#[test]
fn a_second_process_on_the_same_shards_refuses_until_the_holder_is_gone() {
    let want = {
        let clean = pooled_setup();
        clean.run(&[]);
        tree(&clean.features())
    };
    let setup = pooled_setup();
    // The holder takes the locks of every shard it will write, then stops at its first write.
    let mut holder =
        testkit::spawn_quiet(setup.command(&[]).env(testkit::FAULT_AT_WRITE, "1:pause"));
    let pid = holder.id();
    let torn = format!(".safetensors.{}.{pid}.tmp", dfd_layout::process::host());
    let paused = testkit::wait_for(&mut holder, "the holder's first write", || {
        testkit::leftovers(&setup.features())
            .iter()
            .any(|p| p.to_string_lossy().ends_with(&torn))
    });
    assert!(paused, "the holder exited before its first write");

    let second = testkit::run_guarded(&mut setup.command(&[]));
    let holder_alive = holder.try_wait().unwrap().is_none();
    holder.kill().unwrap(); // SIGKILL: its locks and a torn temporary file stay behind
    holder.wait().unwrap();
    assert!(holder_alive);
    assert!(!second.status.success(), "{}", second.stderr);
    let last = second.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("dfd-extract: error: locking shard")
            && last.contains(".lock is locked by process ")
            && last.contains(&format!(
                "process {pid} on this host ({})",
                dfd_layout::process::host()
            ))
            && last.contains("still running"),
        "{}",
        second.stderr
    );

    // The holder is gone: its locks are taken over and its temporary file removed.
    assert!(!testkit::leftovers(&setup.features()).is_empty());
    setup.run(&[]);
    assert_eq!(tree(&setup.features()), want);
    assert_eq!(testkit::leftovers(&setup.data), Vec::<PathBuf>::new());
}

#[test]
fn a_full_disk_stops_with_one_message_and_the_rerun_completes() {
    let clean = pooled_setup();
    clean.run(&[]);
    let want = tree(&clean.features());
    let need = testkit::tmpfs_bytes(&clean.features());
    let setup = pooled_setup();
    let disk = match testkit::Tmpfs::mount(&setup.data.join("features"), need / 2) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a small tmpfs to fill ({why})");
            return;
        }
    };
    let failed = testkit::run_guarded(&mut setup.command(&[]));
    assert!(!failed.status.success(), "{}", failed.stderr);
    let last = failed.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("dfd-extract: error: no space left to write ")
            && last.contains("resnet50@random-4/s32-pooled/")
            && last.contains("rerun the same command"),
        "{}",
        failed.stderr
    );
    assert_eq!(testkit::leftovers(&setup.data), Vec::<PathBuf>::new());
    assert!(!setup.marker().exists());

    disk.resize(need * 2);
    setup.run(&[]);
    assert!(setup.marker().exists());
    assert_eq!(tree(&setup.features()), want);
}

#[test]
fn changed_settings_over_existing_features_are_an_error() {
    let setup = Setup::new(4, 2, 4, 1 << 20, POOLED);
    setup.run(&[]);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    // Directory names show the arch, weights source, size and cut but not the stored dtype: a
    // changed dtype lands on the existing features and must be refused, not mixed.
    std::fs::write(
        &setup.config,
        text.replace("cut = \"pooled\"", "cut = \"pooled\"\ndtype = \"f16\""),
    )
    .unwrap();
    let out = setup.command(&[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("made from other inputs or settings"),
        "{stderr}"
    );
}

#[test]
fn python_reads_feature_shards() {
    let probe = Command::new("python3")
        .args(["-c", "import safetensors, numpy"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED: python3 with safetensors and numpy is not available");
        return;
    }
    // layer3 maps at 32 px: 1024×2×2, stored as f16 (the `auto` dtype of maps).
    let setup = Setup::new(5, 3, 5, 1 << 20, "cut = \"layer3\"\nbatch_size = 2");
    setup.run(&[]);
    let dir = setup.features().join("s32-layer3/train/a0");
    let ours = read_features(&dir);
    assert_eq!(ours.dtype, safetensors::Dtype::F16);
    let script = "import sys, json\nfrom safetensors.numpy import load_file\n\
                  s = load_file(sys.argv[1])\nf = s['features']\n\
                  print(json.dumps({'shape': list(f.shape), 'dtype': str(f.dtype), \
                  'values': f.astype('float32').ravel().tolist(), \
                  'labels': s['labels'].tolist(), 'ids': s['ids'].tolist(), \
                  'label_dtype': str(s['labels'].dtype), 'id_dtype': str(s['ids'].dtype)}))";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(dir.join("shard-00000.safetensors"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(py["shape"], serde_json::json!([5, 1024, 2, 2]));
    assert_eq!(py["dtype"], "float16");
    assert_eq!(py["label_dtype"], "uint8");
    assert_eq!(py["id_dtype"], "uint32");
    let values: Vec<f32> = serde_json::from_value(py["values"].clone()).unwrap();
    assert_eq!(values, f16s(&ours.bytes));
    assert_eq!(py["labels"], serde_json::json!(ours.labels));
    assert_eq!(py["ids"], serde_json::json!(ours.ids));
}

/// Peak RSS (MiB) the binary logged at exit.
fn peak_rss_mib(stderr: &str) -> f64 {
    let at = stderr
        .find("peak_rss_mib=")
        .unwrap_or_else(|| panic!("no peak_rss_mib in:\n{stderr}"));
    let rest = &stderr[at + "peak_rss_mib=".len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

#[test]
fn memory_stays_flat_as_the_data_set_grows() {
    // layer3 maps at 32 px in f32: 1024×2×2×4 = 16 KiB per image, 1 MiB feature shards.
    let extract = "cut = \"layer3\"\ndtype = \"f32\"\nbatch_size = 16";
    let small = Setup::new(100, 20, 256, 1 << 20, extract);
    let large = Setup::new(1200, 300, 256, 1 << 20, extract);
    let small_peak = peak_rss_mib(&small.run(&[]));
    let large_peak = peak_rss_mib(&large.run(&[]));
    let rows = 1200 * 2 + 300;
    let data_mib = (rows * (16 << 10) + rows * 3 * SIZE * SIZE) as f64 / (1 << 20) as f64;
    println!("peak RSS: {small_peak:.1} MiB for 220 images, {large_peak:.1} MiB for {rows} ({data_mib:.0} MiB of images + features)");
    assert!(
        data_mib > 45.0,
        "{data_mib} MiB is too little to show growth"
    );
    assert!(
        large_peak < small_peak + 16.0,
        "peak RSS grew from {small_peak:.1} to {large_peak:.1} MiB with the data set ({data_mib:.0} MiB)"
    );
    let features = read_features(&large.features().join("s32-layer3/test/a0"));
    assert_eq!(features.ids, (100_000..100_300).collect::<Vec<u32>>());
    assert!(f32s(&features.bytes).iter().all(|v| v.is_finite()));
}

/// Runs `cmd` to its end with a 30 s hang guard.
fn output_guarded(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("dfd-extract hung for 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Flips a few bytes in the middle of `path`, keeping its size.
fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4].iter_mut().for_each(|b| *b ^= 0x81);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_corrupted_shard_is_named_and_the_rerun_redoes_just_it() {
    let s = Setup::new(16, 8, 10, 8 * 2048 * 4, POOLED);
    // An input image shard whose bytes changed: named, with the command that rebuilds it.
    let image = s
        .data
        .join("prepared/t/s32/train/a1/shard-00001.safetensors");
    let good = std::fs::read(&image).unwrap();
    corrupt(&image);
    let out = output_guarded(s.command(&[]));
    let log = String::from_utf8_lossy(&out.stderr);
    let command = format!(
        "rebuild it with: dfd-preprocess --config {} --data-dir {}",
        s.config.display(),
        s.data.display()
    );
    assert!(
        !out.status.success()
            && log.contains(&format!("{} is corrupt", image.display()))
            && log.contains(&command),
        "{log}"
    );
    std::fs::write(&image, good).unwrap();
    s.run(&[]);
    let want = tree(&s.features());

    // A feature shard whose bytes changed: the complete directory is re-verified, and the rerun
    // computes that shard's 8 images again, byte-identical, instead of "nothing to do".
    corrupt(
        &s.features()
            .join("s32-pooled/train/a0/shard-00001.safetensors"),
    );
    let out = output_guarded(s.command(&[]));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && log.contains("images=8"), "{log}");
    assert!(tree(&s.features()) == want, "not rebuilt byte-identical");
    let again = s.run(&[]);
    assert!(again.contains("nothing to do"), "{again}");
}

#[test]
fn a_log_written_to_a_file_is_plain_text_with_periodic_progress_lines() {
    let s = pooled_setup();
    // run_guarded writes stderr to a file, as a job scheduler does.
    let mut cmd = s.command(&[]);
    cmd.env_remove("NO_COLOR")
        .env("DFD_PROGRESS_INTERVAL", "0.01");
    let out = testkit::run_guarded(&mut cmd);
    let log = out.stderr;
    assert!(out.status.success(), "{log}");
    assert!(!log.contains('\x1b'), "escape codes in a log file:\n{log}");
    let progress: Vec<&str> = log.lines().filter(|l| l.contains("progress: ")).collect();
    assert!(!progress.is_empty(), "no progress line:\n{log}");
    assert!(
        progress
            .iter()
            .all(|l| l.contains(" img, ") && l.contains(" img/s, ETA ")),
        "{progress:#?}"
    );
    // Values are written plainly, never as Rust Debug dumps.
    assert!(!log.contains("Some(") && !log.contains(" { "), "{log}");
}

#[test]
fn check_weights_reads_the_file_and_refuses_junk() {
    let s = pooled_setup();
    let out = testkit::run_guarded(&mut s.command(&["--check-weights"]));
    let stdout = out.stdout;
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        stdout.contains("random:4") && stdout.contains("identity: random:4"),
        "{stdout}"
    );

    // A junk file given by a path relative to --data-dir: read, refused, named.
    std::fs::write(s.data.join("junk.pth"), b"\x80\x02 not a pickle at all").unwrap();
    std::fs::write(s.data.join("junk.safetensors"), b"definitely not weights").unwrap();
    for junk in ["junk.pth", "junk.safetensors"] {
        let config = std::fs::read_to_string(&s.config)
            .unwrap()
            .replace("random:4", junk);
        let junk_config = s.data.parent().unwrap().join("junk.toml");
        std::fs::write(&junk_config, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_dfd-extract"))
            .arg("--config")
            .arg(&junk_config)
            .arg("--data-dir")
            .arg(&s.data)
            .arg("--check-weights")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{junk} accepted: {stderr}");
        let line = stderr.lines().last().unwrap_or_default();
        assert!(
            line.starts_with("dfd-extract: error: ")
                && line.contains(&s.data.join(junk).display().to_string()),
            "{stderr}"
        );
        assert!(!stderr.contains("backtrace"), "{stderr}");
    }
}
