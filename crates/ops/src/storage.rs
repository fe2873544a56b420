//! Which tensors the CPU kernels take, and reading a custom op's arguments out of candle's CPU
//! storage.

use candle_core::{CpuStorage, DType, Layout, Result, Tensor};

/// Whether every tensor is f32 on the CPU: the only case the custom kernels handle (anything else
/// runs candle's own ops).
pub fn all_cpu_f32(tensors: &[&Tensor]) -> bool {
    !crate::fallback::forced()
        && tensors
            .iter()
            .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// The contiguous f32 values of `layout` in `storage`, which must hold exactly `len` of them;
/// `what` names the argument in errors.
pub(crate) fn f32_data<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    len: usize,
    what: &str,
) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) if end - start == len => Ok(&storage.as_slice::<f32>()?[start..end]),
        Some((start, end)) => candle_core::bail!(
            "dfd-ops: {what} has {} elements, expected {len}",
            end - start
        ),
        None => candle_core::bail!("dfd-ops: {what} is not contiguous"),
    }
}
