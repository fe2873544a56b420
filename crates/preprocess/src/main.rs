//! dfd-preprocess: scan → split → resize → augment → image shards.
//!
//! Reads `dataset.source` (class sub-folders → labels from `dataset.classes`), writes
//! `prepared/<dataset>/manifest.csv`, `rejects.csv` and `s<S>/<split>/a<k>/` shard directories.
//! Rerunning the same command finishes only what is missing; see `--help`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use dfd_layout::cli::{CommonArgs, SliceArgs};

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

/// Prepare a labelled image folder: validate every file, split it (seeded, stratified holdout test
/// split + k folds), resize like torchvision Resize(S)+CenterCrop(S), augment the train split, and
/// write safetensors image shards under <data-dir>/prepared/<dataset>/.
///
/// Bad files (empty, truncated, unreadable, not an image, over preprocess.max_pixels) are listed in
/// rejects.csv and skipped, and so are symbolic link loops, dangling links, FIFOs, sockets,
/// devices and folders that cannot be listed. A killed run resumes where it stopped when rerun with the same command;
/// on a complete output it does nothing. A changed config against existing shards is an error:
/// delete that output directory or use another --data-dir. Logs: RUST_LOG (default info).
#[derive(Parser, Debug)]
#[command(name = "dfd-preprocess", version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    slice: SliceArgs,
    /// Fail (non-zero exit, after writing rejects.csv) if any input file is rejected.
    #[arg(long)]
    strict: bool,
    /// Worker threads for decoding and resizing (default: one per core).
    #[arg(long, env = "DFD_THREADS")]
    threads: Option<usize>,
}

fn main() -> ExitCode {
    dfd_alloc::keep_freed_memory();
    dfd_layout::cli::init_tracing();
    dfd_layout::cli::exit("dfd-preprocess", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    args.slice.validate()?;
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("starting the worker threads")?;
    }
    let ctx = args.common.load()?;
    let prepared = dfd_preprocess::prepare(&ctx.data, &ctx.config, &args.slice, args.strict)?;
    if prepared.complete {
        dfd_layout::cli::mark_done(&ctx.run, "preprocess", &prepared.summary)?;
    }
    println!("dfd-preprocess: {}", prepared.line);
    Ok(())
}
