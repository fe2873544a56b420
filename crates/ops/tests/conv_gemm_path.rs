//! The grouped 3×3 convolutions that the direct kernel takes on a CPU with AVX-512, through the
//! im2col + GEMM path instead: what CPUs without AVX-512 run (and bf16 with 32 or more output
//! channels per group). A test binary of its own, because the switch is process-wide.

use candle_core::Result;

mod common;
#[path = "common/conv.rs"]
mod conv;
use conv::{case, check};

#[test]
fn grouped_convolutions_through_the_gemm_path() -> Result<()> {
    dfd_ops::allow_direct_conv(false);
    check(case(3, 64, 64, (9, 9), 3, 1, 32))?; // several images per block
    check(case(2, 64, 64, (30, 31), 3, 1, 32))?; // one image per block
    check(case(3, 64, 64, (14, 14), 3, 2, 32))?;
    check(case(3, 64, 64, (9, 7), 3, 2, 32))?;
    check(case(3, 32, 16, (7, 7), 3, 1, 8))?;
    check(case(3, 32, 48, (9, 9), 3, 2, 8))
}
