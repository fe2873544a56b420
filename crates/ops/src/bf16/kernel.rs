//! The blocked bf16 GEMM on one thread: operands packed into bf16 pairs, a 12×32 register tile
//! of f32 sums, K in blocks of [`KC`].
//!
//! Packed layouts (zero-padded to whole panels and an even K):
//! - B, per panel of [`NR`] columns: for each k pair `p`, the columns' pairs
//!   `(b[2p][c], b[2p+1][c])`, columns 0..16 then 16..32, so one k pair is two vectors;
//! - A, per panel of [`MR`] rows: for each k pair, each row's pair `(a[r][2p], a[r][2p+1])` as one
//!   `u32` (the lower k in the low half), broadcast to every lane by the kernel.

use super::lanes::{Lanes, LANES};
use super::round_bits;
use crate::matmul::MatRef;

/// Rows of the register tile.
pub(crate) const MR: usize = 12;
/// Columns of the register tile (two vectors).
pub(crate) const NR: usize = 2 * LANES;
/// K per block (even).
const KC: usize = 256;
/// Rows of A packed at once.
const MC: usize = 8 * MR;
/// Columns of B packed at once.
const NC: usize = 16 * NR;

/// A destination: `rows×cols` f32 at `ptr`, row stride `rs`.
#[derive(Clone, Copy)]
pub(crate) struct Dst {
    pub ptr: *mut f32,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
}

impl Dst {
    /// Rows `start..start+n`. Panics when they are not inside.
    pub fn rows_at(self, start: usize, n: usize) -> Dst {
        assert!(start + n <= self.rows, "rows {start}+{n} of {}", self.rows);
        Dst {
            // SAFETY: row `start` is inside the destination (or one past its end when n = 0).
            ptr: unsafe { self.ptr.add(start * self.rs) },
            rows: n,
            ..self
        }
    }

    /// Columns `start..start+n`. Panics when they are not inside.
    pub fn cols_at(self, start: usize, n: usize) -> Dst {
        assert!(start + n <= self.cols, "cols {start}+{n} of {}", self.cols);
        Dst {
            // SAFETY: column `start` is inside the first row (or one past its end when n = 0).
            ptr: unsafe { self.ptr.add(start) },
            cols: n,
            ..self
        }
    }
}

// SAFETY: a `Dst` is only handed to threads that write disjoint blocks of it (`super::split`).
unsafe impl Send for Dst {}
// SAFETY: as above.
unsafe impl Sync for Dst {}

/// `dst = a·b`, or `dst += a·b` when `accumulate`, with bf16 operands and f32 sums.
///
/// # Safety
/// `dst` is valid for writes (and reads when accumulating) of its `rows×cols` elements and does
/// not overlap `a` or `b`; `a` is `dst.rows×k`, `b` is `k×dst.cols`; `L`'s CPU features are
/// present.
#[inline(always)]
pub(crate) unsafe fn gemm<L: Lanes>(dst: Dst, accumulate: bool, a: MatRef<'_>, b: MatRef<'_>) {
    let k = a.cols;
    let mut bp = vec![0u16; KC * NC];
    let mut ap = vec![0u32; MC * KC / 2];
    let mut edge = [0f32; MR * NR];
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        let kp = kc.div_ceil(2);
        let acc = accumulate || k0 > 0;
        for n0 in (0..dst.cols).step_by(NC) {
            let nc = NC.min(dst.cols - n0);
            pack_b(&b, k0, kc, n0, nc, &mut bp);
            for m0 in (0..dst.rows).step_by(MC) {
                let mc = MC.min(dst.rows - m0);
                pack_a(&a, m0, mc, k0, kc, &mut ap);
                for (ri, r0) in (0..mc).step_by(MR).enumerate() {
                    let apanel = ap.as_ptr().add(ri * kp * MR);
                    for (ci, c0) in (0..nc).step_by(NR).enumerate() {
                        let bpanel = bp.as_ptr().add(ci * kp * NR * 2);
                        let c = dst.ptr.add((m0 + r0) * dst.rs + n0 + c0);
                        let (rows, cols) = (MR.min(mc - r0), NR.min(nc - c0));
                        if rows == MR && cols == NR {
                            tile::<L>(kp, apanel, bpanel, c, dst.rs, acc);
                        } else {
                            tile::<L>(kp, apanel, bpanel, edge.as_mut_ptr(), NR, false);
                            for r in 0..rows {
                                for j in 0..cols {
                                    let d = c.add(r * dst.rs + j);
                                    let v = edge[r * NR + j];
                                    *d = if acc { *d + v } else { v };
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `MR×NR` tile at `c` (row stride `rs`) = (or += when `accumulate`) the product of `kp` k
/// pairs of a packed A panel and a packed B panel.
#[inline(always)]
unsafe fn tile<L: Lanes>(
    kp: usize,
    a: *const u32,
    b: *const u16,
    c: *mut f32,
    rs: usize,
    accumulate: bool,
) {
    let mut sums = [[L::zero(); 2]; MR];
    for p in 0..kp {
        let b0 = L::load_pairs(b.add(p * 2 * NR));
        let b1 = L::load_pairs(b.add(p * 2 * NR + NR));
        for (i, row) in sums.iter_mut().enumerate() {
            let ai = L::splat_pair(a.add(p * MR + i));
            row[0] = L::dot(row[0], ai, b0);
            row[1] = L::dot(row[1], ai, b1);
        }
    }
    for (i, row) in sums.iter().enumerate() {
        for (h, &s) in row.iter().enumerate() {
            let d = c.add(i * rs + h * LANES);
            L::store(d, if accumulate { L::add(L::load(d), s) } else { s });
        }
    }
}

/// Packs rows `k0..k0+kc` × columns `n0..n0+nc` of `b` into `out` (B layout above).
fn pack_b(b: &MatRef<'_>, k0: usize, kc: usize, n0: usize, nc: usize, out: &mut [u16]) {
    let kp = kc.div_ceil(2);
    for (panel, c0) in (0..nc).step_by(NR).enumerate() {
        let dst = &mut out[panel * kp * 2 * NR..][..kp * 2 * NR];
        for p in 0..kp {
            for j in 0..NR {
                let slot = p * 2 * NR + j / LANES * 2 * LANES + j % LANES * 2;
                for e in 0..2 {
                    let (r, c) = (2 * p + e, c0 + j);
                    dst[slot + e] = if r < kc && c < nc {
                        round_bits(b.at(k0 + r, n0 + c))
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// Packs rows `m0..m0+mc` × columns `k0..k0+kc` of `a` into `out` (A layout above).
fn pack_a(a: &MatRef<'_>, m0: usize, mc: usize, k0: usize, kc: usize, out: &mut [u32]) {
    let kp = kc.div_ceil(2);
    for (panel, r0) in (0..mc).step_by(MR).enumerate() {
        let dst = &mut out[panel * kp * MR..][..kp * MR];
        for p in 0..kp {
            for i in 0..MR {
                let r = r0 + i;
                let half = |e: usize| {
                    let k = 2 * p + e;
                    if r < mc && k < kc {
                        u32::from(round_bits(a.at(m0 + r, k0 + k)))
                    } else {
                        0
                    }
                };
                dst[p * MR + i] = half(0) | half(1) << 16;
            }
        }
    }
}

/// [`gemm`] compiled for AVX-512F + AVX512-BF16.
///
/// # Safety
/// As [`gemm`]; the CPU has both features (`crate::compute::bf16_native`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn avx512(dst: Dst, accumulate: bool, a: MatRef<'_>, b: MatRef<'_>) {
    gemm::<super::lanes::Avx512>(dst, accumulate, a, b)
}
