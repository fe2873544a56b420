//! The blocked bf16 GEMM on one thread, over a register-tile [`Kernel`]: K in blocks of
//! `KC`, B packed per `KC×NC` block ([`pack_b`]), A per `MC×KC` block (the kernel's own layout),
//! and the kernel run on every `MR×NR` tile of the destination.
//!
//! [`Vdp`] is the AVX512-BF16 tile (`vdpbf16ps`, 12×32); `super::amx::Amx` is the AMX one.

use super::lanes::{Lanes, LANES};
use super::pack::{pack_b, row_bf16, NR};
use crate::matmul::MatRef;
use crate::scratch::with_bf16_scratch;
use rayon::prelude::*;

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

/// An operand of one product packed for all its blocks before the product is split between
/// threads ([`prepack_a`], [`prepack_b`]), so the threads share it instead of each packing it.
#[derive(Clone, Copy)]
pub(crate) enum Packed<'a> {
    /// Each thread packs its own operands.
    No,
    /// All of A: per k block, every row's panels ([`a_block`] values apart).
    A(&'a [u16]),
    /// All of B: per (k block, column block), its panels ([`b_block`] values apart).
    B(&'a [u16]),
}

/// k pairs a packed panel holds for a k block of `kc` values.
fn pairs_of<K: Kernel>(kc: usize) -> usize {
    kc.div_ceil(2).next_multiple_of(K::PAIRS)
}

/// k pairs of the largest k block of a product with inner size `k`.
fn max_pairs<K: Kernel>(k: usize) -> usize {
    pairs_of::<K>(k.min(K::KC))
}

/// Values of one k block of A packed whole (`rows` rows).
pub(crate) fn a_block<K: Kernel>(k: usize, rows: usize) -> usize {
    2 * max_pairs::<K>(k) * rows.next_multiple_of(K::MR)
}

/// Values of one (k block, column block) of B packed, for `cols` columns in all.
pub(crate) fn b_block<K: Kernel>(k: usize, cols: usize) -> usize {
    2 * max_pairs::<K>(k) * cols.min(K::NC).next_multiple_of(NR)
}

/// Packs all of `a` (every row, per k block) into `out` (`k/KC` blocks of [`a_block`]), in
/// parallel.
pub(crate) fn prepack_a<K: Kernel>(a: &MatRef<'_>, out: &mut [u16]) {
    let block = a_block::<K>(a.cols, a.rows);
    for (kb, k0) in (0..a.cols).step_by(K::KC).enumerate() {
        let kc = K::KC.min(a.cols - k0);
        let pairs = pairs_of::<K>(kc);
        let rows = &mut out[kb * block..][..2 * pairs * a.rows.next_multiple_of(K::MR)];
        rows.par_chunks_mut(2 * pairs * K::MC)
            .enumerate()
            .for_each(|(i, panels)| {
                let m0 = i * K::MC;
                K::pack_a(a, (m0, K::MC.min(a.rows - m0)), (k0, kc), pairs, panels);
            });
    }
}

/// Packs all of `b` (per k block and column block) into `out` (blocks of [`b_block`]), in
/// parallel.
pub(crate) fn prepack_b<K: Kernel>(b: &MatRef<'_>, out: &mut [u16]) {
    let n_blocks = b.cols.div_ceil(K::NC);
    out.par_chunks_mut(b_block::<K>(b.rows, b.cols))
        .take(b.rows.div_ceil(K::KC) * n_blocks)
        .enumerate()
        .for_each(|(i, panels)| {
            let (k0, n0) = (i / n_blocks * K::KC, i % n_blocks * K::NC);
            let kc = K::KC.min(b.rows - k0);
            let pairs = pairs_of::<K>(kc);
            pack_b(b, (k0, kc), (n0, K::NC.min(b.cols - n0)), pairs, panels);
        });
}

/// `dst = a·b`, or `dst += a·b` when `accumulate`, with bf16 operands and f32 sums. `packed` is
/// an operand already packed: all of `a` (then `dst` has all of its rows) or all of `b` (then
/// all of its columns).
///
/// # Safety
/// `dst` is valid for writes (and reads when accumulating) of its `rows×cols` elements and does
/// not overlap `a` or `b`; `a` is `dst.rows×k`, `b` is `k×dst.cols`; `K`'s CPU features are
/// present.
#[inline(always)]
pub(crate) unsafe fn gemm<K: Kernel>(
    dst: Dst,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    packed: Packed<'_>,
) {
    let k = a.cols;
    let n_blocks = dst.cols.div_ceil(K::NC);
    // With more than one block of columns, every row of A is packed once per k block and kept
    // for all of them, instead of once per (column block, row block).
    let whole_a = n_blocks > 1;
    let a_rows = if whole_a {
        dst.rows
    } else {
        dst.rows.min(K::MC)
    };
    let bp_len = match packed {
        Packed::B(_) => 0,
        _ => b_block::<K>(k, dst.cols),
    };
    let ap_len = match packed {
        Packed::A(_) => 0,
        _ => a_block::<K>(k, a_rows),
    };
    with_bf16_scratch(bp_len + ap_len, |buf| {
        let (bp_own, ap_own) = buf.split_at_mut(bp_len);
        let mut edge = [0f32; MAX_TILE];
        K::begin();
        for (kb, k0) in (0..k).step_by(K::KC).enumerate() {
            let kc = K::KC.min(k - k0);
            let pairs = pairs_of::<K>(kc);
            let acc = accumulate || k0 > 0;
            // Row block m0's panels, at `2·pairs·m0` of the k block's (`MC` is a multiple of
            // `MR`).
            let pack_rows = |m0: usize, ap: &mut [u16]| {
                let mc = K::MC.min(dst.rows - m0);
                K::pack_a(&a, (m0, mc), (k0, kc), pairs, ap);
            };
            let a_all: Option<*const u16> = match packed {
                Packed::A(all) => Some(all[kb * a_block::<K>(k, dst.rows)..].as_ptr()),
                _ if whole_a => {
                    for m0 in (0..dst.rows).step_by(K::MC) {
                        pack_rows(m0, &mut ap_own[2 * pairs * m0..]);
                    }
                    Some(ap_own.as_ptr())
                }
                _ => None,
            };
            for (nb, n0) in (0..dst.cols).step_by(K::NC).enumerate() {
                let nc = K::NC.min(dst.cols - n0);
                let bp: &[u16] = match packed {
                    Packed::B(all) => &all[(kb * n_blocks + nb) * b_block::<K>(k, dst.cols)..],
                    _ => {
                        pack_b(&b, (k0, kc), (n0, nc), pairs, bp_own);
                        &bp_own[..]
                    }
                };
                for m0 in (0..dst.rows).step_by(K::MC) {
                    let mc = K::MC.min(dst.rows - m0);
                    let ap: *const u16 = match a_all {
                        Some(all) => all.add(2 * pairs * m0),
                        None => {
                            pack_rows(m0, ap_own);
                            ap_own.as_ptr()
                        }
                    };
                    for (ri, r0) in (0..mc).step_by(K::MR).enumerate() {
                        let apanel = ap.add(ri * pairs * 2 * K::MR);
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
pub(crate) unsafe fn avx512(
    dst: Dst,
    accumulate: bool,
    a: MatRef<'_>,
    b: MatRef<'_>,
    packed: Packed<'_>,
) {
    gemm::<Vdp<super::lanes::Avx512>>(dst, accumulate, a, b, packed)
}
