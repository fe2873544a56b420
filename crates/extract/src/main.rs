//! `dfd-extract`: image shards → frozen backbone → feature shards, resumable and sliceable.
//!
//! Fills `features/<dataset>/<backbone>/s<S>-<cut>/{train/a0..aK,test/a0}/` from the matching
//! `prepared/` image shards. Rerunning after a kill finishes only the missing shards; a feature
//! directory made from other inputs or weights is an error. When every directory is complete it
//! writes `runs/<pipeline>/<run-id>/stages/extract.done`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use dfd_extract::stage;
use dfd_layout::cli::{exit, init_tracing, mark_done, CommonArgs, DeviceArg, SliceArgs};
use dfd_model::{resolve_weights, Arch, WeightsSource};
use tracing::{info, warn};

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

/// Stage 2: run the frozen backbone over the image shards and cache its features.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    slice: SliceArgs,
    #[command(flatten)]
    device: DeviceArg,
    /// Images per forward pass; overrides `extract.batch_size`. It does not change the bytes
    /// written, so a resumed run may use another one.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Only check the configured weights: find them (cached, local or downloaded), read every
    /// tensor header and verify every key and shape of `extract.arch`, print the source, the file
    /// and the identity, and exit: status 0 when they are usable, 1 (naming the first problem)
    /// when not.
    #[arg(long)]
    check_weights: bool,
}

fn main() -> ExitCode {
    dfd_alloc::keep_freed_memory();
    init_tracing();
    exit("dfd-extract", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    args.slice.validate()?;
    let mut ctx = args.common.load()?;
    args.device.apply(&mut ctx.config)?;
    let x = &ctx.config.extract;
    let source = WeightsSource::from_config(x.weights.as_str(), &args.common.data_dir)?;
    let arch: Arch = x.arch.as_str().parse().context("reading extract.arch")?;
    let weights = resolve_weights(&source, &arch)
        .with_context(|| format!("finding the backbone weights {source}"))?;
    if args.check_weights {
        let file = weights
            .path
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string());
        println!(
            "weights {source}: every tensor of {arch} present with its shape\n  file: {file} ({})\n  identity: {}",
            weights.served_by, weights.identity
        );
        return Ok(());
    }
    if !source.is_pretrained() {
        warn!(weights = %source, "extracting with RANDOM backbone weights: these features are NOT pretrained");
    }
    let batch_size = args.batch_size.unwrap_or(x.batch_size);
    let rebuild = args.common.command("dfd-preprocess", false);
    let extracted = stage::extract(
        &ctx.data,
        &ctx.config,
        &weights,
        batch_size,
        &args.slice,
        &rebuild,
    )?;
    if !extracted.complete {
        info!("this process's shards are written; the directories complete when the other --shard-index processes finish theirs");
        return Ok(());
    }
    mark_done(&ctx.run, "extract", &extracted.summary).context("writing the extract stage marker")
}
