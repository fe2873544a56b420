//! Direct forward of a grouped 3×3 convolution (stride 1 or 2, padding 1) on NCHW activations,
//! with AVX-512: no im2col matrix and no GEMM.
//!
//! ResNeXt's grouped convolutions have 4 to 32 output channels per group, so as GEMMs they are
//! products only 4 to 32 rows tall over a 9×-expanded im2col matrix. On an AVX-512 Xeon (2 cores,
//! batch 8) they ran at 26–85 GFLOP/s, against ~270 for the 1×1 products, and took about a sixth
//! of the forward for a twentieth of its FLOPs; this kernel runs them at 55–127 GFLOP/s (1.0× at
//! layer4's stride 2, 1.5–2.1× elsewhere), bounded by reading and writing the activations as
//! much as by the FMAs. Here each (image, group) is one task:
//!
//! 1. Output pixels are computed on a grid whose rows are `wq` values apart, such that for every
//!    tap, output pixels that are consecutive along the grid read consecutive input values:
//!    - stride 1: the grid is the output plane itself (`wq = w`), and the taps read the input
//!      planes in place, tap `(ky, kx)` of pixel `j` at `j + (ky − 1)·w + kx − 1`. Each vector
//!      of 16 pixels reads only the lanes whose tap falls inside the image; the masked-off lanes
//!      are the zero padding;
//!    - stride 2: the group's input planes are first copied into zero-padded *phase* planes:
//!      phase `(a, b)` holds padded pixel `(2·r + a, 2·c + b)` at `(r, c)`, `wq` values per row.
//!      Tap `(ky, kx)` of output pixel `(oy, ox)` is phase `(ky % 2, kx % 2)` at
//!      `(oy + ky / 2)·wq + ox + kx / 2`, and the `wq − wo` extra columns of each grid row are
//!      discarded.
//! 2. 4 channels × 64 pixels at a time are summed in 16 AVX-512 accumulators: per input channel
//!    and tap, 4 vector loads, 4 weight broadcasts and 16 FMAs.
//! 3. The epilogue (bias, a residual, ReLU) is applied on the way out: as the sums are stored
//!    into the output planes (stride 1), or as the grid's valid columns are copied there
//!    (stride 2). It costs no pass of its own.
//!
//! Reading in place instead of copying into padded planes took the kernel's share of a 224 px
//! forward from 10% to 7% of its samples.
//!
//! Sums run over (input channel, tap) in order, each step one FMA: the values differ from the
//! GEMM path's by rounding only.

use crate::geometry::ConvGeom;
use crate::kernels::{lanes, stride2_lanes, Epilogue, LANES};
use crate::scratch::with_scratch;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// Output channels per block (accumulator rows).
const CO: usize = 4;
/// Vectors of output pixels per block (accumulator columns).
const VECS: usize = 4;
/// Output pixels per block.
const BLOCK: usize = LANES * VECS;
/// Taps of a 3×3 kernel.
const TAPS: usize = 9;
/// The centre tap (1, 1).
const CENTRE: usize = 4;

/// Whether the direct kernel may be used (see [`allow_direct_conv`]).
static ALLOWED: AtomicBool = AtomicBool::new(true);

/// Allows (the default) or forbids the direct grouped-convolution kernel for the whole process;
/// forbidden, grouped convolutions run as im2col + GEMM. For comparing the two (the forward
/// bench's `--no-direct`).
pub fn allow_direct_conv(allowed: bool) {
    ALLOWED.store(allowed, Ordering::Relaxed);
}

