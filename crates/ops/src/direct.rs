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
//! 1. The group's input planes are copied once into zero-padded *phase* planes: for stride `s`,
//!    phase `(a, b)` holds padded pixel `(s·r + a, s·c + b)` at `(r, c)`, `wq` values per row. Then
//!    tap `(ky, kx)` of output pixel `(oy, ox)` is phase `(ky % s, kx % s)` at
//!    `(oy + ky / s)·wq + ox + kx / s`: for every tap, output pixels that are consecutive along a
//!    `wq`-wide row read consecutive input values.
//! 2. Outputs are computed on that `ho × wq` grid (the `wq − wo` extra columns of each row are
//!    discarded), 4 channels × 64 pixels at a time in 16 AVX-512 accumulators: per input channel
//!    and tap, 4 vector loads, 4 weight broadcasts and 16 FMAs.
//! 3. The valid columns are copied into the output with the epilogue (bias, a residual, ReLU)
//!    applied on the way, so it costs no pass of its own.
//!
//! Sums run over (input channel, tap) in order, each step one FMA: the values differ from the
//! GEMM path's by rounding only.

use crate::geometry::ConvGeom;
use crate::kernels::Epilogue;
use crate::scratch::with_scratch;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// Output channels per block (accumulator rows).
const CO: usize = 4;
/// AVX-512 lanes.
const LANES: usize = 16;
/// Vectors of output pixels per block (accumulator columns).
const VECS: usize = 4;
/// Output pixels per block.
const BLOCK: usize = LANES * VECS;
/// Taps of a 3×3 kernel.
const TAPS: usize = 9;

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

/// The sizes of one task's phase planes and output grid.
#[derive(Clone, Copy)]
struct Grid {
    /// Values per phase row.
    wq: usize,
    /// Phase rows.
    hq: usize,
    /// Output values computed per channel: `ho·wq` rounded up to whole blocks.
    cols: usize,
    /// Values per phase plane: its rows, plus slack so the last block's taps stay in bounds.
    plane: usize,
}

impl Grid {
    fn new(g: &ConvGeom) -> Self {
        let s = g.stride;
        let (wq, hq) = ((g.w + 2 * g.pad).div_ceil(s), (g.h + 2 * g.pad).div_ceil(s));
        let cols = (g.ho * wq).div_ceil(BLOCK) * BLOCK;
        let reach = (2 / s) * wq + 2 / s;
        Grid {
            wq,
            hq,
            cols,
            plane: (hq * wq).max(cols + reach),
        }
    }

    /// Offset of tap `t` (row-major in the 3×3 kernel) of input channel 0 in the phase buffer,
    /// relative to the output pixel's grid index.
    fn tap_offsets(&self, g: &ConvGeom) -> [usize; TAPS] {
        let s = g.stride;
        std::array::from_fn(|t| {
            let (ky, kx) = (t / 3, t % 3);
            let phase = (ky % s) * s + kx % s;
            phase * g.cin_g() * self.plane + (ky / s) * self.wq + kx / s
        })
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
    let (cin_g, cout_g) = (g.cin_g(), g.cout_g());
    let phases_len = g.stride * g.stride * cin_g * grid.plane;
    let out_len = cout_g * grid.cols;
    y.par_chunks_mut(cout_g * g.p())
        .enumerate()
        .for_each(|(t, yg)| {
            let (n, group) = (t / g.groups, t % g.groups);
            with_scratch(phases_len + out_len, |buf| {
                let x0 = (n * g.cin + group * cin_g) * g.hw();
                let wg = &w[group * cout_g * cin_g * TAPS..][..cout_g * cin_g * TAPS];
                let x = &x[x0..x0 + cin_g * g.hw()];
                // SAFETY: `applies` checked AVX-512 F (so this is x86-64).
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    let epilogue = epilogue.shifted(t * cout_g * g.p());
                    one_task(g, &grid, &taps, x, wg, epilogue, group * cout_g, buf, yg)
                };
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (x, wg, buf, yg, epilogue, &taps);
                    unreachable!("`applies` is false off x86-64");
                }
            });
        });
}

