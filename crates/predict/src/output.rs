//! The result table: one row per input file, as CSV or JSON lines.
//!
//! Columns: `path`, `p_fake`, `label` (`real`/`fake`), `error` (the reject reason, e.g.
//! `truncated`), `detail` (the human-readable message), and `heatmap` (the PNG written) when
//! heatmaps are on. A scored file has empty `error`/`detail`; a rejected one empty
//! `p_fake`/`label` (JSON: `null`).

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// Output format of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// What happened to one file.
pub enum Outcome {
    Scored { p_fake: f32, label: Label },
    Rejected { reason: String, detail: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Real,
    Fake,
}

impl Label {
    /// `Fake` when `p_fake >= threshold`.
    pub fn at(p_fake: f32, threshold: f64) -> Self {
        if f64::from(p_fake) >= threshold {
            Label::Fake
        } else {
            Label::Real
        }
    }
}

/// One row of the table.
pub struct Row {
    pub path: String,
    pub outcome: Outcome,
    pub heatmap: Option<String>,
}

#[derive(Serialize)]
struct Record<'a> {
    path: &'a str,
    p_fake: Option<f32>,
    label: Option<Label>,
    error: Option<&'a str>,
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    heatmap: Option<Option<&'a str>>,
}

impl<'a> Record<'a> {
    fn new(row: &'a Row, heatmaps: bool) -> Self {
        let (p_fake, label, error, detail) = match &row.outcome {
            Outcome::Scored { p_fake, label } => (Some(*p_fake), Some(*label), None, None),
            Outcome::Rejected { reason, detail } => {
                (None, None, Some(reason.as_str()), Some(detail.as_str()))
            }
        };
        let heatmap = heatmaps.then_some(row.heatmap.as_deref());
        Self {
            path: &row.path,
            p_fake,
            label,
            error,
            detail,
            heatmap,
        }
    }
}

/// Streams rows to `W` in the chosen format.
pub struct RowWriter<W: Write> {
    sink: Sink<W>,
    heatmaps: bool,
}

enum Sink<W: Write> {
    /// Boxed: the CSV writer carries a few hundred bytes of state.
    Csv(Box<csv::Writer<W>>),
    Jsonl(W),
}

impl<W: Write> RowWriter<W> {
    /// A writer of `format`; the `heatmap` column exists only when `heatmaps` is set.
    pub fn new(format: Format, heatmaps: bool, out: W) -> Self {
        let sink = match format {
            Format::Csv => Sink::Csv(Box::new(csv::Writer::from_writer(out))),
            Format::Jsonl => Sink::Jsonl(out),
        };
        Self { sink, heatmaps }
    }

    pub fn write(&mut self, row: &Row) -> Result<()> {
        let record = Record::new(row, self.heatmaps);
        match &mut self.sink {
            Sink::Csv(w) => w.serialize(&record).context("writing a CSV row")?,
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, &record).context("writing a JSON line")?;
                w.write_all(b"\n").context("writing a JSON line")?;
            }
        }
        Ok(())
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> Result<W> {
        match self.sink {
            Sink::Csv(w) => w
                .into_inner()
                .map_err(|e| anyhow::anyhow!("flushing the CSV output: {}", e.error())),
            Sink::Jsonl(mut w) => {
                w.flush().context("flushing the JSON lines output")?;
                Ok(w)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                path: "a, b.jpg".into(),
                outcome: Outcome::Scored {
                    p_fake: 0.75,
                    label: Label::at(0.75, 0.5),
                },
                heatmap: Some("out/a, b.png".into()),
            },
            Row {
                path: "bad.png".into(),
                outcome: Outcome::Rejected {
                    reason: "truncated".into(),
                    detail: "truncated image data".into(),
                },
                heatmap: None,
            },
        ]
    }

    fn render(format: Format, heatmaps: bool) -> String {
        let mut w = RowWriter::new(format, heatmaps, Vec::new());
        for row in rows() {
            w.write(&row).unwrap();
        }
        String::from_utf8(w.into_inner().unwrap()).unwrap()
    }

    #[test]
    fn csv_has_a_header_quotes_and_empty_cells() {
        assert_eq!(
            render(Format::Csv, false),
            "path,p_fake,label,error,detail\n\"a, b.jpg\",0.75,fake,,\nbad.png,,,truncated,truncated image data\n"
        );
        assert_eq!(
            render(Format::Csv, true).lines().collect::<Vec<_>>(),
            [
                "path,p_fake,label,error,detail,heatmap",
                "\"a, b.jpg\",0.75,fake,,,\"out/a, b.png\"",
                "bad.png,,,truncated,truncated image data,"
            ]
        );
    }

    #[test]
    fn json_lines_hold_nulls_for_missing_values() {
        let text = render(Format::Jsonl, false);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                serde_json::json!({"path": "a, b.jpg", "p_fake": 0.75, "label": "fake", "error": null, "detail": null}),
                serde_json::json!({"path": "bad.png", "p_fake": null, "label": null, "error": "truncated", "detail": "truncated image data"}),
            ]
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(
                render(Format::Jsonl, true).lines().nth(1).unwrap()
            )
            .unwrap()["heatmap"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn the_threshold_itself_counts_as_fake() {
        assert_eq!(Label::at(0.5, 0.5), Label::Fake);
        assert_eq!(Label::at(0.4999, 0.5), Label::Real);
    }
}
