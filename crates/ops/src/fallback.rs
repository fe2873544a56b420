//! Forcing the fallbacks: every fast CPU path of this crate (and of callers that test
//! [`crate::cpu::all_cpu_f32`], such as dfd-model's fine-tune tape) is taken only when its tensors
//! are f32 on the CPU. On any other device the same call runs composed candle ops instead.
//! [`with_fallbacks`] runs a closure with those fast paths switched off on the calling thread, so
//! the code a GPU runs is tested on the CPU, against the fast path.

use std::cell::Cell;
use std::thread::LocalKey;

thread_local! {
    static FORCED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on this thread with every fast CPU path disabled: each op takes the fallback it takes
/// on other devices and dtypes. Nests; the previous state is restored afterwards, also on panic.
/// The decision is made on the calling thread before any work is spread over rayon's pool, so
/// other threads (parallel tests) are not affected.
pub fn with_fallbacks<R>(f: impl FnOnce() -> R) -> R {
    with_thread_value(&FORCED, true, f)
}

/// Runs `f` with the thread-local `key` set to `value`, restoring its previous value afterwards,
/// also on panic (the scoping of [`with_fallbacks`] and [`crate::compute::with_compute`]).
pub(crate) fn with_thread_value<T: Copy + 'static, R>(
    key: &'static LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|c| c.set(self.1));
        }
    }
    let _restore = Restore(key, key.with(|c| c.replace(value)));
    f()
}

/// True inside [`with_fallbacks`] on this thread.
pub fn forced() -> bool {
    FORCED.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forcing_is_scoped_and_per_thread() {
        assert!(!forced());
        with_fallbacks(|| {
            assert!(forced());
            with_fallbacks(|| assert!(forced()));
            assert!(forced());
            assert!(!std::thread::spawn(forced).join().unwrap());
        });
        assert!(!forced());
        let _ = std::panic::catch_unwind(|| with_fallbacks(|| panic!("inside")));
        assert!(!forced());
    }
}
