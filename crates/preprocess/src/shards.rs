//! From the manifest to image shards: `prepared/<dataset>/s<S>/<split>/a<k>/`.
//!
//! Plan: per split, the manifest rows of that split in id order, cut into shards of
//! `rows_per_shard` rows. `test` has only `a0`; `train` has `a0` (un-augmented) and `a1..=aK`,
//! which hold the same rows in the same order (so copies inherit their source's id, label and fold).
//! A work item is one shard number of one split: its images are decoded once and every copy's
//! shard that is not yet done is written from them. Items are numbered test first, then train;
//! `--shard-index i --shard-count n` takes the items `j % n == i`. Before any image is made, the
//! process takes the lock of every shard it will write ([`pending`]).
//!
//! Memory: one work item holds up to `(copies + 1) * shard_bytes` of output images at once.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use dfd_imaging::{augment, resize_center_crop, to_chw_u8, AugmentParams};
use dfd_layout::config::PipelineConfig;
use dfd_layout::lock::Lock;
use dfd_layout::manifest::ManifestRow;
use dfd_layout::shards::{rows_per_shard, u32_bytes, ShardDir, TensorData};
use dfd_layout::{DataRoot, Split};
use rayon::prelude::*;
use safetensors::Dtype;
use serde_json::json;

/// Room left in `shard_bytes` for the safetensors header, so files stay within the bound.
const HEADER_ALLOWANCE: u64 = 1024;

/// Bumped whenever the bytes this stage writes for the same inputs change.
const FORMAT_VERSION: u32 = 1;

/// One split's shard directories.
pub struct SplitJob<'a> {
    pub split: Split,
    rows: Vec<&'a ManifestRow>,
    rows_per_shard: usize,
    /// Index = copy number k (`a<k>`).
    dirs: Vec<ShardDir>,
}

impl SplitJob<'_> {
    fn n_shards(&self) -> usize {
        self.rows.len().div_ceil(self.rows_per_shard)
    }
}

/// Everything the workers need besides the plan.
pub struct Settings<'a> {
    pub source_root: PathBuf,
    pub size: u32,
    pub seed: u64,
    pub max_pixels: u64,
    pub augment: &'a AugmentParams,
}

/// Opens (creating if needed) every shard directory for `rows`; refuses directories made from
/// other inputs or settings.
pub fn plan<'a>(
    data: &DataRoot,
    config: &PipelineConfig,
    rows: &'a [ManifestRow],
) -> Result<Vec<SplitJob<'a>>> {
    let pre = &config.preprocess;
    let size = pre.size;
    let row_bytes = 3 * u64::from(size) * u64::from(size) + 1 + 4;
    let rps = rows_per_shard(row_bytes, pre.shard_bytes.saturating_sub(HEADER_ALLOWANCE));
    config
        .splits()
        .iter()
        .map(|&split| {
            let rows: Vec<&ManifestRow> = rows.iter().filter(|r| r.split == split).collect();
            let copies = if split == Split::Train { pre.copies } else { 0 };
            let n_shards = rows.len().div_ceil(rps);
            let identity: Vec<(u32, &str, u8)> = rows
                .iter()
                .map(|r| (r.id, r.hash.as_str(), r.label))
                .collect();
            let dirs = (0..=copies)
                .map(|k| {
                    let augmentation =
                        (k > 0).then(|| json!({ "seed": config.seed, "augment": pre.augment }));
                    let input_hash = dfd_layout::hash::hash_json(&json!({
                        "stage": "preprocess",
                        "format": FORMAT_VERSION,
                        "size": size,
                        "split": split,
                        "copy": k,
                        "rows_per_shard": rps,
                        "augmentation": augmentation,
                        "rows": identity,
                    }));
                    ShardDir::open(
                        &data.images(&config.dataset.name, size, split, k),
                        &input_hash,
                        n_shards,
                    )
                })
                .collect::<Result<_>>()?;
            Ok(SplitJob {
                split,
                rows,
                rows_per_shard: rps,
                dirs,
            })
        })
        .collect()
}

/// The work items `(job index, shard number)` in their global order.
pub fn work_items(jobs: &[SplitJob]) -> Vec<(usize, usize)> {
    jobs.iter()
        .enumerate()
        .flat_map(|(j, job)| (0..job.n_shards()).map(move |n| (j, n)))
        .collect()
}

/// A work item this process still has to write, with the locks of its missing shards held
/// (released when it is dropped).
pub struct Pending {
    /// Index of the job in the plan.
    pub job: usize,
    /// Shard number.
    pub n: usize,
    /// The copies whose shard `n` is missing or damaged.
    pub copies: Vec<usize>,
    /// Images to write (rows × copies).
    pub images: usize,
    _locks: Vec<Lock>,
}

