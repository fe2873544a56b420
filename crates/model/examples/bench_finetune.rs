//! Throughput of one layer4 fine-tune step on the CPU: layer4 (BatchNorm in train mode) + avgpool
//! + fc forward, cross-entropy, backward and a candle-nn AdamW update, over random layer3 maps.
//!
//! `cargo run --release -p dfd-model --example bench_finetune -- --batch 64 --map 14`
//! Prints the median samples/s over `--reps` timed steps after one warm-up step, with the median
//! split into forward and backward+update.

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

use std::time::Instant;

use anyhow::Context;
use candle_nn::{loss::cross_entropy, AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use clap::Parser;
use dfd_model::{init_layer4_from, Arch, DType, Device, Head, HeadSpec, ResolvedWeights, Tensor};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Side of the layer3 maps (14 for 224 px images, 8 for 128 px).
    #[arg(long, default_value_t = 14)]
    map: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

fn main() -> anyhow::Result<()> {
    dfd_alloc::keep_freed_memory();
    let args = Args::parse();
    let arch = Arch::resnext50_32x4d();
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let spec = HeadSpec::FinetuneLayer4 {
        arch: arch.clone(),
        dropout: 0.5,
    };
    let head = Head::new_seeded(
        &spec,
        VarBuilder::from_varmap(&varmap, DType::F32, &device),
        0,
    )
    .context("building the fine-tune head")?;
    let weights = ResolvedWeights::random(0);
    init_layer4_from(&varmap, &weights, &arch)?;
    let mut opt = AdamW::new(
        head.trainable_vars(),
        ParamsAdamW {
            lr: 1e-4,
            weight_decay: 1e-2,
            ..Default::default()
        },
    )?;
    let x = Tensor::randn(
        0f32,
        1.0,
        (
            args.batch,
            arch.channels(dfd_model::Cut::Layer3),
            args.map,
            args.map,
        ),
        &device,
    )?
    .relu()?;
    let labels: Vec<u32> = (0..args.batch as u32).map(|i| i % 2).collect();
    let labels = Tensor::new(labels.as_slice(), &device)?;

    let mut rng = rand::rng();
    // One step: (forward seconds, backward + update seconds).
    let mut step = || -> candle_core::Result<(f64, f64)> {
        let start = Instant::now();
        let pass = head.forward_train(&x, &mut rng)?;
        let loss = cross_entropy(&pass.logits, &labels)?;
        let forward = start.elapsed().as_secs_f64();
        opt.step(&pass.backward(&loss)?)?;
        Ok((forward, start.elapsed().as_secs_f64() - forward))
    };
    step().context("warm-up step")?;
    let mut times = (0..args.reps.max(1))
        .map(|_| step())
        .collect::<candle_core::Result<Vec<_>>>()
        .context("timed steps")?;
    times.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (forward, backward) = times[times.len() / 2];
    let total = forward + backward;
    println!(
        "layer4+fc fine-tune step, batch {} at {}x{}: {total:.3} s/step (forward {forward:.3}, \
         backward+AdamW {backward:.3}), {:.2} samples/s (median of {})",
        args.batch,
        args.map,
        args.map,
        args.batch as f64 / total,
        times.len()
    );
    Ok(())
}
