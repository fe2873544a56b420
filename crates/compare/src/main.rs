//! dfd-compare: writes `<data>/runs/comparison.{md,html,csv}`, the table of every evaluated run,
//! and prints the markdown. With no evaluated run it says so and exits successfully, writing
//! nothing.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Compare every evaluated run under <data-dir>/runs/: writes runs/comparison.md, .html and .csv
/// and prints the markdown table.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Root of the on-disk layout.
    #[arg(long, env = "DFD_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
}

fn main() -> std::process::ExitCode {
    dfd_layout::cli::init_tracing();
    dfd_layout::cli::exit("dfd-compare", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    match dfd_compare::compare(&args.data_dir)? {
        Some(done) => {
            print!("{}", done.markdown);
            let [md, html, csv] = done.files.map(|f| f.display().to_string());
            tracing::info!("{} rows: wrote {md}, {html} and {csv}", done.rows);
        }
        None => tracing::warn!(
            "no evaluated run under {}: nothing to compare (dfd-compare reads \
             runs/<pipeline>/<run-id>/eval/metrics.json; run dfd-evaluate first)",
            args.data_dir.join("runs").display()
        ),
    }
    Ok(())
}
