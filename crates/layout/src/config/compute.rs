//! Whether this machine may compute in bf16 (`extract.compute`/`train.compute = "bf16"`).

use anyhow::{bail, Result};

/// Set to `emulate` to allow bf16 on a CPU without AVX512-BF16: the same arithmetic, emulated
/// (operands rounded to bf16 and multiplied in f32), slower than f32. For checking bf16 numerics
/// on any machine; anything else in it is an error.
pub const BF16_ENV: &str = "DFD_BF16";

/// Ok when the CPU has AVX-512F and AVX512-BF16, or [`BF16_ENV`] is `emulate`; otherwise one
/// error saying what is missing and what to do.
pub fn bf16_usable() -> Result<()> {
    match std::env::var_os(BF16_ENV) {
        Some(v) if v == "emulate" => return Ok(()),
        Some(v) => bail!(
            "{BF16_ENV}={} is not understood: it is `emulate` or unset",
            v.to_string_lossy()
        ),
        None => {}
    }
    if !cpu_has_bf16() {
        bail!(
            "this CPU has no AVX512-BF16 (Zen 4/5, Sapphire Rapids and later have it); use \
             \"f32\", or set {BF16_ENV}=emulate to check bf16 numerics slowly"
        );
    }
    Ok(())
}

/// AVX-512F and AVX512-BF16 (what dfd-ops' bf16 kernel needs).
pub fn cpu_has_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
