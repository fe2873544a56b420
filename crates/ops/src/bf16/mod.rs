//! GEMM with bf16 operands and f32 sums ([`crate::compute::Compute::Bf16`]): the AMX kernel
//! where the CPU and the OS allow it, else the AVX512-BF16 kernel where the CPU has it, else the
//! exact emulation (operands rounded to bf16, then the f32 GEMM).
//!
//! Products with fewer than [`MIN_ROWS`] rows (the grouped 3×3 convolutions' 4 to 16 output
//! channels per group in layer1–3, the forward of a linear layer with few outputs such as the
//! heads' 2 logits, the input gradient of one on a small batch) compute in f32, everywhere:
//! a tile mostly of padding, or rounding copies bigger than the product, is slower than the f32
//! GEMM, so bf16 would lose precision for nothing.

#[cfg(target_arch = "x86_64")]
mod amx;
mod kernel;
mod lanes;
mod pack;

use std::sync::atomic::{AtomicBool, Ordering};

use gemm::Parallelism;
use rayon::prelude::*;

use crate::compute::{bf16_native, Compute};
use crate::matmul::{MatMut, MatRef};
use crate::scratch::{with_operand_scratch, with_packed_scratch};
use kernel::{Dst, Kernel, Packed};

/// `x` rounded to bf16 as the hardware's conversion does, as raw bits: nearest, ties to even;
/// f32 subnormals become zero (of the same sign).
pub(crate) fn round_bits(x: f32) -> u16 {
    if x.is_subnormal() {
        return ((x.to_bits() >> 16) & 0x8000) as u16;
    }
    half::bf16::from_f32(x).to_bits()
}

/// `x` rounded to bf16 ([`round_bits`]), as an f32.
#[cfg(test)]
fn round(x: f32) -> f32 {
    f32::from_bits(u32::from(round_bits(x)) << 16)
}

/// Products with fewer rows than this compute in f32 (the AMX tile's height).
pub const MIN_ROWS: usize = 32;

/// Whether the AMX kernel may be used where present (see [`allow_amx`]).
static AMX_ALLOWED: AtomicBool = AtomicBool::new(true);

/// Allows (the default) or forbids the AMX kernel for the whole process; forbidden, bf16 GEMMs
/// run on the AVX512-BF16 kernel. For comparing the two (the benches' `--no-amx`).
pub fn allow_amx(allowed: bool) {
    AMX_ALLOWED.store(allowed, Ordering::Relaxed);
}

/// The kernel bf16 GEMMs run on now: `"AMX"`, `"AVX512-BF16"` or `"emulated"`.
pub fn kernel_name() -> &'static str {
    if use_amx() {
        "AMX"
    } else if bf16_native() {
        "AVX512-BF16"
    } else {
        "emulated"
    }
}

fn use_amx() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        AMX_ALLOWED.load(Ordering::Relaxed) && amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
    if dst.rows < MIN_ROWS {
        return crate::matmul::matmul(dst, accumulate, a, b, par, Compute::F32);
    }
    if bf16_native() && !a.rows_contiguous() {
        // The kernels pack A along its rows: a column-major A (a transposed weight) is copied
        // row-major once, not gathered element by element for every block of columns.
        return with_operand_scratch(a.rows * a.cols, |copy| {
            a.copy_to_rows(copy);
            matmul(
                dst,
                accumulate,
                MatRef::rows(copy, a.rows, a.cols, a.cols),
                b,
                par,
            )
        });
    }
    #[cfg(target_arch = "x86_64")]
    if use_amx() {
        return split::<amx::Amx>(dst, a, b, par, |d, a, b, packed| {
            // SAFETY: `split` hands out disjoint blocks of `dst` with the matching rows of `a`
            // and columns of `b`; `available` checked the CPU and got the tiles from the OS.
            unsafe { amx::gemm(d, accumulate, a, b, packed) }
        });
    }
    #[cfg(target_arch = "x86_64")]
    if bf16_native() {
        return split::<kernel::Vdp<lanes::Avx512>>(dst, a, b, par, |d, a, b, packed| {
            // SAFETY: as above; `bf16_native` checked the CPU features.
            unsafe { kernel::avx512(d, accumulate, a, b, packed) }
        });
    }
    emulated(dst, accumulate, a, b, par)
}

