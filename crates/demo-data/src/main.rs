//! `dfd-demo-data`: writes the built-in demo data set (see the library for what is drawn).

use anyhow::Result;
use clap::Parser;
use dfd_demo_data::{generate, DemoParams};
use std::path::PathBuf;

/// Write a procedurally drawn data set of real and spliced (fake) face photos, named like the
/// "Real and Fake Face Detection" set: <out>/real/real_00001.jpg, <out>/fake/easy_001_1100.jpg, ...
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Output directory (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Total number of images.
    #[arg(long, default_value_t = DemoParams::default().count)]
    count: usize,
    /// Fraction of the images that are fake.
    #[arg(long, default_value_t = DemoParams::default().fake_fraction)]
    fake_fraction: f64,
    /// Image side in pixels.
    #[arg(long, default_value_t = DemoParams::default().size)]
    size: u32,
    /// Seed of every random choice.
    #[arg(long, default_value_t = DemoParams::default().seed)]
    seed: u64,
}

fn main() -> std::process::ExitCode {
    dfd_layout::cli::exit("dfd-demo-data", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    let params = DemoParams {
        count: args.count,
        fake_fraction: args.fake_fraction,
        size: args.size,
        seed: args.seed,
    };
    println!("{}", generate(&params, &args.out)?);
    Ok(())
}
