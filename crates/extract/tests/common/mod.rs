//! Shared fixtures: image shard directories written through the layout contract (`ShardDir`),
//! exactly as preprocess writes them, with deterministic pseudo-random pixels.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;

use dfd_layout::shards::{u32_bytes, FeatureDtype, ShardDir, ShardSet, TensorData};
use safetensors::Dtype;

/// The rows of an image directory, as written.
pub struct Images {
    /// u8 N×3×S×S.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub ids: Vec<u32>,
}

/// Deterministic bytes (xorshift), different for every `seed`.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 56) as u8
        })
        .collect()
}

/// Writes a complete image directory of `size`-px images split into input shards of
/// `shard_rows` rows each; ids start at `first_id`, labels alternate 0/1.
pub fn write_image_dir(dir: &Path, size: usize, shard_rows: &[usize], first_id: u32) -> Images {
    let total: usize = shard_rows.iter().sum();
    let row = 3 * size * size;
    let all = Images {
        pixels: noise(total * row, u64::from(first_id) + 1),
        labels: (0..total).map(|i| (i % 2) as u8).collect(),
        ids: (0..total as u32).map(|i| first_id + i).collect(),
    };
    let d = ShardDir::open(dir, &format!("images-{first_id}-{total}"), shard_rows.len()).unwrap();
    let mut start = 0;
    for (n, &rows) in shard_rows.iter().enumerate() {
        let ids = u32_bytes(&all.ids[start..start + rows]);
        d.write(
            n,
            &[
                TensorData {
                    name: "images",
                    dtype: Dtype::U8,
                    shape: vec![rows, 3, size, size],
                    data: &all.pixels[start * row..(start + rows) * row],
                },
                TensorData {
                    name: "labels",
                    dtype: Dtype::U8,
                    shape: vec![rows],
                    data: &all.labels[start..start + rows],
                },
                TensorData {
                    name: "ids",
                    dtype: Dtype::U32,
                    shape: vec![rows],
                    data: &ids,
                },
            ],
        )
        .unwrap();
        start += rows;
    }
    assert!(d.finish(serde_json::json!({"size": size})).unwrap());
    all
}

/// One feature shard's tensors.
pub struct Features {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    pub bytes: Vec<u8>,
    pub labels: Vec<u8>,
    pub ids: Vec<u32>,
}

/// Reads every shard of a complete feature directory, concatenated in index order.
pub fn read_features(dir: &Path) -> Features {
    let set = ShardSet::open(dir, "dfd-extract").unwrap();
    let mut out = Features {
        shape: Vec::new(),
        dtype: Dtype::F32,
        bytes: Vec::new(),
        labels: Vec::new(),
        ids: Vec::new(),
    };
    for r in set.shards().unwrap() {
        let f = r.features().unwrap();
        out.shape = f.row_shape().to_vec();
        out.dtype = match f.dtype() {
            FeatureDtype::F16 => Dtype::F16,
            FeatureDtype::F32 => Dtype::F32,
        };
        out.bytes.extend_from_slice(f.raw());
        out.labels.extend(r.labels().unwrap());
        out.ids.extend(r.ids().unwrap());
    }
    out
}

/// Little-endian f32 values.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Little-endian f16 values, widened to f32.
pub fn f16s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect()
}