/// The emulation: `a` and `b` rounded to bf16 into row-major copies, multiplied by the f32 GEMM.
fn emulated(dst: MatMut<'_>, accumulate: bool, a: MatRef<'_>, b: MatRef<'_>, par: Parallelism) {
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

/// `m` with every element rounded to bf16 ([`round`]), row-major.
fn rounded(m: &MatRef<'_>) -> Vec<f32> {
    let mut out = vec![0f32; m.rows * m.cols];
    let mut bits = vec![0u16; m.cols];
    let mut tmp = vec![0f32; m.cols];
    for (r, row) in out.chunks_exact_mut(m.cols.max(1)).enumerate() {
        pack::to_bf16(m.row_run(r, 0, m.cols, &mut tmp), &mut bits);
        for (o, &h) in row.iter_mut().zip(&bits) {
            *o = f32::from_bits(u32::from(h) << 16);
        }
    }
    out
}

/// Runs `f` on blocks of `dst` that together cover it, each with its rows of `a` and columns of
/// `b`: one block per thread of `par`, cut along the longer side in whole tiles of kernel `K`
/// (`MR` rows or [`pack::NR`] columns). With more than one block, the operand every block needs
/// whole (B when cut by rows, A when cut by columns) is packed once for all of them, in parallel,
/// and handed to `f` as [`Packed`].
fn split<K: Kernel>(
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    par: Parallelism,
    f: impl Fn(Dst, MatRef<'_>, MatRef<'_>, Packed<'_>) + Sync,
) {
    let whole = Dst {
        ptr: dst.ptr,
        rows: dst.rows,
        cols: dst.cols,
        rs: dst.rs,
    };
    let threads = crate::matmul::threads(par);
    if threads <= 1 {
        return f(whole, a, b, Packed::No);
    }
    let by_rows = whole.rows >= whole.cols;
    let (len, tile) = if by_rows {
        (whole.rows, K::MR)
    } else {
        (whole.cols, pack::NR)
    };
    let chunk = len.div_ceil(threads).next_multiple_of(tile);
    let blocks = len.div_ceil(chunk);
    if blocks == 1 {
        return f(whole, a, b, Packed::No);
    }
    let k_blocks = a.cols.div_ceil(K::KC);
    let shared = if by_rows {
        k_blocks * b.cols.div_ceil(K::NC) * kernel::b_block::<K>(b.rows, b.cols)
    } else {
        k_blocks * kernel::a_block::<K>(a.cols, a.rows)
    };
    with_packed_scratch(shared, |buf| {
        if by_rows {
            kernel::prepack_b::<K>(&b, buf);
        } else {
            kernel::prepack_a::<K>(&a, buf);
        }
        let buf = &*buf;
        (0..blocks).into_par_iter().for_each(|i| {
            let (start, n) = (i * chunk, chunk.min(len - i * chunk));
            if by_rows {
                f(
                    whole.rows_at(start, n),
                    a.row_range(start, n),
                    b,
                    Packed::B(buf),
                );
            } else {
                f(
                    whole.cols_at(start, n),
                    a,
                    b.col_range(start, n),
                    Packed::A(buf),
                );
            }
        });
    })
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

    /// Runs kernel `K` through `split` on `dst`.
    fn run<K: kernel::Kernel>(
        dst: MatMut<'_>,
        acc: bool,
        a: MatRef<'_>,
        b: MatRef<'_>,
        par: Parallelism,
    ) {
        // SAFETY: callers pass only kernels whose CPU features are present; sizes agree.
        split::<K>(dst, a, b, par, |d, a, b, packed| unsafe {
            gemm::<K>(d, acc, a, b, packed)
        });
    }

    /// Odd sizes (edges in every direction, odd and multi-block K, M and N), both layouts of each
    /// operand (rows or columns contiguous, strided), overwrite and accumulate, one thread and
    /// split: the packed kernel equals the definition.
    fn check_kernel(
        name: &str,
        gemm: impl Fn(MatMut<'_>, bool, MatRef<'_>, MatRef<'_>, Parallelism),
    ) {
        let sizes = [
            (1, 1, 1),
            (13, 33, 7),
            (25, 70, 300),
            (96, 32, 512),
            (100, 40, 9),
            (3, 530, 5),
            (5, 100, 257),
            (140, 545, 1100),
        ];
        for &(m, n, k) in &sizes {
            let (av, bv) = (values(m, k + 3, 1), values(n, k, 2));
            let (avt, bvt) = (values(k, m, 4), values(k, n, 5));
            // a: m×k inside a row stride of k+3, or given as its transpose; b: given as its
            // transpose (n×k), or row-major.
            let layouts = [
                (
                    MatRef::rows(&av, m, k, k + 3),
                    MatRef::rows(&bv, n, k, k).t(),
                ),
                (MatRef::rows(&avt, k, m, m).t(), MatRef::rows(&bvt, k, n, n)),
            ];
            for (a, b) in layouts {
                let want = reference(&a, &b);
                for (accumulate, par) in [(false, Parallelism::None), (true, Parallelism::Rayon(3))]
                {
                    let start = values(m, n, 3);
                    let mut d = start.clone();
                    gemm(MatMut::rows(&mut d, m, n, n), accumulate, a, b, par);
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
                    let what = format!("{name} {m}x{n}x{k} accumulate={accumulate}");
                    assert_close(&d, &want, k, &what);
                }
            }
        }
    }

    /// Both kernels' packing and tiling, with their instructions emulated (any CPU).
    #[test]
    fn the_packed_kernels_equal_the_definition() {
        check_kernel("vdpbf16ps emulated", run::<kernel::Vdp<Emulated>>);
        #[cfg(target_arch = "x86_64")]
        check_kernel("AMX emulated", run::<amx::AmxEmulated>);
    }

    /// The real kernels, where this CPU has them.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_native_kernels_equal_the_definition() {
        if bf16_native() {
            check_kernel("AVX512-BF16", run::<kernel::Vdp<lanes::Avx512>>);
        } else {
            println!("no AVX512-BF16 here: its kernel is checked only emulated");
        }
        if amx::available() {
            check_kernel("AMX", run::<amx::Amx>);
        } else {
            println!("no AMX here: its kernel is checked only emulated");
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
