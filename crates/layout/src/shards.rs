//! Shard directories: safetensors files written atomically, resumable, checked by hash.
//!
//! A job that fills a directory knows up front how many shards it will write (`n_shards`, a pure
//! function of its inputs) and the hash of everything that determines their bytes
//! (`input_hash`: config section, input index, weights identity…). For each shard it writes
//! `shard-NNNNN.safetensors` (atomically) and then a sidecar `shard-NNNNN.json` (its
//! [`ShardEntry`] plus the input hash). Once every sidecar is present, `index.json` lists them all:
//! the directory is complete. So:
//! - a rerun after a kill skips shards whose sidecar matches and whose file still has its checksum,
//!   and redoes the rest; a complete directory is left alone;
//! - several processes (`--shard-index i --shard-count n`) can fill one directory without a
//!   coordinator: each writes its own shards, and whoever finds all sidecars present writes the
//!   (identical) index;
//! - a directory made from other inputs is refused with an error, never mixed.
//!
//! Tensors have fixed names: `images` (u8 N×3×S×S) or `features` (f16/f32 N×…), `labels` (u8 N,
//! 0 real / 1 fake), `ids` (u32 N, manifest ids). Readers use [`read_index`] + [`ShardReader`].

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::atomic::{read_json, remove_stale_tmp, write_atomic, write_json_atomic};
use crate::hash::hash_bytes;
use crate::lock::{remove_stale_locks, Lock};

/// File name of the index of a complete shard directory.
pub const INDEX_FILE: &str = "index.json";

/// One tensor to write: raw little-endian bytes of `dtype` with `shape`.
pub struct TensorData<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// A written shard, as recorded in its sidecar and in `index.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub file: String,
    pub rows: usize,
    pub bytes: u64,
    /// Hex blake3 of the file's bytes.
    pub checksum: String,
}

/// `index.json` of a complete directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// Hash of everything that determined the shards' bytes.
    pub input_hash: String,
    /// Total rows over all shards.
    pub rows: usize,
    pub shards: Vec<ShardEntry>,
    /// Free-form description from the writer (shapes, dtype, weights identity, …).
    pub meta: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Sidecar {
    input_hash: String,
    entry: ShardEntry,
}

/// How many rows of `row_bytes` fit in a shard bounded by `shard_bytes` (at least one).
pub fn rows_per_shard(row_bytes: u64, shard_bytes: u64) -> usize {
    (shard_bytes / row_bytes.max(1)).max(1) as usize
}

/// `shard-NNNNN.safetensors`.
pub fn shard_file_name(n: usize) -> String {
    format!("shard-{n:05}.safetensors")
}

/// Serialises tensors to safetensors bytes.
pub fn encode(tensors: &[TensorData]) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), t.data)
                .map(|v| (t.name, v))
                .with_context(|| {
                    format!(
                        "tensor `{}` has {} bytes for shape {:?}",
                        t.name,
                        t.data.len(),
                        t.shape
                    )
                })
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).context("serialising a safetensors shard")
}

/// A directory being filled with shards.
pub struct ShardDir {
    dir: PathBuf,
    input_hash: String,
    n_shards: usize,
}

