//! A thin, bounds-checked wrapper around `gemm::gemm` for row/column-strided f32 matrices.

use gemm::{gemm, Parallelism};

/// A read-only `rows×cols` matrix inside a slice: element `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows×cols` matrix with row stride `rs` at the start of `data`.
    ///
    /// Panics when the matrix does not fit in `data`.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        let m = MatRef {
            data,
            rows,
            cols,
            rs,
            cs: 1,
        };
        assert!(
            m.fits(data.len()),
            "matrix {rows}x{cols} (rs {rs}) outside slice"
        );
        m
    }

    /// The transpose (a view, no copy).
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn fits(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < len
    }
}

/// A writable row-major `rows×cols` matrix with row stride `rs` at the start of a slice.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> MatMut<'a> {
    /// Panics when the matrix does not fit in `data`.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        let fits = rows == 0 || cols == 0 || (rows - 1) * rs + cols <= data.len();
        assert!(fits, "matrix {rows}x{cols} (rs {rs}) outside slice");
        MatMut {
            data,
            rows,
            cols,
            rs,
        }
    }
}

/// `dst = a·b`, or `dst += a·b` when `accumulate`. Panics on mismatched sizes.
pub(crate) fn matmul(
    dst: MatMut<'_>,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    par: Parallelism,
) {
    assert!(
        a.rows == dst.rows && b.cols == dst.cols && a.cols == b.rows,
        "matmul {}x{} = {}x{} · {}x{}",
        dst.rows,
        dst.cols,
        a.rows,
        a.cols,
        b.rows,
        b.cols
    );
    let k = a.cols;
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..dst.rows {
                dst.data[r * dst.rs..][..dst.cols].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: the constructors checked that every element addressed through (rows, cols, rs, cs)
    // lies inside its slice, the sizes agree (asserted above), and `dst` is borrowed mutably so it
    // cannot alias `a` or `b`.
    unsafe {
        gemm(
            dst.rows,
            dst.cols,
            k,
            dst.data.as_mut_ptr(),
            1,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_and_transposed_products_match_the_definition() {
        // a: 2×3 inside a row stride of 4; b given as its transpose (3×2 stored 2×3).
        let a = [1.0, 2.0, 3.0, 99.0, 4.0, 5.0, 6.0];
        let bt = [1.0, 0.5, -1.0, 2.0, 0.0, 1.0];
        let mut d = [10.0f32; 4];
        let bref = MatRef::rows(&bt, 2, 3, 3).t();
        matmul(
            MatMut::rows(&mut d, 2, 2, 2),
            true,
            MatRef::rows(&a, 2, 3, 4),
            bref,
            Parallelism::None,
        );
        // a·b = [[1-1+... ]]: row0·col0 = 1·1+2·0.5+3·(-1) = -1; row0·col1 = 2+0+3 = 5
        // row1·col0 = 4+2.5-6 = 0.5; row1·col1 = 8+0+6 = 14
        assert_eq!(d, [9.0, 15.0, 10.5, 24.0]);
    }
}
