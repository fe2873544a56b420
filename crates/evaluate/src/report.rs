//! Human-readable outputs from [`EvalMetrics`]: the console table, `report.md` (PNGs linked) and
//! `report.html` (self-contained, PNGs embedded as base64).

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use dfd_metrics::{BinaryReport, Interval, MeanStd};

use crate::schema::{EvalMetrics, FoldEval};

/// The PNGs of a report, by file name inside the eval directory, with their captions.
pub const FIGURES: [(&str, &str); 3] = [
    (
        "curves.png",
        "Training curves by step, per fold: unweighted cross-entropy (training and validation), \
         the optimised loss (class weights and L1 penalty included) and accuracy",
    ),
    ("confusion.png", "Confusion matrix on the test split"),
    ("roc.png", "ROC curve on the test split"),
];

/// A table as a header and rows of cells.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

fn with_interval(value: f64, interval: Option<Interval>) -> String {
    match interval {
        Some(iv) => format!("{value:.3} [{:.3}, {:.3}]", iv.lower, iv.upper),
        None => format!("{value:.3}"),
    }
}

fn mean_std_cell(m: &MeanStd) -> String {
    match m.std {
        Some(std) => format!("{:.3} ± {std:.3}", m.mean),
        None => format!("{:.3}", m.mean),
    }
}

/// The headline metrics: one row per fold, then mean ± std over folds for cross-validation.
fn metrics_table(m: &EvalMetrics) -> Table {
    let header = [
        "fold",
        "n",
        "accuracy [95% CI]",
        "bal. acc.",
        "precision",
        "recall",
        "F1",
        "ROC AUC [95% CI]",
        "EER (thr.)",
        "AP",
        "log loss",
    ];
    let rows_of = |label: String, r: &BinaryReport| {
        let boot = r.bootstrap.as_ref();
        vec![
            label,
            r.n.to_string(),
            with_interval(r.accuracy, boot.map(|b| b.accuracy)),
            format!("{:.3}", r.balanced_accuracy),
            format!("{:.3}", r.precision),
            format!("{:.3}", r.recall),
            format!("{:.3}", r.f1),
            with_interval(r.roc_auc, boot.map(|b| b.roc_auc)),
            format!("{:.3} ({:.3})", r.eer.rate, r.eer.threshold),
            format!("{:.3}", r.average_precision),
            format!("{:.3}", r.log_loss),
        ]
    };
    let mut rows = vec![rows_of(ensemble_label(m), &m.ensemble.metrics)];
    rows.extend(
        listed_folds(m)
            .iter()
            .map(|f| rows_of(f.fold.to_string(), &f.metrics)),
    );
    if let Some(cv) = &m.cross_validation {
        let dash = || "–".to_string();
        rows.push(vec![
            "mean ± std".into(),
            dash(),
            mean_std_cell(&cv.accuracy),
            mean_std_cell(&cv.balanced_accuracy),
            dash(),
            dash(),
            mean_std_cell(&cv.f1),
            mean_std_cell(&cv.roc_auc),
            mean_std_cell(&cv.eer),
            mean_std_cell(&cv.average_precision),
            mean_std_cell(&cv.log_loss),
        ]);
    }
    Table {
        header: header.map(String::from).to_vec(),
        rows,
    }
}

/// The folds the tables list after the model's row: none when the model is a single fold (its
/// row would repeat the model's), else every scored fold.
fn listed_folds(m: &EvalMetrics) -> &[FoldEval] {
    match (m.ensemble.folds.as_slice(), m.folds.as_slice()) {
        ([k], [f]) if f.fold == *k => &[],
        _ => &m.folds,
    }
}

/// `ensemble of 0, 1, 2`, or `0 (the model)` when one fold was scored.
fn ensemble_label(m: &EvalMetrics) -> String {
    match m.ensemble.folds.as_slice() {
        [k] => format!("{k} (the model)"),
        folds => {
            let list: Vec<String> = folds.iter().map(u8::to_string).collect();
            format!("ensemble of {}", list.join(", "))
        }
    }
}

