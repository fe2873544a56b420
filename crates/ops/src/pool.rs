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

    /// One H×W plane pooled to Ho×Wo: the maximum over each row's column windows first, then over
    /// each output row's window of those rows (a vectorised pass).
    fn plane(&self, plane: &[f32]) -> Vec<f32> {
        let ((h, w), (ho, wo)) = (self.input, self.output);
        let mut across = Vec::with_capacity(h * wo);
        for row in plane.chunks_exact(w) {
            across.extend((0..wo).map(|ox| max(&row[self.window(ox, w)])));
        }
        let mut out = vec![f32::NEG_INFINITY; ho * wo];
        for (oy, out_row) in out.chunks_exact_mut(wo).enumerate() {
            for row in across
                .chunks_exact(wo)
                .take(self.window(oy, h).end)
                .skip(self.window(oy, h).start)
            {
                for (o, &v) in out_row.iter_mut().zip(row) {
                    *o = o.max(v);
                }
            }
        }
        out
    }
}

fn max(values: &[f32]) -> f32 {
    values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
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
