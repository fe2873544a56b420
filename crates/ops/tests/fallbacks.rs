//! The code other devices run, on the CPU: every op of this crate under
//! [`dfd_ops::fallback::with_fallbacks`] (candle's own ops, composed) against its fast CPU path,
//! in f32: values and, through candle's autograd, gradients. A GPU build runs exactly these
//! fallbacks, so they are covered here too.

use candle_core::{Result, Tensor, Var};
use dfd_ops::fallback::with_fallbacks;

mod common;
use common::{assert_close, assert_grads_close, tensor};

/// `f` on the fast path and forced onto its fallback: the outputs, then the gradients of
/// `sum(out · r)` w.r.t. every variable in `vars`, must agree.
fn fast_vs_fallback(what: &str, vars: &[&Var], f: impl Fn() -> Result<Tensor>) -> Result<()> {
    let fast = f()?;
    let slow = with_fallbacks(&f)?;
    assert_close(&format!("{what}: values"), &slow, &fast)?;
    let r = tensor(fast.dims(), 99)?;
    let fast_grads = (&fast * &r)?.sum_all()?.backward()?;
    let slow_grads = (&slow * &r)?.sum_all()?.backward()?;
    let pairs: Vec<_> = vars
        .iter()
        .map(|v| (v.as_tensor(), v.as_tensor()))
        .collect();
    assert_grads_close(what, &slow_grads, &fast_grads, &pairs)
}

#[test]
fn convolutions_fall_back_to_candle_with_the_same_values_and_gradients() -> Result<()> {
    // (cin, cout, k, stride, pad, groups): 1×1, strided 1×1, grouped 3×3, the 7×7 stem.
    for (cin, cout, k, stride, pad, groups) in [
        (8, 16, 1, 1, 0, 1),
        (8, 16, 1, 2, 0, 1),
        (16, 16, 3, 1, 1, 4),
        (16, 16, 3, 2, 1, 8),
        (3, 8, 7, 2, 3, 1),
    ] {
        let x = Var::from_tensor(&tensor(&[2, cin, 9, 9], 1)?)?;
        let w = Var::from_tensor(&(tensor(&[cout, cin / groups, k, k], 2)? * 0.3)?)?;
        let what = format!("conv2d {cin}→{cout} k{k} s{stride} g{groups}");
        fast_vs_fallback(&what, &[&x, &w], || {
            dfd_ops::conv2d(x.as_tensor(), w.as_tensor(), stride, pad, groups)
        })?;
        let cm = Var::from_tensor(&x.as_tensor().permute((1, 0, 2, 3))?.contiguous()?)?;
        fast_vs_fallback(&format!("{what} channels-major"), &[&cm, &w], || {
            dfd_ops::conv2d_channels_major(cm.as_tensor(), w.as_tensor(), stride, pad, groups)
        })?;
        let bias = tensor(&[cout], 3)?;
        let (x, w) = (x.as_tensor().detach(), w.as_tensor().detach());
        let fused = || dfd_ops::conv2d_bias_relu(&x, &w, &bias, stride, pad, groups, true);
        assert_close(
            &format!("{what} +bias relu"),
            &with_fallbacks(fused)?,
            &fused()?,
        )?;
    }
    Ok(())
}

#[test]
fn batch_norm_falls_back_with_the_same_values_statistics_and_gradients() -> Result<()> {
    let x = Var::from_tensor(&(tensor(&[3, 4, 5, 5], 4)? * 2.0)?)?;
    let weight = Var::from_tensor(&(tensor(&[4], 5)? + 1.5)?)?;
    let bias = Var::from_tensor(&tensor(&[4], 6)?)?;
    for relu in [false, true] {
        let run = |channels_major: bool| -> Result<(Tensor, Tensor, Tensor)> {
            let out = if channels_major {
                let cm = x.as_tensor().permute((1, 0, 2, 3))?.contiguous()?;
                let out = dfd_ops::batch_norm_train_channels_major(
                    &cm,
                    weight.as_tensor(),
                    bias.as_tensor(),
                    1e-5,
                    relu,
                )?;
                dfd_ops::BatchNormTrain {
                    y: out.y.permute((1, 0, 2, 3))?.contiguous()?,
                    ..out
                }
            } else {
                dfd_ops::batch_norm_train(
                    x.as_tensor(),
                    weight.as_tensor(),
                    bias.as_tensor(),
                    1e-5,
                    relu,
                )?
            };
            Ok((out.y, out.mean, out.var))
        };
        for channels_major in [false, true] {
            let what = format!("batch norm relu={relu} channels-major={channels_major}");
            let (fast, slow) = (
                run(channels_major)?,
                with_fallbacks(|| run(channels_major))?,
            );
            assert_close(&format!("{what}: mean"), &slow.1, &fast.1)?;
            assert_close(&format!("{what}: var"), &slow.2, &fast.2)?;
            fast_vs_fallback(&what, &[&x, &weight, &bias], || Ok(run(channels_major)?.0))?;
        }
    }
    let (a, b) = (
        Var::from_tensor(&tensor(&[2, 3, 4, 4], 7)?)?,
        Var::from_tensor(&tensor(&[2, 3, 4, 4], 8)?)?,
    );
    fast_vs_fallback("add_relu", &[&a, &b], || {
        dfd_ops::add_relu(a.as_tensor(), b.as_tensor())
    })
}

#[test]
fn linear_and_max_pool_fall_back_with_the_same_values() -> Result<()> {
    let x = Var::from_tensor(&tensor(&[5, 12], 9)?)?;
    let w = Var::from_tensor(&tensor(&[3, 12], 10)?)?;
    let b = Var::from_tensor(&tensor(&[3], 11)?)?;
    fast_vs_fallback("linear", &[&x, &w, &b], || {
        dfd_ops::linear(x.as_tensor(), w.as_tensor(), b.as_tensor())
    })?;
    let maps = tensor(&[2, 3, 9, 9], 12)?;
    let pool = || dfd_ops::max_pool2d(&maps, 3, 2, 1);
    assert_close("max_pool2d", &with_fallbacks(pool)?, &pool()?)
}

#[test]
fn the_in_place_update_falls_back_to_host_copies_with_the_same_values() -> Result<()> {
    let src = tensor(&[4, 6], 13)?;
    let step = |v: &mut [f32], s: &[f32]| v.iter_mut().zip(s).for_each(|(v, s)| *v -= 0.1 * s);
    let fast = Var::from_tensor(&tensor(&[4, 6], 14)?)?;
    let slow = Var::from_tensor(&tensor(&[4, 6], 14)?)?;
    dfd_ops::update_f32(&fast, &src, step)?;
    with_fallbacks(|| dfd_ops::update_f32(&slow, &src, step))?;
    assert_eq!(
        slow.as_tensor().to_vec2::<f32>()?,
        fast.as_tensor().to_vec2::<f32>()?
    );
    let read = |t: &Tensor| dfd_ops::with_f32(t, |v| v.to_vec());
    assert_eq!(with_fallbacks(|| read(&src))?, read(&src)?);
    Ok(())
}
