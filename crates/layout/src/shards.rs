//! Shard directories: safetensors files written atomically, resumable, checked by hash.
//!
//! A job that fills a directory knows up front how many shards it will write (`n_shards`, a pure
//! function of its inputs) and the hash of everything that determines their bytes
//! (`input_hash`: config section, input index, weights identity…). For each shard it writes
//! `shard-NNNNN.safetensors` (atomically) and then a sidecar `shard-NNNNN.json` (its
//! [`ShardEntry`] plus the input hash). Once every sidecar is present, `index.json` lists them all:
//! the directory is complete. So:
//! - a rerun after a kill skips shards whose sidecar matches and whose file still has its checksum,
//!   and redoes the rest; a complete directory is re-verified (every shard against its checksum),
//!   so a shard whose bytes changed is redone and the index rewritten, identical;
//! - several processes (`--shard-index i --shard-count n`) can fill one directory without a
//!   coordinator: each writes its own shards, and whoever finds all sidecars present writes the
//!   (identical) index;
//! - a directory made from other inputs is refused with an error, never mixed.
//!
//! Tensors have fixed names: `images` (u8 N×3×S×S) or `features` (f16/f32 N×…), `labels` (u8 N,
//! 0 real / 1 fake), `ids` (u32 N, manifest ids). Readers open a complete directory as a
//! [`ShardSet`]; each shard's blake3 is checked against `index.json` once per process when it is
//! opened, before any row is used, and a mismatch names the file and the command that rebuilds it.
//! [`ShardReader`] gives the typed tensors: [`ShardReader::images`], [`ShardReader::features`]
//! (f16/f32 decoded to f32 here, once for every stage), [`ShardReader::labels`],
//! [`ShardReader::ids`].

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::atomic::{read_json, remove_stale_tmp, write_atomic, write_json_atomic};
use crate::hash::hash_bytes;
use crate::lock::{remove_stale_locks, Lock};
use crate::verify::{check_file, require_file, Check, Hashing};

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

impl ShardIndex {
    /// The backbone weights identity a feature directory was computed with (`meta.weights`,
    /// written by dfd-extract); None for image directories.
    pub fn weights_identity(&self) -> Option<&str> {
        self.meta.get("weights").and_then(|w| w.as_str())
    }
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

    /// True when `index.json` exists (for these inputs, as checked by `open`) and every shard it
    /// lists still has its checksum. A shard that fails is logged; [`ShardDir::is_done`] then
    /// reports it not done, so the rerun redoes it and [`ShardDir::finish`] rewrites the index.
    pub fn is_complete(&self) -> Result<bool> {
        let path = self.dir.join(INDEX_FILE);
        if !path.exists() {
            return Ok(false);
        }
        let index: ShardIndex = read_json(&path)?;
        for entry in &index.shards {
            let file = self.dir.join(&entry.file);
            match check_file(&file, &entry.checksum, Hashing::OncePerProcess)? {
                Check::Intact => {}
                Check::Missing => {
                    tracing::warn!("{} is missing: redoing it", file.display());
                    return Ok(false);
                }
                Check::Changed(_) => {
                    tracing::warn!(
                        "{} does not match its checksum in {}: redoing it",
                        file.display(),
                        path.display()
                    );
                    return Ok(false);
                }
            }
        }
        Ok(true)
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
        Ok(self.done_entry(n)?.is_some())
    }

