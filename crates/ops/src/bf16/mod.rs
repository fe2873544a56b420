//! GEMM with bf16 operands and f32 sums ([`crate::compute::Compute::Bf16`]): the AVX512-BF16
//! kernel where the CPU has it, else the exact emulation (operands rounded to bf16, then the f32
//! GEMM).

mod kernel;
mod lanes;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::compute::{bf16_native, Compute};
use crate::matmul::{MatMut, MatRef};
use kernel::{Dst, MR, NR};

/// `x` rounded to bf16 (nearest, ties to even), as raw bits.
pub(crate) fn round_bits(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// `x` rounded to bf16, as an f32.
pub(crate) fn round(x: f32) -> f32 {
    half::bf16::from_f32(x).to_f32()
}

/// `dst = a·b` (or `+=` when `accumulate`) with bf16 operands and f32 sums, in parallel per
/// `par`. Sizes as in [`crate::matmul::matmul`], which checked them.
pub(crate) fn matmul(
    dst: MatMut<'_>,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    par: Parallelism,
) {
    if !bf16_native() {
        return emulated(dst, accumulate, a, b, par);
    }
    #[cfg(target_arch = "x86_64")]
    split(dst, a, b, par, |d, a, b| {
        // SAFETY: `split` hands out disjoint blocks of `dst` with the matching rows of `a` and
        // columns of `b`; `bf16_native` checked the CPU features.
        unsafe { kernel::avx512(d, accumulate, a, b) }
    });
}

/// The emulation: `a` and `b` rounded to bf16 into row-major copies, multiplied by the f32 GEMM.
fn emulated(dst: MatMut<'_>, accumulate: bool, a: MatRef<'_>, b: MatRef<'_>, par: Parallelism) {
    let rounded = |m: &MatRef<'_>| -> Vec<f32> {
        (0..m.rows)
            .flat_map(|r| (0..m.cols).map(move |c| (r, c)))
            .map(|(r, c)| round(m.at(r, c)))
            .collect()
    };
    let (ar, br) = (rounded(&a), rounded(&b));
    crate::matmul::matmul(
        dst,
        accumulate,
        MatRef::rows(&ar, a.rows, a.cols, a.cols),
        MatRef::rows(&br, b.rows, b.cols, b.cols),
        par,
        Compute::F32,
    );
}

