//! Reading the test feature shards and scoring them with a fold's checkpoint.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use dfd_layout::paths::{CHECKPOINT_HEAD, CHECKPOINT_WEIGHTS};
use dfd_layout::shards::{read_index, ShardReader};
use dfd_model::{Device, Head, HeadSpec, Score, Tensor};
use safetensors::Dtype;

/// Name of the feature tensor in a feature shard.
const FEATURES: &str = "features";
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
    /// Opens every shard listed in `dir`'s index and checks they agree on the row shape.
    pub fn open(dir: &Path) -> Result<Self> {
        let index = read_index(dir)
            .with_context(|| format!("reading the test features index of {}", dir.display()))?;
        let mut out = Self {
            readers: Vec::new(),
            labels: Vec::new(),
            ids: Vec::new(),
            row_shape: Vec::new(),
        };
        for entry in &index.shards {
            let reader = ShardReader::open(&dir.join(&entry.file))?;
            let view = reader.tensor(FEATURES)?;
            let shape = view.shape().to_vec();
            ensure!(
                !shape.is_empty(),
                "{}: `features` has no row dimension",
                reader.path().display()
            );
            if out.readers.is_empty() {
                out.row_shape = shape[1..].to_vec();
            } else if shape[1..] != out.row_shape[..] {
                bail!(
                    "{}: rows of shape {:?}, earlier shards {:?}",
                    reader.path().display(),
                    &shape[1..],
                    out.row_shape
                );
            }
            let (labels, ids) = (reader.labels()?, reader.ids()?);
            ensure!(
                labels.len() == shape[0] && ids.len() == shape[0],
                "{}: {} feature rows, {} labels, {} ids",
                reader.path().display(),
                shape[0],
                labels.len(),
                ids.len()
            );
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
        let d: usize = self.row_shape.iter().product();
        let mut scores = Vec::with_capacity(self.labels.len());
        for reader in &self.readers {
            let view = reader.tensor(FEATURES)?;
            let rows = view.shape()[0];
            let elem = match view.dtype() {
                Dtype::F16 => 2,
                Dtype::F32 => 4,
                other => bail!(
                    "{}: features of type {other:?}, expected F16 or F32",
                    reader.path().display()
                ),
            };
            for start in (0..rows).step_by(BATCH_ROWS) {
                let n = BATCH_ROWS.min(rows - start);
                let bytes = &view.data()[start * d * elem..(start + n) * d * elem];
                let values: Vec<f32> = if elem == 2 {
                    bytes
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect()
                } else {
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect()
                };
                let mut shape = vec![n];
                shape.extend_from_slice(&self.row_shape);
                let x =
                    Tensor::from_vec(values, shape, device).context("building a feature batch")?;
                let batch = head
                    .forward_t(&x, false)
                    .and_then(|l| dfd_model::p_fake(&l))
                    .with_context(|| {
                        format!("scoring rows {start}.. of {}", reader.path().display())
                    })?;
                scores.extend(batch);
                on_rows(n);
            }
        }
        Ok(scores)
    }
}

/// A fold's checkpoint directory and the head rebuilt from it.
pub fn load_head(checkpoint: &Path, device: &Device) -> Result<Head> {
    let spec_path: PathBuf = checkpoint.join(CHECKPOINT_HEAD);
    if !spec_path.exists() {
        bail!(
            "no checkpoint at {} (train the run first, or pick another --checkpoint)",
            checkpoint.display()
        );
    }
    let spec: HeadSpec = dfd_layout::atomic::read_json(&spec_path)
        .with_context(|| format!("reading the head spec {}", spec_path.display()))?;
    let (head, _vars) = Head::load(&spec, &checkpoint.join(CHECKPOINT_WEIGHTS), device)
        .with_context(|| format!("loading the checkpoint {}", checkpoint.display()))?;
    Ok(head)
}
