//! Kill-and-resume identity: SIGKILL the binary mid-training after a checkpoint exists and at
//! chosen writes, rerun the same command, and the final weights equal an uninterrupted run's,
//! byte for byte, with no temporary file left.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{write_data, write_pipeline, Synth};
use dfd_layout::runlog::{self, LogRecord};
use dfd_layout::DataRoot;

const TRAIN: &str = "head = \"mlp\"\nhidden = [16]\ndropout = 0.3\noptimizer = \"adam\"\nlr = 1e-3\n\
                     epochs = 6\nbatch_size = 8\neval_every = 7\nlog_every = 3\nl1 = 1e-4\nweight_decay = 1e-3";

fn command(data: &Path, cfg: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfd-train"));
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--throttle-ms",
        "15",
    ])
    .env("RUST_LOG", "warn");
    cmd
}

fn setup(data: &Path) -> std::path::PathBuf {
    let synth = Synth::default();
    let cfg = write_pipeline(data, "resume", &synth, TRAIN);
    write_data(data, &cfg, &synth);
    cfg
}

/// The log without wall-clock times.
fn log_without_times(data: &Path) -> Vec<LogRecord> {
    let fold = DataRoot::new(data).run("resume", "main").fold(0);
    runlog::read(&fold.metrics())
        .unwrap()
        .into_iter()
        .map(|r| match r {
            LogRecord::Train {
                epoch,
                step,
                loss,
                objective,
                l1_penalty,
                accuracy,
                lr,
                ..
            } => LogRecord::Train {
                epoch,
                step,
                loss,
                objective,
                l1_penalty,
                accuracy,
                lr,
                time_s: 0.0,
            },
            LogRecord::Val {
                epoch,
                step,
                loss,
                accuracy,
                auc,
                ..
            } => LogRecord::Val {
                epoch,
                step,
                loss,
                accuracy,
                auc,
                time_s: 0.0,
            },
        })
        .collect()
}

#[test]
fn killed_and_resumed_run_equals_an_uninterrupted_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (cfg_a, cfg_b) = (setup(&a), setup(&b));

    assert!(command(&a, &cfg_a).status().unwrap().success());
    // Unweighted here: the optimised loss is the logged cross-entropy plus the L1 penalty.
    let mut logged = 0;
    for record in log_without_times(&a) {
        if let LogRecord::Train {
            loss,
            objective: Some(objective),
            l1_penalty: Some(penalty),
            ..
        } = record
        {
            assert!(penalty > 0.0 && (objective - (loss + penalty)).abs() < 1e-9);
            logged += 1;
        }
    }
    assert!(
        logged > 0,
        "no training record with its objective and penalty"
    );

    let fold_b = DataRoot::new(&b).run("resume", "main").fold(0);
    let mut kills = 0;
    // Kill twice: once after the first checkpoint, once after a later one.
    for wanted_step in [7, 21] {
        let mut child = command(&b, &cfg_b).spawn().unwrap();
        let start = Instant::now();
        loop {
            let step = dfd_train::checkpoint::read_state(&fold_b, "last")
                .ok()
                .flatten()
                .map_or(0, |s| s.step);
            if step >= wanted_step {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no checkpoint appeared"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run finished before it could be killed"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        assert!(!fold_b.complete_marker().exists(), "killed before the end");
    }
    assert_eq!(kills, 2);
    // Killed at chosen writes of a resumed run, each leaving a torn temporary file: the log
    // truncated to the checkpoint (write 1) and the state of the next checkpoint, inside
    // `last.tmp/` (write 3).
    for at in [1, 3] {
        dfd_testkit::kill_at_write(&mut command(&b, &cfg_b), at);
    }
    let run_b = DataRoot::new(&b).run("resume", "main");
    assert!(!dfd_testkit::leftovers(run_b.path()).is_empty());
    assert!(command(&b, &cfg_b).status().unwrap().success());
    assert_eq!(
        dfd_testkit::leftovers(run_b.path()),
        Vec::<std::path::PathBuf>::new()
    );

    let fold_a = DataRoot::new(&a).run("resume", "main").fold(0);
    for tag in ["last", "best"] {
        let wa = std::fs::read(fold_a.checkpoint(tag).join("model.safetensors")).unwrap();
        let wb = std::fs::read(fold_b.checkpoint(tag).join("model.safetensors")).unwrap();
        assert!(wa == wb, "checkpoint `{tag}` differs after kill and resume");
        let oa = std::fs::read(fold_a.checkpoint(tag).join("optimizer.safetensors")).unwrap();
        let ob = std::fs::read(fold_b.checkpoint(tag).join("optimizer.safetensors")).unwrap();
        assert!(
            oa == ob,
            "optimiser state `{tag}` differs after kill and resume"
        );
    }
    assert_eq!(log_without_times(&a), log_without_times(&b));
    assert!(fold_b.complete_marker().exists());
}
