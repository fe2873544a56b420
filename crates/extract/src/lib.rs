//! dfd-extract: image shards → frozen backbone → feature shards (the `dfd-extract` stage).
//!
//! Reads the image shards of preprocess (`prepared/<dataset>/s<S>/<split>/a<k>/`), normalises them
//! with the ImageNet mean/std, runs the backbone to the configured cut (`pooled` 2048-d vectors,
//! `layer3` or `layer4` maps) and writes `features/<dataset>/<backbone>/s<S>-<cut>/<split>/a<k>/`
//! shards (`features` f16/f32, `labels` u8, `ids` u32) with an `index.json`. Modules: what a
//! directory holds and how its shards map onto input rows ([`plan`]), the storage dtype
//! ([`dtype`]), the background image reader ([`batches`]), filling a directory ([`run`]) and
//! the stage's view of the pipeline config ([`stage`]).
//!
//! Reading a feature shard from Python:
//! ```python
//! from safetensors.numpy import load_file
//! shard = load_file("data/features/demo/resnext50_32x4d@w-<identity>/s224-pooled/train/a0/shard-00000.safetensors")
//! x, y, ids = shard["features"], shard["labels"], shard["ids"]  # (N, 2048) float32, (N,) uint8, (N,) uint32
//! ```

pub mod batches;
pub mod dtype;
pub mod plan;
pub mod run;
pub mod stage;

pub use dtype::FeatureDtype;
pub use plan::{DirPlan, FeatureSpec};
pub use run::{extract_dir, DirJob};

/// Peak resident set size of this process in bytes (`VmHWM` of `/proc/self/status`); `None`
/// where that file does not exist (not Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_rss_grows_with_touched_memory() {
        let before = super::peak_rss_bytes().expect("Linux /proc/self/status");
        let block = vec![1u8; 64 << 20];
        let after = super::peak_rss_bytes().unwrap();
        assert!(block.iter().all(|&b| b == 1));
        assert!(after >= before.max(64 << 20), "{before} → {after}");
    }
}