/// Whether [`forward`] takes `g`: a grouped 3×3 NCHW convolution with stride 1 or 2 and
/// padding 1, a multiple of 4 output channels per group, on a CPU with AVX-512 F. `f32_products`
/// says whether the caller would run this convolution's products in f32 (the kernel is f32).
pub(crate) fn applies(g: &ConvGeom, f32_products: bool) -> bool {
    let shape = !g.channels_major
        && g.groups > 1
        && (g.kh, g.kw, g.pad) == (3, 3, 1)
        && matches!(g.stride, 1 | 2)
        && g.cout_g().is_multiple_of(CO);
    shape && f32_products && avx512() && ALLOWED.load(Ordering::Relaxed)
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Where one task's taps read, and the grid its outputs are computed on.
#[derive(Clone, Copy)]
struct Grid {
    /// Stride 1: the taps read the input planes in place (`wq = w`), with per-vector lane masks
    /// standing in for the zero padding ([`Grid::masks`]). Stride 2: they read phase planes.
    in_place: bool,
    /// Values per row of what the taps read (a phase plane's row, or the input's).
    wq: usize,
    /// Phase rows (stride 2).
    hq: usize,
    /// Output values computed per channel: `ho·wq` rounded up to whole blocks.
    cols: usize,
    /// Values from one input channel's plane to the next's in what the taps read; for phase
    /// planes, their rows plus slack so the last block's taps stay in bounds.
    plane: usize,
}

impl Grid {
    fn new(g: &ConvGeom) -> Self {
        let s = g.stride;
        if s == 1 {
            return Grid {
                in_place: true,
                wq: g.w,
                hq: g.h,
                cols: g.p().div_ceil(BLOCK) * BLOCK,
                plane: g.hw(),
            };
        }
        let (wq, hq) = ((g.w + 2 * g.pad).div_ceil(s), (g.h + 2 * g.pad).div_ceil(s));
        let cols = (g.ho * wq).div_ceil(BLOCK) * BLOCK;
        let reach = (2 / s) * wq + 2 / s;
        Grid {
            in_place: false,
            wq,
            hq,
            cols,
            plane: (hq * wq).max(cols + reach),
        }
    }

    /// Offset of tap `t` (row-major in the 3×3 kernel) of input channel 0, relative to the output
    /// pixel's grid index: in the input plane (in place, negative above and left), or in the
    /// phase buffer.
    fn tap_offsets(&self, g: &ConvGeom) -> [isize; TAPS] {
        let s = g.stride;
        std::array::from_fn(|t| {
            let (ky, kx) = (t / 3, t % 3);
            if self.in_place {
                return (ky as isize - 1) * g.w as isize + kx as isize - 1;
            }
            let phase = (ky % s) * s + kx % s;
            (phase * g.cin_g() * self.plane + (ky / s) * self.wq + kx / s) as isize
        })
    }

    /// In place: for each vector of 16 grid values, the lanes whose tap `t` reads an input pixel
    /// (inside the image, and the output pixel inside the plane); the other lanes read the
    /// padding's zero. Empty for phase planes, whose taps read every lane.
    fn masks(&self, g: &ConvGeom) -> Vec<[u16; TAPS]> {
        if !self.in_place {
            return Vec::new();
        }
        let mut masks = vec![[0u16; TAPS]; self.cols / LANES];
        for j in 0..g.p() {
            let (oy, ox) = (j / g.w, j % g.w);
            for (t, mask) in masks[j / LANES].iter_mut().enumerate() {
                // The tap's input pixel, in coordinates shifted by the padding (1).
                let (iy, ix) = (oy + t / 3, ox + t % 3);
                if (1..=g.h).contains(&iy) && (1..=g.w).contains(&ix) {
                    *mask |= 1 << (j % LANES);
                }
            }
        }
        masks
    }
}

/// `y = epilogue(conv(x, w))` for a geometry [`applies`] accepted, writing every slot of `y`.
pub(crate) fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [MaybeUninit<f32>],
) {
    debug_assert!(applies(g, true));
    let grid = Grid::new(g);
    let taps = grid.tap_offsets(g);
    let masks = grid.masks(g);
    let (cin_g, cout_g) = (g.cin_g(), g.cout_g());
    let scratch_len = match grid.in_place {
        true => 0,
        false => (g.stride * g.stride * cin_g * grid.plane) + cout_g * grid.cols,
    };
    y.par_chunks_mut(cout_g * g.p())
        .enumerate()
        .for_each(|(t, yg)| {
            let (n, group) = (t / g.groups, t % g.groups);
            with_scratch(scratch_len, |buf| {
                let x0 = (n * g.cin + group * cin_g) * g.hw();
                let wg = &w[group * cout_g * cin_g * TAPS..][..cout_g * cin_g * TAPS];
                let x = &x[x0..x0 + cin_g * g.hw()];
                // SAFETY: `applies` checked AVX-512 F (so this is x86-64).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let epilogue = epilogue.shifted(t * cout_g * g.p());
                    one_task(
                        g,
                        &grid,
                        &taps,
                        &masks,
                        x,
                        wg,
                        epilogue,
                        group * cout_g,
                        buf,
                        yg,
                    )
                };
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (x, wg, buf, yg, epilogue, &taps, &masks);
                    unreachable!("`applies` is false off x86-64");
                }
            });
        });
}

