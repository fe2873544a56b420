//! `dfd_ops::conv2d` against candle's own `conv2d`: forward values and, through candle's
//! autograd, the gradients of `loss = sum(y * r)` w.r.t. input and weight, for every dispatch path
//! and under 1, 2 and 3 rayon threads (which select different work splits).

use candle_core::{DType, Result, Tensor, Var};

mod common;
#[path = "common/conv.rs"]
mod conv;
use common::{assert_close, tensor};
use conv::{case, check, check_with_view, on_threads, Case};

#[test]
fn grouped_3x3_stride_1() -> Result<()> {
    check(case(3, 64, 64, (9, 9), 3, 1, 32))?; // several images per block
    check(case(2, 64, 64, (17, 15), 3, 1, 32)) // one image per block
}

#[test]
fn grouped_3x3_stride_2() -> Result<()> {
    check(case(3, 64, 64, (14, 14), 3, 2, 32))?;
    check(case(3, 64, 64, (9, 7), 3, 2, 32))
}

#[test]
fn groups_of_a_quarter_of_the_channels() -> Result<()> {
    check(case(3, 32, 16, (7, 7), 3, 1, 8))?;
    check(case(3, 32, 48, (9, 9), 3, 2, 8))
}

#[test]
fn dense_3x3() -> Result<()> {
    check(case(3, 8, 12, (7, 7), 3, 1, 1))?;
    check(case(3, 8, 12, (9, 9), 3, 2, 1))?;
    check(case(1, 8, 12, (17, 16), 3, 1, 1)) // one block: sequential, multi-threaded GEMMs
}

#[test]
fn dense_3x3_without_padding() -> Result<()> {
    check(Case {
        pad: 0,
        ..case(3, 8, 12, (9, 9), 3, 1, 1)
    })
}

#[test]
fn pointwise_stride_1() -> Result<()> {
    check(case(3, 24, 40, (14, 14), 1, 1, 1))?;
    check(case(3, 24, 40, (7, 7), 1, 1, 1))?;
    // One image per block (more pixels than a block aims for): views straight into the input and
    // output.
    check(case(2, 24, 40, (30, 31), 1, 1, 1))
}

#[test]
fn pointwise_stride_2() -> Result<()> {
    check(case(3, 24, 40, (14, 14), 1, 2, 1))?;
    check(case(3, 24, 40, (9, 9), 1, 2, 1))
}

#[test]
fn non_contiguous_input() -> Result<()> {
    // x = base transposed in H and W: a strided view.
    let c = case(3, 64, 64, (9, 7), 3, 1, 32);
    let base = Var::from_tensor(&tensor(&[3, 64, 7, 9], 1)?)?;
    check_with_view(c, &base, |t| t.transpose(2, 3), true)?;
    // x = a channel slice of a wider tensor.
    let c = case(3, 24, 40, (9, 9), 1, 2, 1);
    let base = Var::from_tensor(&tensor(&[3, 30, 9, 9], 1)?)?;
    check_with_view(c, &base, |t| t.narrow(1, 3, 24), true)
}

#[test]
fn stem_7x7_stride_2() -> Result<()> {
    check(Case {
        pad: 3,
        ..case(2, 3, 8, (17, 17), 7, 2, 1)
    })?;
    check(Case {
        pad: 3,
        ..case(1, 3, 8, (21, 23), 7, 2, 1)
    })?;
    // An im2col matrix of 147 × 960 values: built and multiplied in runs of 29 and 3 output rows.
    check(Case {
        pad: 3,
        ..case(2, 3, 8, (64, 60), 7, 2, 1)
    })
}

#[test]
fn other_kernels_fall_back_to_candle() -> Result<()> {
    let base = Var::from_tensor(&tensor(&[2, 3, 17, 17], 1)?)?;
    check_with_view(
        case(2, 3, 8, (17, 17), 5, 2, 1),
        &base,
        |t| Ok(t.clone()),
        false,
    )
}

#[test]
fn other_dtypes_fall_back_to_candle() -> Result<()> {
    let x = tensor(&[2, 8, 7, 7], 1)?.to_dtype(DType::F64)?;
    let w = tensor(&[8, 2, 3, 3], 2)?.to_dtype(DType::F64)?;
    assert!(!dfd_ops::has_fast_kernel(&x, &w, 1, 1, 4));
    let got = dfd_ops::conv2d(&x, &w, 1, 1, 4)?;
    assert_close("f64 y", &got, &x.conv2d(&w, 1, 1, 1, 4)?)
}

#[test]
fn frozen_input_gets_no_gradient_but_weight_does() -> Result<()> {
    let x = tensor(&[3, 24, 7, 7], 1)?;
    let w = Var::from_tensor(&tensor(&[40, 24, 1, 1], 2)?)?;
    let r = tensor(&[3, 40, 7, 7], 3)?;
    let grads = (dfd_ops::conv2d(&x, &w, 1, 0, 1)? * &r)?
        .sum_all()?
        .backward()?;
    let want = (x.conv2d(&w, 0, 1, 1, 1)? * &r)?.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    assert_close("dw", grads.get(&w).expect("dw"), want.get(&w).expect("dw"))
}

