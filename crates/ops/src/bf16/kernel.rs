//! The blocked bf16 GEMM on one thread, over a register-tile [`Kernel`]: K in blocks of
//! `KC`, B packed per `KC×NC` block ([`pack_b`]), A per `MC×KC` block (the kernel's own layout),
//! and the kernel run on every `MR×NR` tile of the destination.
//!
//! [`Vdp`] is the AVX512-BF16 tile (`vdpbf16ps`, 12×32); `super::amx::Amx` is the AMX one.

use super::lanes::{Lanes, LANES};
use super::pack::{pack_b, row_bf16, NR};
use crate::matmul::MatRef;
use crate::scratch::with_bf16_scratch;

/// A register-tile kernel and its blocking.
pub(crate) trait Kernel {
    /// Rows of one tile (and of a packed A panel).
    const MR: usize;
    /// k per block (a multiple of `2·PAIRS`).
    const KC: usize;
    /// Rows of A packed at once (a multiple of `MR`).
    const MC: usize;
    /// Columns of B packed at once (a multiple of [`NR`]).
    const NC: usize;
    /// Packed panels hold a multiple of this many k pairs.
    const PAIRS: usize;

    /// Packs rows `m0..m0+mc` × columns `k0..k0+kc` of `a` into `out`, panels of `MR` rows of
    /// `pairs` k pairs each (zero-padded).
    fn pack_a(
        a: &MatRef<'_>,
        rows: (usize, usize),
        ks: (usize, usize),
        pairs: usize,
        out: &mut [u16],
    );

    /// Called on this thread before the first [`Kernel::tile`] of a GEMM, and after the last.
    ///
    /// # Safety
    /// The kernel's CPU features are present.
    unsafe fn begin() {}
    /// See [`Kernel::begin`].
    ///
    /// # Safety
    /// As [`Kernel::begin`].
    unsafe fn end() {}

    /// The `MR×NR` tile at `c` (row stride `rs`) = (or += when `accumulate`) the product of
    /// `pairs` k pairs of a packed A panel and a packed B panel.
    ///
    /// # Safety
    /// The panels hold `pairs` k pairs; `c` is valid for the tile; [`Kernel::begin`] ran.
    unsafe fn tile(
        pairs: usize,
        a: *const u16,
        b: *const u16,
        c: *mut f32,
        rs: usize,
        accumulate: bool,
    );
}

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

/// The largest tile of any kernel (the edge buffer).
const MAX_TILE: usize = 32 * NR;