/// One (image, group): `x` its `cin_g` input planes, `wg` its `cout_g × cin_g × 9` weights, `yg`
/// its `cout_g` output planes (channels `c0 ..` of the layer), `buf` scratch; `taps` and `masks`
/// from `grid`.
///
/// # Safety
/// The CPU supports AVX-512 F.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn one_task(
    g: &ConvGeom,
    grid: &Grid,
    taps: &[isize; TAPS],
    masks: &[[u16; TAPS]],
    x: &[f32],
    wg: &[f32],
    epilogue: Epilogue,
    c0: usize,
    buf: &mut [f32],
    yg: &mut [MaybeUninit<f32>],
) {
    let cin_g = g.cin_g();
    let per_block = CO * cin_g * TAPS;
    if grid.in_place {
        for (cb, (planes, weights)) in yg
            .chunks_exact_mut(CO * g.p())
            .zip(wg.chunks_exact(per_block))
            .enumerate()
        {
            let dst = Dst::Planes {
                planes,
                epilogue: epilogue.shifted(cb * CO * g.p()),
                c0: c0 + cb * CO,
            };
            // SAFETY: AVX-512 F per this function's contract; the masks keep every read inside
            // `x`'s planes and every write inside `planes`.
            unsafe { blocks::<true>(x, grid, taps, masks, cin_g, weights, dst) };
        }
        return;
    }
    let (phases, out) = buf.split_at_mut(g.stride * g.stride * cin_g * grid.plane);
    fill_phases(g, grid, x, phases);
    for (rows, weights) in out
        .chunks_exact_mut(CO * grid.cols)
        .zip(wg.chunks_exact(per_block))
    {
        // SAFETY: AVX-512 F per this function's contract; `Grid::plane` leaves room for every
        // block's furthest tap (see `blocks`).
        unsafe { blocks::<false>(phases, grid, taps, masks, cin_g, weights, Dst::Grid(rows)) };
    }
    write_output(g, grid, out, epilogue, c0, yg);
}

/// Copies `cin_g` input planes (`h×w`) into the zero-padded phase planes of `grid`, writing every
/// value of `phases`.
///
/// # Safety
/// The CPU supports AVX-512 F; `x` holds `cin_g` planes and `phases` `s²·cin_g` planes of
/// `grid.plane` values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn fill_phases(g: &ConvGeom, grid: &Grid, x: &[f32], phases: &mut [f32]) {
    let (s, pad, wq) = (g.stride, g.pad, grid.wq);
    assert!(x.len() >= g.cin_g() * g.hw() && phases.len() >= s * s * g.cin_g() * grid.plane);
    let (x, phases) = (x.as_ptr(), phases.as_mut_ptr());
    for ci in 0..g.cin_g() {
        for (a, b) in (0..s).flat_map(|a| (0..s).map(move |b| (a, b))) {
            let plane = phases.add(((a * s + b) * g.cin_g() + ci) * grid.plane);
            // Row r, column c hold padded pixel (s·r + a, s·c + b) = input pixel
            // (s·r + a − pad, s·c + b − pad): columns c_lo..c_hi fall inside the input's width.
            let c_lo = pad.saturating_sub(b).div_ceil(s);
            let c_hi = (g.w + pad - b).div_ceil(s).min(wq);
            for r in 0..grid.hq {
                let row = plane.add(r * wq);
                let Some(iy) = (s * r + a).checked_sub(pad).filter(|&iy| iy < g.h) else {
                    zero(row, wq);
                    continue;
                };
                zero(row, c_lo);
                let src = x.add((ci * g.h + iy) * g.w + s * c_lo + b - pad);
                match s {
                    1 => copy(row.add(c_lo), src, c_hi - c_lo),
                    _ => copy_even(row.add(c_lo), src, c_hi - c_lo),
                }
                zero(row.add(c_hi), wq - c_hi);
            }
            zero(plane.add(grid.hq * wq), grid.plane - grid.hq * wq);
        }
    }
}