/// Confusion matrices and difficulty breakdowns, one row per model (and difficulty): the
/// ensemble first, then each fold.
fn detail_table(m: &EvalMetrics) -> Table {
    let header = [
        "fold",
        "confusion [[tn, fp], [fn, tp]]",
        "difficulty",
        "fakes",
        "detected",
        "mean P(fake)",
        "AUC vs real",
    ];
    let mut rows = Vec::new();
    let models = std::iter::once((
        ensemble_label(m),
        &m.ensemble.metrics,
        &m.ensemble.by_difficulty,
    ))
    .chain(
        listed_folds(m)
            .iter()
            .map(|f| (f.fold.to_string(), &f.metrics, &f.by_difficulty)),
    );
    for (label, metrics, by_difficulty) in models {
        let c = &metrics.confusion;
        let confusion = format!("[[{}, {}], [{}, {}]]", c.tn, c.fp, c.fn_, c.tp);
        if by_difficulty.is_empty() {
            rows.push(vec![
                label.clone(),
                confusion.clone(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]);
        }
        for d in by_difficulty {
            rows.push(vec![
                label.clone(),
                confusion.clone(),
                d.difficulty.clone(),
                d.n_fake.to_string(),
                format!("{:.3}", d.detection_rate),
                format!("{:.3}", d.mean_score),
                d.auc_vs_real.map_or("–".into(), |a| format!("{a:.3}")),
            ]);
        }
    }
    Table {
        header: header.map(String::from).to_vec(),
        rows,
    }
}

/// The ensemble's worst mistakes: the real images scored most fake, the fakes scored least.
fn mistakes_table(m: &EvalMetrics) -> Table {
    let w = &m.ensemble.worst;
    let rows = w
        .real_flagged
        .iter()
        .map(|i| ("real scored as fake", i))
        .chain(w.fakes_missed.iter().map(|i| ("fake scored as real", i)))
        .map(|(kind, i)| vec![kind.to_string(), format!("{:.3}", i.p_fake), i.path.clone()])
        .collect();
    Table {
        header: ["mistake", "P(fake)", "path"].map(String::from).to_vec(),
        rows,
    }
}

/// Fixed-width text table for the console.
fn plain(t: &Table) -> String {
    let widths: Vec<usize> = (0..t.header.len())
        .map(|c| {
            std::iter::once(&t.header)
                .chain(&t.rows)
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let rule = widths
        .iter()
        .map(|&w| "-".repeat(w))
        .collect::<Vec<_>>()
        .join("  ");
    let mut out = vec![line(&t.header), rule];
    out.extend(t.rows.iter().map(|r| line(r)));
    out.join("\n") + "\n"
}

fn markdown(t: &Table) -> String {
    let line = |cells: &[String]| format!("| {} |", cells.join(" | "));
    let mut out = vec![
        line(&t.header),
        format!("|{}", "---|".repeat(t.header.len())),
    ];
    out.extend(t.rows.iter().map(|r| line(r)));
    out.join("\n") + "\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html_table(t: &Table) -> String {
    let row = |tag: &str, cells: &[String]| {
        let cells: String = cells
            .iter()
            .map(|c| format!("<{tag}>{}</{tag}>", escape(c)))
            .collect();
        format!("<tr>{cells}</tr>\n")
    };
    let body: String = t.rows.iter().map(|r| row("td", r)).collect();
    format!("<table>\n{}{body}</table>\n", row("th", &t.header))
}

fn title(m: &EvalMetrics) -> String {
    let on = match &m.trained_on {
        Some(_) => format!(" on {}", m.dataset),
        None => String::new(),
    };
    format!(
        "Evaluation of {} / {}{on} (checkpoint `{}`)",
        m.pipeline, m.run_id, m.checkpoint
    )
}

/// The warning every output of a run without a pretrained backbone starts with.
pub fn not_pretrained_banner(m: &EvalMetrics) -> Option<String> {
    (m.pretrained != Some(true)).then(|| {
        "NOT PRETRAINED: the backbone had random weights (or its features do not say they were \
         pretrained), so these numbers do not measure detection quality; they only show that the \
         pipeline runs and learns. With the ImageNet weights (extract.weights = \
         \"hf:timm/resnext50_32x4d.tv_in1k\" or \"torchvision:resnext50_32x4d\") the study's \
         heads reach 53-68% test accuracy on the Real and Fake Face Detection photos."
            .to_string()
    })
}

fn preamble(m: &EvalMetrics) -> String {
    let scored = match &m.trained_on {
        Some(home) => format!(
            "Data set `{}`, every image (another data set: the run was trained on `{home}`)",
            m.dataset
        ),
        None => format!("Data set `{}`", m.dataset),
    };
    format!(
        "{scored}, pipeline `{}`, run `{}`; backbone weights `{}`{}; checkpoints written {}. \
         Test features: `{}`. The first row is the model `dfd-predict` uses (the mean P(fake) of \
         the scored folds). Fake is the positive class; predicted fake when P(fake) ≥ {}. \
         Intervals are seeded bootstrap 95% percentile intervals; mean ± std uses the sample std.",
        m.pipeline,
        m.run_id,
        m.weights_identity.as_deref().unwrap_or("unknown"),
        match m.pretrained {
            Some(true) => " (pretrained)",
            Some(false) => " (NOT pretrained)",
            None => "",
        },
        m.checkpoints_written
            .as_deref()
            .unwrap_or("on an unknown date"),
        m.test_features,
        m.threshold
    )
}

/// The compact console table: headline metrics, then confusion and difficulty details.
pub fn console_table(m: &EvalMetrics) -> String {
    let banner = not_pretrained_banner(m).map_or(String::new(), |b| format!("*** {b}\n"));
    format!(
        "{banner}{}\n{}\n{}\n{}",
        title(m),
        plain(&metrics_table(m)),
        plain(&detail_table(m)),
        plain(&mistakes_table(m))
    )
}

/// `report.md`: tables plus the PNGs, linked by file name (they sit next to it).
pub fn markdown_report(m: &EvalMetrics) -> String {
    let banner = not_pretrained_banner(m).map_or(String::new(), |b| format!("> **{b}**\n\n"));
    let mut out = format!(
        "# {}\n\n{banner}{}\n\n## Metrics\n\n{}\n## Confusion and difficulty\n\n{}\n\
         ## Worst mistakes of the ensemble\n\n{}\n",
        title(m),
        preamble(m),
        markdown(&metrics_table(m)),
        markdown(&detail_table(m)),
        markdown(&mistakes_table(m))
    );
    for (file, caption) in FIGURES {
        out += &format!("## {caption}\n\n![{caption}]({file})\n\n");
    }
    out
}

/// `report.html`: the same content, self-contained, with the PNGs of `eval_dir` embedded.
pub fn html_report(m: &EvalMetrics, eval_dir: &Path) -> Result<String> {
    let mut figures = String::new();
    for (file, caption) in FIGURES {
        let path = eval_dir.join(file);
        let bytes =
            std::fs::read(&path).with_context(|| format!("reading {} to embed", path.display()))?;
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        figures += &format!(
            "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{data}\"><figcaption>{0}</figcaption></figure>\n",
            escape(caption)
        );
    }
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;max-width:1250px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}th{{background:#eef}}\
         figure{{margin:1.5em 0}}img{{max-width:100%}}.banner{{border:3px solid #c00;padding:1em;font-weight:bold}}\
         </style></head>\n<body>\n<h1>{title}</h1>\n{banner}<p>{pre}</p>\n\
         <h2>Metrics</h2>\n{metrics}<h2>Confusion and difficulty</h2>\n{detail}\
         <h2>Worst mistakes of the ensemble</h2>\n{mistakes}{figures}</body></html>\n",
        title = escape(&title(m)),
        banner = not_pretrained_banner(m).map_or(String::new(), |b| format!(
            "<p class=\"banner\">{}</p>\n",
            escape(&b)
        )),
        pre = escape(&preamble(m)),
        metrics = html_table(&metrics_table(m)),
        detail = html_table(&detail_table(m)),
        mistakes = html_table(&mistakes_table(m)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{
        CvSummary, DifficultyRow, EnsembleEval, FoldEval, Mistakes, ScoredImage, SCHEMA_VERSION,
    };
    use dfd_metrics::BootstrapConfig;

    fn sample() -> EvalMetrics {
        let labels = [0, 0, 0, 1, 1, 1, 0, 1];
        let scores = [0.1, 0.4, 0.6, 0.7, 0.3, 0.9, 0.2, 0.8];
        let boot = BootstrapConfig {
            resamples: 50,
            ..Default::default()
        };
        let fold = |k| FoldEval {
            fold: k,
            metrics: BinaryReport::compute(&labels, &scores, 0.5, Some(&boot)).unwrap(),
            by_difficulty: vec![DifficultyRow {
                difficulty: "easy".into(),
                n_fake: 4,
                detection_rate: 0.75,
                mean_score: 0.675,
                auc_vs_real: Some(0.875),
            }],
        };
        let folds = vec![fold(0), fold(1)];
        let image = |path: &str, p_fake| ScoredImage {
            path: path.into(),
            p_fake,
        };
        EvalMetrics {
            schema_version: SCHEMA_VERSION,
            pipeline: "exp<1>".into(),
            run_id: "main".into(),
            checkpoint: "best".into(),
            threshold: 0.5,
            dataset: "faces".into(),
            trained_on: None,
            test_features: "features/x".into(),
            weights_identity: Some("blake3:00ff".into()),
            pretrained: Some(true),
            checkpoints_written: Some("2026-12-02".into()),
            ensemble: EnsembleEval {
                folds: vec![0, 1],
                metrics: folds[0].metrics.clone(),
                by_difficulty: folds[0].by_difficulty.clone(),
                worst: Mistakes {
                    real_flagged: vec![image("real/r1.jpg", 0.6)],
                    fakes_missed: vec![image("fake/easy_1.jpg", 0.3)],
                },
            },
            cross_validation: CvSummary::from_folds(&folds).unwrap(),
            folds,
        }
    }

    #[test]
    fn console_table_lists_folds_and_summary() {
        let text = console_table(&sample());
        let acc = format!("{:.3}", 0.75);
        assert!(text.contains("mean ± std"), "{text}");
        assert!(text.contains(&format!("{acc} ± 0.000")), "{text}");
        assert!(text.contains("[[3, 1], [1, 3]]"), "{text}");
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("0 ") || l.starts_with("1 "))
                .count(),
            4
        );
        // The ensemble comes first, then the worst mistakes with their paths.
        let first_row = text.lines().nth(3).unwrap();
        assert!(first_row.starts_with("ensemble of 0, 1"), "{text}");
        assert!(
            text.contains("real scored as fake  0.600    real/r1.jpg")
                && text.contains("fake/easy_1.jpg"),
            "{text}"
        );
    }

    #[test]
    fn a_single_fold_is_listed_once() {
        let two = sample();
        let fold = two.folds[0].clone();
        let one = EvalMetrics {
            ensemble: EnsembleEval {
                folds: vec![0],
                ..two.ensemble.clone()
            },
            folds: vec![fold],
            cross_validation: None,
            ..two
        };
        let text = console_table(&one);
        // One row in the metrics table, one per difficulty in the detail table.
        assert_eq!(text.matches("0 (the model)").count(), 2, "{text}");
        let fold_rows = text
            .lines()
            .filter(|l| l.starts_with("0 ") && !l.starts_with("0 (the model)"));
        assert_eq!(fold_rows.count(), 0, "{text}");
        assert_eq!(markdown_report(&one).matches("| 0 |").count(), 0);
    }

    #[test]
    fn a_backbone_not_pretrained_is_said_first_everywhere() {
        let pretrained = sample();
        assert!(!console_table(&pretrained).contains("NOT PRETRAINED"));
        assert!(markdown_report(&pretrained).contains("checkpoints written 2026-12-02"));
        let random = EvalMetrics {
            pretrained: Some(false),
            ..sample()
        };
        let text = console_table(&random);
        assert!(text.starts_with("*** NOT PRETRAINED"), "{text}");
        let md = markdown_report(&random);
        assert!(
            md.lines().nth(2).unwrap().starts_with("> **NOT PRETRAINED"),
            "{md}"
        );
        let unknown = EvalMetrics {
            pretrained: None,
            ..sample()
        };
        assert!(console_table(&unknown).starts_with("*** NOT PRETRAINED"));
    }

    #[test]
    fn markdown_links_every_figure() {
        let md = markdown_report(&sample());
        for (file, _) in FIGURES {
            assert!(md.contains(&format!("]({file})")), "{file} missing");
        }
        assert!(md.contains("| 0 | 8 |"), "{md}");
    }

    #[test]
    fn html_embeds_figures_and_escapes_text() {
        let dir = tempfile::tempdir().unwrap();
        for (file, _) in FIGURES {
            std::fs::write(dir.path().join(file), [0x89, b'P', b'N', b'G']).unwrap();
        }
        let html = html_report(&sample(), dir.path()).unwrap();
        assert_eq!(
            html.matches("src=\"data:image/png;base64,iVBORw==\"")
                .count(),
            3
        );
        assert!(html.contains("exp&lt;1&gt;") && !html.contains("exp<1>"));
        assert!(html_report(&sample(), &dir.path().join("missing")).is_err());
    }
}
