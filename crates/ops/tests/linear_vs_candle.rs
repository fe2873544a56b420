//! `dfd_ops::linear` against candle's `x.matmul(wᵀ) + b`: values and, through candle's autograd,
//! the gradients of `loss = sum(y * r)` w.r.t. input, weight and bias.

mod common;
use candle_core::{DType, Result, Tensor, Var};
use common::{assert_close, tensor};

fn check(n: usize, i: usize, o: usize) -> Result<()> {
    let x = Var::from_tensor(&tensor(&[n, i], 1)?)?;
    let w = Var::from_tensor(&(tensor(&[o, i], 2)? * 0.2)?)?;
    let b = Var::from_tensor(&tensor(&[o], 3)?)?;
    let r = tensor(&[n, o], 4)?;
    let got = dfd_ops::linear(&x, &w, &b)?;
    let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
    let what = format!("{n}x{i} -> {o}");
    assert_close(&what, &got, &want)?;
    let got_grads = (got * &r)?.sum_all()?.backward()?;
    let want_grads = (want * &r)?.sum_all()?.backward()?;
    for (name, v) in [("dx", &x), ("dw", &w), ("db", &b)] {
        let g = got_grads.get(v).expect("gradient of the fused op");
        assert!(g.is_contiguous(), "{what} {name} contiguous");
        let want = want_grads.get(v).expect("reference gradient");
        assert_close(&format!("{what} {name}"), g, want)?;
    }
    Ok(())
}

#[test]
fn linear_matches_candle_for_small_and_large_products() -> Result<()> {
    check(3, 5, 2)?;
    check(1, 7, 4)?;
    // Large enough for the multi-threaded GEMMs.
    check(64, 300, 200)
}

#[test]
fn linear_falls_back_to_candle_for_other_dtypes_and_ranks() -> Result<()> {
    let x = tensor(&[2, 3, 4], 1)?;
    let w = tensor(&[5, 4], 2)?;
    let b = tensor(&[5], 3)?;
    let got = dfd_ops::linear(&x, &w, &b)?;
    let want = x.broadcast_matmul(&w.t()?)?.broadcast_add(&b)?;
    assert_close("rank 3", &got, &want)?;
    let f64 = |t: &Tensor| t.to_dtype(DType::F64);
    let got = dfd_ops::linear(&f64(&x.get(0)?)?, &f64(&w)?, &f64(&b)?)?;
    assert_eq!(got.dtype(), DType::F64);
    assert_close("f64", &got.to_dtype(DType::F32)?, &want.get(0)?)
}

#[test]
fn mismatched_sizes_are_an_error() {
    let x = tensor(&[2, 3], 1).unwrap();
    let w = tensor(&[4, 5], 2).unwrap();
    let b = tensor(&[4], 3).unwrap();
    let err = dfd_ops::linear(&x, &w, &b).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
}
