//! Inference throughput of the backbone on the CPU (random weights, random input).
//!
//! `cargo run --release -p dfd-model --example bench_forward -- --size 224 --batch 8 --cut pooled [--compute bf16 [--no-amx]] [--no-direct]`
//! Prints the median images/s over `--reps` timed batches after one warm-up batch, under the stage
//! binaries' allocator (`dfd-alloc`), then the achieved GFLOP/s (`Arch::flops`) as a share of the
//! machine's f32 GEMM peak measured right after (`dfd_ops::roofline`).

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

use std::time::Instant;

use anyhow::Context;
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use dfd_layout::config::compute::bf16_usable;
use dfd_layout::config::ComputeType;
use dfd_model::{
    with_compute, Arch, Backbone, BnMode, Cut, DType, Device, Network, ResolvedWeights, Tensor,
};

type Forward = Box<dyn Fn(&Tensor, Cut) -> candle_core::Result<Tensor>>;

/// The network under test: the inference [`Backbone`] (random weights), or with `unfused` a
/// trainable-mode [`Network`] run in eval mode.
fn model(arch: &Arch, unfused: bool) -> anyhow::Result<Forward> {
    if unfused {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let network = Network::new(&vb, arch, BnMode::Trainable { momentum: 0.1 })
            .context("building the unfused network")?;
        return Ok(Box::new(move |x, cut| {
            network.forward_range(x, None, cut, false)
        }));
    }
    let weights = ResolvedWeights::random(0);
    let backbone = Backbone::load(arch, &weights, &Device::Cpu, DType::F32)
        .context("building the random backbone")?;
    Ok(Box::new(move |x, cut| backbone.forward_to(x, cut)))
}

#[derive(Parser)]
struct Args {
    /// Input side in pixels.
    #[arg(long, default_value_t = 224)]
    size: usize,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Where to stop (stem, layer1 … layer4, pooled, logits).
    #[arg(long, default_value = "pooled")]
    cut: Cut,
    /// Architecture name (resnext50_32x4d, resnet50, resnext101_32x8d).
    #[arg(long, default_value = "resnext50_32x4d")]
    arch: String,
    /// Run the same network with BatchNorm as separate candle ops after each conv (the
    /// fine-tune path in eval mode, variables from a VarMap) instead of folded into the convs: the
    /// A/B reference for the fused eval path.
    #[arg(long)]
    unfused: bool,
    /// Timed batches (after one warm-up batch).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// The GEMMs' arithmetic, as `extract.compute`: `f32` or `bf16` (AVX512-BF16, or
    /// `DFD_BF16=emulate`).
    #[arg(long, default_value = "f32")]
    compute: ComputeType,
    /// With `--compute bf16` on a CPU with AMX: use the AVX512-BF16 kernel instead, to compare
    /// the two.
    #[arg(long)]
    no_amx: bool,
    /// Run the grouped 3×3 convolutions as im2col + GEMM instead of the direct AVX-512 kernel,
    /// to compare the two.
    #[arg(long)]
    no_direct: bool,
}

/// `f32`, or `bf16 (<kernel>)`.
fn compute_name(compute: ComputeType) -> String {
    if compute.is_f32() {
        compute.to_string()
    } else {
        format!("{compute} ({})", dfd_ops::compute::kernel_name())
    }
}

fn main() -> anyhow::Result<()> {
    dfd_alloc::keep_freed_memory();
    let args = Args::parse();
    let arch: Arch = args.arch.parse().context("parsing --arch")?;
    if args.compute == ComputeType::Bf16 {
        bf16_usable().context("--compute bf16")?;
    }
    dfd_ops::compute::allow_amx(!args.no_amx);
    dfd_ops::allow_direct_conv(!args.no_direct);
    let model = model(&arch, args.unfused)?;
    let forward = |x: &Tensor, cut| with_compute(args.compute, || model(x, cut));
    let x = Tensor::randn(
        0f32,
        1.0,
        (args.batch, 3, args.size, args.size),
        &Device::Cpu,
    )?;
    forward(&x, args.cut).context("warm-up batch")?;
    let mut secs = (0..args.reps.max(1))
        .map(|_| {
            let start = Instant::now();
            forward(&x, args.cut)?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect::<candle_core::Result<Vec<f64>>>()
        .context("timed batches")?;
    secs.sort_by(f64::total_cmp);
    let median = secs[secs.len() / 2];
    println!(
        "{} {} px batch {} -> {}{}, {}: {:.3} s/batch, {:.2} img/s (median of {})",
        args.arch,
        args.size,
        args.batch,
        args.cut,
        if args.unfused { " (BN unfused)" } else { "" },
        compute_name(args.compute),
        median,
        args.batch as f64 / median,
        secs.len()
    );
    let achieved = args.batch as f64 * arch.flops(args.size, args.cut) / median / 1e9;
    println!(
        "  {}",
        dfd_ops::roofline::GemmPeak::measure().line(achieved)
    );
    Ok(())
}
