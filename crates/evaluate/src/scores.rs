//! `eval/scores.csv`: every test image's P(fake) under each scored fold and under their ensemble,
//! and the worst mistakes drawn from it.

use std::path::Path;

use anyhow::{Context, Result};

use crate::schema::{Mistakes, ScoredImage};

/// Per-image scores of one evaluation, in test-feature row order.
pub struct ScoreTable<'a> {
    pub ids: &'a [u32],
    /// Manifest paths (escaped form of `manifest.csv`), one per row.
    pub paths: Vec<&'a str>,
    pub labels: &'a [u8],
    pub difficulty: &'a [Option<&'a str>],
    /// Scored folds, and each one's P(fake) per row.
    pub folds: &'a [u8],
    pub per_fold: &'a [Vec<f64>],
    /// The mean over folds per row ([`dfd_model::ensemble`], what `dfd-predict` reports).
    pub ensemble: &'a [f64],
}

impl ScoreTable<'_> {
    /// Writes the table as CSV (RFC 4180 quoting, readable with `pandas.read_csv`):
    /// `id,path,true_label,difficulty,p_fake_fold<k>…,ensemble`; `true_label` 0 real / 1 fake,
    /// `difficulty` empty when the name carries none, scores in shortest round-trip form.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["id".to_string(), "path".into(), "true_label".into()];
        header.push("difficulty".into());
        header.extend(self.folds.iter().map(|k| format!("p_fake_fold{k}")));
        header.push("ensemble".into());
        out.write_record(&header)?;
        for row in 0..self.ids.len() {
            let mut record = vec![
                self.ids[row].to_string(),
                self.paths[row].to_string(),
                self.labels[row].to_string(),
                self.difficulty[row].unwrap_or("").to_string(),
            ];
            record.extend(self.per_fold.iter().map(|scores| scores[row].to_string()));
            record.push(self.ensemble[row].to_string());
            out.write_record(&record)?;
        }
        let bytes = out.into_inner().context("formatting scores.csv")?;
        dfd_layout::atomic::write_atomic(path, &bytes)
    }

    /// The `n` real images with the highest ensemble P(fake) and the `n` fakes with the lowest,
    /// worst first (ties by path).
    pub fn worst(&self, n: usize) -> Mistakes {
        let pick = |label: u8, worst_first: fn(f64, f64) -> std::cmp::Ordering| {
            let mut rows: Vec<usize> = (0..self.ids.len())
                .filter(|&r| self.labels[r] == label)
                .collect();
            rows.sort_by(|&a, &b| {
                worst_first(self.ensemble[a], self.ensemble[b])
                    .then_with(|| self.paths[a].cmp(self.paths[b]))
            });
            rows.into_iter()
                .take(n)
                .map(|r| ScoredImage {
                    path: self.paths[r].to_string(),
                    p_fake: self.ensemble[r],
                })
                .collect()
        };
        Mistakes {
            real_flagged: pick(0, |a, b| b.total_cmp(&a)),
            fakes_missed: pick(1, |a, b| a.total_cmp(&b)),
        }
    }
}