/// `dst[..len] = src[..len]`, in vectors (a `memcpy` call costs more on these short rows).
///
/// # Safety
/// AVX-512 F; both ranges valid.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn copy(dst: *mut f32, src: *const f32, len: usize) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + LANES <= len {
        _mm512_storeu_ps(dst.add(i), _mm512_loadu_ps(src.add(i)));
        i += LANES;
    }
    if i < len {
        let m = lanes(len - i);
        _mm512_mask_storeu_ps(dst.add(i), m, _mm512_maskz_loadu_ps(m, src.add(i)));
    }
}

/// `dst[c] = src[2·c]` for `c` in `0..len`: two vectors of `src` give one of `dst`. Reads no
/// further than `src[2·(len − 1)]`.
///
/// # Safety
/// AVX-512 F; both ranges valid.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn copy_even(dst: *mut f32, src: *const f32, len: usize) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i < len {
        // Source values 2i .. 2i + 2·n − 1 of which the even ones are wanted.
        let n = (len - i).min(LANES);
        let span = 2 * n - 1;
        let (lo, hi) = (span.min(LANES), span.saturating_sub(LANES));
        let a = _mm512_maskz_loadu_ps(lanes(lo), src.add(2 * i));
        let b = _mm512_maskz_loadu_ps(lanes(hi), src.add(2 * i + LANES));
        let v = stride2_lanes(a, b, 0);
        _mm512_mask_storeu_ps(dst.add(i), lanes(n), v);
        i += LANES;
    }
}

/// `dst[..len] = 0`, in vectors.
///
/// # Safety
/// AVX-512 F; the range valid.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn zero(dst: *mut f32, len: usize) {
    use std::arch::x86_64::*;
    let mut i = 0;
    while i + LANES <= len {
        _mm512_storeu_ps(dst.add(i), _mm512_setzero_ps());
        i += LANES;
    }
    if i < len {
        _mm512_mask_storeu_ps(dst.add(i), lanes(len - i), _mm512_setzero_ps());
    }
}

/// The `CO` output channels of `weights` (`CO × cin_g × 9`) on every block of the output grid,
/// into `dst`. `src` holds `cin_g` planes `grid.plane` apart: the input's (`MASKED`: each
/// vector's reads limited to the lanes of `masks`, and `dst` the output planes), or phase planes
/// (`dst` the grid).
///
/// # Safety
/// The CPU supports AVX-512 F. `MASKED`: `src` holds `cin_g` input planes and `masks` one entry
/// per vector of the grid, whose lanes read only inside them ([`Grid::masks`]). Otherwise `src`
/// holds `s²·cin_g` phase planes of `grid.plane` values, so that every read, up to
/// `tap + (cin_g − 1)·plane + cols − 1` for each tap, is in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn blocks<const MASKED: bool>(
    src: &[f32],
    grid: &Grid,
    taps: &[isize; TAPS],
    masks: &[[u16; TAPS]],
    cin_g: usize,
    weights: &[f32],
    mut dst: Dst,
) {
    use std::arch::x86_64::*;
    debug_assert_eq!(MASKED, matches!(dst, Dst::Planes { .. }));
    debug_assert!(
        MASKED
            || taps
                .iter()
                .all(|&t| t as usize + (cin_g - 1) * grid.plane + grid.cols <= src.len())
    );
    if let Dst::Planes {
        planes, epilogue, ..
    } = &dst
    {
        assert!(epilogue.residual.is_none_or(|r| r.len() >= planes.len()));
        assert_eq!(masks.len() * LANES, grid.cols);
    }
    let (src, wts) = (src.as_ptr(), weights.as_ptr());
    let per_channel = cin_g * TAPS;
    for j0 in (0..grid.cols).step_by(BLOCK) {
        let mut acc = [[_mm512_setzero_ps(); VECS]; CO];
        for ci in 0..cin_g {
            for (t, &tap) in taps.iter().enumerate() {
                // Unmasked lanes of an in-place read may lie outside `src`: `wrapping_offset`
                // names their addresses without a claim that they are in bounds.
                let at = src.wrapping_offset(tap + (ci * grid.plane + j0) as isize);
                let mut xs = [_mm512_setzero_ps(); VECS];
                for (v, x) in xs.iter_mut().enumerate() {
                    let p = at.wrapping_add(v * LANES);
                    *x = match MASKED {
                        true => _mm512_maskz_loadu_ps(masks[j0 / LANES + v][t], p),
                        false => _mm512_loadu_ps(p),
                    };
                }
                for (co, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*wts.add(co * per_channel + ci * TAPS + t));
                    for (a, &x) in acc.iter_mut().zip(&xs) {
                        *a = _mm512_fmadd_ps(w, x, *a);
                    }
                }
            }
        }
        match &mut dst {
            Dst::Grid(rows) => {
                assert!(rows.len() >= CO * grid.cols);
                for (co, acc) in acc.iter().enumerate() {
                    for (v, &a) in acc.iter().enumerate() {
                        let at = co * grid.cols + j0 + v * LANES;
                        _mm512_storeu_ps(rows.as_mut_ptr().add(at), a);
                    }
                }
            }
            Dst::Planes {
                planes,
                epilogue,
                c0,
            } => {
                let p = planes.len() / CO;
                let out = planes.as_mut_ptr().cast::<f32>();
                for (co, acc) in acc.iter().enumerate() {
                    let b = epilogue.bias.map_or(0.0, |b| b[*c0 + co]);
                    for (v, &a) in acc.iter().enumerate() {
                        // The centre tap reads exactly the lanes whose pixel is in the plane.
                        let (m, at) = (masks[j0 / LANES + v][CENTRE], co * p + j0 + v * LANES);
                        let y = epilogue.finish(a, b, at, m);
                        _mm512_mask_storeu_ps(out.wrapping_add(at), m, y);
                    }
                }
            }
        }
    }
}

