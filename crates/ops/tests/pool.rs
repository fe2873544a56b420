//! `dfd_ops::max_pool2d` against PyTorch's definition (padded positions never win), on values of
//! both signs, through the parallel kernel (plain tensors) and the candle fallback (variables).

use candle_core::{Result, Tensor, Var};

mod common;
use common::{assert_close, tensor};

/// The definition, one output at a time.
fn brute_force(x: &Tensor, k: usize, s: usize, p: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let v = x.flatten_all()?.to_vec1::<f32>()?;
    let mut out = Vec::with_capacity(n * c * ho * wo);
    for plane in v.chunks_exact(h * w) {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy * s + ky) as isize - p as isize,
                            (ox * s + kx) as isize - p as isize,
                        );
                        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                            m = m.max(plane[iy as usize * w + ix as usize]);
                        }
                    }
                }
                out.push(m);
            }
        }
    }
    Tensor::from_vec(out, (n, c, ho, wo), x.device())
}

#[test]
fn max_pool_matches_the_definition_fast_and_fallback() -> Result<()> {
    // (dims, kernel, stride, padding): the stem's 3×3/2/1 on even and odd sizes, and others.
    let cases = [
        ([2, 3, 8, 8], 3, 2, 1),
        ([2, 3, 9, 7], 3, 2, 1),
        ([1, 4, 6, 6], 2, 2, 0),
        ([1, 2, 5, 5], 3, 1, 1),
        ([1, 2, 7, 6], 5, 3, 2),
        ([1, 2, 30, 31], 3, 2, 1),
        ([1, 2, 1, 1], 3, 1, 1),
        ([1, 2, 1, 1], 5, 1, 2),
        ([1, 2, 2, 3], 3, 2, 1),
        ([1, 2, 11, 13], 4, 3, 2),
        // Rows of several 16-output vectors (35 and 17 outputs) for the AVX-512 stride-2 taps.
        ([1, 2, 40, 70], 3, 2, 1),
        ([1, 1, 3, 33], 3, 2, 1),
        ([1, 1, 4, 36], 2, 2, 0),
    ];
    for (dims, k, s, p) in cases {
        // Centred values: negatives next to the padding show whether padded positions win.
        let x = (tensor(&dims, 7)? - 0.5)?;
        let want = brute_force(&x, k, s, p)?;
        let what = format!("{dims:?} k{k} s{s} p{p}");
        assert_close(
            &format!("{what} fast"),
            &dfd_ops::max_pool2d(&x, k, s, p)?,
            &want,
        )?;
        let var = Var::from_tensor(&x)?;
        let got = dfd_ops::max_pool2d(&var, k, s, p)?;
        assert_close(&format!("{what} fallback"), &got, &want)?;
    }
    Ok(())
}

#[test]
fn max_pool_refuses_padding_over_half_the_window() -> Result<()> {
    let x = tensor(&[1, 1, 6, 6], 1)?;
    let err = dfd_ops::max_pool2d(&x, 3, 2, 2).unwrap_err().to_string();
    assert!(err.contains("padding 2"), "{err}");
    Ok(())
}
