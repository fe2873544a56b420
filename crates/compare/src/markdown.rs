//! `comparison.md`: the banners, the legend, the table and the study's experiments, as
//! GitHub-flavoured markdown (also what `dfd-compare` prints).

use crate::cells::{
    banners, cells, legend, study_notes, HEADER, NOT_PRETRAINED, PRETRAINED_COLUMN,
};
use crate::collect::Row;

/// The markdown document of `rows` (sorted as they should appear).
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from("# Evaluated runs compared\n\n");
    for banner in banners(rows) {
        out.push_str(&format!("> **{}**\n\n", escape(&banner)));
    }
    out.push_str(&format!("{}\n\n", escape(&legend(rows))));
    out.push_str(&line(HEADER.iter().map(|h| h.to_string())));
    out.push_str(&format!("|{}\n", "---|".repeat(HEADER.len())));
    for row in rows {
        let mut cells = cells(row).map(|c| escape(&c));
        if row.not_pretrained() {
            cells[PRETRAINED_COLUMN] = format!("**{NOT_PRETRAINED}**");
        }
        out.push_str(&line(cells.into_iter()));
    }
    let notes = study_notes(rows);
    if !notes.is_empty() {
        out.push_str("\n## The study's experiments\n\n");
        for (pipeline, note) in notes {
            out.push_str(&format!("- `{}`: {}.\n", escape(&pipeline), escape(&note)));
        }
    }
    out
}

fn line(cells: impl Iterator<Item = String>) -> String {
    format!("| {} |\n", cells.collect::<Vec<_>>().join(" | "))
}

/// Text safe in a table cell: `|` escaped, `<` as an entity (no raw HTML), line breaks as spaces.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace(['\n', '\r'], " ")
}
