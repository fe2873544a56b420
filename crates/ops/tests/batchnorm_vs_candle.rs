//! `dfd_ops::batch_norm_train` and `dfd_ops::add_relu` against the same maths written with candle
//! ops (PyTorch's train-mode BatchNorm definition): outputs, batch statistics, and through
//! candle's autograd the gradients of `loss = sum(y * r)` w.r.t. every argument.

mod common;
use candle_core::{DType, Result, Tensor, Var};
use common::{assert_close, tensor};

const EPS: f64 = 1e-5;

/// Train-mode BatchNorm from its definition: statistics over N, H, W; biased variance.
fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
    let mean = x.mean_keepdim((0, 2, 3))?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred.sqr()?.mean_keepdim((0, 2, 3))?;
    let y = centred
        .broadcast_div(&(var + EPS)?.sqrt()?)?
        .broadcast_mul(&weight.reshape((1, (), 1, 1))?)?
        .broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// Compares output and the gradients of x, weight and bias for one input shape.
fn check(dims: [usize; 4], relu: bool) -> Result<()> {
    let c = dims[1];
    // An offset and scale per tensor, so the statistics are far from (0, 1).
    let x = Var::from_tensor(&((tensor(&dims, 1)? * 3.0)? + 0.7)?)?;
    let weight = Var::from_tensor(&(tensor(&[c], 2)? + 1.0)?)?;
    let bias = Var::from_tensor(&(tensor(&[c], 3)? * 0.5)?)?;
    let r = tensor(&dims, 4)?;
    let got = dfd_ops::batch_norm_train(&x, &weight, &bias, EPS, relu)?;
    let want = reference(&x, &weight, &bias, relu)?;
    let what = format!("{dims:?} relu={relu}");
    assert_close(&format!("{what} y"), &got.y, &want)?;
    let mean = x.as_tensor().mean((0, 2, 3))?;
    let var = x
        .as_tensor()
        .broadcast_sub(&mean.reshape((1, (), 1, 1))?)?
        .sqr()?
        .mean((0, 2, 3))?;
    assert_close(&format!("{what} mean"), &got.mean, &mean)?;
    assert_close(&format!("{what} var"), &got.var, &var)?;
    let got_grads = (got.y * &r)?.sum_all()?.backward()?;
    let want_grads = (want * &r)?.sum_all()?.backward()?;
    for (name, v) in [("dx", &x), ("dweight", &weight), ("dbias", &bias)] {
        let g = got_grads.get(v).expect("gradient of the fused op");
        let w = want_grads.get(v).expect("gradient of the reference");
        assert_close(&format!("{what} {name}"), g, w)?;
    }
    Ok(())
}

#[test]
fn batch_norm_matches_its_definition_with_and_without_relu() -> Result<()> {
    for relu in [false, true] {
        check([4, 6, 5, 7], relu)?;
        // Plane sizes around the 8-lane sums, one image, a 1×1 plane.
        check([1, 3, 3, 3], relu)?;
        check([5, 2, 1, 1], relu)?;
        check([2, 4, 4, 4], relu)?;
    }
    Ok(())
}

#[test]
fn batch_norm_falls_back_to_candle_ops_for_other_dtypes() -> Result<()> {
    let x = tensor(&[3, 4, 5, 5], 1)?.to_dtype(DType::F64)?;
    let weight = tensor(&[4], 2)?.to_dtype(DType::F64)?;
    let bias = tensor(&[4], 3)?.to_dtype(DType::F64)?;
    let got = dfd_ops::batch_norm_train(&x, &weight, &bias, EPS, true)?;
    let want = reference(&x, &weight, &bias, true)?;
    assert_eq!(got.y.dtype(), DType::F64);
    let f32 = |t: &Tensor| t.to_dtype(DType::F32);
    assert_close("f64 fallback", &f32(&got.y)?, &f32(&want)?)
}

#[test]
fn batch_norm_refuses_a_single_value_per_channel() -> Result<()> {
    let x = tensor(&[1, 3, 1, 1], 1)?;
    let ones = Tensor::ones(3, DType::F32, x.device())?;
    let err = dfd_ops::batch_norm_train(&x, &ones, &ones, EPS, false)
        .err()
        .expect("one value per channel is an error");
    assert!(
        err.to_string().contains("more than one value per channel"),
        "{err}"
    );
    Ok(())
}

#[test]
fn add_relu_matches_candle_and_routes_the_gradient_to_both_sides() -> Result<()> {
    let dims = [3, 5, 6, 7];
    let a = Var::from_tensor(&tensor(&dims, 1)?)?;
    let b = Var::from_tensor(&tensor(&dims, 2)?)?;
    let r = tensor(&dims, 3)?;
    let got = dfd_ops::add_relu(&a, &b)?;
    let want = (a.as_tensor() + b.as_tensor())?.relu()?;
    assert_close("add_relu", &got, &want)?;
    let got_grads = (got * &r)?.sum_all()?.backward()?;
    let want_grads = (want * &r)?.sum_all()?.backward()?;
    for (name, v) in [("da", &a), ("db", &b)] {
        let g = got_grads.get(v).expect("gradient of the fused op");
        assert_close(name, g, want_grads.get(v).expect("reference gradient"))?;
    }
    Ok(())
}