/// `dst = a·b`, or `dst += a·b` when `accumulate`, with bf16 operands and f32 sums.
///
/// # Safety
/// `dst` is valid for writes (and reads when accumulating) of its `rows×cols` elements and does
/// not overlap `a` or `b`; `a` is `dst.rows×k`, `b` is `k×dst.cols`; `K`'s CPU features are
/// present.
#[inline(always)]
pub(crate) unsafe fn gemm<K: Kernel>(dst: Dst, accumulate: bool, a: MatRef<'_>, b: MatRef<'_>) {
    let k = a.cols;
    let pairs_max = k.min(K::KC).div_ceil(2).next_multiple_of(K::PAIRS);
    let bp_len = 2 * pairs_max * dst.cols.min(K::NC).next_multiple_of(NR);
    // With more than one block of columns, every row of A is packed once per k block and kept
    // for all of them, instead of once per (column block, row block).
    let whole_a = dst.cols > K::NC;
    let a_rows = if whole_a {
        dst.rows
    } else {
        dst.rows.min(K::MC)
    };
    let ap_len = 2 * pairs_max * a_rows.next_multiple_of(K::MR);
    with_bf16_scratch(bp_len + ap_len, |buf| {
        let (bp, ap) = buf.split_at_mut(bp_len);
        let mut edge = [0f32; MAX_TILE];
        K::begin();
        for k0 in (0..k).step_by(K::KC) {
            let kc = K::KC.min(k - k0);
            let pairs = kc.div_ceil(2).next_multiple_of(K::PAIRS);
            let acc = accumulate || k0 > 0;
            // Row block m0's panels, packed at `2·pairs·m0` (`MC` is a multiple of `MR`).
            let pack_rows = |m0: usize, ap: &mut [u16]| {
                let mc = K::MC.min(dst.rows - m0);
                K::pack_a(&a, (m0, mc), (k0, kc), pairs, ap);
            };
            if whole_a {
                for m0 in (0..dst.rows).step_by(K::MC) {
                    pack_rows(m0, &mut ap[2 * pairs * m0..]);
                }
            }
            for n0 in (0..dst.cols).step_by(K::NC) {
                let nc = K::NC.min(dst.cols - n0);
                pack_b(&b, (k0, kc), (n0, nc), pairs, bp);
                for m0 in (0..dst.rows).step_by(K::MC) {
                    let mc = K::MC.min(dst.rows - m0);
                    let ap = if whole_a {
                        &ap[2 * pairs * m0..]
                    } else {
                        pack_rows(m0, ap);
                        &ap[..]
                    };
                    for (ri, r0) in (0..mc).step_by(K::MR).enumerate() {
                        let apanel = ap.as_ptr().add(ri * pairs * 2 * K::MR);
                        for (ci, c0) in (0..nc).step_by(NR).enumerate() {
                            let bpanel = bp.as_ptr().add(ci * pairs * 2 * NR);
                            let c = dst.ptr.add((m0 + r0) * dst.rs + n0 + c0);
                            let (rows, cols) = (K::MR.min(mc - r0), NR.min(nc - c0));
                            if rows == K::MR && cols == NR {
                                K::tile(pairs, apanel, bpanel, c, dst.rs, acc);
                            } else {
                                K::tile(pairs, apanel, bpanel, edge.as_mut_ptr(), NR, false);
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
        K::end();
    })
}

/// The AVX512-BF16 kernel over lanes `L`: a 12×32 tile of f32 sums in 24 vectors, one
/// `vdpbf16ps` per row and vector per k pair.
///
/// Its A panel holds, for each k pair, each row's pair `(a[r][2p], a[r][2p+1])` (the lower k
/// first), broadcast to every lane.
pub(crate) struct Vdp<L>(std::marker::PhantomData<L>);

/// Rows of the [`Vdp`] tile.
pub(crate) const VDP_MR: usize = 12;

impl<L: Lanes> Kernel for Vdp<L> {
    const MR: usize = VDP_MR;
    const KC: usize = 256;
    const MC: usize = 8 * 12;
    const NC: usize = 16 * NR;
    const PAIRS: usize = 1;

    fn pack_a(
        a: &MatRef<'_>,
        (m0, mc): (usize, usize),
        ks: (usize, usize),
        pairs: usize,
        out: &mut [u16],
    ) {
        let mut row = vec![0u16; 2 * pairs];
        for (panel, r0) in (0..mc).step_by(Self::MR).enumerate() {
            let dst = &mut out[panel * pairs * 2 * Self::MR..][..pairs * 2 * Self::MR];
            for i in 0..Self::MR {
                if r0 + i < mc {
                    row_bf16(a, m0 + r0 + i, ks, &mut row);
                } else {
                    row.fill(0);
                }
                for (p, pair) in row.chunks_exact(2).enumerate() {
                    dst[(p * Self::MR + i) * 2..][..2].copy_from_slice(pair);
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn tile(
        pairs: usize,
        a: *const u16,
        b: *const u16,
        c: *mut f32,
        rs: usize,
        accumulate: bool,
    ) {
        let mut sums = [[L::zero(); 2]; 12];
        let a = a.cast::<u32>();
        for p in 0..pairs {
            let b0 = L::load_pairs(b.add(p * 2 * NR));
            let b1 = L::load_pairs(b.add(p * 2 * NR + NR));
            for (i, row) in sums.iter_mut().enumerate() {
                let ai = L::splat_pair(a.add(p * 12 + i));
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
}

/// [`gemm`] with [`Vdp`], compiled for AVX-512F + AVX512-BF16.
///
/// # Safety
/// As [`gemm`]; the CPU has both features (`crate::compute::bf16_native`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(crate) unsafe fn avx512(dst: Dst, accumulate: bool, a: MatRef<'_>, b: MatRef<'_>) {
    gemm::<Vdp<super::lanes::Avx512>>(dst, accumulate, a, b)
}
