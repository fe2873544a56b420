//! Per-thread scratch buffers reused across calls, so the im2col matrices of every conv do not
//! cost a fresh (page-faulting) allocation each time.

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch slice of `len` floats with unspecified contents.
///
/// The buffer belongs to the calling thread and grows to the largest size asked for. A nested
/// call on the same thread (e.g. rayon work-stealing inside `f`) gets a fresh buffer instead of
/// the busy one.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|s| s.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    SCRATCH.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.len() < buf.len() {
            *slot = buf;
        }
    });
    out
}