/// What item `(job, n)` still has to write, with the locks of those shards taken, or `None`
/// when every copy is done. Fails at once, naming the lock, when another process holds one.
pub fn pending(jobs: &[SplitJob], job: usize, n: usize) -> Result<Option<Pending>> {
    let split_job = &jobs[job];
    let (mut copies, mut locks) = (Vec::new(), Vec::new());
    for (k, dir) in split_job.dirs.iter().enumerate() {
        if dir.is_done(n)? {
            continue;
        }
        let lock = dir.lock(n)?;
        // Another process may have finished it before releasing the lock.
        if !dir.is_done(n)? {
            copies.push(k);
            locks.push(lock);
        }
    }
    let start = n * split_job.rows_per_shard;
    let rows = split_job.rows.len().min(start + split_job.rows_per_shard) - start;
    Ok((!copies.is_empty()).then(|| Pending {
        job,
        n,
        images: rows * copies.len(),
        copies,
        _locks: locks,
    }))
}

/// Makes and writes shard `n` of every copy in `copies` (from [`pending`]).
/// `progress(images)` is called as rows finish.
pub fn write_item(
    job: &SplitJob,
    n: usize,
    copies: &[usize],
    settings: &Settings,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<()> {
    let start = n * job.rows_per_shard;
    let rows = &job.rows[start..job.rows.len().min(start + job.rows_per_shard)];
    let per_row: Vec<Vec<Vec<u8>>> = rows
        .par_iter()
        .map(|row| {
            let out = render_row(row, copies, settings)?;
            progress(copies.len() as u64);
            Ok(out)
        })
        .collect::<Result<_>>()?;
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let ids = u32_bytes(&rows.iter().map(|r| r.id).collect::<Vec<_>>());
    let s = settings.size as usize;
    for (slot, &k) in copies.iter().enumerate() {
        let images: Vec<u8> = per_row
            .iter()
            .flat_map(|outs| outs[slot].iter().copied())
            .collect();
        job.dirs[k]
            .write(
                n,
                &[
                    TensorData {
                        name: "images",
                        dtype: Dtype::U8,
                        shape: vec![rows.len(), 3, s, s],
                        data: &images,
                    },
                    TensorData {
                        name: "labels",
                        dtype: Dtype::U8,
                        shape: vec![rows.len()],
                        data: &labels,
                    },
                    TensorData {
                        name: "ids",
                        dtype: Dtype::U32,
                        shape: vec![rows.len()],
                        data: &ids,
                    },
                ],
            )
            .with_context(|| format!("writing shard {n} of {}", job.dirs[k].dir().display()))?;
    }
    Ok(())
}

/// Decodes one source image once and makes each requested copy, as planar 3×S×S bytes.
/// Copy 0 is the plain resize + centre crop; copy k > 0 is augmented with the random stream
/// `(seed, "augment", [id, k])`, so it depends on nothing else.
fn render_row(row: &ManifestRow, copies: &[usize], settings: &Settings) -> Result<Vec<Vec<u8>>> {
    let path = settings
        .source_root
        .join(dfd_layout::names::unescape(&row.path));
    let bytes = dfd_layout::walk::read_file(&path)
        .with_context(|| format!("reading source image {}", path.display()))?;
    if dfd_layout::hash::hash_bytes(&bytes) != row.hash {
        bail!(
            "{} changed after the manifest was made; rerun dfd-preprocess to rebuild the manifest",
            path.display()
        );
    }
    let img = dfd_imaging::decode(&bytes, settings.max_pixels).with_context(|| {
        format!(
            "decoding {} (it decoded when the manifest was made)",
            path.display()
        )
    })?;
    Ok(copies
        .iter()
        .map(|&k| {
            let out = if k == 0 {
                resize_center_crop(&img, settings.size)
            } else {
                let mut rng = dfd_layout::rng::stream(
                    settings.seed,
                    "augment",
                    &[u64::from(row.id), k as u64],
                );
                augment(&img, settings.size, settings.augment, &mut rng)
            };
            to_chw_u8(&out)
        })
        .collect())
}

/// Writes `index.json` in every directory whose shards are all present; returns how many
/// directories are complete and the paths of those that are not.
pub fn finish<'a>(jobs: &'a [SplitJob], size: u32) -> Result<(usize, Vec<&'a Path>)> {
    let mut complete = 0;
    let mut incomplete = Vec::new();
    for job in jobs {
        for (k, dir) in job.dirs.iter().enumerate() {
            let meta = json!({
                "stage": "preprocess",
                "split": job.split,
                "copy": k,
                "size": size,
                "rows_per_shard": job.rows_per_shard,
                "tensors": { "images": "u8 [N, 3, S, S]", "labels": "u8 [N] (0 real, 1 fake)", "ids": "u32 [N] manifest ids" },
            });
            if dir.finish(meta)? {
                complete += 1;
            } else {
                incomplete.push(dir.dir());
            }
        }
    }
    Ok((complete, incomplete))
}
