//! The convolution checks shared by `conv_vs_candle` and `conv_gemm_path`: a case's forward
//! values and, through candle's autograd, the gradients of `loss = sum(y * r)` w.r.t. input and
//! weight, against candle's own `conv2d`, under 1, 2 and 3 rayon threads.

use crate::common::{assert_close, tensor};
use candle_core::{Result, Tensor, Var};

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl Case {
    pub fn x_dims(&self) -> [usize; 4] {
        [self.n, self.cin, self.h, self.w]
    }

    pub fn w_dims(&self) -> [usize; 4] {
        [self.cout, self.cin / self.groups, self.k, self.k]
    }
}

/// `f` on a rayon pool of `threads` threads (different counts select different work splits).
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build();
    pool.expect("thread pool").install(f)
}

/// Checks `y`, `dx` and `dw` of `dfd_ops::conv2d(x(base), w)` against candle, where `x` is derived
/// from the variable `base` by `view` (identity, or a non-contiguous view).
pub fn check_with_view(
    c: Case,
    base: &Var,
    view: impl Fn(&Tensor) -> Result<Tensor>,
    fast: bool,
) -> Result<()> {
    let w = Var::from_tensor(&(tensor(&c.w_dims(), 2)? * 0.3)?)?;
    let x = view(base.as_tensor())?;
    assert_eq!(x.dims(), c.x_dims(), "{c:?}: view");
    assert_eq!(
        dfd_ops::has_fast_kernel(&x, &w, c.stride, c.pad, c.groups),
        fast,
        "{c:?}: dispatch"
    );

    let want = x.conv2d(&w, c.pad, c.stride, 1, c.groups)?;
    let r = tensor(want.dims(), 3)?;
    let want_grads = (&want * &r)?.sum_all()?.backward()?;
    for threads in 1..=3 {
        let (got, grads) = on_threads(threads, || -> Result<_> {
            let got = dfd_ops::conv2d(&x, &w, c.stride, c.pad, c.groups)?;
            let grads = (&got * &r)?.sum_all()?.backward()?;
            Ok((got, grads))
        })?;
        let label = |what: &str| format!("{c:?} threads {threads}: {what}");
        assert_close(&label("y"), &got, &want)?;
        let pick =
            |g: &candle_core::backprop::GradStore, t: &Tensor| g.get(t).cloned().expect("gradient");
        assert_close(&label("dx"), &pick(&grads, base), &pick(&want_grads, base))?;
        assert_close(&label("dw"), &pick(&grads, &w), &pick(&want_grads, &w))?;
    }
    Ok(())
}

/// [`check_with_view`] on the input itself, which must take a fast kernel.
pub fn check(c: Case) -> Result<()> {
    let base = Var::from_tensor(&tensor(&c.x_dims(), 1)?)?;
    check_with_view(c, &base, |t| Ok(t.clone()), true)
}

/// A case with "same" padding (`k / 2`); `hw` is (height, width).
pub const fn case(
    n: usize,
    cin: usize,
    cout: usize,
    hw: (usize, usize),
    k: usize,
    stride: usize,
    groups: usize,
) -> Case {
    Case {
        n,
        cin,
        cout,
        h: hw.0,
        w: hw.1,
        k,
        stride,
        pad: k / 2,
        groups,
    }
}
