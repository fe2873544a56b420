//! Streaming the input images in batches, read and normalised on a background thread.
//!
//! Memory stays flat at any data set size: one input shard is memory-mapped at a time, and the
//! reader runs at most [`READ_AHEAD`] batches ahead of the consumer (a bounded channel), so the
//! next batch is read and converted while the model computes the current one.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use dfd_layout::shards::{ShardReader, ShardSet};

/// Batches the reader thread may hold ready beyond the one being computed.
pub const READ_AHEAD: usize = 2;

/// A batch of images for one output shard.
pub struct Batch {
    /// The output shard these rows belong to.
    pub shard: usize,
    /// ImageNet-normalised images, f32 N×3×S×S on the CPU.
    pub images: Tensor,
    pub labels: Vec<u8>,
    pub ids: Vec<u32>,
}

/// One input shard, mapped, with its small tensors decoded.
struct OpenShard {
    number: usize,
    reader: ShardReader,
    labels: Vec<u8>,
    ids: Vec<u32>,
}

/// Random access to the global rows of a complete image directory, in index order; each shard
/// is verified against the index when first mapped.
pub struct InputRows {
    input: ShardSet,
    /// Global row at which each input shard starts, plus the total at the end.
    starts: Vec<usize>,
    size: usize,
    open: Option<OpenShard>,
}

impl InputRows {
    /// Rows of the image directory `input` holding `size`-px images.
    pub fn new(input: ShardSet, size: usize) -> Self {
        let mut starts = vec![0];
        for shard in &input.index().shards {
            starts.push(starts.last().copied().unwrap_or(0) + shard.rows);
        }
        Self {
            input,
            starts,
            size,
            open: None,
        }
    }

    /// Maps input shard `n` (unmapping the previous one) and checks its tensors.
    fn open_shard(&mut self, n: usize) -> Result<&OpenShard> {
        if self.open.as_ref().is_none_or(|o| o.number != n) {
            self.open = None;
            let reader = self.input.shard(n)?;
            reader.images(self.size)?;
            let labels = reader.labels()?;
            let ids = reader.ids()?;
            self.open = Some(OpenShard {
                number: n,
                reader,
                labels,
                ids,
            });
        }
        Ok(self.open.as_ref().expect("opened above"))
    }

    /// Copies the images (u8, N×3×S×S bytes), labels and ids of the global `rows`.
    pub fn read(&mut self, rows: Range<usize>) -> Result<(Vec<u8>, Vec<u8>, Vec<u32>)> {
        let total = *self.starts.last().expect("starts is never empty");
        ensure!(
            rows.end <= total,
            "rows {rows:?} are outside the {total} rows of {}",
            self.input.dir().display()
        );
        let size = self.size;
        let row_bytes = 3 * size * size;
        let mut images = Vec::with_capacity(rows.len() * row_bytes);
        let mut labels = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        let mut row = rows.start;
        while row < rows.end {
            // The input shard holding `row`: the last one starting at or before it.
            let n = self.starts.partition_point(|&s| s <= row) - 1;
            let (start, end) = (self.starts[n], self.starts[n + 1].min(rows.end));
            let shard = self.open_shard(n)?;
            let data = shard.reader.images(size)?;
            images.extend_from_slice(&data[(row - start) * row_bytes..(end - start) * row_bytes]);
            labels.extend_from_slice(&shard.labels[row - start..end - start]);
            ids.extend_from_slice(&shard.ids[row - start..end - start]);
            row = end;
        }
        Ok((images, labels, ids))
    }

    /// Reads `rows` of output shard `shard` and normalises them into a [`Batch`].
    fn batch(&mut self, shard: usize, rows: Range<usize>) -> Result<Batch> {
        let n = rows.len();
        let (images, labels, ids) = self.read(rows)?;
        let images = Tensor::from_vec(images, (n, 3, self.size, self.size), &Device::Cpu)
            .and_then(|u8s| dfd_model::imagenet_normalize(&u8s, DType::F32))
            .with_context(|| format!("normalising images of {}", self.input.dir().display()))?;
        Ok(Batch {
            shard,
            images,
            labels,
            ids,
        })
    }
}

/// Splits each `(shard, rows)` job into consecutive batches of at most `batch_size` rows; a batch
/// never spans two output shards.
pub fn batch_ranges(
    jobs: &[(usize, Range<usize>)],
    batch_size: usize,
) -> Vec<(usize, Range<usize>)> {
    jobs.iter()
        .flat_map(|(shard, rows)| {
            rows.clone()
                .step_by(batch_size.max(1))
                .map(move |start| (*shard, start..(start + batch_size).min(rows.end)))
        })
        .collect()
}

/// The batches of a list of output shards, produced by a background reader thread.
///
/// Iterating yields them in order; the first error ends the stream. Dropping the stream early
/// stops the reader at its next batch.
pub struct BatchStream {
    rx: Receiver<Result<Batch>>,
    reader: Option<JoinHandle<()>>,
}

impl BatchStream {
    /// Starts reading the rows of `jobs` (`(output shard, global rows)`, in order) from `input`.
    pub fn start(input: InputRows, jobs: &[(usize, Range<usize>)], batch_size: usize) -> Self {
        let (tx, rx) = sync_channel(READ_AHEAD);
        let ranges = batch_ranges(jobs, batch_size);
        let mut input = input;
        let reader = std::thread::spawn(move || {
            for (shard, rows) in ranges {
                let batch = input.batch(shard, rows);
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        Self {
            rx,
            reader: Some(reader),
        }
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        match self.rx.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                // The reader has finished (or panicked): surface a panic as an error.
                let reader = self.reader.take()?;
                reader
                    .join()
                    .err()
                    .map(|_| Err(anyhow::anyhow!("the image reader thread panicked")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_inside_their_shard() {
        let jobs = [(0, 0..5), (2, 10..13)];
        let got = batch_ranges(&jobs, 2);
        assert_eq!(
            got,
            [(0, 0..2), (0, 2..4), (0, 4..5), (2, 10..12), (2, 12..13)]
        );
        assert_eq!(batch_ranges(&jobs, 100), jobs);
    }
}