/// One (image, group): `x` its `cin_g` input planes, `wg` its `cout_g × cin_g × 9` weights, `yg`
/// its `cout_g` output planes (channels `c0 ..` of the layer), `buf` scratch.
///
/// # Safety
/// The CPU supports AVX-512 F.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn one_task(
    g: &ConvGeom,
    grid: &Grid,
    taps: &[usize; TAPS],
    x: &[f32],
    wg: &[f32],
    epilogue: Epilogue,
    c0: usize,
    buf: &mut [f32],
    yg: &mut [MaybeUninit<f32>],
) {
    let cin_g = g.cin_g();
    let (phases, out) = buf.split_at_mut(g.stride * g.stride * cin_g * grid.plane);
    fill_phases(g, grid, x, phases);
    for (rows, weights) in out
        .chunks_exact_mut(CO * grid.cols)
        .zip(wg.chunks_exact(CO * cin_g * TAPS))
    {
        // SAFETY: AVX-512 F per this function's contract; `Grid::plane` leaves room for every
        // block's furthest tap (see `blocks`).
        unsafe { blocks(phases, grid, taps, cin_g, weights, rows) };
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
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let mut i = 0;
    while i < len {
        // Source values 2i .. 2i + 2·n − 1 of which the even ones are wanted.
        let n = (len - i).min(LANES);
        let span = 2 * n - 1;
        let (lo, hi) = (span.min(LANES), span.saturating_sub(LANES));
        let a = _mm512_maskz_loadu_ps(lanes(lo), src.add(2 * i));
        let b = _mm512_maskz_loadu_ps(lanes(hi), src.add(2 * i + LANES));
        let v = _mm512_permutex2var_ps(a, even, b);
        _mm512_mask_storeu_ps(dst.add(i), lanes(n), v);
        i += LANES;
    }
}

/// Mask of the first `len` (≤ 16) lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lanes(len: usize) -> u16 {
    ((1u32 << len) - 1) as u16
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
/// into `rows` (`CO × grid.cols`).
///
/// # Safety
/// The CPU supports AVX-512 F, and `phases` holds `s²·cin_g` planes of `grid.plane` values, so
/// that every read, up to `tap + (cin_g − 1)·plane + cols − 1` for each tap, is in bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn blocks(
    phases: &[f32],
    grid: &Grid,
    taps: &[usize; TAPS],
    cin_g: usize,
    weights: &[f32],
    rows: &mut [f32],
) {
    use std::arch::x86_64::*;
    debug_assert!(taps
        .iter()
        .all(|&t| t + (cin_g - 1) * grid.plane + grid.cols <= phases.len()));
    let (src, wts, dst) = (phases.as_ptr(), weights.as_ptr(), rows.as_mut_ptr());
    let per_channel = cin_g * TAPS;
    for j0 in (0..grid.cols).step_by(BLOCK) {
        let mut acc = [[_mm512_setzero_ps(); VECS]; CO];
        for ci in 0..cin_g {
            for (t, &tap) in taps.iter().enumerate() {
                let at = src.add(tap + ci * grid.plane + j0);
                let mut xs = [_mm512_setzero_ps(); VECS];
                for (v, x) in xs.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(at.add(v * LANES));
                }
                for (co, acc) in acc.iter_mut().enumerate() {
                    let w = _mm512_set1_ps(*wts.add(co * per_channel + ci * TAPS + t));
                    for (a, &x) in acc.iter_mut().zip(&xs) {
                        *a = _mm512_fmadd_ps(w, x, *a);
                    }
                }
            }
        }
        for (co, acc) in acc.iter().enumerate() {
            for (v, &a) in acc.iter().enumerate() {
                _mm512_storeu_ps(dst.add(co * grid.cols + j0 + v * LANES), a);
            }
        }
    }
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
    let residual = epilogue.residual.map(<[f32]>::as_ptr);
    let (out, yg) = (out.as_ptr(), yg.as_mut_ptr().cast::<f32>());
    for co in 0..cout_g {
        let b = _mm512_set1_ps(epilogue.bias.map_or(0.0, |b| b[c0 + co]));
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
                let mut v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, src.add(i)), b);
                if let Some(r) = residual {
                    let r = _mm512_maskz_loadu_ps(m, r.add(co * g.p() + oy * g.wo + i));
                    v = _mm512_add_ps(v, r);
                }
                if epilogue.relu {
                    v = _mm512_max_ps(v, _mm512_setzero_ps());
                }
                _mm512_mask_storeu_ps(dst.add(i), m, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::Compute;

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
            for (with_bias, with_residual, relu) in [
                (false, false, false),
                (true, false, false),
                (true, false, true),
                (true, true, true),
            ] {
                let epilogue = Epilogue {
                    bias: with_bias.then_some(&bias[..]),
                    residual: with_residual.then_some(&residual[..]),
                    relu,
                };
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
