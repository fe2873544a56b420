//! Packing f32 operands into the bf16 layouts the kernels read, rounding as the hardware does.
//!
//! Both kernels read B the same way (the "VNNI" layout): per panel of [`NR`] columns, for each k
//! pair `p`, the columns' pairs `(b[2p][c], b[2p+1][c])` in column order, so one k pair is 64
//! bf16 (two vectors). They differ in A (see each kernel's `pack_a`). Every panel is zero-padded to
//! whole panels and to the kernel's multiple of k pairs.
//!
//! Runs of contiguous f32 are converted with `vcvtneps2bf16` where the CPU has AVX512-BF16;
//! elsewhere one value at a time by [`super::round_bits`], which rounds the same way.

use super::round_bits;
use crate::matmul::MatRef;

/// Columns of a packed B panel (two vectors of 16 pairs).
pub(crate) const NR: usize = 32;

/// `src` rounded to bf16 into `dst[..src.len()]`.
pub(crate) fn to_bf16(src: &[f32], dst: &mut [u16]) {
    let dst = &mut dst[..src.len()];
    #[cfg(target_arch = "x86_64")]
    if crate::compute::bf16_native() {
        // SAFETY: the CPU has AVX-512F and AVX512-BF16; the lengths agree.
        return unsafe { to_bf16_avx512(src, dst) };
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = round_bits(s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn to_bf16_avx512(src: &[f32], dst: &mut [u16]) {
    use std::arch::x86_64::*;
    let mut chunks = src.chunks_exact(16);
    let mut out = dst.chunks_exact_mut(16);
    for (s, d) in (&mut chunks).zip(&mut out) {
        let v = _mm512_cvtneps_pbh(_mm512_loadu_ps(s.as_ptr()));
        _mm256_storeu_si256(
            d.as_mut_ptr().cast(),
            std::mem::transmute::<__m256bh, __m256i>(v),
        );
    }
    for (d, &s) in out.into_remainder().iter_mut().zip(chunks.remainder()) {
        *d = round_bits(s);
    }
}

/// Packs rows `k0..k0+kc` × columns `n0..n0+nc` of `b` into `out`, `pairs` k pairs per panel
/// (`pairs ≥ ⌈kc/2⌉`, the rest zero). `out` holds `⌈nc/NR⌉·pairs·2·NR` bf16.
pub(crate) fn pack_b(
    b: &MatRef<'_>,
    (k0, kc): (usize, usize),
    (n0, nc): (usize, usize),
    pairs: usize,
    out: &mut [u16],
) {
    let mut tmp = [0f32; KRUN];
    let mut bits = [0u16; KRUN];
    for (panel, c0) in (0..nc).step_by(NR).enumerate() {
        let dst = &mut out[panel * pairs * 2 * NR..][..pairs * 2 * NR];
        let cols = NR.min(nc - c0);
        if b.rows_contiguous() {
            // Two rows at a time, their columns interleaved.
            for p in 0..pairs {
                let row = |e: usize| {
                    let r = 2 * p + e;
                    (r < kc).then(|| b.row_run(k0 + r, n0 + c0, cols, &mut []))
                };
                pair_rows(row(0), row(1), &mut dst[p * 2 * NR..][..2 * NR]);
            }
        } else {
            // One column at a time, along k: its pairs are adjacent once converted.
            #[cfg(target_arch = "x86_64")]
            if crate::compute::bf16_native() {
                // SAFETY: the CPU has AVX-512F and AVX512-BF16; `dst` holds the panel.
                unsafe { column_pairs_avx512(b, (k0, kc), (n0 + c0, cols), pairs, dst) };
                continue;
            }
            dst.fill(0);
            let bt = b.t();
            for j in 0..cols {
                for r0 in (0..kc).step_by(KRUN) {
                    let n = KRUN.min(kc - r0);
                    to_bf16(bt.row_run(n0 + c0 + j, k0 + r0, n, &mut tmp), &mut bits);
                    for (i, &v) in bits[..n].iter().enumerate() {
                        let r = r0 + i;
                        dst[r / 2 * 2 * NR + 2 * j + r % 2] = v;
                    }
                }
            }
        }
    }
}

/// One panel of [`pack_b`] from a `b` whose rows are not contiguous: columns `n0..n0+cols` (at
/// most [`NR`]), rows `k0..k0+kc`. Each column's run along k, rounded to bf16, holds its k pairs
/// as consecutive 32-bit words (the even k in the low half, as the panel wants them); 16 columns ×
/// 16 pairs of words are transposed in registers into 16 pairs × 16 columns of the panel. Columns
/// past `cols` and pairs past `kc` are zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn column_pairs_avx512(
    b: &MatRef<'_>,
    (k0, kc): (usize, usize),
    (n0, cols): (usize, usize),
    pairs: usize,
    dst: &mut [u16],
) {
    use std::arch::x86_64::*;
    assert!(cols <= NR && dst.len() >= pairs * 2 * NR && kc <= 2 * pairs);
    let bt = b.t();
    let mut tmp = [0f32; 32];
    for p0 in (0..pairs).step_by(16) {
        // k values `2·p0 ..` of this block of 16 pairs that exist.
        let ks = kc.saturating_sub(2 * p0).min(32);
        for j0 in (0..NR).step_by(16) {
            let mut words = [_mm512_setzero_si512(); 16];
            for (j, w) in words.iter_mut().enumerate() {
                if j0 + j >= cols || ks == 0 {
                    continue;
                }
                let run = bt.row_run(n0 + j0 + j, k0 + 2 * p0, ks, &mut tmp);
                let half = |from: usize| {
                    let n = ks.saturating_sub(from).min(16);
                    let mask = ((1u32 << n) - 1) as __mmask16;
                    // SAFETY: the mask covers only elements inside `run`.
                    unsafe { _mm512_maskz_loadu_ps(mask, run.as_ptr().wrapping_add(from)) }
                };
                let bf = _mm512_cvtne2ps_pbh(half(16), half(0));
                *w = std::mem::transmute::<__m512bh, __m512i>(bf);
            }
            let rows = crate::transpose::words_16x16(words);
            for (q, row) in rows.iter().enumerate().take(pairs - p0) {
                let at = (p0 + q) * 2 * NR + 2 * j0;
                _mm512_storeu_si512(dst.as_mut_ptr().add(at).cast(), *row);
            }
        }
    }
}

/// `out[2j]`, `out[2j+1]` = rows `r0`, `r1` at column `j` in bf16, for the `NR` columns of a
/// panel: zero past the rows' length, or for a row that is `None` (past k).
fn pair_rows(r0: Option<&[f32]>, r1: Option<&[f32]>, out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if crate::compute::bf16_native() {
        // SAFETY: the CPU has AVX-512F and AVX512-BF16; `out` holds 2·NR.
        return unsafe { pair_rows_avx512(r0, r1, out) };
    }
    out.fill(0);
    for (e, row) in [r0, r1].into_iter().enumerate() {
        for (j, &v) in row.unwrap_or(&[]).iter().enumerate() {
            out[2 * j + e] = round_bits(v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pair_rows_avx512(r0: Option<&[f32]>, r1: Option<&[f32]>, out: &mut [u16]) {
    use std::arch::x86_64::*;
    assert!(out.len() >= 2 * NR);
    // The 16 values at column `j` of `row` (zero where absent), widened bf16 bits per lane.
    let lanes = |row: Option<&[f32]>, j: usize| -> __m512i {
        let row = row.unwrap_or(&[]);
        let n = row.len().saturating_sub(j).min(16);
        let mask = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: the mask covers only elements inside `row`.
        let v = unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().wrapping_add(j)) };
        _mm512_cvtepu16_epi32(std::mem::transmute::<__m256bh, __m256i>(
            _mm512_cvtneps_pbh(v),
        ))
    };
    for j in (0..NR).step_by(16) {
        let pairs = _mm512_or_si512(lanes(r0, j), _mm512_slli_epi32::<16>(lanes(r1, j)));
        _mm512_storeu_si512(out.as_mut_ptr().add(2 * j).cast(), pairs);
    }
}

/// Length of the runs converted at once (also two rows of a B panel).
const KRUN: usize = 2 * NR;

/// Row `r` of `a`, columns `k0..k0+kc`, rounded to bf16 into `out[..kc]` (zero beyond `kc` up
/// to `out.len()`).
pub(crate) fn row_bf16(a: &MatRef<'_>, r: usize, (k0, kc): (usize, usize), out: &mut [u16]) {
    let mut tmp = [0f32; KRUN];
    for c in (0..kc).step_by(KRUN) {
        let n = KRUN.min(kc - c);
        to_bf16(a.row_run(r, k0 + c, n, &mut tmp), &mut out[c..]);
    }
    out[kc..].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector conversion (where the CPU has it) and the scalar one agree bit for bit, also
    /// on ties, subnormals (flushed), infinities, overflow and NaN.
    #[test]
    fn vector_and_scalar_rounding_agree() {
        let mut src: Vec<f32> = vec![
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            1e-39,
            -1e-39,
            1.1754944e-38,
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            3.4e38,
            -0.0,
        ];
        src.extend((0..1000).map(|i| ((i * 7919) % 2003) as f32 * 0.001_234 - 1.2));
        let mut got = vec![0u16; src.len()];
        to_bf16(&src, &mut got);
        for (&s, &g) in src.iter().zip(&got) {
            assert_eq!(g, round_bits(s), "{s:e}");
        }
    }

    /// Both ways of packing B (rows contiguous, or columns contiguous) give the same panels, for
    /// partial panels and partial blocks of 16 pairs, subnormals (flushed) included.
    #[test]
    fn b_panels_do_not_depend_on_the_layout() {
        let (k, n) = (77, 45);
        let mut v: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.37).sin()).collect();
        v[(3 + 5) * n + 5 + 20] = 1e-39;
        v[(3 + 40) * n + 5 + 2] = -1e-39;
        let rows = MatRef::rows(&v, k, n, n);
        let vt: Vec<f32> = (0..n * k).map(|i| v[(i % k) * n + i / k]).collect();
        let cols = MatRef::rows(&vt, n, k, k).t();
        let pairs = 40;
        let len = n.div_ceil(NR) * pairs * 2 * NR;
        for kc in [33, 73] {
            let (mut x, mut y) = (vec![1u16; len], vec![2u16; len]);
            pack_b(&rows, (3, kc), (5, 40), pairs, &mut x);
            pack_b(&cols, (3, kc), (5, 40), pairs, &mut y);
            assert_eq!(x, y, "kc {kc}");
        }
        let (mut x, pairs) = (vec![1u16; n.div_ceil(NR) * 20 * 2 * NR], 20);
        pack_b(&rows, (3, 33), (5, 40), pairs, &mut x);
        // Spot checks: pair 4 of column 17, and the zero padding past k.
        let slot = |p: usize, j: usize, e: usize| NR * 2 * pairs + p * 2 * NR + 2 * (j - NR) + e;
        assert_eq!(x[slot(4, 33, 0)], round_bits(v[(3 + 8) * n + 5 + 33]));
        assert_eq!(x[slot(4, 33, 1)], round_bits(v[(3 + 9) * n + 5 + 33]));
        assert_eq!(x[slot(16, 33, 1)], 0);
    }
}
