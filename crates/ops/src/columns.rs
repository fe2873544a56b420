//! Moving one image's group of channel planes to and from the columns of a block matrix.
//!
//! A block covers `imgs` consecutive images of one group; its matrices have one column per output
//! pixel of those images (`cols = imgs·p`), image `i` owning columns `i·p .. (i+1)·p`.
//! im2col rows are ordered `(ci, ky, kx)`, matching the OIHW weight layout.

use crate::geometry::{valid_range, ConvGeom};
#[cfg(target_arch = "x86_64")]
use crate::kernels::{lanes, stride2_lanes, LANES};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Images whose im2col matrix holds at least this many values are moved by several rayon tasks
/// (one per run of channel planes) when the caller is not itself a rayon task: a GEMM block of one
/// large image (e.g. a whole channels-major batch seen as one image) would otherwise be gathered
/// by a single thread, while blocks that already run in parallel gain nothing from splitting.
const PARALLEL_VALUES: usize = 1 << 16;

fn parallel(g: &ConvGeom) -> bool {
    g.k() * g.p() >= PARALLEL_VALUES && rayon::current_thread_index().is_none()
}

/// Writes the im2col rows of one image into columns `c0 .. c0+p` of `col` (`k` rows, row stride
/// `cols`). `xg` holds the image's `cin_g` input planes of the group, [`ConvGeom::plane_stride`]
/// apart.
pub(crate) fn im2col_image(g: &ConvGeom, xg: &[f32], col: &mut [f32], cols: usize, c0: usize) {
    let p = g.p();
    if g.is_pointwise() && !g.channels_major {
        copy_planes_to_rows(xg, p, col, cols, c0);
        return;
    }
    let taps = g.kh * g.kw;
    let offsets = short_rows(g).then(|| tap_offsets(g));
    let fill = |(plane, rows): (&[f32], &mut [f32])| {
        if let Some(offsets) = &offsets {
            return gather_rows(g, plane, offsets, (rows, cols, c0));
        }
        let phases = column_phases(g, plane);
        for (tap, row) in rows.chunks_mut(cols).take(taps).enumerate() {
            fill_row(
                g,
                (plane, &phases),
                (tap / g.kw, tap % g.kw),
                0,
                &mut row[c0..c0 + p],
            );
        }
    };
    let (planes, rows) = (g.plane_stride(), taps * cols);
    if parallel(g) {
        let work = xg.par_chunks(planes).zip(col.par_chunks_mut(rows));
        work.take(g.cin_g()).for_each(fill);
    } else {
        let work = xg.chunks(planes).zip(col.chunks_mut(rows));
        work.take(g.cin_g()).for_each(fill);
    }
}

/// The im2col matrix of one image built and handed to `f` a run of at most `rows` output rows
/// at a time: `f(oys, m)` gets output rows `oys` and their matrix `m`, `k` rows of `oys.len()·wo`
/// columns, contiguous at the start of `col` (which holds at least `k·rows·wo` values). A large
/// image's matrix (the stem's: 147 rows × 12,544 columns, 7.4 MB) then stays in the cache between
/// being written and being read by the product. `xg` is as for [`im2col_image`].
pub(crate) fn im2col_row_runs(
    g: &ConvGeom,
    xg: &[f32],
    rows: usize,
    col: &mut [f32],
    mut f: impl FnMut(Range<usize>, &[f32]),
) {
    let taps = g.kh * g.kw;
    let planes: Vec<&[f32]> = xg.chunks(g.plane_stride()).take(g.cin_g()).collect();
    let phases: Vec<Vec<f32>> = planes.iter().map(|p| column_phases(g, p)).collect();
    for oy0 in (0..g.ho).step_by(rows.max(1)) {
        let oys = oy0..(oy0 + rows).min(g.ho);
        let n = oys.len() * g.wo;
        let m = &mut col[..g.k() * n];
        for ((plane, phases), rows) in planes.iter().zip(&phases).zip(m.chunks_mut(taps * n)) {
            for (tap, row) in rows.chunks_mut(n).enumerate() {
                fill_row(g, (plane, phases), (tap / g.kw, tap % g.kw), oy0, row);
            }
        }
        f(oys, m);
    }
}

