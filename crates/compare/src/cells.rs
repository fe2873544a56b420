//! The comparison as people read it: the table's header and cells, the banners that warn about
//! rows whose numbers do not measure detection quality, and the study's experiments. The
//! markdown and HTML files render exactly these texts (escaped for their format); the CSV has
//! plain numbers instead.

use crate::collect::Row;
use crate::evaluation::Estimate;

/// The columns of the table.
pub const HEADER: [&str; 16] = [
    "pipeline",
    "run",
    "data set",
    "model",
    "size",
    "cut",
    "head",
    "weights",
    "pretrained",
    "n",
    "accuracy [95% CI]",
    "AUC [95% CI]",
    "EER",
    "AP",
    "study",
    "Δ study",
];

/// Index of the `pretrained` column in [`HEADER`] (marked in not-pretrained rows).
pub const PRETRAINED_COLUMN: usize = 8;

/// The mark of a row whose backbone was not pretrained, as its `pretrained` cell shows it.
pub const NOT_PRETRAINED: &str = "NOT PRETRAINED";

/// The cells of one row, in [`HEADER`]'s order. Missing values are `–`, except the study
/// columns, empty for rows without a study figure.
pub fn cells(row: &Row) -> [String; 16] {
    let s = &row.scores;
    let dataset = match row.in_domain {
        true => row.dataset.clone(),
        false => format!("{} (cross-data-set)", row.dataset),
    };
    let pretrained = match row.pretrained {
        Some(true) => "yes",
        Some(false) => NOT_PRETRAINED,
        None => "unknown",
    };
    let (study, delta) = match &row.study {
        Some(f) => (
            percent(f.test_accuracy),
            points(s.accuracy.value - f.test_accuracy),
        ),
        None => (String::new(), String::new()),
    };
    [
        row.pipeline.clone(),
        row.run_id.clone(),
        dataset,
        row.model.to_string(),
        row.size.to_string(),
        row.cut.clone(),
        row.head.clone(),
        row.weights.clone(),
        pretrained.to_string(),
        s.n.to_string(),
        with_interval(s.accuracy, percent, |x| format!("{:.1}", x * 100.0)),
        s.roc_auc
            .map_or_else(dash, |a| with_interval(a, fraction, fraction)),
        s.eer.map_or_else(dash, percent),
        s.average_precision.map_or_else(dash, fraction),
        study,
        delta,
    ]
}

/// The warnings the markdown and HTML open with, in plain words: one when a row's backbone was
/// not pretrained, one when a row does not say whether it was. None when every row was.
pub fn banners(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    if rows.iter().any(Row::not_pretrained) {
        out.push(format!(
            "{NOT_PRETRAINED}: rows marked {NOT_PRETRAINED} used a backbone with random weights, \
             not ImageNet-pretrained ones: their numbers do not measure detection quality. They \
             only show that the pipeline runs and learns."
        ));
    }
    if rows.iter().any(|r| r.pretrained.is_none()) {
        out.push(
            "PRETRAINED UNKNOWN: rows marked unknown come from evaluations that do not record \
             whether the backbone was pretrained (a metrics.json of schema 1, or features that do \
             not say): do not read them as detection quality before dfd-evaluate has scored them \
             again."
                .to_string(),
        );
    }
    out
}

/// What the table shows, in a few sentences.
pub fn legend(rows: &[Row]) -> String {
    let mut runs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.pipeline.as_str(), r.run_id.as_str()))
        .collect();
    runs.dedup();
    format!(
        "{} evaluation{} of {} run{} under runs/, one row each: of the run's own test split \
         (eval/metrics.json in the run's folder), or of another data set (eval/NAME/metrics.json, \
         marked cross-data-set). The model is the fold ensemble (the mean P(fake) over the folds, \
         as dfd-predict scores), or for older evaluations one fold or the mean of the folds' \
         metrics. Accuracy and AUC come with their bootstrap 95% intervals. \"study\" is the test \
         accuracy the study reports for the experiment the pipeline reproduces (its [study] \
         section), and \"Δ study\" our accuracy minus it, in percentage points.",
        rows.len(),
        plural(rows.len()),
        runs.len(),
        plural(runs.len()),
    )
}

/// The study's experiments the rows reproduce: `(pipeline, sentence)`, one per pipeline and
/// distinct text, in row order.
pub fn study_notes(rows: &[Row]) -> Vec<(String, String)> {
    let mut notes: Vec<(String, String)> = Vec::new();
    for row in rows {
        let Some(f) = &row.study else { continue };
        let what = f
            .experiment
            .as_deref()
            .map_or_else(String::new, |e| format!("{e}: "));
        let note = (
            row.pipeline.clone(),
            format!(
                "{what}the study reports {} test accuracy",
                percent(f.test_accuracy)
            ),
        );
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    notes
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn dash() -> String {
    "–".to_string()
}

/// `0.6774` → `67.7%`.
fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// `0.7123` → `0.712`.
fn fraction(x: f64) -> String {
    format!("{x:.3}")
}

/// A difference of fractions in percentage points: `-0.024` → `-2.4 pp` (never `-0.0`).
fn points(d: f64) -> String {
    let tenths = (d * 1000.0).round();
    let tenths = if tenths == 0.0 { 0.0 } else { tenths };
    format!("{:+.1} pp", tenths / 10.0)
}

/// `value [lower, upper]`, or the value alone without an interval.
fn with_interval(e: Estimate, value: fn(f64) -> String, bound: fn(f64) -> String) -> String {
    match e.interval {
        Some(i) => format!(
            "{} [{}, {}]",
            value(e.value),
            bound(i.lower),
            bound(i.upper)
        ),
        None => value(e.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_plainly() {
        assert_eq!(percent(0.6774), "67.7%");
        assert_eq!(fraction(0.71234), "0.712");
        assert_eq!(points(0.653 - 0.677), "-2.4 pp");
        assert_eq!(points(0.0004), "+0.0 pp");
        assert_eq!(points(-0.0004), "+0.0 pp");
        assert_eq!(points(0.03), "+3.0 pp");
        let e = Estimate {
            value: 0.7,
            interval: Some(crate::evaluation::Interval {
                lower: 0.61,
                upper: 0.785,
            }),
        };
        assert_eq!(
            with_interval(e, percent, |x| format!("{:.1}", x * 100.0)),
            "70.0% [61.0, 78.5]"
        );
        assert_eq!(with_interval(e, fraction, fraction), "0.700 [0.610, 0.785]");
    }
}
