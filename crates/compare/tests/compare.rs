//! `dfd-compare` run as a binary over hand-made layouts: runs pinned with
//! `PipelineConfig::to_toml` and hand-written `metrics.json` files.

use std::path::{Path, PathBuf};
use std::process::Command;

use dfd_compare::table_csv::COLUMNS;
use dfd_layout::PipelineConfig;
use serde_json::{json, Value};

/// The committed pipeline `stem`.
fn pipeline(stem: &str) -> PipelineConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../pipelines/{stem}.toml"));
    PipelineConfig::load(&path).unwrap()
}

/// A config with random backbone weights.
fn random_weights() -> PipelineConfig {
    PipelineConfig::from_toml("[extract]\nweights = \"random:0\"\n", "random").unwrap()
}

/// A schema-2 `metrics.json` of a two-fold ensemble with bootstrap intervals.
fn schema_2(dataset: &str, pretrained: Option<bool>, accuracy: f64, auc: f64) -> Value {
    let identity = match pretrained {
        Some(false) => json!("random:0"),
        _ => json!("blake3:00ff"),
    };
    json!({
        "schema_version": 2, "pipeline": "ignored", "run_id": "ignored", "checkpoint": "best",
        "threshold": 0.5, "dataset": dataset, "test_features": "data/features/x",
        "weights_identity": identity, "pretrained": pretrained,
        "checkpoints_written": "2026-01-02",
        "ensemble": {
            "folds": [0, 1],
            "metrics": report(accuracy, auc),
            "by_difficulty": [],
            "worst": {"real_flagged": [], "fakes_missed": []}
        },
        "folds": [{"fold": 0, "metrics": report(0.5, 0.5), "by_difficulty": []}],
        "cross_validation": null
    })
}

/// A `BinaryReport` (the keys dfd-compare reads and a few it ignores) on 400 images.
fn report(accuracy: f64, auc: f64) -> Value {
    json!({
        "n": 400, "n_real": 200, "n_fake": 200, "threshold": 0.5,
        "accuracy": accuracy, "balanced_accuracy": accuracy, "precision": 0.6, "recall": 0.6,
        "f1": 0.6, "confusion": [[1, 2], [3, 4]], "roc_auc": auc,
        "eer": {"rate": 0.3126, "threshold": 0.47}, "average_precision": 0.7,
        "log_loss": 0.6, "roc": {"fpr": [0.0], "tpr": [0.0], "thresholds": [null]},
        "bootstrap": {
            "config": {"resamples": 100, "seed": 42, "confidence": 0.95, "threshold": 0.5},
            "used": 100, "skipped_single_class": 0,
            "accuracy": {"lower": accuracy - 0.05, "upper": accuracy + 0.05},
            "roc_auc": {"lower": auc - 0.04, "upper": auc + 0.04}
        }
    })
}

/// A schema-1 `metrics.json` (before the ensemble): two folds and their mean.
fn schema_1() -> Value {
    let mean = |m: f64| json!({"n": 2, "mean": m, "std": 0.01});
    json!({
        "schema_version": 1, "pipeline": "p", "run_id": "old", "checkpoint": "best",
        "threshold": 0.5, "test_features": "x",
        "folds": [
            {"fold": 0, "metrics": report(0.6, 0.65), "by_difficulty": []},
            {"fold": 1, "metrics": report(0.62, 0.67), "by_difficulty": []}
        ],
        "cross_validation": {
            "accuracy": mean(0.61), "balanced_accuracy": mean(0.61), "f1": mean(0.6),
            "roc_auc": mean(0.66), "eer": mean(0.35), "average_precision": mean(0.64),
            "log_loss": mean(0.7)
        }
    })
}

/// Pins `config` as `runs/<pipeline>/<run>/config.toml` under `root`.
fn pin(root: &Path, pipeline: &str, run: &str, config: &PipelineConfig) -> PathBuf {
    let dir = root.join("runs").join(pipeline).join(run);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), config.to_toml().unwrap()).unwrap();
    dir
}