/// Adds the im2col rows in columns `c0 .. c0+p` of `col` back onto one image's `cin_g` input
/// planes `dxg` of the group, [`ConvGeom::plane_stride`] apart (the adjoint of [`im2col_image`]).
pub(crate) fn col2im_image(g: &ConvGeom, col: &[f32], cols: usize, c0: usize, dxg: &mut [f32]) {
    let p = g.p();
    let taps = g.kh * g.kw;
    let offsets = short_rows(g).then(|| tap_offsets(g));
    let add = |(plane, rows): (&mut [f32], &[f32])| {
        if let Some(offsets) = &offsets {
            return scatter_add_rows(g, (rows, cols, c0), offsets, plane);
        }
        for (tap, row) in rows.chunks(cols).take(taps).enumerate() {
            add_row(g, &row[c0..c0 + p], tap / g.kw, tap % g.kw, plane);
        }
    };
    let (planes, rows) = (g.plane_stride(), taps * cols);
    if parallel(g) {
        let work = dxg.par_chunks_mut(planes).zip(col.par_chunks(rows));
        work.take(g.cin_g()).for_each(add);
    } else {
        let work = dxg.chunks_mut(planes).zip(col.chunks(rows));
        work.take(g.cin_g()).for_each(add);
    }
}

/// Copies consecutive planes of `p` values into columns `c0 .. c0+p` of successive rows of `dst`
/// (row stride `cols`).
pub(crate) fn copy_planes_to_rows(src: &[f32], p: usize, dst: &mut [f32], cols: usize, c0: usize) {
    for (plane, row) in src.chunks_exact(p).zip(dst.chunks_mut(cols)) {
        row[c0..c0 + p].copy_from_slice(plane);
    }
}

/// Copies columns `c0 .. c0+p` of successive rows of `src` (row stride `cols`) into consecutive
/// planes of `p` values of `dst`: the inverse of [`copy_planes_to_rows`].
pub(crate) fn copy_rows_to_planes(
    src: &[f32],
    cols: usize,
    c0: usize,
    dst: &mut [MaybeUninit<f32>],
    p: usize,
) {
    for (row, plane) in src.chunks(cols).zip(dst.chunks_exact_mut(p)) {
        for (d, &v) in plane.iter_mut().zip(&row[c0..c0 + p]) {
            d.write(v);
        }
    }
}

/// Output rows narrower than this are moved through [`tap_offsets`] (16 values per AVX-512
/// gather or scatter, else value by value); wider rows are copied a row at a time. On small maps
/// (layer4's 7×7 and 4×4) a row of a few values cost more in per-row copy calls and bounds than
/// the values it moved. The vector gathers took the fine-tune step at 8×8 1.05× faster in f32 and
/// 1.07× in bf16 (alternating pairs), with the same bits.
const SHORT_ROW: usize = 8;

fn short_rows(g: &ConvGeom) -> bool {
    g.wo < SHORT_ROW
}

/// The short im2col rows of one input plane, one per tap: `rows[tap·cols + c0 + i] =
/// plane[offsets[tap·p + i]]`, 0 where the offset is `u32::MAX` (the offsets of [`tap_offsets`]).
/// With AVX-512, 16 values per gather.
fn gather_rows(g: &ConvGeom, plane: &[f32], offsets: &[u32], (rows, cols, c0): Rows<&mut [f32]>) {
    let p = g.p();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        check_short_rows(g, plane.len(), offsets, (rows.len(), cols, c0));
        // SAFETY: AVX-512 F was just detected; `tap_offsets` gives offsets inside the h×w plane
        // (or `u32::MAX`), the plane holds that many values and `rows` every row (asserted).
        return unsafe { gather_rows_avx512(plane, offsets, (rows, cols, c0), p) };
    }
    for (row, offsets) in rows.chunks_mut(cols).zip(offsets.chunks_exact(p)) {
        for (v, &i) in row[c0..c0 + p].iter_mut().zip(offsets) {
            *v = plane.get(i as usize).copied().unwrap_or(0.0);
        }
    }
}

/// `plane[offsets[tap·p + i]] += rows[tap·cols + c0 + i]` where the offset is not `u32::MAX`: the
/// adjoint of [`gather_rows`], the same sums in the same order (within one tap the offsets are
/// distinct).
fn scatter_add_rows(
    g: &ConvGeom,
    (rows, cols, c0): Rows<&[f32]>,
    offsets: &[u32],
    plane: &mut [f32],
) {
    let p = g.p();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        check_short_rows(g, plane.len(), offsets, (rows.len(), cols, c0));
        // SAFETY: as in `gather_rows`; one tap maps distinct output pixels to distinct inputs, so
        // no two lanes of a scatter share an offset.
        return unsafe { scatter_add_rows_avx512((rows, cols, c0), offsets, plane, p) };
    }
    for (row, offsets) in rows.chunks(cols).zip(offsets.chunks_exact(p)) {
        for (v, &i) in row[c0..c0 + p].iter().zip(offsets) {
            if let Some(d) = plane.get_mut(i as usize) {
                *d += v;
            }
        }
    }
}

