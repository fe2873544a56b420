//! Host-side access to f32 tensors and variables without copies where candle allows it: the
//! optimiser reads gradients and updates parameters in place through these.

use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Result, Storage, Tensor, Var};
use std::cell::RefCell;

use crate::storage::{all_cpu_f32, f32_data};

/// Calls `f` with every value of `t` (row-major) as one f32 slice: the tensor's own storage when
/// it is a contiguous f32 CPU tensor, otherwise a host copy (other devices, dtypes or layouts).
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    if all_cpu_f32(&[t]) && t.is_contiguous() {
        let (storage, layout) = t.storage_and_layout();
        if let Storage::Cpu(cpu) = &*storage {
            return Ok(f(f32_data(cpu, layout, t.elem_count(), "tensor")?));
        }
    }
    Ok(f(&host_copy(t)?))
}

/// Every value of `t` (row-major) copied to the host as f32.
fn host_copy(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
}

/// Updates the values of `var` in place with `f(values, src_values)`, both row-major f32 slices
/// of the same length (`src` must have as many elements as `var`).
///
/// For contiguous f32 CPU tensors this writes into the variable's own storage, with no copy;
/// otherwise it goes through host copies and [`Var::set`], with the same values.
pub fn update_f32(var: &Var, src: &Tensor, f: impl FnOnce(&mut [f32], &[f32])) -> Result<()> {
    if src.elem_count() != var.elem_count() {
        candle_core::bail!(
            "dfd-ops: updating {} values from {}",
            var.elem_count(),
            src.elem_count()
        )
    }
    if all_cpu_f32(&[var.as_tensor(), src]) && var.is_contiguous() && src.is_contiguous() {
        let op = InPlace(RefCell::new(Some(f)));
        return var.as_tensor().inplace_op2(src, &op);
    }
    let mut values = host_copy(var)?;
    with_f32(src, |s| f(&mut values, s))?;
    let t = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
    var.set(&t)
}

/// The in-place op behind [`update_f32`]; runs its closure once.
struct InPlace<F>(RefCell<Option<F>>);

impl<F: FnOnce(&mut [f32], &[f32])> InplaceOp2 for InPlace<F> {
    fn name(&self) -> &'static str {
        "dfd-update-f32"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let len = l1.shape().elem_count();
        let src = f32_data(s2, l2, len, "update source")?;
        let Some((start, end)) = l1.contiguous_offsets() else {
            candle_core::bail!("dfd-ops: updated variable is not contiguous")
        };
        let CpuStorage::F32(dst) = s1 else {
            candle_core::bail!("dfd-ops: updated variable is not f32")
        };
        let f = self.0.borrow_mut().take();
        let f = f.expect("the in-place update runs once");
        f(&mut dst[start..end], src);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn updates_a_cpu_variable_in_place_and_reads_without_copy() {
        let var = Var::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap();
        let src = Tensor::new(&[10f32, 20.0, 30.0], &Device::Cpu).unwrap();
        update_f32(&var, &src, |d, s| {
            d.iter_mut().zip(s).for_each(|(d, s)| *d += s);
        })
        .unwrap();
        assert_eq!(var.to_vec1::<f32>().unwrap(), [11.0, 22.0, 33.0]);
        let sum = with_f32(var.as_tensor(), |v| v.iter().sum::<f32>()).unwrap();
        assert_eq!(sum, 66.0);
    }

    #[test]
    fn other_dtypes_and_layouts_go_through_host_copies() {
        let var = Var::new(&[[1f64, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let src = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu)
            .unwrap()
            .t()
            .unwrap();
        update_f32(&var, &src, |d, s| {
            d.iter_mut().zip(s).for_each(|(d, s)| *d *= s);
        })
        .unwrap();
        assert_eq!(
            var.to_vec2::<f64>().unwrap(),
            [[1.0, 6.0], [6.0, 16.0]],
            "src read row-major through its transposed layout"
        );
        let wrong = Tensor::new(&[1f32], &Device::Cpu).unwrap();
        assert!(update_f32(&var, &wrong, |_, _| {}).is_err());
    }
}
