//! A thin, bounds-checked wrapper around `gemm::gemm` for row/column-strided f32 matrices, which
//! hands bf16 products to [`crate::bf16`].

use crate::compute::Compute;
use gemm::{gemm, Parallelism};
use rayon::prelude::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// A read-only `rows×cols` matrix inside a slice: element `(r, c)` is `data[r·rs + c·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
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

    /// Element `(r, c)`; panics outside the slice.
    pub fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }

    /// Rows `start..start+len` (a view). Panics when they are not inside the matrix.
    pub fn row_range(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.rows,
            "rows {start}+{len} of {}",
            self.rows
        );
        MatRef {
            data: &self.data[(start * self.rs).min(self.data.len())..],
            rows: len,
            ..self
        }
    }

    /// Columns `start..start+len` (a view). Panics when they are not inside the matrix.
    pub fn col_range(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.cols,
            "cols {start}+{len} of {}",
            self.cols
        );
        MatRef {
            data: &self.data[(start * self.cs).min(self.data.len())..],
            cols: len,
            ..self
        }
    }

    /// Whether each row is contiguous (unit column stride).
    pub fn rows_contiguous(&self) -> bool {
        self.cs == 1
    }

    /// The matrix written row-major into `out` (`rows·cols` long), in 16×16 blocks so that a
    /// column-major source is read and written a cache line at a time (whole blocks of one with
    /// contiguous columns transposed in AVX-512 registers where the CPU has them).
    pub fn copy_to_rows(&self, out: &mut [f32]) {
        const B: usize = 16;
        let out = &mut out[..self.rows * self.cols];
        #[cfg(target_arch = "x86_64")]
        let registers = self.rs == 1 && std::arch::is_x86_feature_detected!("avx512f");
        for r0 in (0..self.rows).step_by(B) {
            for c0 in (0..self.cols).step_by(B) {
                #[cfg(target_arch = "x86_64")]
                if registers && r0 + B <= self.rows && c0 + B <= self.cols {
                    // SAFETY: the CPU has AVX-512F.
                    unsafe { self.block_to_rows_avx512((r0, c0), out) };
                    continue;
                }
                for c in c0..(c0 + B).min(self.cols) {
                    for r in r0..(r0 + B).min(self.rows) {
                        out[r * self.cols + c] = self.data[r * self.rs + c * self.cs];
                    }
                }
            }
        }
    }

    /// The 16×16 block at `(r0, c0)` of a matrix with contiguous columns (`rs` = 1) written
    /// into the row-major `out` (`cols` wide): one vector per column, transposed.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn block_to_rows_avx512(&self, (r0, c0): (usize, usize), out: &mut [f32]) {
        use std::arch::x86_64::*;
        let columns: [__m512i; 16] = std::array::from_fn(|j| {
            let run = &self.data[(c0 + j) * self.cs + r0..][..16];
            // SAFETY: `run` holds 16 values; the CPU has AVX-512F.
            unsafe { _mm512_castps_si512(_mm512_loadu_ps(run.as_ptr())) }
        });
        for (i, row) in crate::transpose::words_16x16(columns).iter().enumerate() {
            let dst = &mut out[(r0 + i) * self.cols + c0..][..16];
            _mm512_storeu_si512(dst.as_mut_ptr().cast(), *row);
        }
    }

    /// Elements `c0..c0+n` of row `r`: borrowed when the row is contiguous, else gathered into
    /// `tmp` (at least `n` long). Panics outside the matrix.
    pub fn row_run<'s>(&'s self, r: usize, c0: usize, n: usize, tmp: &'s mut [f32]) -> &'s [f32] {
        assert!(
            r < self.rows && c0 + n <= self.cols,
            "run {r},{c0}+{n} outside"
        );
        if self.cs == 1 {
            let start = r * self.rs + c0;
            return &self.data[start..start + n];
        }
        for (j, t) in tmp[..n].iter_mut().enumerate() {
            *t = self.at(r, c0 + j);
        }
        &tmp[..n]
    }

    fn fits(&self, len: usize) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < len
    }
}

/// A writable row-major `rows×cols` matrix with row stride `rs` at the start of a slice, whose
/// values may be uninitialised (then it can only be overwritten, not accumulated into).
pub(crate) struct MatMut<'a> {
    pub(crate) ptr: *mut f32,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: usize,
    initialised: bool,
    _borrow: PhantomData<&'a mut [f32]>,
}

