//! `dfd-export`: a trained run → one model file (see `dfd_model::bundle` for its contents) that
//! `dfd-predict --model` uses with nothing else, and `scripts/torch_predict.py` loads in PyTorch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_WEIGHTS};
use dfd_layout::cli::{exit, init_tracing, CommonArgs};
use dfd_layout::PipelineConfig;
use dfd_model::{
    resolve_weights, write_bundle, Arch, BundleMeta, Device, Head, HeadSpec, WeightsSource,
};

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

/// Write a trained run as one model file: the backbone, the head of each exported fold, and
/// metadata (architecture, cut, input size, resize rule, mean/std, thresholds, weights identity,
/// whether pretrained, the pipeline). `dfd-predict --model <file> <images>` needs nothing else.
#[derive(Parser, Debug)]
#[command(name = "dfd-export", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// `k` exports fold k's model; `ensemble` (the default, what `dfd-predict --run` uses) every
    /// trained fold, whose P(fake) is averaged.
    #[arg(long, default_value = "ensemble")]
    fold: String,
    /// Checkpoint of each fold: best, last, or another name (default: evaluate.checkpoint).
    #[arg(long)]
    checkpoint: Option<String>,
    /// The model file to write (safetensors).
    #[arg(long, short)]
    output: PathBuf,
}

fn main() -> ExitCode {
    init_tracing();
    exit("dfd-export", run(&Args::parse()))
}

fn run(args: &Args) -> Result<()> {
    let ctx = args.common.load()?;
    let run = &ctx.run;
    let config = PipelineConfig::load(&run.config()).with_context(|| {
        format!(
            "reading the run's config {} (train this run first)",
            run.config().display()
        )
    })?;
    let folds = match args.fold.as_str() {
        "ensemble" => run
            .trained_folds()
            .with_context(|| format!("listing the folds of {}", run.path().display()))?,
        k => vec![k
            .parse()
            .with_context(|| format!("--fold must be a fold number or `ensemble`, got `{k}`"))?],
    };
    if folds.is_empty() {
        bail!(
            "{} has no trained fold: train it first",
            run.path().display()
        );
    }
    let tag = args
        .checkpoint
        .as_deref()
        .unwrap_or(&config.evaluate.checkpoint);
    let arch: Arch = config.extract.arch.as_str().parse()?;
    let source = WeightsSource::from_config(config.extract.weights.as_str(), ctx.data.root())?;
    let weights = resolve_weights(&source, &arch)
        .with_context(|| format!("finding the backbone weights {source}"))?;

    let rebuild = args.common.command("dfd-train", true);
    let (mut specs, mut varmaps, mut eer) = (Vec::new(), Vec::new(), Vec::new());
    for &k in &folds {
        let dir = run.fold(k).checkpoint(tag);
        let checkpoint = Checkpoint::open(&dir, &rebuild)
            .with_context(|| format!("opening fold {k}'s checkpoint {}", dir.display()))?;
        let spec: HeadSpec = checkpoint.head_spec()?;
        let (_, varmap) = Head::load(&spec, &checkpoint.file(CHECKPOINT_WEIGHTS), &Device::Cpu)?;
        eer.push(
            checkpoint
                .state()
                .best
                .as_ref()
                .and_then(|b| b.val_eer_threshold),
        );
        specs.push(spec);
        varmaps.push(varmap);
    }
    let meta = BundleMeta {
        arch: config.extract.arch.to_string(),
        cut: config.extract.cut.to_string(),
        input_size: config.preprocess.size as usize,
        folds: folds.clone(),
        heads: specs,
        threshold: config.evaluate.threshold,
        eer_thresholds: eer,
        weights_identity: weights.identity.clone(),
        pretrained: source.is_pretrained(),
        pipeline: config.to_toml()?,
        checkpoint: tag.to_string(),
    };
    write_bundle(
        &args.output,
        &arch,
        &weights,
        &varmaps.iter().collect::<Vec<_>>(),
        &meta,
    )?;
    println!(
        "dfd-export: wrote {}: {} cut at {}, {} px, fold(s) {} (`{tag}`), weights {}{}",
        args.output.display(),
        meta.arch,
        meta.cut,
        meta.input_size,
        dfd_layout::cli::list(&folds),
        meta.weights_identity,
        if meta.pretrained {
            ""
        } else {
            " (NOT pretrained)"
        }
    );
    Ok(())
}