/// Runs `f` on blocks of `dst` that together cover it, each with its rows of `a` and columns of
/// `b`: one block per thread of `par`, cut along the longer side in whole tiles.
fn split(
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    par: Parallelism,
    f: impl Fn(Dst, MatRef<'_>, MatRef<'_>) + Sync,
) {
    let whole = Dst {
        ptr: dst.ptr,
        rows: dst.rows,
        cols: dst.cols,
        rs: dst.rs,
    };
    let threads = match par {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => rayon::current_num_threads(),
        Parallelism::Rayon(n) => n,
    };
    if threads <= 1 {
        return f(whole, a, b);
    }
    let by_rows = whole.rows >= whole.cols;
    let (len, tile) = if by_rows {
        (whole.rows, MR)
    } else {
        (whole.cols, NR)
    };
    let chunk = len.div_ceil(threads).next_multiple_of(tile);
    (0..len.div_ceil(chunk)).into_par_iter().for_each(|i| {
        let (start, n) = (i * chunk, chunk.min(len - i * chunk));
        if by_rows {
            f(whole.rows_at(start, n), a.row_range(start, n), b);
        } else {
            f(whole.cols_at(start, n), a, b.col_range(start, n));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::kernel::gemm;
    use super::lanes::Emulated;
    use super::*;

    /// A deterministic `rows×cols` matrix of values in about [-2, 2], none exactly bf16.
    fn values(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let x = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (x as f32 / (1u32 << 24) as f32) * 4.0 - 2.0 + 1e-4
            })
            .collect()
    }

    /// Reference: operands rounded to bf16, products and sums in f64; each with Σ|products|.
    fn reference(a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        for r in 0..a.rows {
            for c in 0..b.cols {
                let terms = (0..a.cols)
                    .map(|k| f64::from(round(a.at(r, k))) * f64::from(round(b.at(k, c))));
                out.push(terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs())));
            }
        }
        out
    }

    /// Within the typical error of f32 sums of `k` terms (√k·ε·Σ|terms|, times 4): far below
    /// what unrounded operands or a packing mistake give.
    fn assert_close(got: &[f32], want: &[(f64, f64)], k: usize, what: &str) {
        for (i, (&g, &(w, mass))) in got.iter().zip(want).enumerate() {
            let tol = 4.0 * (k as f64).sqrt() * f64::from(f32::EPSILON) * mass + 1e-6;
            assert!((f64::from(g) - w).abs() <= tol, "{what}: [{i}] {g} vs {w}");
        }
    }

    /// Odd sizes (edges in every direction, an odd and a multi-block K), strided and transposed
    /// operands, overwrite and accumulate, one thread and split: the packed kernel (with the
    /// instructions emulated) equals the definition.
    #[test]
    fn the_packed_kernel_equals_the_definition() {
        let sizes = [
            (1, 1, 1),
            (13, 33, 7),
            (25, 70, 300),
            (96, 32, 512),
            (100, 40, 9),
            (3, 530, 5),
            (5, 100, 257),
        ];
        for &(m, n, k) in &sizes {
            let (av, bv) = (values(m, k + 3, 1), values(n, k, 2));
            // a: m×k inside a row stride of k+3; b: given as its transpose (n×k).
            let a = MatRef::rows(&av, m, k, k + 3);
            let b = MatRef::rows(&bv, n, k, k).t();
            let want = reference(&a, &b);
            for (accumulate, par) in [(false, Parallelism::None), (true, Parallelism::Rayon(3))] {
                let start = values(m, n, 3);
                let mut d = start.clone();
                let dst = MatMut::rows(&mut d, m, n, n);
                // SAFETY: the emulation needs no CPU feature; sizes agree.
                split(dst, a, b, par, |d, a, b| unsafe {
                    gemm::<Emulated>(d, accumulate, a, b)
                });
                let want: Vec<(f64, f64)> = want
                    .iter()
                    .zip(&start)
                    .map(|(&(w, m), &s)| {
                        if accumulate {
                            (w + f64::from(s), m + f64::from(s.abs()))
                        } else {
                            (w, m)
                        }
                    })
                    .collect();
                assert_close(
                    &d,
                    &want,
                    k,
                    &format!("{m}x{n}x{k} accumulate={accumulate}"),
                );
            }
        }
    }

    /// What the ops run: native where the CPU has AVX512-BF16, else the emulation; both equal
    /// the definition.
    #[test]
    fn bf16_products_equal_the_definition() {
        let (m, n, k) = (40, 75, 600);
        let (av, bv) = (values(m, k, 4), values(k, n, 5));
        let (a, b) = (MatRef::rows(&av, m, k, k), MatRef::rows(&bv, k, n, n));
        let mut d = vec![0f32; m * n];
        matmul(
            MatMut::rows(&mut d, m, n, n),
            false,
            a,
            b,
            Parallelism::Rayon(2),
        );
        assert_close(&d, &reference(&a, &b), k, "bf16 matmul");
        // And it differs from f32: the operands were rounded.
        let mut f = vec![0f32; m * n];
        let f32_dst = MatMut::rows(&mut f, m, n, n);
        crate::matmul::matmul(f32_dst, false, a, b, Parallelism::None, Compute::F32);
        let worst = d
            .iter()
            .zip(&f)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max);
        assert!(worst > 1e-3, "bf16 and f32 products agree to {worst}");
        println!(
            "bf16 kernel: {}",
            if bf16_native() {
                "AVX512-BF16"
            } else {
                "emulated (this CPU has no AVX512-BF16)"
            }
        );
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
        assert_eq!(round(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round(-2.0 - 1.0 / 64.0), -2.0 - 1.0 / 64.0);
    }
}
