//! `comparison.html`: the markdown's content as one self-contained page (inline style, no
//! external resources), every text escaped.

use crate::cells::{banners, cells, legend, study_notes, HEADER, PRETRAINED_COLUMN};
use crate::collect::Row;

const STYLE: &str = "body{font-family:sans-serif;margin:2em}\
table{border-collapse:collapse;font-size:90%}\
th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;white-space:nowrap}\
th{background:#eee}\
.banner{background:#fde2e1;border:2px solid #c0392b;padding:.6em 1em;margin-bottom:1em;font-weight:bold}\
tr.not-pretrained td{background:#fdecea}\
tr.not-pretrained td.flag{color:#c0392b;font-weight:bold}";

/// The HTML page of `rows` (sorted as they should appear).
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Evaluated runs compared</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Evaluated runs compared</h1>\n"
    );
    for banner in banners(rows) {
        out.push_str(&format!("<p class=\"banner\">{}</p>\n", escape(&banner)));
    }
    out.push_str(&format!("<p>{}</p>\n<table>\n<tr>", escape(&legend(rows))));
    for h in HEADER {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr>\n");
    for row in rows {
        let flagged = row.not_pretrained();
        out.push_str(if flagged {
            "<tr class=\"not-pretrained\">"
        } else {
            "<tr>"
        });
        for (i, cell) in cells(row).iter().enumerate() {
            let class = if flagged && i == PRETRAINED_COLUMN {
                " class=\"flag\""
            } else {
                ""
            };
            out.push_str(&format!("<td{class}>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let notes = study_notes(rows);
    if !notes.is_empty() {
        out.push_str("<h2>The study's experiments</h2>\n<ul>\n");
        for (pipeline, note) in notes {
            out.push_str(&format!(
                "<li><code>{}</code>: {}.</li>\n",
                escape(&pipeline),
                escape(&note)
            ));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

/// Text safe in HTML content and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
