//! Output buffers for the kernels, made without a serial zeroing pass: `vec![0.0; n]` zeroes
//! tens of MB on the calling thread while every other core waits, before a kernel overwrites
//! them anyway.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `len` zeros, written in parallel (for outputs a kernel takes as `&mut [f32]`).
pub(crate) fn zeros(len: usize) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    v.par_extend(rayon::iter::repeat_n(0.0f32, len));
    v
}

/// The `len` values `values(0)`, `values(1)`, … yield in order: piece `i` fills the `chunk`
/// values from `i·chunk` (the last piece may be shorter), pieces in parallel, each value written
/// once. Panics when a piece yields fewer values than its length.
pub(crate) fn par_collect<I>(
    len: usize,
    chunk: usize,
    values: impl Fn(usize) -> I + Sync,
) -> Vec<f32>
where
    I: Iterator<Item = f32>,
{
    let mut v = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, slots)| {
            let written = write_all(slots, values(i));
            assert_eq!(written, slots.len(), "piece {i} yielded too few values");
        });
    // SAFETY: every piece of the first `len` slots was written in full (asserted above; a panic
    // propagates before this line, leaving the vector empty).
    unsafe { v.set_len(len) };
    v
}

/// A vector of `len` values that `fill` writes into uninitialised slots.
///
/// # Safety
/// `fill` must write every slot. (Debug builds fill the slots with NaN first, so a slot a kernel
/// forgets shows up in tests instead of as leftover memory.)
pub(crate) unsafe fn written(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v = Vec::with_capacity(len);
    let slots = &mut v.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        slots.iter_mut().for_each(|s| {
            s.write(f32::NAN);
        });
    }
    fill(slots);
    // SAFETY: the caller guarantees `fill` wrote all `len` slots.
    unsafe { v.set_len(len) };
    v
}

/// The values of `slots` once every one of them has been written.
///
/// # Safety
/// Every slot must be initialised.
pub(crate) unsafe fn assume_init(slots: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and the caller guarantees every slot holds
    // an initialised value.
    unsafe { std::slice::from_raw_parts_mut(slots.as_mut_ptr().cast(), slots.len()) }
}

/// Sets every slot to 0 and returns them as values.
pub(crate) fn zeroed(slots: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    slots.iter_mut().for_each(|s| {
        s.write(0.0);
    });
    // SAFETY: every slot was just written.
    unsafe { assume_init(slots) }
}

/// Writes `values` into `slots` from the start; returns how many were written.
fn write_all(slots: &mut [MaybeUninit<f32>], values: impl Iterator<Item = f32>) -> usize {
    slots
        .iter_mut()
        .zip(values)
        .map(|(slot, value)| {
            slot.write(value);
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_collect_writes_every_piece_in_order() {
        let v = par_collect(10, 4, |i| (0..4).map(move |j| (i * 4 + j) as f32));
        assert_eq!(v, (0..10).map(|k| k as f32).collect::<Vec<_>>());
        assert_eq!(zeros(5), vec![0.0; 5]);
    }

    #[test]
    #[should_panic(expected = "too few values")]
    fn par_collect_refuses_short_pieces() {
        par_collect(8, 4, |i| (0..i + 3).map(|k| k as f32));
    }
}