/// Where [`blocks`] stores its sums.
enum Dst<'a> {
    /// Phase planes: `CO` rows of `grid.cols` values of the output grid, as summed.
    Grid(&'a mut [f32]),
    /// In place: the `CO` output planes of channels `c0 ..` of the layer, with the epilogue
    /// (its residual aligned with `planes`) applied.
    Planes {
        planes: &'a mut [MaybeUninit<f32>],
        epilogue: Epilogue<'a>,
        c0: usize,
    },
}

/// Writes the valid `ho × wo` pixels of each output channel's grid into `yg` (the group's `cout_g`
/// output planes), applying the epilogue for channels `c0 ..` (its residual aligned with `yg`).
///
/// # Safety
/// AVX-512 F; `out` holds `cout_g` grids of `grid.cols` values and `yg` `cout_g` planes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn write_output(
    g: &ConvGeom,
    grid: &Grid,
    out: &[f32],
    epilogue: Epilogue,
    c0: usize,
    yg: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    let cout_g = g.cout_g();
    assert!(out.len() >= cout_g * grid.cols && yg.len() >= cout_g * g.p());
    assert!(epilogue.residual.is_none_or(|r| r.len() >= cout_g * g.p()));
    let (out, yg) = (out.as_ptr(), yg.as_mut_ptr().cast::<f32>());
    for co in 0..cout_g {
        let b = epilogue.bias.map_or(0.0, |b| b[c0 + co]);
        for oy in 0..g.ho {
            let (src, dst) = (
                out.add(co * grid.cols + oy * grid.wq),
                yg.add(co * g.p() + oy * g.wo),
            );
            for i in (0..g.wo).step_by(LANES) {
                let m = if i + LANES <= g.wo {
                    u16::MAX
                } else {
                    lanes(g.wo - i)
                };
                let at = co * g.p() + oy * g.wo + i;
                let v = epilogue.finish(_mm512_maskz_loadu_ps(m, src.add(i)), b, at, m);
                _mm512_mask_storeu_ps(dst.add(i), m, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Compute;
    use crate::kernels::epilogues;

    /// The convolution plus bias by its definition, in f64.
    fn reference(g: &ConvGeom, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0; g.y_len()];
        let (cin_g, cout_g) = (g.cin_g(), g.cout_g());
        for n in 0..g.n {
            for co in 0..g.cout {
                let group = co / cout_g;
                for oy in 0..g.ho {
                    for ox in 0..g.wo {
                        let mut sum = f64::from(bias[co]);
                        for ci in 0..cin_g {
                            for t in 0..TAPS {
                                let iy = (oy * g.stride + t / 3) as isize - 1;
                                let ix = (ox * g.stride + t % 3) as isize - 1;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let c = group * cin_g + ci;
                                let xv =
                                    x[((n * g.cin + c) * g.h + iy as usize) * g.w + ix as usize];
                                let wv = w[(co * cin_g + ci) * TAPS + t];
                                sum += f64::from(xv) * f64::from(wv);
                            }
                        }
                        y[((n * g.cout + co) * g.ho + oy) * g.wo + ox] = sum as f32;
                    }
                }
            }
        }
        y
    }

    /// `len` deterministic values in [-1, 1], different per `seed`.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len as u32)
            .map(|i| {
                ((i.wrapping_mul(2654435761) ^ seed).wrapping_mul(40503) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn equals_the_definition() {
        if !avx512() {
            eprintln!("skipped: no AVX-512 F on this CPU");
            return;
        }
        // (n, cin, cout, h, w, stride, groups): ResNeXt's group widths at both strides, odd and
        // even sides, sides under, at and over a block, and more than one block of channels.
        let cases = [
            (2, 8, 8, 9, 7, 1, 2),
            (2, 8, 8, 9, 7, 2, 2),
            (1, 16, 32, 14, 14, 1, 2),
            (3, 64, 64, 8, 8, 2, 4),
            (2, 12, 8, 5, 11, 2, 2),
            (1, 6, 8, 1, 1, 1, 2),
            (1, 6, 8, 2, 3, 2, 2),
            (2, 128, 128, 17, 23, 1, 32),
            (1, 256, 256, 28, 28, 2, 32),
        ];
        for (n, cin, cout, h, wd, stride, groups) in cases {
            let g = ConvGeom::new(
                (n, cin, h, wd),
                (cout, cin / groups, 3, 3),
                stride,
                1,
                groups,
            )
            .unwrap();
            let g = ConvGeom {
                compute: Compute::F32,
                ..g
            };
            assert!(applies(&g, true));
            let (x, w, bias) = (values(g.x_len(), 1), values(g.w_len(), 2), values(cout, 3));
            let residual = values(g.y_len(), 4);
            let zero = vec![0.0; cout];
            for epilogue in epilogues(&bias, &residual) {
                let (with_bias, with_residual, relu) = epilogue.parts();
                let mut expected = reference(&g, &x, &w, if with_bias { &bias } else { &zero });
                for (i, e) in expected.iter_mut().enumerate() {
                    *e += if with_residual { residual[i] } else { 0.0 };
                    *e = if relu { e.max(0.0) } else { *e };
                }
                let mut y = vec![MaybeUninit::new(f32::NAN); g.y_len()];
                forward(&g, &x, &w, epilogue, &mut y);
                for (i, (got, want)) in y.iter().zip(&expected).enumerate() {
                    // SAFETY: initialised above (and overwritten by `forward`).
                    let got = unsafe { got.assume_init() };
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{:?} value {i}: {got} vs {want}",
                        (n, cin, cout, h, wd, stride, groups)
                    );
                }
            }
        }
    }

    #[test]
    fn takes_only_what_it_computes() {
        let g = |cin, cout, k, stride, pad, groups| {
            ConvGeom::new(
                (2, cin, 8, 8),
                (cout, cin / groups, k, k),
                stride,
                pad,
                groups,
            )
            .unwrap()
        };
        let grouped = g(128, 128, 3, 1, 1, 32);
        assert_eq!(applies(&grouped, true), avx512());
        assert!(!applies(&grouped, false), "bf16 products");
        assert!(!applies(&grouped.channels_major(), true));
        assert!(!applies(&g(64, 64, 3, 1, 1, 1), true), "dense");
        assert!(!applies(&g(64, 64, 1, 1, 0, 32), true), "1x1");
        assert!(!applies(&g(64, 64, 3, 3, 1, 32), true), "stride 3");
        assert!(!applies(&g(64, 64, 3, 1, 0, 32), true), "no padding");
        assert!(
            !applies(&g(64, 96, 3, 1, 1, 32), true),
            "3 outputs per group"
        );
    }
}
