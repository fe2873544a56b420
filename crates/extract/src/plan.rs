//! What one feature directory will hold, and how its shards map onto the input image rows.
//!
//! Feature shard `n` of a directory covers the global rows `[n·R, (n+1)·R)` of its input image
//! directory, in the order of the input's `index.json` (reading across input shards), where `R`
//! is the number of feature rows that fit in `preprocess.shard_bytes`. The directory's
//! `input_hash` covers everything that determines the bytes: the input index (its hash and every
//! shard checksum), the weights identity, the architecture, the cut, the image size, the storage
//! dtype, `R`, the device class when it is not `cpu` and the compute type when it is not `f32`,
//! so CPU and GPU (or f32 and bf16) shards never mix. The batch size is not in it: eval-mode inference gives every image the same
//! features whatever batch it is in.

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dfd_layout::config::ComputeType;
use dfd_layout::shards::{rows_per_shard, ShardSet};
use dfd_model::{Arch, Cut};
use serde::Serialize;

use crate::dtype::FeatureDtype;

/// Version of the feature format, part of every directory's hash.
const FORMAT: &str = "dfd-extract/1";

/// The backbone, cut and storage of a set of feature directories.
#[derive(Clone, Debug)]
pub struct FeatureSpec {
    /// Preset name of the architecture (`resnext50_32x4d`…), or a description for custom ones.
    pub arch_name: String,
    pub arch: Arch,
    /// `ResolvedWeights::identity`: content hash of the weights file, or `random:<seed>`.
    pub weights_identity: String,
    pub pretrained: bool,
    pub cut: Cut,
    /// Side of the square input images, in pixels.
    pub size: usize,
    pub dtype: FeatureDtype,
    /// The class of device that computes the features (`cpu`, `cuda`): CPU and GPU sums differ
    /// in their last bits, so it is part of a directory's hash (when not `cpu`) and meta.
    pub device_class: &'static str,
    /// `extract.compute`: the backbone's arithmetic, part of the hash (when not `f32`) and meta.
    pub compute: ComputeType,
}

impl FeatureSpec {
    /// Shape of one image's features (e.g. `[2048]` pooled, `[1024, 14, 14]` layer3 at 224 px).
    pub fn row_shape(&self) -> Vec<usize> {
        self.cut.feature_shape(&self.arch, self.size)
    }

    /// Values in one image's features.
    pub fn row_values(&self) -> usize {
        self.row_shape().iter().product()
    }

    /// Bytes of one image's stored features.
    pub fn row_bytes(&self) -> usize {
        self.row_values() * self.dtype.size_in_bytes()
    }

    /// Bytes of one input image (u8, 3×S×S).
    pub fn image_bytes(&self) -> usize {
        3 * self.size * self.size
    }

    /// The `meta` of a finished directory's `index.json`.
    pub fn meta(&self) -> serde_json::Value {
        serde_json::json!({
            "arch": self.arch_name,
            "weights": self.weights_identity,
            "pretrained": self.pretrained,
            "cut": self.cut.name(),
            "size": self.size,
            "dtype": self.dtype,
            "feature_shape": self.row_shape(),
            "normalisation": "imagenet",
            "device": self.device_class,
            "compute": self.compute,
        })
    }
}

/// Everything that determines a feature directory's bytes (hashed into its `input_hash`).
#[derive(Serialize)]
struct HashedInputs<'a> {
    format: &'static str,
    input_hash: &'a str,
    input_checksums: Vec<&'a str>,
    weights: &'a str,
    arch: &'a Arch,
    cut: Cut,
    size: usize,
    dtype: FeatureDtype,
    rows_per_shard: usize,
    /// Left out for `cpu`, so directories made before the device entered the hash keep theirs.
    #[serde(skip_serializing_if = "is_cpu")]
    device: &'static str,
    /// Left out for `f32`, for the same reason.
    #[serde(skip_serializing_if = "ComputeType::is_f32")]
    compute: ComputeType,
}

fn is_cpu(class: &&str) -> bool {
    *class == "cpu"
}

/// One input image directory and the feature directory made from it.
#[derive(Clone, Debug)]
pub struct DirPlan {
    /// The complete input image directory (its index; shards verified as they are read).
    pub input: ShardSet,
    pub output: PathBuf,
    /// Feature rows per output shard (`R`).
    pub rows_per_shard: usize,
    pub input_hash: String,
}

impl DirPlan {
    /// Plans the features of the complete image directory `input` into `output`, with output
    /// shards bounded by `shard_bytes`. `rebuild` is the command that makes `input` again
    /// (named when one of its shards fails its checksum).
    pub fn new(
        input: &Path,
        output: &Path,
        spec: &FeatureSpec,
        shard_bytes: u64,
        rebuild: &str,
    ) -> Result<Self> {
        let input = ShardSet::open(input, rebuild)
            .with_context(|| format!("reading the image shards of {}", input.display()))?;
        let index = input.index();
        let rows_per_shard = rows_per_shard(spec.row_bytes() as u64, shard_bytes);
        let input_hash = dfd_layout::hash::hash_json(&HashedInputs {
            format: FORMAT,
            input_hash: &index.input_hash,
            input_checksums: index.shards.iter().map(|s| s.checksum.as_str()).collect(),
            weights: &spec.weights_identity,
            arch: &spec.arch,
            cut: spec.cut,
            size: spec.size,
            dtype: spec.dtype,
            rows_per_shard,
            device: spec.device_class,
            compute: spec.compute,
        });
        Ok(Self {
            input,
            output: output.to_path_buf(),
            rows_per_shard,
            input_hash,
        })
    }

    /// Number of output shards.
    pub fn n_shards(&self) -> usize {
        self.input.index().rows.div_ceil(self.rows_per_shard)
    }

    /// Global input rows of output shard `n`.
    pub fn shard_rows(&self, n: usize) -> Range<usize> {
        let start = n * self.rows_per_shard;
        start..(start + self.rows_per_shard).min(self.input.index().rows)
    }
}