impl ShardDir {
    /// Opens `dir` for a job of `n_shards` shards made from `input_hash`, creating it if needed,
    /// and removes the temporary files and locks dead processes of this host left there
    /// ([`remove_stale_tmp`], [`remove_stale_locks`]). Fails if the directory holds shards or an
    /// index made from other inputs.
    pub fn open(dir: &Path, input_hash: &str, n_shards: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        remove_stale_tmp(dir)?;
        remove_stale_locks(dir)?;
        let this = Self {
            dir: dir.to_path_buf(),
            input_hash: input_hash.to_owned(),
            n_shards,
        };
        let stale = |what: &str, found: &str| {
            anyhow::anyhow!(
                "{} holds {what} made from other inputs or settings (hash {found}, now {input_hash}); \
                 refusing to mix them: delete that directory (or use another --data-dir) to rebuild it",
                dir.display()
            )
        };
        let index = dir.join(INDEX_FILE);
        if index.exists() {
            let idx: ShardIndex = read_json(&index)?;
            if idx.input_hash != input_hash {
                return Err(stale("a complete output", &idx.input_hash));
            }
        }
        for n in 0..n_shards {
            if let Some(side) = this.sidecar(n)? {
                if side.input_hash != input_hash {
                    return Err(stale("shards", &side.input_hash));
                }
            }
        }
        Ok(this)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn n_shards(&self) -> usize {
        self.n_shards
    }

    /// True when `index.json` exists (and matches, as checked by `open`).
    pub fn is_complete(&self) -> bool {
        self.dir.join(INDEX_FILE).exists()
    }

    fn sidecar_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("shard-{n:05}.json"))
    }

    fn sidecar(&self, n: usize) -> Result<Option<Sidecar>> {
        let p = self.sidecar_path(n);
        if !p.exists() {
            return Ok(None);
        }
        read_json(&p).map(Some)
    }

    /// True when shard `n` was written for these inputs and its file still has its checksum.
    pub fn is_done(&self, n: usize) -> Result<bool> {
        let Some(side) = self.sidecar(n)? else {
            return Ok(false);
        };
        let path = self.dir.join(&side.entry.file);
        match std::fs::read(&path) {
            Ok(bytes) => {
                Ok(side.input_hash == self.input_hash && hash_bytes(&bytes) == side.entry.checksum)
            }
            Err(_) => Ok(false),
        }
    }

    /// Writes shard `n` atomically, then its sidecar.
    pub fn write(&self, n: usize, tensors: &[TensorData]) -> Result<ShardEntry> {
        ensure!(
            n < self.n_shards,
            "shard {n} is outside the plan of {} shards",
            self.n_shards
        );
        let rows = tensors
            .iter()
            .find(|t| t.name == "labels")
            .map(|t| t.shape[0])
            .context("a shard needs a `labels` tensor")?;
        let bytes = encode(tensors)?;
        let file = shard_file_name(n);
        write_atomic(&self.dir.join(&file), &bytes)?;
        let entry = ShardEntry {
            file,
            rows,
            bytes: bytes.len() as u64,
            checksum: hash_bytes(&bytes),
        };
        let side = Sidecar {
            input_hash: self.input_hash.clone(),
            entry: entry.clone(),
        };
        write_json_atomic(&self.sidecar_path(n), &side)?;
        Ok(entry)
    }

    /// Writes `index.json` if every shard's sidecar is present; returns whether the directory is
    /// now complete. An existing index is left untouched; concurrent finishers write identical
    /// bytes.
    pub fn finish(&self, meta: serde_json::Value) -> Result<bool> {
        if self.is_complete() {
            return Ok(true); // `open` checked that this index is for these inputs
        }
        let mut shards = Vec::with_capacity(self.n_shards);
        for n in 0..self.n_shards {
            match self.sidecar(n)? {
                Some(side) => shards.push(side.entry),
                None => return Ok(false),
            }
        }
        let index = ShardIndex {
            input_hash: self.input_hash.clone(),
            rows: shards.iter().map(|s| s.rows).sum(),
            shards,
            meta,
        };
        write_json_atomic(&self.dir.join(INDEX_FILE), &index)?;
        Ok(true)
    }

    /// `shard-NNNNN.lock`.
    pub fn lock_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("shard-{n:05}.lock"))
    }

    /// Takes the lock of shard `n` ([`Lock`]: released on drop; a dead local holder's lock is
    /// taken over), or fails at once naming the lock file, host and pid of the process that
    /// holds it. A writer takes it before computing the shard and checks [`Self::is_done`] again
    /// once it holds it.
    pub fn lock(&self, n: usize) -> Result<Lock> {
        let path = self.lock_path(n);
        Lock::acquire(&path).with_context(|| format!("locking shard {n} of {}", self.dir.display()))
    }
}

/// Reads the index of a complete shard directory; a missing index is an error saying so.
pub fn read_index(dir: &Path) -> Result<ShardIndex> {
    let path = dir.join(INDEX_FILE);
    if !path.exists() {
        bail!(
            "{} is not complete (no {INDEX_FILE}): run the stage that makes it first",
            dir.display()
        );
    }
    read_json(&path)
}

/// A shard file, memory-mapped; tensors are borrowed views into the map.
pub struct ShardReader {
    path: PathBuf,
    mmap: memmap2::Mmap,
}