    /// Shard `n`'s entry, when it is done (see [`ShardDir::is_done`]).
    fn done_entry(&self, n: usize) -> Result<Option<ShardEntry>> {
        let Some(side) = self.sidecar(n)? else {
            return Ok(None);
        };
        let path = self.dir.join(&side.entry.file);
        let intact =
            check_file(&path, &side.entry.checksum, Hashing::OncePerProcess)? == Check::Intact;
        Ok((side.input_hash == self.input_hash && intact).then_some(side.entry))
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

    /// Writes `index.json` if every shard is done (sidecar present, file verified); returns
    /// whether the directory is now complete. An index whose shards all verify is left untouched;
    /// concurrent finishers write identical bytes.
    pub fn finish(&self, meta: serde_json::Value) -> Result<bool> {
        if self.is_complete()? {
            return Ok(true); // `open` checked that this index is for these inputs
        }
        let mut shards = Vec::with_capacity(self.n_shards);
        for n in 0..self.n_shards {
            match self.done_entry(n)? {
                Some(entry) => shards.push(entry),
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

/// The backbone weights identity of the feature directory `dir` that `what` (a fold, a
/// checkpoint) was trained on, from its `index.json` (`unknown` when the index records none), to
/// compare with the features or weights it is now used with. `None`, with a warning naming both,
/// when the directory is gone: it cannot be compared, which is not an error.
pub fn trained_identity(dir: &Path, what: &str) -> Option<String> {
    match read_index(dir) {
        Ok(index) => Some(index.weights_identity().unwrap_or("unknown").to_string()),
        Err(_) => {
            tracing::warn!(
                "{what} was trained on {}, which is gone: its backbone cannot be compared",
                dir.display()
            );
            None
        }
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

/// A complete shard directory opened for reading: its index, and the command that rebuilds it
/// (named by every error about one of its shards).
#[derive(Clone, Debug)]
pub struct ShardSet {
    dir: PathBuf,
    index: ShardIndex,
    rebuild: String,
}

impl ShardSet {
    /// Reads `dir/index.json`. `rebuild` is the command line that makes the directory again
    /// (e.g. `dfd-extract --config p.toml --data-dir data`).
    pub fn open(dir: &Path, rebuild: &str) -> Result<Self> {
        let path = dir.join(INDEX_FILE);
        if !path.exists() {
            bail!(
                "{} is not complete (no {INDEX_FILE}): run `{rebuild}` first",
                dir.display()
            );
        }
        let index = read_json(&path)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            index,
            rebuild: rebuild.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> &ShardIndex {
        &self.index
    }

    /// Shard `n` of the index, mapped after its blake3 was checked against the index (once per
    /// process). Fails naming the file and the rebuild command when it is missing or changed.
    pub fn shard(&self, n: usize) -> Result<ShardReader> {
        let entry = self.index.shards.get(n).with_context(|| {
            format!(
                "{} lists {} shards, not {}",
                self.dir.join(INDEX_FILE).display(),
                self.index.shards.len(),
                n + 1
            )
        })?;
        let path = self.dir.join(&entry.file);
        require_file(
            &path,
            &entry.checksum,
            Hashing::OncePerProcess,
            &self.dir.join(INDEX_FILE),
            &self.rebuild,
        )?;
        ShardReader::map(&path, entry.rows)
    }

    /// Every shard, in index order (each verified as by [`ShardSet::shard`]).
    pub fn shards(&self) -> Result<Vec<ShardReader>> {
        (0..self.index.shards.len())
            .map(|n| self.shard(n))
            .collect()
    }
}

/// A verified shard file, memory-mapped; tensors are borrowed views into the map, checked to
/// hold the index's row count.
pub struct ShardReader {
    path: PathBuf,
    rows: usize,
    mmap: memmap2::Mmap,
}

impl ShardReader {
    fn map(path: &Path, rows: usize) -> Result<Self> {
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
            rows,
            mmap,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows of this shard (as listed in the index).
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.mmap).expect("validated in map")
    }

    /// The named tensor, checked to be one of `dtypes` with the index's row count.
    fn typed(&self, name: &str, dtypes: &[Dtype]) -> Result<TensorView<'_>> {
        let t = self
            .tensors()
            .tensor(name)
            .with_context(|| format!("shard {} has no tensor `{name}`", self.path.display()))?;
        ensure!(
            dtypes.contains(&t.dtype()),
            "shard {}: `{name}` is {}, expected {}",
            self.path.display(),
            dtype_name(t.dtype()),
            dtypes
                .iter()
                .map(|&d| dtype_name(d))
                .collect::<Vec<_>>()
                .join(" or ")
        );
        ensure!(
            t.shape().first() == Some(&self.rows),
            "shard {}: `{name}` has shape {:?}, but the index lists {} rows",
            self.path.display(),
            t.shape(),
            self.rows
        );
        Ok(t)
    }

    /// `labels` (u8, 0 real / 1 fake), one per row.
    pub fn labels(&self) -> Result<Vec<u8>> {
        Ok(self.typed("labels", &[Dtype::U8])?.data().to_vec())
    }

    /// `ids` (u32 manifest ids), one per row.
    pub fn ids(&self) -> Result<Vec<u32>> {
        let t = self.typed("ids", &[Dtype::U32])?;
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// `images` of an image shard: u8 `rows × 3 × size × size`, as planar bytes.
    pub fn images(&self, size: usize) -> Result<&[u8]> {
        let t = self.typed("images", &[Dtype::U8])?;
        let expected = [self.rows, 3, size, size];
        ensure!(
            t.shape() == expected,
            "{}: `images` has shape {:?}, expected U8 {expected:?} (is preprocess.size {size} the size \
             these shards were made at?)",
            self.path.display(),
            t.shape()
        );
        Ok(t.data())
    }

    /// `features` of a feature shard: f16 or f32, `rows × row shape` (at least one row dimension).
    pub fn features(&self) -> Result<FeatureRows<'_>> {
        let t = self.typed("features", &[Dtype::F16, Dtype::F32])?;
        let dtype = match t.dtype() {
            Dtype::F16 => FeatureDtype::F16,
            _ => FeatureDtype::F32,
        };
        Ok(FeatureRows {
            dtype,
            rows: self.rows,
            row_shape: t.shape()[1..].to_vec(),
            data: t.data(),
        })
    }
}

/// Element type of stored features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureDtype {
    F16,
    F32,
}

impl FeatureDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }
}

/// The `features` tensor of a shard, decoded to f32 on demand.
pub struct FeatureRows<'a> {
    dtype: FeatureDtype,
    rows: usize,
    row_shape: Vec<usize>,
    data: &'a [u8],
}

impl FeatureRows<'_> {
    pub fn dtype(&self) -> FeatureDtype {
        self.dtype
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Shape of one row (e.g. `[2048]` or `[1024, 14, 14]`).
    pub fn row_shape(&self) -> &[usize] {
        &self.row_shape
    }

    /// Elements per row.
    pub fn row_len(&self) -> usize {
        self.row_shape.iter().product()
    }

    /// The stored little-endian bytes of every row, undecoded.
    pub fn raw(&self) -> &[u8] {
        self.data
    }

    /// Decodes the rows `rows` into `out` (`rows.len() × row_len` values, row-major).
    ///
    /// # Panics
    /// If `rows` is outside the shard or `out` has another length (a caller's bug).
    pub fn decode_into(&self, rows: Range<usize>, out: &mut [f32]) {
        let d = self.row_len();
        assert!(rows.end <= self.rows, "rows {rows:?} of {}", self.rows);
        assert_eq!(out.len(), rows.len() * d, "output length");
        let elem = self.dtype.size();
        let bytes = &self.data[rows.start * d * elem..rows.end * d * elem];
        match self.dtype {
            FeatureDtype::F16 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            FeatureDtype::F32 => {
                for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        }
    }

    /// The rows `rows`, decoded to f32 (`rows.len() × row_len` values, row-major).
    pub fn decode(&self, rows: Range<usize>) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() * self.row_len()];
        self.decode_into(rows, &mut out);
        out
    }
}

/// Little-endian bytes of a u32 slice (for `ids`).
pub fn u32_bytes(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A safetensors dtype as people write it: `f16`, `f32`, `u8`.
fn dtype_name(dtype: safetensors::Dtype) -> String {
    format!("{dtype:?}").to_ascii_lowercase()
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
        let set = ShardSet::open(tmp.path(), "remake").unwrap();
        assert_eq!(set.index().rows, 5);
        assert_eq!(set.index().shards.len(), 2);
        let r = set.shard(1).unwrap();
        assert_eq!(r.labels().unwrap(), vec![1, 1]);
        assert_eq!(r.ids().unwrap(), vec![0, 1]);
        assert_eq!(r.images(2).unwrap(), &[1u8; 24][..]);
        assert!(r.images(3).is_err(), "another size");
        assert!(r.features().is_err(), "an image shard has no features");
    }

    fn flip_middle(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::thread::sleep(std::time::Duration::from_millis(25));
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_changed_shard_fails_its_read_and_a_complete_dir_redoes_it() {
        let tmp = tempfile::tempdir().unwrap();
        let d = ShardDir::open(tmp.path(), "h1", 2).unwrap();
        write_one(&d, 0, 3);
        write_one(&d, 1, 2);
        assert!(d.finish(serde_json::json!({})).unwrap());
        let index = std::fs::read(tmp.path().join(INDEX_FILE)).unwrap();
        let set = ShardSet::open(tmp.path(), "dfd-make --config p.toml").unwrap();
        set.shards().unwrap();
        let shard = tmp.path().join(shard_file_name(1));
        let good = std::fs::read(&shard).unwrap();
        flip_middle(&shard);
        let err = set.shard(1).err().unwrap().to_string();
        assert!(
            err.contains("shard-00001.safetensors is corrupt")
                && err.contains("rebuild it with: dfd-make --config p.toml"),
            "{err}"
        );
        assert!(set.shard(0).is_ok());
        // The producing stage's rerun: not complete, shard 1 not done, redone, same index.
        let d = ShardDir::open(tmp.path(), "h1", 2).unwrap();
        assert!(!d.is_complete().unwrap());
        assert!(d.is_done(0).unwrap() && !d.is_done(1).unwrap());
        write_one(&d, 1, 2);
        assert!(d.finish(serde_json::json!({})).unwrap());
        assert_eq!(std::fs::read(&shard).unwrap(), good);
        assert_eq!(std::fs::read(tmp.path().join(INDEX_FILE)).unwrap(), index);
        assert!(set.shard(1).is_ok());
    }

    #[test]
    fn features_decode_f16_and_f32_rows() {
        let tmp = tempfile::tempdir().unwrap();
        let values = [0.5f32, -1.0, 2.0, 3.25, 4.0, -0.125];
        let f32s: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16s: Vec<u8> = values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let (labels, ids) = (vec![0u8, 1, 0], u32_bytes(&[4, 5, 6]));
        for (name, dtype, data) in [("a", Dtype::F32, &f32s), ("b", Dtype::F16, &f16s)] {
            let d = ShardDir::open(&tmp.path().join(name), "f", 1).unwrap();
            d.write(
                0,
                &[
                    TensorData {
                        name: "features",
                        dtype,
                        shape: vec![3, 2],
                        data,
                    },
                    TensorData {
                        name: "labels",
                        dtype: Dtype::U8,
                        shape: vec![3],
                        data: &labels,
                    },
                    TensorData {
                        name: "ids",
                        dtype: Dtype::U32,
                        shape: vec![3],
                        data: &ids,
                    },
                ],
            )
            .unwrap();
            d.finish(serde_json::Value::Null).unwrap();
            let r = ShardSet::open(d.dir(), "x").unwrap().shard(0).unwrap();
            let f = r.features().unwrap();
            assert_eq!((f.rows(), f.row_shape(), f.row_len()), (3, &[2][..], 2));
            assert_eq!(f.decode(0..3), values);
            assert_eq!(f.decode(1..2), values[2..4]);
            assert_eq!(r.ids().unwrap(), [4, 5, 6]);
        }
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
        assert!(ShardDir::open(tmp.path(), "h1", 1)
            .unwrap()
            .is_complete()
            .unwrap());
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
