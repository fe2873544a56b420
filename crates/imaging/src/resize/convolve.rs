//! The two convolution passes of Pillow's 8-bit resampler, laid out so that they vectorise.
//!
//! Horizontal pass: a block of [`ROWS`] source rows is transposed into one cell of `3 * ROWS`
//! bytes per source column, so that every tap of an output pixel is one coefficient times a whole
//! cell (all rows, all channels) — a fixed-length multiply-add over `i32` lanes, where a per-row
//! loop would multiply 3 channels at a time. Vertical pass: every tap is one coefficient times a
//! whole intermediate row, accumulated in register-sized chunks.
//!
//! The arithmetic is Pillow's, operation for operation (same `i32` products and sums, same
//! rounding constant and clipping), only reordered across independent output values, so results
//! stay bit-identical. The code is plain Rust, left to the compiler's auto-vectoriser; on x86-64 it
//! is also compiled with AVX2 (the 32-bit multiplies the SSE2 baseline lacks) and with AVX-512
//! (twice the lanes), and the widest copy the CPU supports is picked at run time. A unit test
//! checks every copy against Pillow's loops as written.

use super::{Taps, PRECISION_BITS};

/// Source rows transposed together by the horizontal pass.
const ROWS: usize = 8;
/// `i32` lanes of one horizontal-pass cell: the 3 channels of [`ROWS`] rows.
const LANES: usize = 3 * ROWS;
/// Intermediate values the vertical pass accumulates at a time.
const CHUNK: usize = 32;
/// Pillow's rounding constant: one half in fixed point.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// One resample: an RGB source, the taps of both axes, the output window.
pub(super) struct Plan<'a> {
    /// Source pixels, RGB, `in_w` per row.
    pub src: &'a [u8],
    /// Source width in pixels.
    pub in_w: usize,
    /// Horizontal taps, or `None` when the horizontal pass is the identity (then output columns
    /// are source columns `x0..x0 + ow`).
    pub horiz: Option<&'a Taps>,
    /// First source column copied when `horiz` is `None`.
    pub x0: usize,
    /// Output width in pixels.
    pub ow: usize,
    /// Vertical taps, one run per output row.
    pub vert: &'a Taps,
}

/// Both passes: the output window, RGB, `ow * vert.start.len()` pixels.
pub(super) fn run(plan: &Plan) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
    {
        // SAFETY: the CPU supports AVX-512 F and BW, checked just above.
        return unsafe { run_avx512(plan) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { run_avx2(plan) };
    }
    run_portable(plan)
}

/// [`run_portable`] compiled with AVX-512 (F, BW).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn run_avx512(plan: &Plan) -> Vec<u8> {
    run_portable(plan)
}

/// [`run_portable`] compiled with AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2(plan: &Plan) -> Vec<u8> {
    run_portable(plan)
}

/// Both passes for the build's baseline target (inlined into the feature-specific copies).
#[inline(always)]
fn run_portable(plan: &Plan) -> Vec<u8> {
    let vert = plan.vert;
    // Source rows the vertical pass reads (Pillow's ybox_first..ybox_last).
    let y_lo = vert.start.iter().copied().min().unwrap_or(0);
    let y_hi = vert.start.iter().map(|s| s + vert.ksize).max().unwrap_or(0);
    let in_stride = plan.in_w * 3;
    let stride = plan.ow * 3;
    let rows = &plan.src[y_lo * in_stride..y_hi * in_stride];
    let tmp = match plan.horiz {
        Some(taps) => horizontal(rows, plan.in_w, taps),
        None => rows
            .chunks_exact(in_stride)
            .flat_map(|row| &row[plan.x0 * 3..plan.x0 * 3 + stride])
            .copied()
            .collect(),
    };
    let mut out = vec![0u8; vert.start.len() * stride];
    if stride > 0 {
        for (yy, dst) in out.chunks_exact_mut(stride).enumerate() {
            let first = (vert.start[yy] - y_lo) * stride;
            let src = &tmp[first..first + vert.ksize * stride];
            vertical_row(src, stride, vert.coeffs(yy), dst);
        }
    }
    out
}

