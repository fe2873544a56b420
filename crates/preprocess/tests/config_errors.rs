//! A typo in any enum-valued key of the pipeline fails in `dfd-preprocess` at start (before any
//! image is read), naming the key, the value and the accepted values, even for keys only later
//! stages use; the corrected config then runs.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, make_dataset, BIN};

/// Section, key, a bad value, and one of the accepted values the message must list.
const TYPOS: [(&str, &str, &str, &str); 11] = [
    ("extract", "arch", "resnext50", "resnext50_32x4d"),
    ("extract", "weights", "hf:nope", "random:<seed>"),
    ("extract", "cut", "layer5", "layer3"),
    ("extract", "dtype", "bf16", "f16"),
    ("extract", "device", "gpu", "cuda:N"),
    ("extract", "compute", "fp16", "bf16"),
    ("train", "compute", "bf8", "f32"),
    ("train", "head", "mlp2", "finetune-layer4"),
    ("train", "optimizer", "sgd", "adamw"),
    ("train", "schedule", "linear", "cosine"),
    ("train", "monitor", "val_f1", "val_auc"),
];

/// Runs the binary with a 30 s hang guard; returns (success, stderr).
fn run_guarded(data: &Path, cfg: &Path) -> (bool, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dfd-preprocess");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("dfd-preprocess hung on {}", cfg.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.success(), stderr)
}

#[test]
fn a_typo_in_any_enum_key_fails_at_start_and_the_fix_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    make_dataset(&data.join("raw/demo"), ["real", "fake"], 5, 5, false);
    for (section, key, bad, accepted) in TYPOS {
        let cfg = config(
            data,
            "typo",
            ["real", "fake"],
            &format!("[{section}]\n{key} = \"{bad}\"\n"),
        );
        let (ok, stderr) = run_guarded(data, &cfg);
        assert!(!ok, "{section}.{key} = {bad:?} was accepted");
        for needle in [
            format!("{section}.{key}"),
            format!("\"{bad}\""),
            accepted.into(),
        ] {
            assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
        }
        assert!(
            !data.join("prepared").exists(),
            "{section}.{key}: output was written before the config was checked"
        );
    }
    let fixed = config(data, "typo", ["real", "fake"], "");
    let (ok, stderr) = run_guarded(data, &fixed);
    assert!(ok, "the corrected config failed:\n{stderr}");
    assert!(data.join("prepared/demo/manifest.csv").exists());
}

/// `bf16` compute on a CPU without AVX512-BF16 fails at start too (not in extract, hours
/// later), saying what to do; with `DFD_BF16=emulate` the same config runs.
#[test]
fn bf16_compute_without_the_cpu_for_it_fails_at_start() {
    if dfd_layout::config::compute::cpu_has_bf16() {
        println!("this CPU has AVX512-BF16: nothing to refuse");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    make_dataset(&data.join("raw/demo"), ["real", "fake"], 3, 3, false);
    let cfg = config(
        data,
        "bf16",
        ["real", "fake"],
        "[extract]\ncompute = \"bf16\"\n",
    );
    let (ok, stderr) = run_guarded(data, &cfg);
    assert!(!ok, "bf16 was accepted without AVX512-BF16");
    for needle in [
        "extract.compute = \"bf16\"",
        "AVX512-BF16",
        "DFD_BF16=emulate",
    ] {
        assert!(stderr.contains(needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(!data.join("prepared").exists());
    let status = Command::new(BIN)
        .args([
            "--config".as_ref(),
            cfg.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ])
        .env(dfd_layout::config::compute::BF16_ENV, "emulate")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}
