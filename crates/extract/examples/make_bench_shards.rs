//! Writes image shards of random pixels for the extract benchmark, as preprocess would:
//! `<data-dir>/prepared/<dataset>/s<size>/train/a0` with `--images` rows and an empty `test/a0`.
//!
//! `cargo run --release -p dfd-extract --example make_bench_shards -- --data-dir D --images 128`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use dfd_layout::shards::{rows_per_shard, u32_bytes, ShardDir, TensorData};
use dfd_layout::{DataRoot, Split};
use safetensors::Dtype;

/// Generate random image shards for `dfd-extract` benchmarks.
#[derive(Parser)]
struct Args {
    /// Root of the layout to write into.
    #[arg(long)]
    data_dir: PathBuf,
    /// Data set name (`dataset.name` of the benchmark pipeline).
    #[arg(long, default_value = "bench")]
    dataset: String,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    size: u32,
    /// Training images to write.
    #[arg(long, default_value_t = 128)]
    images: usize,
    /// Upper bound of a shard file's size.
    #[arg(long, default_value_t = 256 << 20)]
    shard_bytes: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let data = DataRoot::new(&args.data_dir);
    let row = 3 * (args.size as usize).pow(2);
    let per_shard = rows_per_shard(row as u64, args.shard_bytes);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for (split, total) in [(Split::Train, args.images), (Split::Test, 0)] {
        let dir = data.images(&args.dataset, args.size, split, 0);
        let n_shards = total.div_ceil(per_shard);
        let shards = ShardDir::open(&dir, &format!("bench-{}-{total}", args.size), n_shards)?;
        for n in 0..n_shards {
            let rows = per_shard.min(total - n * per_shard);
            let pixels: Vec<u8> = (0..rows * row)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 56) as u8
                })
                .collect();
            let labels: Vec<u8> = (0..rows).map(|i| (i % 2) as u8).collect();
            let first = (n * per_shard) as u32;
            let ids = u32_bytes(&(first..first + rows as u32).collect::<Vec<_>>());
            let size = args.size as usize;
            shards
                .write(
                    n,
                    &[
                        TensorData {
                            name: "images",
                            dtype: Dtype::U8,
                            shape: vec![rows, 3, size, size],
                            data: &pixels,
                        },
                        TensorData {
                            name: "labels",
                            dtype: Dtype::U8,
                            shape: vec![rows],
                            data: &labels,
                        },
                        TensorData {
                            name: "ids",
                            dtype: Dtype::U32,
                            shape: vec![rows],
                            data: &ids,
                        },
                    ],
                )
                .with_context(|| format!("writing bench shard {n} in {}", dir.display()))?;
        }
        shards.finish(serde_json::json!({ "size": args.size, "bench": true }))?;
    }
    Ok(())
}
