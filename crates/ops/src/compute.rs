//! The arithmetic of the GEMMs in this crate's fast CPU kernels: f32 (the default), or bf16
//! operands with f32 accumulation.
//!
//! The choice is made per thread with [`with_compute`], read when an op is built (a convolution
//! or linear layer records it, so its backward computes like its forward), and applies only to
//! the fast CPU kernels: the candle fallbacks compute in their tensors' dtype. Everything around
//! the GEMMs (BatchNorm, ReLU, pooling, the optimiser) stays f32, and so do GEMMs with fewer than
//! [`MIN_ROWS`] output rows (the narrow groups of layer1–3's grouped convolutions), where bf16
//! would not be faster.
//!
//! bf16 runs the AMX kernel where the CPU has AMX-BF16 and Linux grants the tile registers, else
//! the AVX512-BF16 microkernel where the CPU has it ([`bf16_native`], [`kernel_name`]). Elsewhere it is
//! emulated exactly: the operands are rounded to bf16 and multiplied by the f32 GEMM, which gives
//! the same products (a product of two bf16 values is exact in f32) and f32 sums in another
//! order. The emulation is slower than f32; it exists so that the numerics can be checked on any
//! CPU. Callers that take `bf16` from a user refuse it where it is not native, unless the user
//! asked for the emulation.

use std::cell::Cell;

pub use crate::bf16::{allow_amx, kernel_name, MIN_ROWS};

/// The arithmetic of a GEMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compute {
    /// f32 operands and sums.
    #[default]
    F32,
    /// Operands rounded to bf16 (round to nearest even), products summed in f32.
    Bf16,
}

thread_local! {
    static CURRENT: Cell<Compute> = const { Cell::new(Compute::F32) };
}

/// Runs `f` with the GEMMs of the ops it builds on this thread computing in `compute`. Nests; the
/// previous choice is restored afterwards, also on panic. Other threads are not affected.
pub fn with_compute<R>(compute: Compute, f: impl FnOnce() -> R) -> R {
    crate::fallback::with_thread_value(&CURRENT, compute, f)
}

/// The arithmetic ops built on this thread now use.
pub fn current() -> Compute {
    CURRENT.with(Cell::get)
}

/// Whether this CPU runs bf16 GEMMs natively (AVX-512F and AVX512-BF16); otherwise
/// [`Compute::Bf16`] is emulated.
pub fn bf16_native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_choice_is_scoped_and_per_thread() {
        assert_eq!(current(), Compute::F32);
        with_compute(Compute::Bf16, || {
            assert_eq!(current(), Compute::Bf16);
            with_compute(Compute::F32, || assert_eq!(current(), Compute::F32));
            assert_eq!(current(), Compute::Bf16);
            assert_eq!(std::thread::spawn(current).join().unwrap(), Compute::F32);
        });
        assert_eq!(current(), Compute::F32);
        let _ = std::panic::catch_unwind(|| with_compute(Compute::Bf16, || panic!("inside")));
        assert_eq!(current(), Compute::F32);
    }
}