impl ShardReader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening shard {}", path.display()))?;
        // SAFETY: shards are written once to a temporary name and renamed; nobody modifies a
        // shard file in place while it is mapped.
        let mmap = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping shard {}", path.display()))?;
        SafeTensors::deserialize(&mmap)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            mmap,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.mmap).expect("validated in open")
    }

    /// The named tensor.
    pub fn tensor(&self, name: &str) -> Result<TensorView<'_>> {
        self.tensors()
            .tensor(name)
            .with_context(|| format!("shard {} has no tensor `{name}`", self.path.display()))
    }

    /// The named tensor, checked to have `dtype`.
    fn typed(&self, name: &str, dtype: Dtype) -> Result<TensorView<'_>> {
        let t = self.tensor(name)?;
        ensure!(
            t.dtype() == dtype,
            "shard {}: `{name}` is {:?}, expected {dtype:?}",
            self.path.display(),
            t.dtype()
        );
        Ok(t)
    }

    /// `labels` (u8, 0 real / 1 fake).
    pub fn labels(&self) -> Result<Vec<u8>> {
        Ok(self.typed("labels", Dtype::U8)?.data().to_vec())
    }

    /// `ids` (u32 manifest ids).
    pub fn ids(&self) -> Result<Vec<u32>> {
        let t = self.typed("ids", Dtype::U32)?;
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Little-endian bytes of a u32 slice (for `ids`).
pub fn u32_bytes(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_one(d: &ShardDir, n: usize, rows: usize) -> ShardEntry {
        let labels = vec![1u8; rows];
        let ids = u32_bytes(&(0..rows as u32).collect::<Vec<_>>());
        let images = vec![n as u8; rows * 12];
        d.write(
            n,
            &[
                TensorData {
                    name: "images",
                    dtype: Dtype::U8,
                    shape: vec![rows, 3, 2, 2],
                    data: &images,
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
        .unwrap()
    }

    #[test]
    fn fill_resume_and_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let d = ShardDir::open(tmp.path(), "h1", 2).unwrap();
        assert!(!d.is_done(0).unwrap());
        write_one(&d, 0, 3);
        assert!(d.is_done(0).unwrap());
        assert!(
            !d.finish(serde_json::json!({})).unwrap(),
            "one shard missing"
        );
        // A killed process of this host left a torn temporary file: removed when reopened.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let torn = tmp.path().join(format!(
            "shard-00001.safetensors.{}.{dead}.tmp",
            crate::process::host()
        ));
        std::fs::write(&torn, b"junk").unwrap();
        let d = ShardDir::open(tmp.path(), "h1", 2).unwrap();
        assert!(!torn.exists());
        write_one(&d, 1, 2);
        assert!(d.finish(serde_json::json!({"k": 1})).unwrap());
        let idx = read_index(tmp.path()).unwrap();
        assert_eq!(idx.rows, 5);
        assert_eq!(idx.shards.len(), 2);
        let r = ShardReader::open(&tmp.path().join(&idx.shards[1].file)).unwrap();
        assert_eq!(r.labels().unwrap(), vec![1, 1]);
        assert_eq!(r.ids().unwrap(), vec![0, 1]);
        assert_eq!(r.tensor("images").unwrap().shape(), &[2, 3, 2, 2]);
    }

    #[test]
    fn corrupted_shard_is_redone_and_other_inputs_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let d = ShardDir::open(tmp.path(), "h1", 1).unwrap();
        write_one(&d, 0, 3);
        std::fs::write(tmp.path().join(shard_file_name(0)), b"bit rot").unwrap();
        assert!(!d.is_done(0).unwrap());
        let err = ShardDir::open(tmp.path(), "h2", 1)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("other inputs") && err.contains("h2"), "{err}");
        write_one(&d, 0, 3);
        d.finish(serde_json::Value::Null).unwrap();
        assert!(ShardDir::open(tmp.path(), "h2", 1).is_err());
        assert!(ShardDir::open(tmp.path(), "h1", 1).unwrap().is_complete());
    }

    #[test]
    fn incomplete_dir_has_no_index() {
        let tmp = tempfile::tempdir().unwrap();
        let err = read_index(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("not complete"), "{err}");
    }

    #[test]
    fn rows_per_shard_is_bounded() {
        assert_eq!(rows_per_shard(150_528, 256 << 20), 1783);
        assert_eq!(rows_per_shard(1 << 30, 1 << 20), 1);
    }
}
