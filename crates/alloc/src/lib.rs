//! dfd-alloc: the allocator every stage binary and benchmark runs under.
//!
//! A fine-tune step or a backbone forward frees and re-allocates tensors of tens of MB many
//! times per batch. mimalloc (like glibc) returns such blocks to the OS shortly after they are
//! freed, so the next allocation of the same size page-faults on fresh zeroed pages: measured on
//! the layer4 fine-tune step (batch 64, 14×14), 12% of the time in the kernel's `clear_page` and
//! 12.4 → 21.3 samples/s once freed memory is kept. Resident memory then stays at the peak of
//! what was live, which is what these workloads reach on every batch anyway.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;
//!
//! fn main() {
//!     dfd_alloc::keep_freed_memory();
//!     // ...
//! }
//! ```

pub use mimalloc::MiMalloc;

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay`: its ordinal in mimalloc v3's `mi_option_e` (libmimalloc-sys names no
/// constant for it). `-1` means never purge. A test checks the ordinal against the
/// `MIMALLOC_PURGE_DELAY` environment variable mimalloc itself reads.
const PURGE_DELAY: mi_option_t = 15;

/// Makes mimalloc keep freed memory for reuse instead of returning it to the OS. Call it first
/// thing in `main`; `MIMALLOC_PURGE_DELAY` in the environment (milliseconds) overrides it.
pub fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting a mimalloc option is a plain store into its option table; the ordinal
        // is checked by `purge_delay_ordinal_is_mimallocs` below.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) }
    }
}

/// The purge delay in effect (milliseconds; -1 = never).
#[allow(clippy::useless_conversion)] // `c_long` is 32 bits on some targets
pub fn purge_delay() -> i64 {
    // SAFETY: reading an option is a plain load from mimalloc's option table.
    i64::from(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const PROBE: &str = "DFD_ALLOC_PROBE";

    /// Runs in a child process whose environment sets mimalloc's own variable.
    #[test]
    fn purge_delay_ordinal_is_mimallocs() {
        if std::env::var_os(PROBE).is_some() {
            assert_eq!(
                purge_delay(),
                1234,
                "ordinal {PURGE_DELAY} is not purge_delay"
            );
            keep_freed_memory();
            assert_eq!(purge_delay(), 1234, "the environment must win");
            return;
        }
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::purge_delay_ordinal_is_mimallocs",
                "--nocapture",
            ])
            .env(PROBE, "1")
            .env("MIMALLOC_PURGE_DELAY", "1234")
            .status()
            .expect("re-running the test binary");
        assert!(status.success(), "child check failed");
    }

    #[test]
    fn keeping_freed_memory_disables_purging() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        keep_freed_memory();
        assert_eq!(purge_delay(), -1);
    }
}