/// Writes `metrics` as the run's `eval/metrics.json`, or `eval/<dataset>/metrics.json`.
fn evaluation(run: &Path, cross: Option<&str>, metrics: &Value) {
    let dir = cross.map_or_else(|| run.join("eval"), |d| run.join("eval").join(d));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("metrics.json"),
        serde_json::to_vec_pretty(metrics).unwrap(),
    )
    .unwrap();
}

/// What one run of the binary gave.
struct Output {
    stdout: String,
    stderr: String,
    md: String,
    html: String,
    csv: String,
}

fn compare(root: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dfd-compare"))
        .arg("--data-dir")
        .arg(root)
        .env_remove("DFD_DATA_DIR")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let read = |ext: &str| {
        std::fs::read_to_string(root.join(format!("runs/comparison.{ext}"))).unwrap_or_default()
    };
    Output {
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr,
        md: read("md"),
        html: read("html"),
        csv: read("csv"),
    }
}

/// The CSV read back: its header and records as maps from column to field.
fn csv_rows(text: &str) -> (Vec<String>, Vec<std::collections::BTreeMap<String, String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, rows)
}

/// The markdown table line of the row whose first two cells are `pipeline` and `run`.
fn md_line<'a>(md: &'a str, pipeline: &str, run: &str) -> &'a str {
    let start = format!("| {pipeline} | {run} |");
    md.lines()
        .find(|l| l.starts_with(&start))
        .unwrap_or_else(|| panic!("no row {start} in\n{md}"))
}

#[test]
fn a_run_with_random_weights_is_flagged_in_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let exp2 = pin(
        root,
        "exp2-linear-400",
        "main",
        &pipeline("exp2-linear-400"),
    );
    evaluation(&exp2, None, &schema_2("ciplab", Some(true), 0.653, 0.71));
    let random = pin(root, "demo", "random", &random_weights());
    evaluation(&random, None, &schema_2("demo", Some(false), 0.9, 0.95));
    let out = compare(root);

    assert_eq!(out.stdout, out.md, "stdout is the markdown");
    let banner = "# Evaluated runs compared\n\n> **NOT PRETRAINED: rows marked NOT PRETRAINED";
    assert!(out.md.starts_with(banner), "{}", out.md);
    assert!(out.md.contains("do not measure detection quality"));
    assert!(!out.md.contains("PRETRAINED UNKNOWN"), "{}", out.md);
    let flagged = md_line(&out.md, "demo", "random");
    assert!(
        flagged.contains("| random:0 | **NOT PRETRAINED** |"),
        "{flagged}"
    );
    assert!(
        flagged.contains("| 90.0% [85.0, 95.0] | 0.950 [0.910, 0.990] |"),
        "{flagged}"
    );
    let exp2_line = md_line(&out.md, "exp2-linear-400", "main");
    assert!(
        exp2_line.contains(
            "| ciplab | ensemble of 2 folds | 400 | layer3 | linear | hf:timm/resnext50_32x4d.tv_in1k | yes | 400 |"
        ),
        "{exp2_line}"
    );
    assert!(
        exp2_line.ends_with("| 31.3% | 0.700 | 67.7% | -2.4 pp |"),
        "{exp2_line}"
    );
    assert!(out.md.contains("- `exp2-linear-400`: exp. 2: Linear on flattened 400 px layer3 maps (best epoch; its last: 65.3%): the study reports 67.7% test accuracy."), "{}", out.md);

    let body = out.html.split("<body>").nth(1).unwrap();
    assert!(
        body.trim_start()
            .starts_with("<h1>Evaluated runs compared</h1>\n<p class=\"banner\">NOT PRETRAINED"),
        "{body}"
    );
    assert_eq!(out.html.matches("<tr class=\"not-pretrained\">").count(), 1);
    assert!(out.html.contains("<td class=\"flag\">NOT PRETRAINED</td>"));
    assert!(!out.html.contains("src=\"http") && !out.html.contains("href=\"http"));

    let (header, rows) = csv_rows(&out.csv);
    assert_eq!(header, COLUMNS);
    assert_eq!(rows.len(), 2);
    let (demo, exp) = (&rows[0], &rows[1]);
    assert_eq!(
        (demo["pipeline"].as_str(), demo["pretrained"].as_str()),
        ("demo", "false")
    );
    assert_eq!(demo["weights"], "random:0");
    assert_eq!(demo["weights_identity"], "random:0");
    assert_eq!(demo["study_accuracy"], "");
    assert_eq!(exp["pretrained"], "true");
    assert_eq!(exp["accuracy"].parse::<f64>().unwrap(), 0.653);
    assert_eq!(exp["accuracy_lower"].parse::<f64>().unwrap(), 0.653 - 0.05);
    assert_eq!(exp["roc_auc_upper"].parse::<f64>().unwrap(), 0.71 + 0.04);
    assert_eq!(exp["study_accuracy"], "0.677");
    assert_eq!(exp["source"], "exp2-linear-400/main/eval/metrics.json");
    assert_eq!(
        (
            exp["size"].as_str(),
            exp["cut"].as_str(),
            exp["head"].as_str()
        ),
        ("400", "layer3", "linear")
    );
}

