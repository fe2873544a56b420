//! Training and validation rows over memory-mapped feature shards.
//!
//! Rows stay in the shards' maps; a batch is assembled on the fly (f16 or f32 → f32), so memory
//! stays flat even for 640,000-wide layer3 features. For fold `k`, training uses copies
//! `a0..=a_n` (`n = min(train.copies, preprocess.copies)`) of train-split rows whose manifest fold
//! is not `k`; validation uses fold `k`'s un-augmented `a0` rows. The test split's directory is
//! never even named here.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Device, Tensor};
use dfd_layout::checkpoint::FeatureSource;
use dfd_layout::manifest::ManifestRow;
use dfd_layout::shards::{FeatureRows, ShardReader, ShardSet};
use dfd_layout::{DataRoot, PipelineConfig, Split};
use rand::seq::SliceRandom;
use rayon::prelude::*;

/// Where one row lives.
#[derive(Clone, Copy, Debug)]
struct RowRef {
    shard: usize,
    row: usize,
}

/// A set of feature rows from one or more shard directories, all with the same row shape.
pub struct FeatureSet {
    readers: Vec<ShardReader>,
    rows: Vec<RowRef>,
    ids: Vec<u32>,
    labels: Vec<u8>,
    /// Shape of one row (e.g. `[2048]` or `[1024, 14, 14]`).
    row_shape: Vec<usize>,
}

impl FeatureSet {
    /// Opens every shard of the complete directories `dirs` (each checked against its index's
    /// checksum; `rebuild` is the command that makes them again), keeping the rows for whose
    /// manifest id `keep` answers `true` (an error from `keep` is an error of the whole open,
    /// naming the shard). Fails on an incomplete directory, a changed shard, a missing or
    /// non-float `features` tensor, or rows of different shapes.
    pub fn open(
        dirs: &[PathBuf],
        rebuild: &str,
        keep: impl Fn(u32) -> Result<bool>,
    ) -> Result<(Self, Vec<FeatureSource>)> {
        let mut set = Self {
            readers: Vec::new(),
            rows: Vec::new(),
            ids: Vec::new(),
            labels: Vec::new(),
            row_shape: Vec::new(),
        };
        let mut sources = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let shards = ShardSet::open(dir, rebuild)?;
            sources.push(FeatureSource {
                dir: dir.clone(),
                input_hash: shards.index().input_hash.clone(),
            });
            for reader in shards.shards()? {
                set.add_shard(reader, &keep)?;
            }
        }
        Ok((set, sources))
    }

    fn add_shard(
        &mut self,
        reader: ShardReader,
        keep: &impl Fn(u32) -> Result<bool>,
    ) -> Result<()> {
        let row_shape = reader.features()?.row_shape().to_vec();
        if self.readers.is_empty() && self.row_shape.is_empty() {
            self.row_shape = row_shape.clone();
        }
        ensure!(
            row_shape == self.row_shape,
            "shard {}: rows of shape {row_shape:?}, but earlier shards have {:?}",
            reader.path().display(),
            self.row_shape
        );
        let ids = reader.ids()?;
        let labels = reader.labels()?;
        let shard = self.readers.len();
        for (row, (&id, &label)) in ids.iter().zip(&labels).enumerate() {
            if keep(id).with_context(|| format!("shard {}", reader.path().display()))? {
                self.rows.push(RowRef { shard, row });
                self.ids.push(id);
                self.labels.push(label);
            }
        }
        self.readers.push(reader);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    pub fn row_shape(&self) -> &[usize] {
        &self.row_shape
    }

    /// Elements per row.
    pub fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }

    /// The rows `idx` as an f32 tensor `n × row_shape` and their labels as u32 `n`.
    pub fn batch(&self, idx: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let d = self.row_len();
        let mut views: HashMap<usize, FeatureRows<'_>> = HashMap::new();
        for &i in idx {
            let shard = self.rows[i].shard;
            if let std::collections::hash_map::Entry::Vacant(e) = views.entry(shard) {
                e.insert(self.readers[shard].features()?);
            }
        }
        let mut values = vec![0f32; idx.len() * d];
        values
            .par_chunks_mut(d.max(1))
            .zip(idx.par_iter())
            .for_each(|(out, &i)| {
                let r = self.rows[i];
                views[&r.shard].decode_into(r.row..r.row + 1, out);
            });
        let mut shape = vec![idx.len()];
        shape.extend_from_slice(&self.row_shape);
        let x = Tensor::from_vec(values, shape, device).context("building a feature batch")?;
        let labels: Vec<u32> = idx.iter().map(|&i| u32::from(self.labels[i])).collect();
        let y = Tensor::from_vec(labels, idx.len(), device).context("building a label batch")?;
        Ok((x, y))
    }
}

