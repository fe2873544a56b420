//! `comparison.csv`: the rows as data, RFC 4180 (fields quoted when needed, `\n` line ends),
//! readable with `pandas.read_csv`. Numbers are plain, in their own columns (value, lower and
//! upper bounds), in shortest round-trip form; an absent value is an empty field.

use anyhow::{Context, Result};

use crate::collect::Row;

/// The CSV's columns.
pub const COLUMNS: [&str; 24] = [
    "pipeline",
    "run_id",
    "dataset",
    "trained_on",
    "in_domain",
    "model",
    "size",
    "cut",
    "head",
    "weights",
    "pretrained",
    "weights_identity",
    "n",
    "accuracy",
    "accuracy_lower",
    "accuracy_upper",
    "roc_auc",
    "roc_auc_lower",
    "roc_auc_upper",
    "eer",
    "average_precision",
    "study_accuracy",
    "study_experiment",
    "source",
];

/// The CSV text of `rows`: a header line, then one line per row. `pretrained` is `true`,
/// `false` or empty (unknown); `in_domain` `true` or `false`.
pub fn render(rows: &[Row]) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(COLUMNS)?;
    for row in rows {
        out.write_record(record(row))?;
    }
    let bytes = out.into_inner().context("writing the comparison CSV")?;
    String::from_utf8(bytes).context("the comparison CSV is not UTF-8")
}

fn record(row: &Row) -> [String; 24] {
    let s = &row.scores;
    let opt = |x: Option<f64>| x.map_or_else(String::new, |x| x.to_string());
    let acc = s.accuracy.interval;
    let auc = s.roc_auc.and_then(|a| a.interval);
    [
        row.pipeline.clone(),
        row.run_id.clone(),
        row.dataset.clone(),
        row.trained_on.clone(),
        row.in_domain.to_string(),
        row.model.to_string(),
        row.size.to_string(),
        row.cut.clone(),
        row.head.clone(),
        row.weights.clone(),
        row.pretrained.map_or_else(String::new, |p| p.to_string()),
        row.weights_identity.clone().unwrap_or_default(),
        s.n.to_string(),
        s.accuracy.value.to_string(),
        opt(acc.map(|i| i.lower)),
        opt(acc.map(|i| i.upper)),
        opt(s.roc_auc.map(|a| a.value)),
        opt(auc.map(|i| i.lower)),
        opt(auc.map(|i| i.upper)),
        opt(s.eer),
        opt(s.average_precision),
        opt(row.study.as_ref().map(|f| f.test_accuracy)),
        row.study
            .as_ref()
            .and_then(|f| f.experiment.clone())
            .unwrap_or_default(),
        row.source.clone(),
    ]
}