/// The horizontal pass over whole RGB rows of `in_w` pixels: `taps.start.len()` pixels per row.
#[inline(always)]
fn horizontal(rows: &[u8], in_w: usize, taps: &Taps) -> Vec<u8> {
    let in_stride = in_w * 3;
    let ow = taps.start.len();
    let stride = ow * 3;
    let n_rows = rows.len() / in_stride.max(1);
    let mut tmp = vec![0u8; n_rows * stride];
    if in_stride == 0 || stride == 0 {
        return tmp;
    }
    // Rows past the end of the last block keep stale values; their results are not stored.
    let mut cells = vec![[0u8; LANES]; in_w];
    for (block, out) in rows
        .chunks(ROWS * in_stride)
        .zip(tmp.chunks_mut(ROWS * stride))
    {
        for (r, row) in block.chunks_exact(in_stride).enumerate() {
            for (cell, px) in cells.iter_mut().zip(row.chunks_exact(3)) {
                cell[r * 3..r * 3 + 3].copy_from_slice(px);
            }
        }
        // 4-byte stores, each also writing the next pixel's red, which the next step rewrites;
        // the last pixel of a row is stored as 3 bytes, not to touch the next row.
        for xx in 0..ow - 1 {
            let px = weighted_cells(&cells[taps.start[xx]..], taps.coeffs(xx));
            for (r, dst) in out.chunks_exact_mut(stride).enumerate() {
                dst[3 * xx..3 * xx + 4].copy_from_slice(&px[3 * r..3 * r + 4]);
            }
        }
        let px = weighted_cells(&cells[taps.start[ow - 1]..], taps.coeffs(ow - 1));
        for (r, dst) in out.chunks_exact_mut(stride).enumerate() {
            dst[stride - 3..].copy_from_slice(&px[3 * r..3 * r + 3]);
        }
    }
    tmp
}

/// `Σ coeffs[t] * cells[t]` per lane, rounded and clipped as Pillow does, plus one padding byte
/// (0) so that every row's 3 bytes can be stored as 4.
#[inline(always)]
fn weighted_cells(cells: &[[u8; LANES]], coeffs: &[i32]) -> [u8; LANES + 1] {
    let mut acc = [HALF; LANES];
    for (&k, cell) in coeffs.iter().zip(cells) {
        for (a, &p) in acc.iter_mut().zip(cell) {
            *a += i32::from(p) * k;
        }
    }
    let mut px = [0u8; LANES + 1];
    for (p, &a) in px.iter_mut().zip(&acc) {
        *p = clip8(a);
    }
    px
}

/// One output row of the vertical pass: `src` holds `coeffs.len()` consecutive intermediate rows
/// of `stride` bytes; `dst` gets their weighted sum, [`CHUNK`] values at a time, then one by one.
#[inline(always)]
fn vertical_row(src: &[u8], stride: usize, coeffs: &[i32], dst: &mut [u8]) {
    let body = dst.len() / CHUNK * CHUNK;
    let (head, tail) = dst.split_at_mut(body);
    for (c, out) in head.chunks_exact_mut(CHUNK).enumerate() {
        vertical_chunk::<CHUNK>(&src[c * CHUNK..], stride, coeffs, out);
    }
    for (i, out) in tail.chunks_exact_mut(1).enumerate() {
        vertical_chunk::<1>(&src[body + i..], stride, coeffs, out);
    }
}

/// `dst` (`N` values) gets the weighted sum of the first `N` values of `src`'s rows
/// (`coeffs.len()` of them, `stride` apart). `N` is a constant so that the sums stay in registers.
#[inline(always)]
fn vertical_chunk<const N: usize>(src: &[u8], stride: usize, coeffs: &[i32], dst: &mut [u8]) {
    let mut acc = [HALF; N];
    for (t, &k) in coeffs.iter().enumerate() {
        let row: &[u8; N] = src[t * stride..t * stride + N]
            .try_into()
            .expect("slice of N values");
        for (a, &p) in acc.iter_mut().zip(row) {
            *a += i32::from(p) * k;
        }
    }
    for (d, &a) in dst.iter_mut().zip(&acc) {
        *d = clip8(a);
    }
}

