//! Filling one feature directory: stream the images, run the backbone, write the shards.

use std::ops::Range;

use anyhow::{bail, ensure, Context, Result};
use candle_core::Device;
use dfd_layout::cli::SliceArgs;
use dfd_layout::lock::Lock;
use dfd_layout::shards::{u32_bytes, ShardDir, TensorData};
use dfd_model::{with_compute, Backbone};
use indicatif::ProgressBar;
use safetensors::Dtype;

use crate::batches::{BatchStream, InputRows};
use crate::plan::{DirPlan, FeatureSpec};

/// A feature directory opened for work: the shards this process still has to write.
pub struct DirJob {
    pub plan: DirPlan,
    pub dir: ShardDir,
    /// `(output shard, global input rows)` of the owned shards that are not done yet.
    pub todo: Vec<(usize, Range<usize>)>,
    /// The locks of the `todo` shards, held until the job is dropped.
    _locks: Vec<Lock>,
}

impl DirJob {
    /// Opens `plan.output` (refusing one made from other inputs or weights), lists the shards
    /// of `slice` that are missing or damaged and takes their locks, so that a second process
    /// that would write one of them fails at once instead of after computing it. A complete
    /// directory has nothing to do.
    pub fn open(plan: DirPlan, slice: &SliceArgs) -> Result<Self> {
        let dir = ShardDir::open(&plan.output, &plan.input_hash, plan.n_shards())
            .with_context(|| format!("opening feature directory {}", plan.output.display()))?;
        let (mut todo, mut locks) = (Vec::new(), Vec::new());
        if !dir.is_complete()? {
            for n in (0..plan.n_shards()).filter(|&n| slice.owns(n)) {
                if dir.is_done(n)? {
                    continue;
                }
                let lock = dir.lock(n)?;
                // Another process may have finished it before releasing the lock.
                if !dir.is_done(n)? {
                    todo.push((n, plan.shard_rows(n)));
                    locks.push(lock);
                }
            }
        }
        Ok(Self {
            plan,
            dir,
            todo,
            _locks: locks,
        })
    }

    /// Images left to process.
    pub fn todo_rows(&self) -> usize {
        self.todo.iter().map(|(_, rows)| rows.len()).sum()
    }

    /// Writes `index.json` if every shard is present (other `--shard-index` processes may still
    /// be filling theirs); returns whether the directory is complete.
    pub fn finish(&self, spec: &FeatureSpec) -> Result<bool> {
        self.dir
            .finish(spec.meta())
            .with_context(|| format!("finishing {}", self.plan.output.display()))
    }
}

/// The rows of one output shard being gathered.
struct PendingShard {
    number: usize,
    expected: usize,
    features: Vec<u8>,
    labels: Vec<u8>,
    ids: Vec<u32>,
}

impl PendingShard {
    fn new(number: usize, expected: usize, spec: &FeatureSpec) -> Self {
        Self {
            number,
            expected,
            features: Vec::with_capacity(expected * spec.row_bytes()),
            labels: Vec::with_capacity(expected),
            ids: Vec::with_capacity(expected),
        }
    }
}

/// Computes (in `spec.compute`) and writes every shard of `job.todo` (not the index: see
/// [`DirJob::finish`]). `progress` advances by one per image.
pub fn extract_dir(
    job: &DirJob,
    spec: &FeatureSpec,
    backbone: &Backbone,
    device: &Device,
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<()> {
    let input = InputRows::new(job.plan.input.clone(), spec.size);
    let row_shape = spec.row_shape();
    let mut pending: Option<PendingShard> = None;
    for batch in BatchStream::start(input, &job.todo, batch_size) {
        let batch = batch?;
        let n = batch.labels.len();
        let mut shard = match pending.take() {
            Some(p) if p.number == batch.shard => p,
            Some(p) => bail!("internal error: output shard {} left unfinished", p.number),
            None => PendingShard::new(batch.shard, job.plan.shard_rows(batch.shard).len(), spec),
        };
        let features = batch
            .images
            .to_device(device)
            .and_then(|x| with_compute(spec.compute, || backbone.forward_to(&x, spec.cut)))
            .with_context(|| {
                format!(
                    "running the backbone on images of {}",
                    job.plan.input.dir().display()
                )
            })?;
        let expected_dims: Vec<usize> = [n].into_iter().chain(row_shape.clone()).collect();
        ensure!(
            features.dims() == expected_dims,
            "the backbone gave features of shape {:?}, expected {expected_dims:?}",
            features.dims()
        );
        spec.dtype.append_le_bytes(&features, &mut shard.features)?;
        shard.labels.extend_from_slice(&batch.labels);
        shard.ids.extend_from_slice(&batch.ids);
        progress.inc(n as u64);
        if shard.labels.len() == shard.expected {
            write_shard(&job.dir, spec, &row_shape, &shard)?;
        } else {
            pending = Some(shard);
        }
    }
    ensure!(
        pending.is_none(),
        "the image reader stopped before the end of a shard"
    );
    Ok(())
}

fn write_shard(
    dir: &ShardDir,
    spec: &FeatureSpec,
    row_shape: &[usize],
    shard: &PendingShard,
) -> Result<()> {
    let rows = shard.labels.len();
    let ids = u32_bytes(&shard.ids);
    let shape: Vec<usize> = [rows]
        .into_iter()
        .chain(row_shape.iter().copied())
        .collect();
    dir.write(
        shard.number,
        &[
            TensorData {
                name: "features",
                dtype: spec.dtype.safetensors(),
                shape,
                data: &shard.features,
            },
            TensorData {
                name: "labels",
                dtype: Dtype::U8,
                shape: vec![rows],
                data: &shard.labels,
            },
            TensorData {
                name: "ids",
                dtype: Dtype::U32,
                shape: vec![rows],
                data: &ids,
            },
        ],
    )
    .with_context(|| {
        format!(
            "writing feature shard {} in {}",
            shard.number,
            dir.dir().display()
        )
    })?;
    Ok(())
}
