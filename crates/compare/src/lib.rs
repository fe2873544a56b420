//! dfd-compare: the study's table. Collects every evaluated run under `<data>/runs/`
//! ([`collect`]) and writes `runs/comparison.md` ([`markdown`]), `runs/comparison.html`
//! ([`html`]) and `runs/comparison.csv` ([`table_csv`]): one row per run and evaluated data set,
//! with what the run was made with, its headline metrics and the study's figure where the
//! pipeline reproduces one of its experiments. Rows whose backbone was not pretrained are marked,
//! and the markdown and HTML then open with a banner saying their numbers do not measure
//! detection quality.
//!
//! It reads only `config.toml` and `metrics.json` files, never models or features.

pub mod cells;
pub mod collect;
pub mod evaluation;
pub mod html;
pub mod markdown;
pub mod table_csv;

use std::path::{Path, PathBuf};

use anyhow::Result;
use dfd_layout::atomic::write_atomic;

/// The file names written into `runs/`, without their extension `.md`, `.html`, `.csv`.
pub const STEM: &str = "comparison";

/// What [`compare`] wrote.
pub struct Comparison {
    /// The number of rows.
    pub rows: usize,
    /// The markdown document (as in `comparison.md`).
    pub markdown: String,
    /// The files written: `comparison.md`, `.html`, `.csv`.
    pub files: [PathBuf; 3],
}

/// Compares every evaluation under `<data_dir>/runs/` and writes the three files there, each
/// atomically; the same layout always gives the same bytes. `None` when there is no readable
/// evaluation: then nothing is written (earlier `comparison.*` files are left as they are).
pub fn compare(data_dir: &Path) -> Result<Option<Comparison>> {
    let runs = data_dir.join("runs");
    let rows = collect::collect(&runs);
    if rows.is_empty() {
        return Ok(None);
    }
    let markdown = markdown::render(&rows);
    let files = ["md", "html", "csv"].map(|ext| runs.join(format!("{STEM}.{ext}")));
    write_atomic(&files[0], markdown.as_bytes())?;
    write_atomic(&files[1], html::render(&rows).as_bytes())?;
    write_atomic(&files[2], table_csv::render(&rows)?.as_bytes())?;
    Ok(Some(Comparison {
        rows: rows.len(),
        markdown,
        files,
    }))
}
