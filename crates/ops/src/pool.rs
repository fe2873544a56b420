//! Max-pooling (the stem's 3×3/2) in parallel over planes: candle pads by copying the whole tensor
//! twice and then pools it on one thread, which cost about a third of the stem.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

use crate::buffers::par_collect;
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

    /// One H×W plane pooled to Ho×Wo, one output row at a time: the maximum over the row's
    /// window of input rows first (element-wise, vectorised), then over each output's window of
    /// that row's columns, read from the row's `stride` phases (every `stride`-th value) so that
    /// each tap of the window is again an element-wise maximum of contiguous values.
    fn plane(&self, plane: &[f32]) -> Vec<f32> {
        let ((h, w), (ho, wo)) = (self.input, self.output);
        let s = self.stride;
        let phase_len = w.div_ceil(s);
        let mut down = vec![f32::NEG_INFINITY; w];
        let mut phases = vec![f32::NEG_INFINITY; s * phase_len];
        let mut out = vec![f32::NEG_INFINITY; ho * wo];
        for (oy, out_row) in out.chunks_exact_mut(wo).enumerate() {
            down.fill(f32::NEG_INFINITY);
            for row in plane
                .chunks_exact(w)
                .take(self.window(oy, h).end)
                .skip(self.window(oy, h).start)
            {
                for (m, &v) in down.iter_mut().zip(row) {
                    *m = m.max(v);
                }
            }
            for (i, columns) in down.chunks(s).enumerate() {
                for (j, &v) in columns.iter().enumerate() {
                    phases[j * phase_len + i] = v;
                }
            }
            for k in 0..self.kernel {
                // Output `ox` reads column `ox·s + k − padding`: from output `back` on (the
                // first inside the row) that is phase `j`'s value `ox − back + shift`; columns
                // right of `w` are −∞ in the phases.
                let back = self.padding.saturating_sub(k).div_ceil(s);
                let offset = back * s + k - self.padding;
                let (j, shift) = (offset % s, offset / s);
                let phase = &phases[j * phase_len..(j + 1) * phase_len];
                let (Some(outs), Some(values)) = (out_row.get_mut(back..), phase.get(shift..))
                else {
                    continue;
                };
                for (o, &v) in outs.iter_mut().zip(values) {
                    *o = o.max(v);
                }
            }
        }
        out
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