/// Asserts what the vector paths of [`gather_rows`] and [`scatter_add_rows`] rely on: a plane of
/// at least h×w values, one offset per tap and output pixel, and a row per tap.
fn check_short_rows(g: &ConvGeom, plane: usize, offsets: &[u32], (rows, cols, c0): Rows<usize>) {
    let (taps, p) = (g.kh * g.kw, g.p());
    assert!(
        plane >= g.hw() && offsets.len() == taps * p,
        "short rows: plane or offsets"
    );
    assert!(rows >= (taps - 1) * cols + c0 + p, "short rows: rows");
}

/// Rows of a block matrix: the values, the row stride, and the first column of the image.
type Rows<T> = (T, usize, usize);

/// # Safety
/// AVX-512 F; every offset is `u32::MAX` or inside `plane`; `rows` holds a row per `p` offsets.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_rows_avx512(
    plane: &[f32],
    offsets: &[u32],
    (rows, cols, c0): Rows<&mut [f32]>,
    p: usize,
) {
    use std::arch::x86_64::*;
    tap_vectors(offsets, p, (cols, c0), |at, m, idx, inside| {
        let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), inside, idx, plane.as_ptr());
        _mm512_mask_storeu_ps(rows.as_mut_ptr().add(at), m, v);
    });
}

/// # Safety
/// As [`gather_rows_avx512`], and within a tap no two offsets other than `u32::MAX` are equal.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn scatter_add_rows_avx512(
    (rows, cols, c0): Rows<&[f32]>,
    offsets: &[u32],
    plane: &mut [f32],
    p: usize,
) {
    use std::arch::x86_64::*;
    tap_vectors(offsets, p, (cols, c0), |at, m, idx, inside| {
        let d = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), inside, idx, plane.as_ptr());
        let v = _mm512_add_ps(d, _mm512_maskz_loadu_ps(m, rows.as_ptr().add(at)));
        _mm512_mask_i32scatter_ps::<4>(plane.as_mut_ptr(), inside, idx, v);
    });
}

/// `f(at, m, idx, inside)` for each vector of 16 offsets of each tap's `p`: `at` its first
/// value's index in rows `cols` apart from column `c0`, `m` its lanes, `idx` its offsets and
/// `inside` the lanes whose offset is not the padding's `u32::MAX`.
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tap_vectors(
    offsets: &[u32],
    p: usize,
    (cols, c0): (usize, usize),
    mut f: impl FnMut(usize, u16, std::arch::x86_64::__m512i, u16),
) {
    use std::arch::x86_64::*;
    for (tap, offsets) in offsets.chunks_exact(p).enumerate() {
        for i in (0..p).step_by(LANES) {
            let m = lanes((p - i).min(LANES));
            let idx = _mm512_maskz_loadu_epi32(m, offsets.as_ptr().add(i).cast());
            let inside = _mm512_mask_cmpneq_epi32_mask(m, idx, _mm512_set1_epi32(-1));
            f(tap * cols + c0 + i, m, idx, inside);
        }
    }
}

/// For every tap `(ky, kx)` (row-major) and output pixel, the offset in an input plane the pixel
/// reads, `u32::MAX` where it falls in the padding: `taps × p` values.
fn tap_offsets(g: &ConvGeom) -> Vec<u32> {
    let mut offsets = Vec::with_capacity(g.kh * g.kw * g.p());
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let iy = (oy * g.stride + ky).checked_sub(g.pad).filter(|&y| y < g.h);
                    let ix = (ox * g.stride + kx).checked_sub(g.pad).filter(|&x| x < g.w);
                    let offset = iy.zip(ix).map_or(u32::MAX, |(y, x)| (y * g.w + x) as u32);
                    offsets.push(offset);
                }
            }
        }
    }
    offsets
}