#[test]
fn pretrained_runs_alone_get_no_banner() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pin(
        tmp.path(),
        "exp1-mlp-224",
        "main",
        &pipeline("exp1-mlp-224"),
    );
    evaluation(&run, None, &schema_2("ciplab", Some(true), 0.55, 0.6));
    let out = compare(tmp.path());
    assert!(
        !out.md.contains("NOT PRETRAINED") && !out.md.contains("UNKNOWN"),
        "{}",
        out.md
    );
    assert!(!out.html.contains("<p class=\"banner\">"), "{}", out.html);
    assert!(
        !out.html.contains("<tr class=\"not-pretrained\">"),
        "{}",
        out.html
    );
    let line = md_line(&out.md, "exp1-mlp-224", "main");
    assert!(line.ends_with("| 53.0% | +2.0 pp |"), "{line}");
}

#[test]
fn rows_are_sorted_and_cross_data_set_and_schema_1_evaluations_have_theirs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let z = pin(root, "b-pipe", "main", &PipelineConfig::default());
    evaluation(&z, None, &schema_2("demo", Some(true), 0.7, 0.8));
    let a2 = pin(root, "a-pipe", "run2", &pipeline("exp4-finetune-224"));
    evaluation(&a2, None, &schema_2("ciplab", Some(true), 0.7, 0.8));
    evaluation(
        &a2,
        Some("celeb"),
        &schema_2("celeb", Some(true), 0.52, 0.55),
    );
    let a1 = pin(root, "a-pipe", "run1", &PipelineConfig::default());
    evaluation(&a1, None, &schema_1());
    let out = compare(root);

    let (_, rows) = csv_rows(&out.csv);
    let order: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["pipeline"].as_str(),
                r["run_id"].as_str(),
                r["dataset"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("a-pipe", "run1", "demo"),
            ("a-pipe", "run2", "celeb"),
            ("a-pipe", "run2", "ciplab"),
            ("b-pipe", "main", "demo"),
        ]
    );
    let old = &rows[0];
    assert_eq!(
        (old["model"].as_str(), old["pretrained"].as_str()),
        ("mean of 2 folds", "")
    );
    assert_eq!(
        (old["accuracy"].as_str(), old["accuracy_lower"].as_str()),
        ("0.61", "")
    );
    assert_eq!((old["n"].as_str(), old["eer"].as_str()), ("400", "0.35"));
    let cross = &rows[1];
    assert_eq!(
        (cross["in_domain"].as_str(), cross["trained_on"].as_str()),
        ("false", "ciplab")
    );
    assert_eq!(cross["source"], "a-pipe/run2/eval/celeb/metrics.json");
    assert_eq!(
        cross["study_accuracy"], "",
        "the study's figure is for its own test set"
    );
    assert_eq!(rows[2]["study_accuracy"], "0.66");

    assert!(
        out.md
            .starts_with("# Evaluated runs compared\n\n> **PRETRAINED UNKNOWN"),
        "{}",
        out.md
    );
    assert!(md_line(&out.md, "a-pipe", "run1").contains("| mean of 2 folds |"));
    assert!(md_line(&out.md, "a-pipe", "run1").contains("| unknown | 400 | 61.0% | 0.660 |"));
    let lines: Vec<&str> = out
        .md
        .lines()
        .filter(|l| l.starts_with("| a-pipe | run2 |"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].contains("| celeb (cross-data-set) |"),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with("|  |  |"), "{}", lines[0]);
}

