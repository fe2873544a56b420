//! Max-pooling (the stem's 3×3/2) in parallel over planes: candle pads by copying the whole tensor
//! twice and then pools it on one thread, which cost about a third of the stem.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::buffers::par_collect;
use crate::kernels::LANES;
#[cfg(target_arch = "x86_64")]
use crate::kernels::{lanes, stride2_lanes};
use crate::storage::{all_cpu_f32, f32_data};

/// PyTorch's `max_pool2d(x, kernel, stride, padding)` over an N×C×H×W `x`: padded positions never
/// win. Needs `padding ≤ kernel / 2` (as PyTorch does).
///
/// A CPU f32 tensor that asks for no gradient is pooled in parallel over its planes; anything else is candle's
/// `max_pool2d_with_stride` over the input padded with copies of its edges, which gives the same
/// maxima (each window that reaches into the padding also holds the edge value copied there) and
/// is differentiable where candle's is (kernel = stride).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    if kernel == 0 || stride == 0 || padding > kernel / 2 {
        candle_core::bail!("max_pool2d: kernel {kernel}, stride {stride}, padding {padding}")
    }
    let (n, c, h, w) = x.dims4()?;
    if x.track_op() || !all_cpu_f32(&[x]) {
        return x
            .pad_with_same(2, padding, padding)?
            .pad_with_same(3, padding, padding)?
            .max_pool2d_with_stride(kernel, stride);
    }
    let out = |len: usize| {
        (len + 2 * padding)
            .checked_sub(kernel)
            .map(|d| d / stride + 1)
    };
    let (Some(ho), Some(wo)) = (out(h), out(w)) else {
        candle_core::bail!("max_pool2d: a {kernel}×{kernel} window does not fit {h}×{w}")
    };
    let op = MaxPool {
        planes: n * c,
        input: (h, w),
        output: (ho, wo),
        kernel,
        stride,
        padding,
    };
    x.contiguous()?.apply_op1_no_bwd(&op)
}

struct MaxPool {
    planes: usize,
    input: (usize, usize),
    output: (usize, usize),
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl MaxPool {
    /// The input positions along one axis (of `len`) that output position `o` pools.
    fn window(&self, o: usize, len: usize) -> std::ops::Range<usize> {
        let start = o * self.stride;
        start.saturating_sub(self.padding)..(start + self.kernel - self.padding).min(len)
    }

    /// One H×W plane pooled to Ho×Wo (see [`MaxPool::pool`]), with AVX-512 where the CPU has it.
    fn plane(&self, plane: &[f32]) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512 F was just detected.
            return unsafe { self.plane_avx512(plane) };
        }
        self.pool(plane, false)
    }

    /// [`MaxPool::pool`] compiled for AVX-512, its stride-2 taps in 16-lane vectors. The
    /// workspace builds for baseline x86-64: there the row maxima ran 4 lanes at a time and the
    /// split of each row into its stride phases one value at a time, ~15% of the stem's time.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_avx512(&self, plane: &[f32]) -> Vec<f32> {
        self.pool(plane, true)
    }

    /// One H×W plane pooled to Ho×Wo, one output row at a time: the element-wise maximum over
    /// the row's window of input rows first, into a row with `padding` −∞ on its left and −∞ on
    /// its right, then over each output's window of that row (output `ox`, tap `k`: the padded
    /// row's value `ox·stride + k`), with AVX-512 vectors when `vectors` and the stride is 2.
    #[inline(always)]
    fn pool(&self, plane: &[f32], vectors: bool) -> Vec<f32> {
        let ((h, w), (ho, wo)) = (self.input, self.output);
        let (s, pad) = (self.stride, self.padding);
        // Room for every tap of every output, and for the vectors' reach past the last one.
        let len = (pad + w).max(s * wo.next_multiple_of(LANES) + self.kernel + LANES);
        let mut down = vec![f32::NEG_INFINITY; len];
        let mut out = vec![f32::NEG_INFINITY; ho * wo];
        for (oy, out_row) in out.chunks_exact_mut(wo).enumerate() {
            let middle = &mut down[pad..pad + w];
            middle.fill(f32::NEG_INFINITY);
            let rows = self.window(oy, h);
            for row in plane.chunks_exact(w).take(rows.end).skip(rows.start) {
                for (m, &v) in middle.iter_mut().zip(row) {
                    *m = m.max(v);
                }
            }
            #[cfg(target_arch = "x86_64")]
            if vectors && s == 2 {
                // SAFETY: `vectors` is only set where the CPU has AVX-512 F; `down` reaches
                // `2·wo.next_multiple_of(16) + kernel + 16` values.
                unsafe { self.stride2_taps_avx512(&down, out_row) };
                continue;
            }
            for k in 0..self.kernel {
                for (ox, o) in out_row.iter_mut().enumerate() {
                    *o = o.max(down[ox * s + k]);
                }
            }
        }
        out
    }

    /// `out_row[ox] = max over taps k of down[2·ox + k]`, 16 outputs at a time: each tap's 16
    /// values are the even lanes of two vector loads. `max` keeps the running maximum when a
    /// value is NaN, as `f32::max` does (the running maximum starts at −∞ and is never NaN).
    ///
    /// # Safety
    /// AVX-512 F; `down` holds at least `2·out_row.len().next_multiple_of(16) + kernel + 16`
    /// values.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn stride2_taps_avx512(&self, down: &[f32], out_row: &mut [f32]) {
        use std::arch::x86_64::*;
        let wo = out_row.len();
        assert!(down.len() >= 2 * wo.next_multiple_of(LANES) + self.kernel + LANES);
        for ox in (0..wo).step_by(LANES) {
            let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
            for k in 0..self.kernel {
                let at = down.as_ptr().add(2 * ox + k);
                let (lo, hi) = (_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(LANES)));
                m = _mm512_max_ps(stride2_lanes(lo, hi, 0), m);
            }
            let lanes = lanes((wo - ox).min(LANES));
            _mm512_mask_storeu_ps(out_row.as_mut_ptr().add(ox), lanes, m);
        }
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "dfd-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let ((h, w), (ho, wo)) = (self.input, self.output);
        let x = f32_data(s, l, self.planes * h * w, "input")?;
        let y = par_collect(self.planes * ho * wo, ho * wo, |i| {
            self.plane(&x[i * h * w..(i + 1) * h * w]).into_iter()
        });
        let dims = l.dims();
        Ok((CpuStorage::F32(y), Shape::from((dims[0], dims[1], ho, wo))))
    }
}
