//! Grouped convolution as one batched matrix product, in candle ops: what devices without this
//! crate's CPU kernels run instead of candle's `conv2d`, which splits a grouped convolution into
//! `groups` separate convolutions and a `cat` (32 small kernels per 3×3 convolution of ResNeXt).
//!
//! The input goes channels-major (C_in×N×H×W) and is padded once; each of the k·k kernel taps is
//! a shifted, strided view of it, and stacking them gives the im2col matrix of every group at
//! once: `groups × (C_in/groups · k·k) × (N·H_out·W_out)`. One batched matmul over the groups
//! with the weights (`groups × C_out/groups × C_in/groups·k·k`) gives the output: on CUDA that
//! is cuBLAS's strided-batched GEMM, one call. Everything is a candle op, so the backward (a
//! batched GEMM per operand and the scatter of the taps) comes from candle's autograd.

use candle_core::{Result, Tensor};

/// `x.conv2d(w, padding, stride, 1, groups)` (NCHW `x`, `w` C_out×C_in/groups×kh×kw) as one im2col
/// and one batched matmul over the groups; differentiable.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    let (n, c_in, h, wd) = x.dims4()?;
    let (c_out, c_in_g, kh, kw) = w.dims4()?;
    if groups == 0 || c_in != c_in_g * groups || c_out % groups != 0 || stride == 0 {
        candle_core::bail!(
            "grouped conv2d: input {:?}, weights {:?}, {groups} groups, stride {stride}",
            x.dims(),
            w.dims()
        )
    }
    let (hp, wp) = (h + 2 * padding, wd + 2 * padding);
    if hp < kh || wp < kw {
        candle_core::bail!(
            "grouped conv2d: kernel {kh}x{kw} larger than the padded input {hp}x{wp}"
        )
    }
    let (h_out, w_out) = ((hp - kh) / stride + 1, (wp - kw) / stride + 1);
    let xc = x
        .permute((1, 0, 2, 3))?
        .pad_with_zeros(2, padding, padding)?
        .pad_with_zeros(3, padding, padding)?;
    let mut taps = Vec::with_capacity(kh * kw);
    for dy in 0..kh {
        for dx in 0..kw {
            taps.push(strided_window(&xc, (dy, dx), (h_out, w_out), stride)?);
        }
    }
    // C_in × k·k × N × H_out × W_out: rows (channel, tap) as the weights' (c, dy, dx) columns.
    let col = Tensor::stack(&taps, 1)?.reshape((groups, c_in_g * kh * kw, n * h_out * w_out))?;
    let wg = w
        .contiguous()?
        .reshape((groups, c_out / groups, c_in_g * kh * kw))?;
    wg.matmul(&col)? // groups × C_out/groups × N·H_out·W_out
        .reshape((c_out, n, h_out, w_out))?
        .permute((1, 0, 2, 3))?
        .contiguous()
}

/// The `h_out × w_out` values of `x` (C×N×H×W) that kernel tap `(dy, dx)` meets at `stride`:
/// rows `dy, dy + stride, …`, columns `dx, dx + stride, …`.
fn strided_window(
    x: &Tensor,
    (dy, dx): (usize, usize),
    (h_out, w_out): (usize, usize),
    stride: usize,
) -> Result<Tensor> {
    let (c, n, h, w) = x.dims4()?;
    if stride == 1 {
        return x.narrow(2, dy, h_out)?.narrow(3, dx, w_out);
    }
    // Take `stride · h_out` rows from `dy` (padding past the end: those rows are never kept),
    // fold them as h_out × stride and keep the first of each fold; the same for columns.
    let take = |len: usize, start: usize, out: usize| (out * stride).min(len - start);
    let (rows, cols) = (take(h, dy, h_out), take(w, dx, w_out));
    let v = x
        .narrow(2, dy, rows)?
        .pad_with_zeros(2, 0, h_out * stride - rows)?
        .narrow(3, dx, cols)?
        .pad_with_zeros(3, 0, w_out * stride - cols)?;
    v.reshape((c, n, h_out, stride, w_out * stride))?
        .narrow(3, 0, 1)?
        .reshape((c, n, h_out, w_out, stride))?
        .narrow(4, 0, 1)?
        .reshape((c, n, h_out, w_out))
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    fn ramp(dims: &[usize], seed: f32) -> Tensor {
        let n: usize = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| ((i as f32 * 0.37 + seed).sin() * 1.3).fract())
            .collect();
        Tensor::from_vec(values, dims, &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    /// Values and both gradients equal candle's per-group convolution, for the shapes of
    /// ResNeXt (3×3, stride 1 and 2, padding 1), odd sizes, 1×1 and more groups than 2.
    #[test]
    fn one_batched_product_equals_candles_grouped_convolution() {
        for (n, c_in, c_out, hw, k, stride, pad, groups) in [
            (2, 8, 8, 7, 3, 1, 1, 4),
            (2, 8, 8, 7, 3, 2, 1, 4),
            (3, 6, 9, 8, 3, 2, 1, 3),
            (1, 4, 6, 5, 1, 1, 0, 2),
            (2, 4, 4, 9, 3, 2, 0, 2),
            (2, 4, 4, 6, 3, 3, 2, 4),
        ] {
            let x = Var::from_tensor(&ramp(&[n, c_in, hw, hw], 0.3)).unwrap();
            let w = Var::from_tensor(&ramp(&[c_out, c_in / groups, k, k], 1.7)).unwrap();
            let case = format!("n{n} {c_in}->{c_out} {hw}px k{k} s{stride} p{pad} g{groups}");
            let want = x.conv2d(&w, pad, stride, 1, groups).unwrap();
            let got = super::conv2d(&x, &w, stride, pad, groups).unwrap();
            assert_eq!(got.dims(), want.dims(), "{case}");
            assert!(max_diff(&got, &want) < 1e-5, "{case}: values");
            let r = ramp(want.dims(), 2.9);
            let gw = (&want * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gg = (&got * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (what, var) in [("dx", &x), ("dw", &w)] {
                let (a, b) = (gg.get(var).unwrap(), gw.get(var).unwrap());
                assert!(max_diff(a, b) < 1e-4, "{case}: {what}");
            }
        }
    }
}