/// `conv2d_bias_relu` against candle's conv2d + broadcast bias (+ ReLU): fused on plain tensors
/// (under 1–3 threads, one- and several-image blocks, grouped, strided and 7×7 stem shapes),
/// and, with a variable input, the differentiable composition with candle's input gradient.
#[test]
fn bias_relu_epilogue_matches_candle() -> Result<()> {
    let cases = [
        case(3, 64, 64, (9, 9), 3, 1, 32),
        case(2, 64, 64, (17, 15), 3, 2, 32),
        case(3, 24, 40, (14, 14), 1, 1, 1),
        case(2, 24, 40, (30, 31), 1, 1, 1),
        case(3, 24, 40, (9, 9), 1, 2, 1),
        Case {
            pad: 3,
            ..case(2, 3, 8, (17, 17), 7, 2, 1)
        },
        Case {
            pad: 3,
            ..case(2, 3, 8, (64, 60), 7, 2, 1)
        },
    ];
    for c in cases {
        let x = tensor(&c.x_dims(), 1)?;
        let w = (tensor(&c.w_dims(), 2)? * 0.3)?;
        let bias = tensor(&[c.cout], 4)?;
        let conv = x.conv2d(&w, c.pad, c.stride, 1, c.groups)?;
        let affine = conv.broadcast_add(&bias.reshape((1, c.cout, 1, 1))?)?;
        for relu in [false, true] {
            let want = if relu { affine.relu()? } else { affine.clone() };
            for threads in 1..=3 {
                let got = on_threads(threads, || {
                    dfd_ops::conv2d_bias_relu(&x, &w, &bias, c.stride, c.pad, c.groups, relu)
                })?;
                assert_close(&format!("{c:?} relu {relu} threads {threads}"), &got, &want)?;
            }
        }
        // A variable input: gradients flow to it (Grad-CAM's use).
        let base = Var::from_tensor(&x)?;
        let got = dfd_ops::conv2d_bias_relu(&base, &w, &bias, c.stride, c.pad, c.groups, true)?;
        let want = base
            .conv2d(&w, c.pad, c.stride, 1, c.groups)?
            .broadcast_add(&bias.reshape((1, c.cout, 1, 1))?)?
            .relu()?;
        assert_close(&format!("{c:?} tracked y"), &got, &want)?;
        let r = tensor(want.dims(), 3)?;
        let grad = |y: &Tensor| -> Result<Tensor> {
            let grads = (y * &r)?.sum_all()?.backward()?;
            Ok(grads.get(&base).cloned().expect("input gradient"))
        };
        assert_close(&format!("{c:?} tracked dx"), &grad(&got)?, &grad(&want)?)?;
    }
    Ok(())
}

/// `conv2d_bias_add_relu` (a bottleneck's last convolution, its shortcut and the ReLU): fused on
/// plain tensors it has the bits of `conv2d_bias_relu` then `add_relu`, under 1–3 threads, for
/// one- and several-image blocks, the strided 1×1 and the direct grouped 3×3; and it is within
/// rounding of candle's composition. A variable input takes the differentiable composition.
#[test]
fn residual_epilogue_has_the_bits_of_the_separate_ops() -> Result<()> {
    let cases = [
        case(3, 24, 40, (14, 14), 1, 1, 1),
        case(5, 24, 40, (5, 5), 1, 1, 1),
        case(2, 24, 40, (30, 31), 1, 1, 1),
        case(3, 24, 40, (9, 9), 1, 2, 1),
        case(3, 64, 64, (9, 9), 3, 1, 32),
        case(2, 64, 64, (17, 15), 3, 2, 32),
    ];
    for c in cases {
        let x = tensor(&c.x_dims(), 1)?;
        let w = (tensor(&c.w_dims(), 2)? * 0.3)?;
        let bias = tensor(&[c.cout], 4)?;
        let want = x
            .conv2d(&w, c.pad, c.stride, 1, c.groups)?
            .broadcast_add(&bias.reshape((1, c.cout, 1, 1))?)?;
        let residual = tensor(want.dims(), 5)?;
        let want = (want + &residual)?.relu()?;
        for threads in 1..=3 {
            let (fused, separate) = on_threads(threads, || -> Result<_> {
                let (s, p, g) = (c.stride, c.pad, c.groups);
                let fused = dfd_ops::conv2d_bias_add_relu(&x, &w, &bias, &residual, s, p, g)?;
                let y = dfd_ops::conv2d_bias_relu(&x, &w, &bias, s, p, g, false)?;
                Ok((fused, dfd_ops::add_relu(&y, &residual)?))
            })?;
            let name = format!("{c:?} threads {threads}");
            let bits = |t: &Tensor| -> Result<Vec<u32>> {
                Ok(t.flatten_all()?
                    .to_vec1::<f32>()?
                    .iter()
                    .map(|v| v.to_bits())
                    .collect())
            };
            assert_eq!(bits(&fused)?, bits(&separate)?, "{name}: fused vs separate");
            assert_close(&name, &fused, &want)?;
        }
        let base = Var::from_tensor(&x)?;
        let (s, p, g) = (c.stride, c.pad, c.groups);
        let got = dfd_ops::conv2d_bias_add_relu(&base, &w, &bias, &residual, s, p, g)?;
        assert_close(&format!("{c:?} tracked y"), &got, &want)?;
        let grads = got.sum_all()?.backward()?;
        assert!(grads.get(&base).is_some(), "{c:?}: the input gradient");
    }
    Ok(())
}