/// For a strided convolution, the plane's rows split into `stride` column phases: phase `j`, row
/// `y`, value `i` (at `(j·h + y)·⌈w/s⌉ + i`) is `plane[y][i·s + j]`, or 0 past the row's end.
/// Then every im2col row's run of a plane row is a contiguous copy. Empty for stride 1.
///
/// Rows no tap reads (with fewer kernel rows than the stride: a strided 1×1's odd rows) stay 0.
/// At stride 2 with AVX-512 each row is split 32 values at a time; one value at a time, the split
/// was 3% of a 224 px forward, most of it in the downsampling 1×1s' input planes.
fn column_phases(g: &ConvGeom, plane: &[f32]) -> Vec<f32> {
    let s = g.stride;
    if s == 1 {
        return Vec::new();
    }
    let wp = g.w.div_ceil(s);
    let mut phases = vec![0.0; s * g.h * wp];
    let read = |y: usize| g.kh >= s || (y + g.pad) % s < g.kh;
    #[cfg(target_arch = "x86_64")]
    let pairs = s == 2 && std::arch::is_x86_feature_detected!("avx512f");
    for (y, row) in plane.chunks_exact(g.w).take(g.h).enumerate() {
        if !read(y) {
            continue;
        }
        #[cfg(target_arch = "x86_64")]
        if pairs {
            let (even, odd) = phases.split_at_mut(g.h * wp);
            let (even, odd) = (&mut even[y * wp..][..wp], &mut odd[y * wp..][..wp]);
            // SAFETY: AVX-512 F was detected; each phase row holds ⌈w/2⌉ values.
            unsafe { split_pairs_avx512(row, even, odd) };
            continue;
        }
        for (i, columns) in row.chunks(s).enumerate() {
            for (j, &v) in columns.iter().enumerate() {
                phases[(j * g.h + y) * wp + i] = v;
            }
        }
    }
    phases
}

/// `even[i] = row[2i]` and `odd[i] = row[2i + 1]` for the values inside `row`, 16 of each per
/// pair of vector loads.
///
/// # Safety
/// AVX-512 F; `even` and `odd` each hold at least `⌈row.len()/2⌉` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn split_pairs_avx512(row: &[f32], even: &mut [f32], odd: &mut [f32]) {
    use std::arch::x86_64::*;
    let w = row.len();
    assert!(even.len() >= w.div_ceil(2) && odd.len() >= w.div_ceil(2));
    for i in (0..w).step_by(2 * LANES) {
        let n = (w - i).min(2 * LANES);
        let at = row.as_ptr().wrapping_add(i);
        // Masked-off lanes are not read, so the second load may start past the row's end.
        let lo = _mm512_maskz_loadu_ps(lanes(n.min(LANES)), at);
        let hi = _mm512_maskz_loadu_ps(lanes(n.saturating_sub(LANES)), at.wrapping_add(LANES));
        let (e, o) = (stride2_lanes(lo, hi, 0), stride2_lanes(lo, hi, 1));
        _mm512_mask_storeu_ps(even.as_mut_ptr().add(i / 2), lanes(n.div_ceil(2)), e);
        _mm512_mask_storeu_ps(odd.as_mut_ptr().add(i / 2), lanes(n / 2), o);
    }
}

/// Output rows `oy0 ..` of one im2col row: `row[(oy − oy0)·wo + ox] = plane[oy·s + ky −
/// pad][ox·s + kx − pad]`, 0 outside; `phases` are the plane's [`column_phases`].
fn fill_row(
    g: &ConvGeom,
    (plane, phases): (&[f32], &[f32]),
    (ky, kx): (usize, usize),
    oy0: usize,
    row: &mut [f32],
) {
    let ys = valid_range(g.ho, g.h, ky, g.stride, g.pad);
    let xs = valid_range(g.wo, g.w, kx, g.stride, g.pad);
    for (oy, out) in (oy0..).zip(row.chunks_exact_mut(g.wo)) {
        if !ys.contains(&oy) || xs.is_empty() {
            out.fill(0.0);
            continue;
        }
        let iy = oy * g.stride + ky - g.pad;
        out[..xs.start].fill(0.0);
        out[xs.end..].fill(0.0);
        let ix0 = xs.start * g.stride + kx - g.pad;
        let dst = &mut out[xs.clone()];
        let src = if g.stride == 1 {
            &plane[iy * g.w + ix0..]
        } else {
            let wp = g.w.div_ceil(g.stride);
            let j = ix0 % g.stride;
            &phases[(j * g.h + iy) * wp + ix0 / g.stride..]
        };
        dst.copy_from_slice(&src[..dst.len()]);
    }
}

