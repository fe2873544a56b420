//! CPU forward speed of the full-size backbone (ignored by default; run with
//! `cargo test -p dfd-model --test speed -- --ignored --nocapture`; the dev profile
//! already optimises dfd-model, dfd-ops and every dependency at opt-level 3).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use dfd_model::{Arch, Backbone, Cut, ResolvedWeights};

#[test]
#[ignore = "benchmark: full-size resnext50_32x4d, takes tens of seconds"]
fn resnext50_224px_batch8_to_pooled() {
    let arch = Arch::resnext50_32x4d();
    let weights = ResolvedWeights::random(0);
    let backbone = Backbone::load(&arch, &weights, &Device::Cpu, DType::F32).unwrap();
    let x = Tensor::randn(0f32, 1.0, (8, 3, 224, 224), &Device::Cpu).unwrap();
    backbone
        .forward_to(&x.narrow(0, 0, 1).unwrap(), Cut::Pooled)
        .unwrap(); // warm-up
    let runs = 3;
    let start = Instant::now();
    for _ in 0..runs {
        let pooled = backbone.forward_to(&x, Cut::Pooled).unwrap();
        assert_eq!(pooled.dims(), [8, 2048]);
    }
    let secs = start.elapsed().as_secs_f64() / runs as f64;
    println!(
        "resnext50_32x4d 224px batch 8 → pooled: {secs:.2} s/batch, {:.2} img/s",
        8.0 / secs
    );
}
