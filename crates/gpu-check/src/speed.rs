//! Throughput on the device: extract (the frozen backbone) and one fine-tune step.

use std::time::Instant;

use anyhow::Result;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use dfd_model::{Cut, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::parity::{backbone, finetune_head, seeded};
use crate::{on_device, Plan};

/// Items per second of `f` (which handles `items` per call) over `reps` calls after a warm-up.
fn rate(reps: usize, items: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..reps {
        f()?;
    }
    Ok((items * reps) as f64 / start.elapsed().as_secs_f64())
}

/// Images per second of the backbone to `pooled` and to `layer3`, f32, at each batch of `plan`.
pub fn extract(device: &Device, plan: &Plan) -> Result<()> {
    let model = backbone(device)?;
    let (size, batches) = &plan.extract;
    println!(
        "extract throughput, f32, {size} px (mean over {} timed batches):",
        plan.reps
    );
    for cut in [Cut::Pooled, Cut::Layer3] {
        let mut cells = Vec::new();
        for &batch in batches {
            let x = seeded(&[batch, 3, *size, *size], 3, (-2.0, 2.0))?.to_device(device)?;
            let per_s = rate(plan.reps, batch, || {
                on_device(device, || model.forward_to(&x, cut))?;
                Ok(device.synchronize()?)
            })?;
            cells.push(format!("batch {batch} {per_s:.1} img/s"));
        }
        println!("  to {}: {}", cut.name(), cells.join(", "));
    }
    Ok(())
}

/// Samples per second of a whole fine-tune step (forward, backward, AdamW) on the device.
pub fn finetune(device: &Device, plan: &Plan) -> Result<()> {
    let (batch, map) = plan.finetune;
    let (head, _vars) = finetune_head(device, 0.5)?;
    let mut opt = AdamW::new(head.trainable_vars(), ParamsAdamW::default())?;
    let maps = seeded(&[batch, 1024, map, map], 4, (0.0, 2.0))?.to_device(device)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 2).collect();
    let labels = Tensor::new(labels.as_slice(), device)?;
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let per_s = rate(plan.reps, batch, || {
        on_device(device, || -> Result<()> {
            let pass = head.forward_train(&maps, &mut rng)?;
            let loss = candle_nn::loss::cross_entropy(&pass.logits, &labels)?;
            opt.step(&pass.backward(&loss)?)?;
            Ok(device.synchronize()?)
        })
    })?;
    println!("fine-tune step, batch {batch}, {map}x{map} maps (layer4 + fc, AdamW): {per_s:.1} samples/s");
    Ok(())
}
