//! Where a caller's own code runs relative to rayon's pool.

use crate::compute::{self, with_compute};
use crate::fallback::{self, with_fallbacks};

/// Runs `f` on one of rayon's worker threads and waits for it (directly when already on one).
///
/// The parallel kernels `f` calls then run with that thread as one of their workers. Called from
/// outside the pool, each parallel kernel would instead wake every pool thread while the caller
/// sleeps, and the pool's threads spin between kernels while the caller's serial code runs: with
/// as many pool threads as cores, one more thread than cores competes. The calling thread's
/// [`compute::current`] and [`fallback::forced`] are carried over into `f`.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    let (compute, forced) = (compute::current(), fallback::forced());
    rayon::scope(|_| with_compute(compute, || if forced { with_fallbacks(f) } else { f() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Compute;

    #[test]
    fn f_runs_on_a_worker_with_the_callers_choices() {
        assert!(on_pool(|| rayon::current_thread_index().is_some()));
        let seen = with_compute(Compute::Bf16, || {
            with_fallbacks(|| on_pool(|| (compute::current(), fallback::forced())))
        });
        assert_eq!(seen, (Compute::Bf16, true));
        assert_eq!(
            on_pool(|| (compute::current(), fallback::forced())),
            (Compute::F32, false)
        );
    }
}