/// The adjoint of [`fill_row`]: adds `row` onto the input positions it was read from.
fn add_row(g: &ConvGeom, row: &[f32], ky: usize, kx: usize, plane: &mut [f32]) {
    let ys = valid_range(g.ho, g.h, ky, g.stride, g.pad);
    let xs = valid_range(g.wo, g.w, kx, g.stride, g.pad);
    if xs.is_empty() {
        return;
    }
    let ix0 = xs.start * g.stride + kx - g.pad;
    for oy in ys {
        let src = &row[oy * g.wo..][xs.clone()];
        let dst = &mut plane[(oy * g.stride + ky - g.pad) * g.w..][..g.w];
        if g.stride == 1 {
            for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                *d += *s;
            }
        } else {
            for (d, s) in dst[ix0..].iter_mut().step_by(g.stride).zip(src) {
                *d += *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of one im2col entry, for comparison.
    fn entry(g: &ConvGeom, xg: &[f32], r: usize, px: usize) -> f32 {
        let (ci, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let (oy, ox) = (px / g.wo, px % g.wo);
        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
            0.0
        } else {
            xg[ci * g.hw() + iy as usize * g.w + ix as usize]
        }
    }

    fn geoms() -> Vec<ConvGeom> {
        let mut out = Vec::new();
        for (k, pad) in [(3, 1), (3, 0), (1, 0), (3, 2)] {
            for stride in [1, 2, 3] {
                for (h, w) in [(7, 7), (9, 5), (4, 6), (5, 20), (3, 45)] {
                    out.push(ConvGeom::new((1, 2, h, w), (2, 2, k, k), stride, pad, 1).unwrap());
                }
            }
        }
        out
    }

    /// col2im adds each im2col entry onto its input pixel, tap by tap and pixel by pixel: the
    /// vector scatters of short rows give exactly the bits of those sums in that order.
    #[test]
    fn col2im_sums_in_tap_order() {
        for g in geoms() {
            let (k, p, cols) = (g.k(), g.p(), g.p() + 3);
            let c: Vec<f32> = (0..k * cols).map(|i| (i as f32 * 0.11).cos()).collect();
            let start: Vec<f32> = (0..g.cin_g() * g.hw()).map(|i| i as f32 * 0.01).collect();
            let mut want = start.clone();
            for r in 0..k {
                let (ci, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
                for px in 0..p {
                    let iy = ((px / g.wo) * g.stride + ky).checked_sub(g.pad);
                    let ix = ((px % g.wo) * g.stride + kx).checked_sub(g.pad);
                    if let (Some(iy), Some(ix)) = (iy, ix) {
                        if iy < g.h && ix < g.w {
                            want[ci * g.hw() + iy * g.w + ix] += c[r * cols + 2 + px];
                        }
                    }
                }
            }
            let mut got = start;
            col2im_image(&g, &c, cols, 2, &mut got);
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{g:?}");
        }
    }

    /// Runs of 1, 2, 3 and more output rows than the map has each hand over the definition's
    /// entries of those rows, and together cover every row once, in order.
    #[test]
    fn im2col_row_runs_match_the_definition() {
        for g in geoms() {
            let xg: Vec<f32> = (0..g.cin_g() * g.hw())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            for rows in [1, 2, 3, g.ho + 1] {
                let mut col = vec![f32::NAN; g.k() * rows * g.wo];
                let mut next = 0;
                im2col_row_runs(&g, &xg, rows, &mut col, |oys, m| {
                    assert_eq!(oys, next..(next + rows).min(g.ho), "{g:?}");
                    let n = oys.len() * g.wo;
                    assert_eq!(m.len(), g.k() * n);
                    for r in 0..g.k() {
                        for i in 0..n {
                            let px = oys.start * g.wo + i;
                            assert_eq!(m[r * n + i], entry(&g, &xg, r, px), "{g:?} r{r} px{px}");
                        }
                    }
                    next = oys.end;
                });
                assert_eq!(next, g.ho, "{g:?} rows {rows}");
            }
        }
    }

    #[test]
    fn im2col_matches_definition_and_col2im_is_its_adjoint() {
        for g in geoms() {
            let (k, p) = (g.k(), g.p());
            let xg: Vec<f32> = (0..g.cin_g() * g.hw())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let cols = p + 3; // a wider matrix: the image sits at column offset 2
            let mut col = vec![f32::NAN; k * cols];
            im2col_image(&g, &xg, &mut col, cols, 2);
            for r in 0..k {
                for px in 0..p {
                    assert_eq!(
                        col[r * cols + 2 + px],
                        entry(&g, &xg, r, px),
                        "{g:?} r{r} px{px}"
                    );
                }
            }
            // <im2col(x), c> == <x, col2im(c)> for a random c.
            let c: Vec<f32> = (0..k * cols).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut back = vec![0.0f32; xg.len()];
            col2im_image(&g, &c, cols, 2, &mut back);
            let lhs: f64 = (0..k)
                .flat_map(|r| (0..p).map(move |px| (r, px)))
                .map(|(r, px)| col[r * cols + 2 + px] as f64 * c[r * cols + 2 + px] as f64)
                .sum();
            let rhs: f64 = xg
                .iter()
                .zip(&back)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }
}
