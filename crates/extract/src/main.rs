//! `dfd-extract`: image shards → frozen backbone → feature shards, resumable and sliceable.
//!
//! Fills `features/<dataset>/<backbone>/s<S>-<cut>/{train/a0..aK,test/a0}/` from the matching
//! `prepared/` image shards. Rerunning after a kill finishes only the missing shards; a feature
//! directory made from other inputs or weights is an error. When every directory is complete it
//! writes `runs/<pipeline>/<run-id>/stages/extract.done`.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use dfd_extract::{extract_dir, peak_rss_bytes, stage, DirJob, FeatureSpec};
use dfd_layout::backbone_key;
use dfd_layout::cli::{exit, init_tracing, mark_done, progress, CommonArgs, SliceArgs};
use dfd_layout::config::DeviceSpec;
use dfd_model::{
    parse_device, resolve_weights, Arch, Backbone, DType, ResolvedWeights, WeightsSource,
};
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
    /// Device of the backbone, `cpu` or `cuda:N` (needs a build with the `cuda` feature);
    /// overrides `extract.device`.
    #[arg(long)]
    device: Option<DeviceSpec>,
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
    let ctx = args.common.load()?;
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
    let spec = stage::feature_spec(&ctx.config, &weights)?;
    let batch_size = args.batch_size.unwrap_or(x.batch_size).max(1);
    let rebuild = args.common.command("dfd-preprocess", false);
    let jobs = stage::plan_all(&ctx.data, &ctx.config, &spec, &rebuild)?
        .into_iter()
        .map(|plan| DirJob::open(plan, &args.slice))
        .collect::<Result<Vec<_>>>()?;
    let todo: usize = jobs.iter().map(DirJob::todo_rows).sum();

    let seconds = if todo == 0 {
        info!("nothing to do: every feature shard of this process is already written");
        0.0
    } else {
        let device = args.device.as_ref().unwrap_or(&x.device);
        compute(&jobs, &spec, &weights, device, batch_size, todo)?
    };

    let mut complete = true;
    for job in &jobs {
        complete &= job.finish(&spec)?;
    }
    let peak_rss_mib = peak_rss_bytes().map_or("n/a".into(), |b| {
        format!("{:.1}", b as f64 / f64::from(1 << 20))
    });
    info!(
        images = todo,
        seconds = %format!("{seconds:.1}"),
        img_per_s = %format!("{:.2}", todo as f64 / seconds.max(1e-9)),
        %peak_rss_mib,
        "extract finished"
    );
    if !complete {
        info!("this process's shards are written; the directories complete when the other --shard-index processes finish theirs");
        return Ok(());
    }
    let directories: Vec<_> = jobs
        .iter()
        .map(|j| serde_json::json!({"dir": j.plan.output, "rows": j.plan.input.index().rows, "shards": j.plan.n_shards()}))
        .collect();
    let summary = serde_json::json!({
        "backbone": backbone_key(x.arch, &weights.identity),
        "meta": spec.meta(),
        "directories": directories,
        "images_computed": todo,
        "seconds": seconds,
    });
    mark_done(&ctx.run, "extract", &summary).context("writing the extract stage marker")
}

/// Loads the backbone on `device` and fills every job's missing shards, with a progress bar.
/// Returns the seconds spent extracting (reading, computing, writing; not loading the model).
fn compute(
    jobs: &[DirJob],
    spec: &FeatureSpec,
    weights: &ResolvedWeights,
    device: &DeviceSpec,
    batch_size: usize,
    todo: usize,
) -> Result<f64> {
    let device = parse_device(device.as_str())?;
    let backbone = Backbone::load(&spec.arch, weights, &device, DType::F32)
        .with_context(|| format!("loading the {} backbone", spec.arch_name))?;
    info!(
        images = todo,
        cut = %spec.cut,
        dtype = %spec.dtype,
        shape = %spec.row_shape().iter().map(ToString::to_string).collect::<Vec<_>>().join("x"),
        batch_size,
        "extracting features"
    );
    let started = Instant::now();
    let bar = progress(todo as u64, "img");
    for job in jobs.iter().filter(|j| !j.todo.is_empty()) {
        bar.set_message(job.plan.output.display().to_string());
        info!(dir = %job.plan.output.display(), to_write = job.todo.len(), of = job.plan.n_shards(), "feature shards");
        extract_dir(job, spec, &backbone, &device, batch_size, &bar)?;
    }
    bar.finish_and_clear();
    Ok(started.elapsed().as_secs_f64())
}
