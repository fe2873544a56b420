//! Per-thread scratch buffers reused across calls, so the im2col matrices of every conv do not
//! cost a fresh (page-faulting) allocation each time.

use std::cell::RefCell;

use std::thread::LocalKey;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static BF16: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    static F32_COPY: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    static PACKED: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a scratch slice of `len` floats with unspecified contents.
///
/// The buffer belongs to the calling thread and grows to the largest size asked for. A nested
/// call on the same thread (e.g. rayon work-stealing inside `f`) gets a fresh buffer instead of
/// the busy one.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&SCRATCH, len, f)
}

/// [`with_scratch`] for the bf16 kernels' packed panels (a buffer of its own, so that packing
/// inside a caller's scratch does not allocate).
pub(crate) fn with_bf16_scratch<R>(len: usize, f: impl FnOnce(&mut [u16]) -> R) -> R {
    with_buffer(&BF16, len, f)
}

/// [`with_scratch`] for an operand copied before a product (a buffer of its own, as above).
pub(crate) fn with_operand_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_buffer(&F32_COPY, len, f)
}

/// [`with_scratch`] for a bf16 operand packed whole and shared by the threads of one product.
pub(crate) fn with_packed_scratch<R>(len: usize, f: impl FnOnce(&mut [u16]) -> R) -> R {
    with_buffer(&PACKED, len, f)
}

fn with_buffer<T: Copy + Default, R>(
    key: &'static LocalKey<RefCell<Vec<T>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buf = key.with(|s| s.take());
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    let out = f(&mut buf[..len]);
    key.with(|s| {
        let mut slot = s.borrow_mut();
        if slot.len() < buf.len() {
            *slot = buf;
        }
    });
    out
}
