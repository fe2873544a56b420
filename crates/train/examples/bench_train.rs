//! Training-step throughput on random data, the peer of `scripts/bench_torch.py train`:
//! the MLP head (2048 → 1024 → 512 → 2) or the layer4 fine-tune step over 1024×map×map layer3
//! maps, AdamW (lr 1e-4, weight decay 1e-2), dropout 0.5, batch 64 by default.
//!
//!     cargo run --release -p dfd-train --example bench_train -- --head mlp|finetune [--map 14|8] [--batch 64] [--steps 20] [--compute f32|bf16 [--no-amx]]
//!
//! Prints one JSON line with samples/s (one warm-up step is not timed).

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use dfd_layout::config::compute::bf16_usable;
use dfd_layout::config::ComputeType;
use dfd_model::{with_compute, Arch, Head, HeadSpec};
use dfd_train::optim::{AdamConfig, Optimizer, OptimizerKind};
use dfd_train::step::{named_trainable, train_step, StepSettings};

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// `mlp` or `finetune`.
    #[arg(long, default_value = "mlp")]
    head: String,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Side of the layer3 maps (finetune).
    #[arg(long, default_value_t = 14)]
    map: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// The GEMMs' arithmetic, as `train.compute`: `f32` or `bf16` (AVX512-BF16, or
    /// `DFD_BF16=emulate`).
    #[arg(long, default_value = "f32")]
    compute: ComputeType,
    /// With `--compute bf16` on a CPU with AMX: use the AVX512-BF16 kernel instead, to compare
    /// the two.
    #[arg(long)]
    no_amx: bool,
}

fn main() -> Result<()> {
    dfd_alloc::keep_freed_memory();
    let args = Args::parse();
    if args.compute == ComputeType::Bf16 {
        bf16_usable().context("--compute bf16")?;
    }
    dfd_ops::compute::allow_amx(!args.no_amx);
    // As dfd-train runs its folds: on a pool thread (`dfd_ops::on_pool`).
    with_compute(args.compute, || dfd_ops::on_pool(|| run(&args)))
}

fn run(args: &Args) -> Result<()> {
    let dev = Device::Cpu;
    let (spec, shape) = match args.head.as_str() {
        "mlp" => (
            HeadSpec::Mlp {
                input: 2048,
                hidden: vec![1024, 512],
                dropout: 0.5,
            },
            vec![args.batch, 2048],
        ),
        "finetune" => (
            HeadSpec::FinetuneLayer4 {
                arch: Arch::resnext50_32x4d(),
                dropout: 0.5,
            },
            vec![args.batch, 1024, args.map, args.map],
        ),
        other => anyhow::bail!("--head must be mlp or finetune, got {other}"),
    };
    let varmap = VarMap::new();
    let head = Head::new_seeded(&spec, VarBuilder::from_varmap(&varmap, DType::F32, &dev), 0)
        .context("building the head")?;
    let cfg = AdamConfig {
        kind: OptimizerKind::AdamW,
        betas: [0.9, 0.999],
        eps: 1e-8,
        weight_decay: 1e-2,
    };
    let mut opt = Optimizer::new(cfg, named_trainable(&head, &varmap)?)?;
    let x = Tensor::randn(0f32, 1.0, shape, &dev)?;
    let labels: Vec<u32> = (0..args.batch as u32).map(|i| i % 2).collect();
    let y = Tensor::from_vec(labels, args.batch, &dev)?;
    let settings = StepSettings {
        l1: 0.0,
        clip_grad_norm: 0.0,
        class_weights: None,
    };
    let mut rng = dfd_layout::rng::stream(0, "bench", &[]);
    train_step(&head, &mut opt, &x, &y, &settings, 1e-4, &mut rng)?;
    let start = Instant::now();
    for _ in 0..args.steps {
        train_step(&head, &mut opt, &x, &y, &settings, 1e-4, &mut rng)?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let samples_per_s = (args.steps * args.batch) as f64 / seconds;
    // Per sample: the forward, and twice its GEMMs backward (input and weight gradients).
    let flops = match args.head.as_str() {
        "mlp" => 2.0 * (2048.0 * 1024.0 + 1024.0 * 512.0 + 512.0 * 2.0),
        _ => {
            let arch = Arch::resnext50_32x4d();
            let side = 16 * args.map; // the image side whose layer3 maps are map×map
            arch.flops(side, dfd_model::Cut::Layer4) - arch.flops(side, dfd_model::Cut::Layer3)
                + 2.0 * 2048.0 * 2.0
        }
    };
    let peak = dfd_ops::roofline::GemmPeak::measure();
    println!(
        "{}",
        serde_json::json!({
            "bench": "train",
            "impl": "dfd-train",
            "head": args.head,
            "compute": args.compute,
            "bf16_kernel": (!args.compute.is_f32()).then(dfd_ops::compute::kernel_name),
            "batch": args.batch,
            "map": (args.head == "finetune").then_some(args.map),
            "steps": args.steps,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "samples_per_s": samples_per_s,
            "gflop_per_s": 3.0 * flops * samples_per_s / 1e9,
            "gemm_peak_gflop_per_s": {
                "gemm_crate": peak.gemm_crate, "numpy": peak.numpy, "bf16": peak.bf16,
            },
            "share_of_peak": 3.0 * flops * samples_per_s / 1e9 / peak.peak(),
        })
    );
    Ok(())
}