impl<'a> MatMut<'a> {
    /// Panics when the matrix does not fit in `data`.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self::new(data.as_mut_ptr(), data.len(), (rows, cols, rs), true)
    }

    /// [`MatMut::rows`] over slots that may not be initialised yet.
    pub fn uninit(data: &'a mut [MaybeUninit<f32>], rows: usize, cols: usize, rs: usize) -> Self {
        Self::new(
            data.as_mut_ptr().cast(),
            data.len(),
            (rows, cols, rs),
            false,
        )
    }

    fn new(
        ptr: *mut f32,
        len: usize,
        (rows, cols, rs): (usize, usize, usize),
        initialised: bool,
    ) -> Self {
        let fits = rows == 0 || cols == 0 || (rows - 1) * rs + cols <= len;
        assert!(fits, "matrix {rows}x{cols} (rs {rs}) outside slice");
        MatMut {
            ptr,
            rows,
            cols,
            rs,
            initialised,
            _borrow: PhantomData,
        }
    }

    /// Sets every element to 0.
    fn fill_zero(&mut self) {
        for r in 0..self.rows {
            // SAFETY: row `r` lies inside the borrowed slice (checked in `new`); writing through
            // the pointer initialises it.
            unsafe { std::ptr::write_bytes(self.ptr.add(r * self.rs), 0, self.cols) };
        }
    }
}