#[test]
fn a_schema_1_run_with_random_weights_is_not_pretrained() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pin(tmp.path(), "p", "old", &random_weights());
    evaluation(&run, None, &schema_1());
    let out = compare(tmp.path());
    assert!(md_line(&out.md, "p", "old").contains("| random:0 | **NOT PRETRAINED** |"));
    assert!(out.md.contains("> **NOT PRETRAINED"), "{}", out.md);
}

#[test]
fn what_cannot_be_read_is_skipped_with_one_warning_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let good = pin(root, "good", "main", &PipelineConfig::default());
    evaluation(&good, None, &schema_2("demo", Some(true), 0.7, 0.8));
    let broken = pin(root, "broken", "main", &PipelineConfig::default());
    std::fs::create_dir_all(broken.join("eval")).unwrap();
    std::fs::write(
        broken.join("eval/metrics.json"),
        "{\"schema_version\": 2, \"ensem",
    )
    .unwrap();
    evaluation(
        &broken,
        Some("other"),
        &schema_2("other", Some(true), 0.6, 0.6),
    );
    let no_config = root.join("runs/noconfig/main");
    evaluation(&no_config, None, &schema_2("demo", Some(true), 0.7, 0.8));
    let out = compare(root);

    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 2, "{}", out.stderr);
    let bad_file = broken.join("eval/metrics.json");
    assert!(
        warnings[0].contains(&format!("skipping {}", bad_file.display())),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains(&no_config.join("config.toml").display().to_string()),
        "{}",
        warnings[1]
    );
    let (_, rows) = csv_rows(&out.csv);
    let kept: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["pipeline"].as_str(), r["dataset"].as_str()))
        .collect();
    assert_eq!(kept, [("broken", "other"), ("good", "demo")]);
}

#[test]
fn a_rerun_writes_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = pin(
        root,
        "exp3-linear-400-cv",
        "main",
        &pipeline("exp3-linear-400-cv"),
    );
    evaluation(&a, None, &schema_2("ciplab", Some(true), 0.6, 0.66));
    let b = pin(root, "demo", "main", &random_weights());
    evaluation(&b, None, &schema_2("demo", None, 0.8, 0.9));
    let first = compare(root);
    let second = compare(root);
    assert_eq!(first.md, second.md);
    assert_eq!(first.html, second.html);
    assert_eq!(first.csv, second.csv);
    assert_eq!(first.stdout, second.stdout);
}

#[test]
fn names_are_escaped_in_html_and_markdown_and_quoted_in_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let run = pin(tmp.path(), "p", "a<b>&c|d,e\"f", &PipelineConfig::default());
    evaluation(&run, None, &schema_2("demo", Some(true), 0.7, 0.8));
    let out = compare(tmp.path());
    assert!(
        out.html.contains("<td>a&lt;b&gt;&amp;c|d,e&quot;f</td>"),
        "{}",
        out.html
    );
    assert!(out.md.contains("| p | a&lt;b>&c\\|d,e\"f |"), "{}", out.md);
    let (_, rows) = csv_rows(&out.csv);
    assert_eq!(rows[0]["run_id"], "a<b>&c|d,e\"f");
}

#[test]
fn no_evaluated_run_is_said_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = compare(tmp.path());
    assert!(out.stdout.is_empty());
    assert!(
        out.stderr.contains("no evaluated run under"),
        "{}",
        out.stderr
    );
    assert!(!tmp.path().join("runs").exists());
    // A run trained but not evaluated yet is no row either.
    pin(tmp.path(), "p", "main", &PipelineConfig::default());
    let out = compare(tmp.path());
    assert!(out.stderr.contains("nothing to compare"), "{}", out.stderr);
    assert!(!tmp.path().join("runs/comparison.md").exists());
}
