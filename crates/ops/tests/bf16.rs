//! bf16 compute through the ops: convolutions (NCHW, channels-major, fused bias + ReLU) and a
//! linear layer built under `with_compute(Bf16)` give, forward and backward, what the f32 ops give
//! on operands rounded to bf16 (the backward computes as its forward did, even outside the
//! scope), and differ from plain f32. Emulated where the CPU has no AVX512-BF16. Every product
//! in them has at least `MIN_ROWS` rows; narrower ones compute in f32.

use candle_core::{DType, Result, Tensor, Var};
use dfd_ops::compute::{with_compute, Compute};

mod common;
use common::{assert_close, assert_grads_close, max_abs, tensor};

fn rounded(t: &Tensor) -> Result<Tensor> {
    t.to_dtype(DType::BF16)?.to_dtype(DType::F32)
}

/// `f(vars)` in bf16 against `f(rounded vars)` in f32: values, and the gradients of
/// `sum(out · r)` with `r` exact in bf16 (so the upstream gradient rounds to itself).
fn bf16_vs_rounded(
    what: &str,
    vars: &[Tensor],
    f: impl Fn(&[Var]) -> Result<Tensor>,
) -> Result<()> {
    let plain: Vec<Var> = vars.iter().map(Var::from_tensor).collect::<Result<_>>()?;
    let rounded_vars: Vec<Var> = vars
        .iter()
        .map(|t| Var::from_tensor(&rounded(t)?))
        .collect::<Result<_>>()?;
    let bf16 = with_compute(Compute::Bf16, || f(&plain))?;
    let reference = f(&rounded_vars)?;
    assert_close(&format!("{what}: values"), &bf16, &reference)?;
    let f32_out = f(&plain)?;
    let apart = max_abs(&(&f32_out - &bf16)?)?;
    assert!(apart > 1e-5 * max_abs(&f32_out)?, "{what}: bf16 equals f32");
    let r = rounded(&tensor(bf16.dims(), 99)?)?;
    let grads = (&bf16 * &r)?.sum_all()?.backward()?;
    let ref_grads = (&reference * &r)?.sum_all()?.backward()?;
    let pairs: Vec<_> = plain
        .iter()
        .zip(&rounded_vars)
        .map(|(v, r)| (v.as_tensor(), r.as_tensor()))
        .collect();
    assert_grads_close(what, &grads, &ref_grads, &pairs)
}

#[test]
fn convolutions_in_bf16_equal_f32_on_rounded_operands() -> Result<()> {
    // Products: forward cout/groups rows, input gradient cin/groups·k² rows, weight gradient
    // cout/groups rows: all at least MIN_ROWS.
    for (cin, cout, k, stride, pad, groups) in [
        (32, 48, 1, 1, 0, 1),
        (64, 64, 3, 2, 1, 2),
        (3, 32, 7, 2, 3, 1),
    ] {
        let x = tensor(&[2, cin, 9, 9], 1)?;
        let w = (tensor(&[cout, cin / groups, k, k], 2)? * 0.3)?;
        let what = format!("conv2d {cin}→{cout} k{k} s{stride} g{groups}");
        bf16_vs_rounded(&what, &[x.clone(), w.clone()], |v| {
            dfd_ops::conv2d(v[0].as_tensor(), v[1].as_tensor(), stride, pad, groups)
        })?;
        let cm = x.permute((1, 0, 2, 3))?.contiguous()?;
        bf16_vs_rounded(&format!("{what} channels-major"), &[cm, w.clone()], |v| {
            dfd_ops::conv2d_channels_major(v[0].as_tensor(), v[1].as_tensor(), stride, pad, groups)
        })?;
        let bias = tensor(&[cout], 3)?;
        let fused = |x: &Tensor, w: &Tensor| {
            dfd_ops::conv2d_bias_relu(x, w, &bias, stride, pad, groups, true)
        };
        assert_close(
            &format!("{what} +bias relu"),
            &with_compute(Compute::Bf16, || fused(&x, &w))?,
            &fused(&rounded(&x)?, &rounded(&w)?)?,
        )?;
    }
    Ok(())
}

#[test]
fn linear_in_bf16_equals_f32_on_rounded_operands() -> Result<()> {
    let (x, w) = (tensor(&[40, 36], 4)?, tensor(&[33, 36], 5)?);
    let b = tensor(&[33], 6)?;
    bf16_vs_rounded("linear", &[x, w], |v| {
        dfd_ops::linear(v[0].as_tensor(), v[1].as_tensor(), &b)
    })
}

/// A grouped convolution with fewer than `MIN_ROWS` channels per group, and a linear layer on a
/// small batch, compute in f32 under bf16: their results are f32's, bit for bit.
#[test]
fn narrow_products_stay_f32() -> Result<()> {
    let (x, w) = (
        tensor(&[2, 32, 9, 9], 1)?,
        (tensor(&[32, 4, 3, 3], 2)? * 0.3)?,
    );
    const { assert!(32 / 8 < dfd_ops::compute::MIN_ROWS) };
    let conv = || dfd_ops::conv2d(&x, &w, 1, 1, 8);
    let apart = max_abs(&(with_compute(Compute::Bf16, conv)? - conv()?)?)?;
    assert_eq!(apart, 0.0, "grouped conv, 4 per group");
    let (x, w, b) = (tensor(&[6, 40], 4)?, tensor(&[5, 40], 5)?, tensor(&[5], 6)?);
    let linear = || dfd_ops::linear(&x, &w, &b);
    let apart = max_abs(&(with_compute(Compute::Bf16, linear)? - linear()?)?)?;
    assert_eq!(apart, 0.0, "linear, batch 6");
    Ok(())
}
