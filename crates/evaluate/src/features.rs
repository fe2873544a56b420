//! Reading the test feature shards and scoring them with a fold's checkpoint.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_WEIGHTS};
use dfd_layout::shards::{ShardReader, ShardSet};
use dfd_model::{Device, Head, HeadSpec, Score, Tensor};

/// Rows per forward pass.
const BATCH_ROWS: usize = 64;

/// The rows of a complete feature directory (all shards, in index order), memory-mapped.
pub struct TestFeatures {
    readers: Vec<ShardReader>,
    pub labels: Vec<u8>,
    pub ids: Vec<u32>,
    /// Shape of one row (e.g. `[2048]` or `[1024, 14, 14]`).
    pub row_shape: Vec<usize>,
}

impl TestFeatures {
    /// Opens every shard listed in `dir`'s index, each checked against its checksum (`rebuild`
    /// is the command that makes them again), and checks they agree on the row shape.
    pub fn open(dir: &Path, rebuild: &str) -> Result<Self> {
        let shards = ShardSet::open(dir, rebuild)
            .with_context(|| format!("reading the test features index of {}", dir.display()))?;
        let mut out = Self {
            readers: Vec::new(),
            labels: Vec::new(),
            ids: Vec::new(),
            row_shape: Vec::new(),
        };
        for reader in shards.shards()? {
            let row_shape = reader.features()?.row_shape().to_vec();
            if out.readers.is_empty() {
                out.row_shape = row_shape;
            } else if row_shape != out.row_shape {
                bail!(
                    "{}: rows of shape {row_shape:?}, earlier shards {:?}",
                    reader.path().display(),
                    out.row_shape
                );
            }
            let (labels, ids) = (reader.labels()?, reader.ids()?);
            out.labels.extend(labels);
            out.ids.extend(ids);
            out.readers.push(reader);
        }
        ensure!(
            !out.labels.is_empty(),
            "{} holds no test rows",
            dir.display()
        );
        Ok(out)
    }

    /// P(fake) of every row under `head` ([`dfd_model::p_fake`], eval mode), in row order;
    /// `on_rows` is told how many rows each batch held.
    pub fn score(
        &self,
        head: &Head,
        device: &Device,
        on_rows: impl Fn(usize),
    ) -> Result<Vec<Score>> {
        let mut scores = Vec::with_capacity(self.labels.len());
        for reader in &self.readers {
            let features = reader.features()?;
            let rows = features.rows();
            for start in (0..rows).step_by(BATCH_ROWS) {
                let n = BATCH_ROWS.min(rows - start);
                let values = features.decode(start..start + n);
                let mut shape = vec![n];
                shape.extend_from_slice(&self.row_shape);
                let x =
                    Tensor::from_vec(values, shape, device).context("building a feature batch")?;
                let batch = head.p_fake(&x).with_context(|| {
                    format!("scoring rows {start}.. of {}", reader.path().display())
                })?;
                scores.extend(batch);
                on_rows(n);
            }
        }
        Ok(scores)
    }
}

/// The head rebuilt from a verified checkpoint.
pub fn load_head(checkpoint: &Checkpoint, device: &Device) -> Result<Head> {
    let spec: HeadSpec = checkpoint.head_spec()?;
    let (head, _vars) = Head::load(&spec, &checkpoint.file(CHECKPOINT_WEIGHTS), device)
        .with_context(|| format!("loading the checkpoint {}", checkpoint.dir().display()))?;
    Ok(head)
}
