//! `dfd_ops::conv2d_channels_major` against candle's own `conv2d` on the NCHW permutation of the
//! same input: forward values and, through candle's autograd, the gradients of
//! `loss = sum(y * r)` w.r.t. input and weight, for every dispatch path (one GEMM over the
//! (1, C, N·H, W) view, the channels-major kernels, the permuting fallback), on the test thread
//! and under 1–3 threads.

use candle_core::{Result, Tensor, Var};

mod common;
use common::{assert_close, tensor};

/// `(n, c_in, c_out, (h, w), kernel, stride, groups)`, padding `kernel / 2`.
type Case = (usize, usize, usize, (usize, usize), usize, usize, usize);

fn check(case: Case) -> Result<()> {
    let (n, cin, cout, (h, w), k, stride, groups) = case;
    let pad = k / 2;
    let x = Var::from_tensor(&tensor(&[cin, n, h, w], 1)?)?;
    let wt = Var::from_tensor(&(tensor(&[cout, cin / groups, k, k], 2)? * 0.3)?)?;
    let to_cm = |t: &Tensor| t.permute((1, 0, 2, 3))?.contiguous();
    let nchw = to_cm(&x)?;
    let want = to_cm(&nchw.conv2d(&wt, pad, stride, 1, groups)?)?;
    let r = tensor(want.dims(), 3)?;
    let want_grads = (&want * &r)?.sum_all()?.backward()?;
    let run = || -> Result<_> {
        let got = dfd_ops::conv2d_channels_major(&x, &wt, stride, pad, groups)?;
        let grads = (&got * &r)?.sum_all()?.backward()?;
        Ok((got, grads))
    };
    // On the test thread (outside any rayon task: large single-image moves split across the
    // global pool), then inside pools of 1–3 threads.
    for threads in 0..=3 {
        let (got, grads) = match threads {
            0 => run()?,
            n => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .expect("thread pool")
                .install(run)?,
        };
        let label = |what: &str| format!("{case:?} threads {threads}: {what}");
        assert_close(&label("y"), &got, &want)?;
        let pick =
            |g: &candle_core::backprop::GradStore, t: &Tensor| g.get(t).cloned().expect("gradient");
        assert_close(&label("dx"), &pick(&grads, &x), &pick(&want_grads, &x))?;
        assert_close(&label("dw"), &pick(&grads, &wt), &pick(&want_grads, &wt))?;
    }
    Ok(())
}

#[test]
fn grouped_3x3() -> Result<()> {
    check((3, 64, 64, (9, 9), 3, 1, 32))?;
    check((25, 64, 64, (5, 5), 3, 1, 32))?; // two runs of images per group
    check((3, 64, 64, (9, 7), 3, 2, 32))?;
    check((3, 32, 48, (8, 8), 3, 2, 8))
}

#[test]
fn dense_3x3_runs_groups_one_after_another() -> Result<()> {
    check((3, 8, 12, (7, 7), 3, 1, 1))?;
    check((2, 8, 12, (9, 9), 3, 2, 1))
}

#[test]
fn pointwise_convs() -> Result<()> {
    check((3, 24, 40, (7, 7), 1, 1, 1))?; // one GEMM over the (1, C, N·H, W) view
    check((3, 24, 40, (8, 6), 1, 2, 1))?; // the same, strided: H is even
    check((8, 256, 16, (16, 16), 1, 2, 1))?; // large enough to gather in parallel
    check((3, 24, 40, (9, 9), 1, 2, 1))?; // odd H: the channels-major kernels
    check((3, 32, 16, (5, 5), 1, 1, 8)) // grouped pointwise: the channels-major kernels
}

#[test]
fn other_kernels_permute_around_conv2d() -> Result<()> {
    check((2, 4, 6, (9, 9), 5, 2, 1))
}
