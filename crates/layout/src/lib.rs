//! dfd-layout: the on-disk contract between the stages.
//!
//! Paths of the layout ([`paths`]), the manifest and rejects lists ([`manifest`]), leak-free split
//! assignment ([`split`]), resumable safetensors shard directories ([`shards`]), atomic writes
//! ([`atomic`]), content hashes ([`hash`]), seeded random streams ([`rng`]), the training log ([`runlog`]), the pipeline config
//! shared by every stage ([`config`]), a run's pinned config ([`pin`]) and the command-line
//! plumbing they share ([`cli`]).
//! It knows nothing of images or models.

pub mod atomic;
pub mod cli;
pub mod config;
pub mod hash;
pub mod manifest;
pub mod paths;
pub mod pin;
pub mod rng;
pub mod runlog;
pub mod shards;
pub mod split;

pub use config::PipelineConfig;
pub use paths::{backbone_key, DataRoot, FoldDir, RunDir, Split};
