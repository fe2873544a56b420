//! Materialising a strided tensor view into contiguous row-major bytes.

use crate::torch::TensorRef;

/// Why a view cannot be materialised.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ViewFault {
    /// The view reaches outside its storage, or its sizes overflow.
    OutOfBounds(String),
    /// The view has more elements than its storage (an `expand`ed view, or overlapping strides):
    /// refused so that a few bytes of file cannot ask for unbounded memory.
    Overlapping { numel: usize, storage_numel: usize },
}

/// Copies the elements of `view` out of `storage` (its storage's bytes, exactly
/// `numel * dtype size` long) in row-major order.
pub(crate) fn materialize(view: &TensorRef, storage: &[u8]) -> Result<Vec<u8>, ViewFault> {
    let size = view.storage.dtype.size_in_bytes();
    let storage_numel = view.storage.numel;
    if Some(storage.len()) != storage_numel.checked_mul(size) {
        return Err(ViewFault::OutOfBounds(format!(
            "a storage of {storage_numel} elements holds {} bytes",
            storage.len()
        )));
    }
    let overflow = || ViewFault::OutOfBounds(format!("sizes {:?} overflow", view.shape));
    let numel = view
        .shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(overflow)?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    if numel > storage_numel {
        return Err(ViewFault::Overlapping {
            numel,
            storage_numel,
        });
    }
    // The highest element index the view touches (every size is >= 1 here).
    let last = view
        .shape
        .iter()
        .zip(&view.stride)
        .try_fold(view.offset, |at, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| at.checked_add(x))
        })
        .ok_or_else(overflow)?;
    if last >= storage_numel {
        return Err(ViewFault::OutOfBounds(format!(
            "sizes {:?}, strides {:?} at offset {} reach element {last} of a storage of {storage_numel}",
            view.shape, view.stride, view.offset
        )));
    }
    // From here on every index below is at most `last`, so slicing cannot fail.
    if is_contiguous(&view.shape, &view.stride) {
        return Ok(storage[view.offset * size..(view.offset + numel) * size].to_vec());
    }
    let mut out = Vec::with_capacity(numel * size);
    let (outer_shape, inner) = view.shape.split_at(view.shape.len() - 1);
    let (outer_stride, inner_stride) = view.stride.split_at(view.stride.len() - 1);
    let (inner, inner_stride) = (inner[0], inner_stride[0]);
    let mut index = vec![0usize; outer_shape.len()];
    loop {
        let base = view.offset
            + index
                .iter()
                .zip(outer_stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        if inner_stride == 1 {
            out.extend_from_slice(&storage[base * size..(base + inner) * size]);
        } else {
            for j in 0..inner {
                let at = (base + j * inner_stride) * size;
                out.extend_from_slice(&storage[at..at + size]);
            }
        }
        // Odometer over the outer dimensions, last one fastest.
        let mut dim = outer_shape.len();
        loop {
            if dim == 0 {
                return Ok(out);
            }
            dim -= 1;
            index[dim] += 1;
            if index[dim] < outer_shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
}

/// Row-major contiguity; the stride of a size-1 dimension does not matter.
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::torch::StorageRef;
    use crate::DType;

    fn view(numel: usize, offset: usize, shape: &[usize], stride: &[usize]) -> TensorRef {
        TensorRef {
            storage: Rc::new(StorageRef {
                key: "0".into(),
                dtype: DType::U8,
                numel,
            }),
            offset,
            shape: shape.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn run(
        numel: usize,
        offset: usize,
        shape: &[usize],
        stride: &[usize],
    ) -> Result<Vec<u8>, ViewFault> {
        let storage: Vec<u8> = (0..numel as u8).collect();
        materialize(&view(numel, offset, shape, stride), &storage)
    }

    #[test]
    fn contiguous_scalar_and_empty() {
        assert_eq!(run(6, 0, &[2, 3], &[3, 1]).unwrap(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(run(6, 4, &[], &[]).unwrap(), [4]);
        assert_eq!(run(6, 2, &[2, 1], &[1, 7]).unwrap(), [2, 3]);
        assert_eq!(run(6, 0, &[0, 3], &[3, 1]).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn strided_views_are_copied_row_major() {
        // The transpose of a 2x3 matrix.
        assert_eq!(run(6, 0, &[3, 2], &[1, 3]).unwrap(), [0, 3, 1, 4, 2, 5]);
        // Every other row, offset by one.
        assert_eq!(run(12, 1, &[2, 3], &[6, 1]).unwrap(), [1, 2, 3, 7, 8, 9]);
        // A 3-d permutation.
        assert_eq!(
            run(8, 0, &[2, 2, 2], &[1, 4, 2]).unwrap(),
            [0, 2, 4, 6, 1, 3, 5, 7]
        );
    }

    #[test]
    fn bad_views_are_refused() {
        assert!(matches!(
            run(6, 1, &[2, 3], &[3, 1]),
            Err(ViewFault::OutOfBounds(_))
        ));
        assert!(matches!(
            run(6, 0, &[3, 3], &[0, 1]),
            Err(ViewFault::Overlapping { .. })
        ));
        assert!(matches!(
            run(6, 0, &[usize::MAX, 2], &[1, 1]),
            Err(ViewFault::OutOfBounds(_))
        ));
        assert!(matches!(
            run(6, 0, &[2, 2], &[usize::MAX, 1]),
            Err(ViewFault::OutOfBounds(_))
        ));
    }
}
