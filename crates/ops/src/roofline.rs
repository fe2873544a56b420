//! The machine's f32 GEMM peak, for the benches' roofline figures: the rate of a large square
//! product through the `gemm` crate (the kernels this crate uses, all of rayon's threads), and
//! OpenBLAS's through numpy when a `python3` with numpy is there. The peak is the larger. Where
//! the CPU has AVX512-BF16, the bf16 kernel's rate (AMX or AVX512-BF16) is measured and printed
//! too.

use std::process::Command;
use std::time::Instant;

use gemm::Parallelism;

use crate::compute::{bf16_native, kernel_name, Compute};
use crate::matmul::{matmul, MatMut, MatRef};

/// Side of the square matrices the peak is measured on.
pub const PEAK_SIDE: usize = 2048;

/// numpy's `matmul` of two `n×n` f32 matrices: best GFLOP/s of 5 after a warm-up, printed alone.
const NUMPY_PEAK: &str = "import sys, time, numpy as np
n = int(sys.argv[1]); a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
times = []
for _ in range(5):
    t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
print(2 * n ** 3 / min(times) / 1e9)";

/// Both measured GEMM rates, GFLOP/s.
#[derive(Clone, Copy, Debug)]
pub struct GemmPeak {
    pub gemm_crate: f64,
    /// `None` when no `python3` with numpy ran.
    pub numpy: Option<f64>,
    /// This crate's bf16 kernel; `None` where the CPU has no AVX512-BF16.
    pub bf16: Option<f64>,
}

impl GemmPeak {
    /// Measures both on `PEAK_SIDE`² matrices. numpy runs with `OPENBLAS_CORETYPE` and
    /// `OPENBLAS_L2_SIZE` unset (they may pin OpenBLAS to a slower kernel).
    pub fn measure() -> Self {
        GemmPeak {
            gemm_crate: gemm_gflops(PEAK_SIDE, Compute::F32),
            numpy: numpy_gflops(PEAK_SIDE),
            bf16: bf16_native().then(|| gemm_gflops(PEAK_SIDE, Compute::Bf16)),
        }
    }

    /// The larger of the two rates.
    pub fn peak(&self) -> f64 {
        self.numpy
            .map_or(self.gemm_crate, |n| n.max(self.gemm_crate))
    }

    /// One line: `<achieved> GFLOP/s = <share>% of the GEMM peak (gemm crate …, OpenBLAS via numpy …)`.
    pub fn line(&self, achieved_gflops: f64) -> String {
        let numpy = self.numpy.map_or_else(
            || "not measured (no python3 with numpy)".into(),
            |r| format!("{r:.0}"),
        );
        let bf16 = self.bf16.map_or_else(String::new, |r| {
            format!("; bf16 {} kernel {r:.0} GFLOP/s", kernel_name())
        });
        format!(
            "{achieved_gflops:.1} GFLOP/s = {:.0}% of the f32 GEMM peak (gemm crate {:.0}, \
             OpenBLAS via numpy {numpy} GFLOP/s, {PEAK_SIDE}x{PEAK_SIDE}{bf16})",
            100.0 * achieved_gflops / self.peak(),
            self.gemm_crate
        )
    }
}

/// GFLOP/s of this crate's GEMM (the `gemm` crate's kernels for f32, split between rayon's
/// threads as the models' large products are) on two `n×n` matrices, in `compute`: best of 5
/// after a warm-up.
pub fn gemm_gflops(n: usize, compute: Compute) -> f64 {
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; n * n];
    let par = Parallelism::Rayon(rayon::current_num_threads());
    let mut run = || {
        let start = Instant::now();
        matmul(
            MatMut::rows(&mut c, n, n, n),
            false,
            MatRef::rows(&a, n, n, n),
            MatRef::rows(&b, n, n, n),
            par,
            compute,
        );
        start.elapsed().as_secs_f64()
    };
    run();
    let best = (0..5).map(|_| run()).fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / best / 1e9
}

/// GFLOP/s of numpy's (OpenBLAS's) f32 matmul on `n×n`, or `None` without python3 and numpy.
pub fn numpy_gflops(n: usize) -> Option<f64> {
    let out = Command::new("python3")
        .args(["-c", NUMPY_PEAK, &n.to_string()])
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_the_larger_rate_and_the_line_says_both() {
        let p = GemmPeak {
            gemm_crate: 200.0,
            numpy: Some(400.0),
            bf16: None,
        };
        assert_eq!(p.peak(), 400.0);
        let line = p.line(100.0);
        assert!(
            line.starts_with("100.0 GFLOP/s = 25% of the f32 GEMM peak"),
            "{line}"
        );
        assert!(
            line.contains("gemm crate 200, OpenBLAS via numpy 400"),
            "{line}"
        );
        let with_bf16 = GemmPeak {
            bf16: Some(900.0),
            ..p
        }
        .line(100.0);
        assert!(
            with_bf16.ends_with(&format!("; bf16 {} kernel 900 GFLOP/s)", kernel_name())),
            "{with_bf16}"
        );
        let alone = GemmPeak { numpy: None, ..p };
        assert_eq!(alone.peak(), 200.0);
        assert!(gemm_gflops(64, Compute::F32) > 0.0);
        assert!(gemm_gflops(64, Compute::Bf16) > 0.0);
    }
}
