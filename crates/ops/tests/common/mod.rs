//! Helpers shared by the integration tests: deterministic inputs and a scaled closeness check.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Result, Tensor};

/// Deterministic values in [-1, 1) (xorshift), so failures reproduce.
pub fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

pub fn tensor(dims: &[usize], seed: u64) -> Result<Tensor> {
    Tensor::from_vec(values(dims.iter().product(), seed), dims, &Device::Cpu)
}

pub fn max_abs(t: &Tensor) -> Result<f32> {
    t.abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()
}

/// Asserts `max|got − want| <= 1e-4 · max(1, max|want|)`.
pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) -> Result<()> {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let diff = max_abs(&(got - want)?)?;
    let scale = max_abs(want)?.max(1.0);
    assert!(
        diff <= 1e-4 * scale,
        "{what}: max|diff| {diff:e} vs magnitude {scale}"
    );
    Ok(())
}

/// Asserts that `got` holds, for every `(var, want_var)` pair, a gradient of `var` close to
/// `want`'s gradient of `want_var` ([`assert_close`]); argument `i` is named in failures.
#[allow(dead_code)] // for the test crates that compare gradients (fallbacks, bf16)
pub fn assert_grads_close(
    what: &str,
    got: &GradStore,
    want: &GradStore,
    pairs: &[(&Tensor, &Tensor)],
) -> Result<()> {
    for (i, (var, want_var)) in pairs.iter().enumerate() {
        let (Some(g), Some(w)) = (got.get(var), want.get(want_var)) else {
            panic!("{what}: no gradient for argument {i}");
        };
        assert_close(&format!("{what}: gradient {i}"), g, w)?;
    }
    Ok(())
}