/// `dst = a·b`, or `dst += a·b` when `accumulate`, in `compute`'s arithmetic: afterwards every
/// element of `dst` is initialised. Panics on mismatched sizes, or when accumulating into an
/// uninitialised `dst`.
pub(crate) fn matmul(
    mut dst: MatMut<'_>,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    par: Parallelism,
    compute: Compute,
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
    assert!(
        dst.initialised || !accumulate,
        "accumulating into an uninitialised matrix"
    );
    let k = a.cols;
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill_zero();
        }
        return;
    }
    let k = a.cols;
    if compute == Compute::Bf16 {
        return crate::bf16::matmul(dst, accumulate, a, b, par);
    }
    if let Some(chunk) = column_chunk(&dst, k, par) {
        return split_columns(dst, accumulate, (a, b), chunk, compute);
    }
    // SAFETY: the constructors checked that every element addressed through (rows, cols, rs, cs)
    // lies inside its slice, the sizes agree (asserted above), and `dst` is borrowed mutably so it
    // cannot alias `a` or `b`. Without `accumulate` gemm only writes `dst` (never reads it), so
    // uninitialised slots are fine.
    unsafe {
        gemm(
            dst.rows,
            dst.cols,
            k,
            dst.ptr,
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

/// The threads `par` asks for (rayon's count for `Rayon(0)`).
pub(crate) fn threads(par: Parallelism) -> usize {
    match par {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => rayon::current_num_threads(),
        Parallelism::Rayon(n) => n,
    }
}

/// gemm's widest f32 register tile spans this many destination columns (4 AVX-512 vectors).
const PANEL: usize = 64;

/// Products with fewer multiply-adds than this keep `gemm`'s own threading, whatever `par` says.
const SPLIT_WORK: usize = 1 << 22;

/// The columns per thread when a multi-threaded product is better run as [`split_columns`]: a
/// whole number of [`PANEL`]s, at least one per thread; `None` for one thread, or a product too
/// small or too narrow.
fn column_chunk(dst: &MatMut<'_>, k: usize, par: Parallelism) -> Option<usize> {
    let threads = threads(par);
    let wide = dst.cols >= PANEL * threads;
    (threads > 1 && wide && dst.rows * dst.cols * k >= SPLIT_WORK)
        .then(|| dst.cols.div_ceil(threads).next_multiple_of(PANEL))
}

/// `dst (+)= a·b` as one single-threaded GEMM per run of `chunk` columns, the runs in parallel.
/// `gemm`'s own threading of the fine-tune's large products (layer4's 1×1 convolutions over a
/// whole channels-major batch, their gradients, a linear layer's) left 2–3% of the step on the
/// table; this way, against gemm's threading in 5 alternating pairs, the fine-tune step runs
/// 1.03× (1.01–1.07×) faster at 14×14 and 1.02× (0.99–1.07×) at 8×8, the MLP step 1.02×
/// (0.95–1.08×). Each run packs only its own columns of `b` (which `gemm` packs, as it packs any
/// operand whose rows it vectorises over); `a` is read by all of them.
fn split_columns(
    dst: MatMut<'_>,
    accumulate: bool,
    (a, b): (MatRef<'_>, MatRef<'_>),
    chunk: usize,
    compute: Compute,
) {
    // The raw pointer as an address, so the runs (which write disjoint columns) can share it.
    let base = dst.ptr as usize;
    let (rows, rs, initialised) = (dst.rows, dst.rs, dst.initialised);
    (0..dst.cols.div_ceil(chunk)).into_par_iter().for_each(|i| {
        let c0 = i * chunk;
        let cols = chunk.min(dst.cols - c0);
        let run = MatMut {
            // Columns `c0 .. c0+cols` of every row: inside `dst`, and no other run's.
            ptr: (base as *mut f32).wrapping_add(c0),
            rows,
            cols,
            rs,
            initialised,
            _borrow: PhantomData,
        };
        let b = b.col_range(c0, cols);
        matmul(run, accumulate, a, b, Parallelism::None, compute);
    });
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
            Compute::F32,
        );
        // a·b = [[1-1+... ]]: row0·col0 = 1·1+2·0.5+3·(-1) = -1; row0·col1 = 2+0+3 = 5
        // row1·col0 = 4+2.5-6 = 0.5; row1·col1 = 8+0+6 = 14
        assert_eq!(d, [9.0, 15.0, 10.5, 24.0]);
    }

    #[test]
    fn copies_to_rows_equal_the_elements() {
        // Column-major (whole 16×16 blocks and partial ones), strided and row-major sources.
        let (rows, cols) = (37, 50);
        let data: Vec<f32> = (0..rows * cols * 2).map(|i| i as f32 * 0.5 - 7.0).collect();
        let sources = [
            MatRef::rows(&data, cols, rows, rows).t(),
            MatRef::rows(&data, cols, rows, 2 * rows).t(),
            MatRef::rows(&data, rows, cols, cols),
        ];
        for m in sources {
            let mut out = vec![f32::NAN; rows * cols];
            m.copy_to_rows(&mut out);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(out[r * cols + c], m.at(r, c), "({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn uninitialised_destinations_are_overwritten_and_never_accumulated_into() {
        let (a, b) = ([1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 0.0, 1.0]);
        let mut d = [std::mem::MaybeUninit::<f32>::uninit(); 4];
        let (a, b) = (MatRef::rows(&a, 2, 2, 2), MatRef::rows(&b, 2, 2, 2));
        matmul(
            MatMut::uninit(&mut d, 2, 2, 2),
            false,
            a,
            b,
            Parallelism::None,
            Compute::F32,
        );
        // SAFETY: the product wrote all four elements.
        let d = d.map(|v| unsafe { v.assume_init() });
        assert_eq!(d, [1.0, 2.0, 3.0, 4.0]);
        let mut u = [std::mem::MaybeUninit::<f32>::uninit(); 4];
        let accumulate = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            matmul(
                MatMut::uninit(&mut u, 2, 2, 2),
                true,
                a,
                b,
                Parallelism::None,
                Compute::F32,
            )
        }));
        assert!(accumulate.is_err());
    }

    #[test]
    fn products_split_by_columns_equal_the_definition() {
        // 70×301 = a (row stride 203, 200 used) · b (given as its transpose): above SPLIT_WORK,
        // 301 columns in runs of 192 and 109 on two threads, three runs of 128, 128, 45 on three.
        let (m, n, k) = (70, 301, 200);
        let av: Vec<f32> = (0..m * 203)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let bt: Vec<f32> = (0..n * k)
            .map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0)
            .collect();
        let (a, b) = (MatRef::rows(&av, m, k, 203), MatRef::rows(&bt, n, k, k).t());
        let want = |r: usize, c: usize| -> f64 {
            (0..k)
                .map(|i| f64::from(a.at(r, i)) * f64::from(b.at(i, c)))
                .sum()
        };
        for (threads, runs) in [(2, 2), (3, 3)] {
            let par = Parallelism::Rayon(threads);
            let dst = MatMut::rows(&mut [], 0, 0, 0);
            assert_eq!(column_chunk(&dst, k, par), None, "empty");
            let mut d = vec![1.0f32; m * n];
            let chunk = column_chunk(&MatMut::rows(&mut d, m, n, n), k, par).unwrap();
            assert_eq!((n.div_ceil(chunk), chunk % PANEL), (runs, 0));
            for accumulate in [false, true] {
                d.fill(1.0);
                matmul(
                    MatMut::rows(&mut d, m, n, n),
                    accumulate,
                    a,
                    b,
                    par,
                    Compute::F32,
                );
                for (i, &got) in d.iter().enumerate() {
                    let w = want(i / n, i % n) + if accumulate { 1.0 } else { 0.0 };
                    assert!((f64::from(got) - w).abs() < 1e-3, "[{i}] {got} vs {w}");
                }
            }
        }
        // One thread, or too little work, keeps gemm's own path.
        let mut d = vec![0f32; m * n];
        let dst = MatMut::rows(&mut d, m, n, n);
        assert_eq!(column_chunk(&dst, k, Parallelism::None), None);
        assert_eq!(column_chunk(&dst, 8, Parallelism::Rayon(2)), None);
    }
}