/// The rows one fold trains and validates on.
pub struct FoldData {
    pub fold: u8,
    pub train: FeatureSet,
    pub val: FeatureSet,
    /// Every directory read, train copies first, then the validation `a0`.
    pub sources: Vec<FeatureSource>,
}

/// Feature directory of the train split, copy `copy`, for this pipeline and the backbone
/// directory `backbone` ([`dfd_layout::backbone_key`] of the resolved weights).
pub fn train_features_dir(
    data: &DataRoot,
    cfg: &PipelineConfig,
    backbone: &str,
    copy: u32,
) -> PathBuf {
    data.features(
        &cfg.dataset.name,
        backbone,
        cfg.preprocess.size,
        cfg.extract.cut,
        Split::Train,
        copy,
    )
}

impl FoldData {
    /// Opens fold `fold`'s training rows (copies of other folds) and validation rows (fold
    /// `fold`'s `a0`). Every id in the shards must be a train-split manifest row with a fold.
    /// `rebuild` is the command that makes the feature directories again (named when a shard
    /// fails its checksum); `backbone` names the feature directory (see [`train_features_dir`]).
    pub fn open(
        data: &DataRoot,
        cfg: &PipelineConfig,
        backbone: &str,
        manifest: &[ManifestRow],
        fold: u8,
        rebuild: &str,
    ) -> Result<Self> {
        let fold_of = |id: u32| -> Result<u8> {
            manifest
                .get(id as usize)
                .filter(|r| r.split == Split::Train)
                .and_then(|r| r.fold)
                .with_context(|| {
                    format!(
                        "id {id} is not a train-split manifest row with a fold: the features \
                         do not belong to this manifest (rerun preprocess and extract)"
                    )
                })
        };
        let copies = cfg.train.copies.min(cfg.preprocess.copies);
        let train_dirs: Vec<PathBuf> = (0..=copies)
            .map(|c| train_features_dir(data, cfg, backbone, c))
            .collect();
        let a0 = train_dirs[0].clone();
        let (train, mut sources) =
            FeatureSet::open(&train_dirs, rebuild, |id| Ok(fold_of(id)? != fold))?;
        let (val, val_sources) = FeatureSet::open(&[a0], rebuild, |id| Ok(fold_of(id)? == fold))?;
        sources.extend(val_sources);
        if train.is_empty() || val.is_empty() {
            bail!(
                "fold {fold}: {} training rows and {} validation rows under {}: both must be non-empty",
                train.len(),
                val.len(),
                train_dirs[0].display()
            );
        }
        Ok(Self {
            fold,
            train,
            val,
            sources,
        })
    }

    /// The training batches of `epoch`: a permutation of all training rows drawn from
    /// `stream(seed, "shuffle", [fold, epoch])`, cut into batches of `batch_size` (the last one
    /// may be smaller).
    pub fn epoch_batches(&self, seed: u64, epoch: usize, batch_size: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        let mut rng =
            dfd_layout::rng::stream(seed, "shuffle", &[u64::from(self.fold), epoch as u64]);
        order.shuffle(&mut rng);
        order.chunks(batch_size).map(<[usize]>::to_vec).collect()
    }

    /// Manifest ids of the training batches of `epoch` (what [`FoldData::epoch_batches`] feeds).
    pub fn epoch_batch_ids(&self, seed: u64, epoch: usize, batch_size: usize) -> Vec<Vec<u32>> {
        self.epoch_batches(seed, epoch, batch_size)
            .iter()
            .map(|b| b.iter().map(|&i| self.train.ids()[i]).collect())
            .collect()
    }

    /// Training batches per epoch.
    pub fn batches_per_epoch(&self, batch_size: usize) -> usize {
        self.train.len().div_ceil(batch_size)
    }
}
