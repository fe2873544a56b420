//! dfd-layout: the on-disk contract between the stages.
//!
//! Paths of the layout ([`paths`]), the manifest and rejects lists ([`manifest`]), leak-free split
//! assignment ([`split`]), resumable safetensors shard directories and their verified readers
//! ([`shards`]), checkpoint files and `state.json` ([`checkpoint`]), checksums checked on read
//! ([`verify`]), atomic writes ([`atomic`]), locks ([`lock`]) and the host/pid identity they carry
//! ([`process`]), content hashes ([`hash`]), seeded random streams ([`rng`]), the training log
//! ([`runlog`]), the pipeline config shared by every stage ([`config`]), a run's pinned config
//! ([`pin`]) and the command-line plumbing they share ([`cli`]).
//! The folder walk of the stages' inputs is [`walk`]; file names as text are [`names`]; another
//! data set evaluated whole by a run is [`other_dataset`].
//! It knows nothing of images or models.

pub mod atomic;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod hash;
pub mod lock;
pub mod manifest;
pub mod names;
pub mod other_dataset;
pub mod paths;
pub mod pin;
pub mod process;
pub mod rng;
pub mod runlog;
pub mod shards;
pub mod split;
pub mod verify;
pub mod walk;

pub use config::PipelineConfig;
pub use paths::{backbone_key, backbone_of_features, DataRoot, FoldDir, RunDir, Split};