/// Pillow's `clip8` (fixed-point sum to u8), branch-free: for `v` in `(0, 256 << PRECISION_BITS)`
/// it is `v >> PRECISION_BITS`; at or above that 255; at or below 0, 0 (an arithmetic shift of a
/// non-positive value is at most 0).
#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Resample.c's loops as written there: every output value of each pass on its own, over
    /// every source row, with Pillow's branching `clip8`.
    fn reference(plan: &Plan) -> Vec<u8> {
        let clip = |v: i32| {
            if v >= (1 << PRECISION_BITS << 8) {
                255
            } else if v <= 0 {
                0
            } else {
                (v >> PRECISION_BITS) as u8
            }
        };
        let in_stride = plan.in_w * 3;
        let stride = plan.ow * 3;
        let tmp: Vec<Vec<u8>> = plan
            .src
            .chunks_exact(in_stride)
            .map(|row| match plan.horiz {
                None => row[plan.x0 * 3..plan.x0 * 3 + stride].to_vec(),
                Some(taps) => (0..stride)
                    .map(|i| {
                        let (xx, c) = (i / 3, i % 3);
                        let sum = taps.coeffs(xx).iter().enumerate().fold(HALF, |s, (t, &k)| {
                            s + i32::from(row[(taps.start[xx] + t) * 3 + c]) * k
                        });
                        clip(sum)
                    })
                    .collect(),
            })
            .collect();
        let vert = plan.vert;
        (0..vert.start.len())
            .flat_map(|yy| (0..stride).map(move |i| (yy, i)))
            .map(|(yy, i)| {
                let sum = vert.coeffs(yy).iter().enumerate().fold(HALF, |s, (t, &k)| {
                    s + i32::from(tmp[vert.start[yy] + t][i]) * k
                });
                clip(sum)
            })
            .collect()
    }

    /// The output of every variant of [`run`] this CPU can execute, by name.
    fn variants(plan: &Plan) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = vec![("portable", run_portable(plan)), ("dispatched", run(plan))];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 support checked just above.
                out.push(("avx2", unsafe { run_avx2(plan) }));
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: AVX-512 F and BW support checked just above.
                out.push(("avx512", unsafe { run_avx512(plan) }));
            }
        }
        out
    }

    /// Random `in0..in1` inside `0..size`: the whole axis half of the time, else a fractional span.
    fn span(rng: &mut ChaCha8Rng, size: u32) -> (f64, f64) {
        let size = f64::from(size);
        if rng.random_bool(0.5) {
            (0.0, size)
        } else {
            let in0 = rng.random_range(0.0..0.4) * size;
            (in0, size - rng.random_range(0.0..0.4) * size)
        }
    }

    #[test]
    fn every_variant_matches_the_reference_loops() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for case in 0..400 {
            // Mostly small and odd sizes (tiny images, upscales, widths off the vector width),
            // some wide enough for many blocks and chunks.
            let max = if case % 10 == 0 { 300 } else { 40 };
            let (in_w, in_h) = (rng.random_range(1..=max), rng.random_range(1..=40));
            let full_w = rng.random_range(1..=2 * max);
            let full_h = rng.random_range(1..=80);
            let (x0, ow) = {
                let x0 = rng.random_range(0..full_w);
                (x0, rng.random_range(1..=full_w - x0))
            };
            let (y0, oh) = {
                let y0 = rng.random_range(0..full_h);
                (y0, rng.random_range(1..=full_h - y0))
            };
            let identity_x = rng.random_bool(0.1);
            let (hx0, hx1, full_w, x0, ow) = if identity_x {
                let x0 = rng.random_range(0..in_w);
                (
                    0.0,
                    f64::from(in_w),
                    in_w,
                    x0,
                    rng.random_range(1..=in_w - x0),
                )
            } else {
                let (a, b) = span(&mut rng, in_w);
                (a, b, full_w, x0, ow)
            };
            let (vy0, vy1) = span(&mut rng, in_h);
            let src: Vec<u8> = (0..in_w * in_h * 3).map(|_| rng.random()).collect();
            let horiz = Taps::new(in_w, hx0, hx1, full_w, x0, ow);
            let vert = Taps::new(in_h, vy0, vy1, full_h, y0, oh);
            let plan = Plan {
                src: &src,
                in_w: in_w as usize,
                horiz: (!identity_x).then_some(&horiz),
                x0: x0 as usize,
                ow: ow as usize,
                vert: &vert,
            };
            let expected = reference(&plan);
            for (name, got) in variants(&plan) {
                assert!(
                    got == expected,
                    "case {case}: {name} differs for {in_w}x{in_h} -> window {x0},{y0} \
                     {ow}x{oh} of {full_w}x{full_h}"
                );
            }
        }
    }
}
