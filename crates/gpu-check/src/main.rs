//! `dfd-gpu-check`: the one binary `scripts/gpu-check.sh` runs on a GPU machine. It checks the
//! model on `--device` against the CPU path and measures throughput, and prints a short report:
//!
//! - the backbone's forward at every cut, 128 and 224 px, against the CPU (max relative
//!   difference ≤ 1e-3: TF32 and cuDNN sum in other orders);
//! - one fine-tune step (layer4 + fc on layer3 maps): logits, loss and every gradient against
//!   the CPU;
//! - extract throughput at 224 px, batch 64 and 256, to `pooled` and to `layer3`, in f32;
//! - fine-tune step samples/s at batch 256 on 14×14 maps.
//!
//! With `--device cpu` the "device" side runs the candle fallbacks that other devices take
//! ([`dfd_ops::fallback::with_fallbacks`]), so the check itself is tested without a GPU; `--quick`
//! shrinks every size for that. The weights are `random:0` (no file, no network). Exit status 1
//! when a comparison exceeds its limit.

mod parity;
mod speed;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use dfd_model::{parse_device, Device};

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

/// Check the model on a device against the CPU path and measure its throughput.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The device to check: `cuda`, `cuda:N`, or `cpu` (the candle fallbacks against the fast
    /// CPU path).
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Small sizes and batches everywhere (for a CPU run of the check itself).
    #[arg(long)]
    quick: bool,
    /// Skip the throughput measurements.
    #[arg(long)]
    no_speed: bool,
}

/// Largest relative difference accepted between the device and the CPU.
pub const LIMIT: f64 = 1e-3;

/// The sizes of one run of the check.
pub struct Plan {
    /// Image sides of the forward comparison.
    pub sizes: Vec<usize>,
    /// Batch and map side of the fine-tune step comparison.
    pub step: (usize, usize),
    /// Image side and batches of the extract throughput.
    pub extract: (usize, Vec<usize>),
    /// Batch and map side of the fine-tune throughput.
    pub finetune: (usize, usize),
    /// Timed repetitions after one warm-up.
    pub reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                sizes: vec![64],
                step: (2, 4),
                extract: (64, vec![2]),
                finetune: (2, 4),
                reps: 1,
            }
        } else {
            Plan {
                sizes: vec![128, 224],
                step: (4, 14),
                extract: (224, vec![64, 256]),
                finetune: (256, 14),
                reps: 5,
            }
        }
    }
}

/// Runs `f` on the device side: as is on a GPU, with every fast CPU path off on the CPU.
pub fn on_device<R>(device: &Device, f: impl FnOnce() -> R) -> R {
    if device.is_cpu() {
        dfd_ops::fallback::with_fallbacks(f)
    } else {
        f()
    }
}

fn main() -> ExitCode {
    dfd_alloc::keep_freed_memory();
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!(
                "dfd-gpu-check: error: {}",
                dfd_layout::cli::error_message(&e)
            );
            ExitCode::FAILURE
        }
    }
}

/// The whole check; `Ok(false)` when a comparison failed.
fn run(args: &Args) -> Result<bool> {
    let device = parse_device(&args.device)?;
    let plan = Plan::new(args.quick);
    let side = if device.is_cpu() {
        "the CPU's candle fallbacks"
    } else {
        "CUDA"
    };
    println!(
        "dfd-gpu-check: {} ({side}) against the fast CPU path",
        args.device
    );
    let mut ok = parity::forward(&device, &plan)?;
    ok &= parity::finetune_step(&device, &plan)?;
    if !args.no_speed {
        speed::extract(&device, &plan)?;
        speed::finetune(&device, &plan)?;
    }
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}
