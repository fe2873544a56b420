//! Convolution forward and backward as im2col + GEMM on contiguous NCHW/OIHW f32 slices
//! (channels-major activations are handed to [`crate::channels_major`]).
//!
//! Work is cut into blocks of (group, run of consecutive images); each block is one GEMM whose
//! columns are the output pixels of its images. Small images are batched into one block so the
//! GEMMs stay wide; blocks run in parallel with single-threaded GEMMs, or, when there are too few
//! blocks to feed every thread, one after another with multi-threaded GEMMs.

use crate::buffers::{assume_init, zeroed};
use crate::channels_major;
use crate::columns::{
    col2im_image, copy_planes_to_rows, copy_rows_to_planes, im2col_image, im2col_row_runs,
};
use crate::compute::{Compute, MIN_ROWS};
use crate::direct;
use crate::geometry::ConvGeom;
use crate::matmul::{matmul, MatMut, MatRef};
use crate::scratch::with_scratch;
use gemm::Parallelism;
use rayon::prelude::*;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// Aim for at least this many GEMM columns (output pixels) per block. At 768 rather than 256,
/// layer3's 14×14 maps (batch 8, 224 px) run as 2 blocks of 784 columns instead of 4 of 392: the
/// 12×64-row panels leave a full 16-row edge instead of one with 8 rows of 16 in use. Forward
/// 1.011× (0.99–1.02×), fine-tune step at 8×8 1.017× and at 14×14 1.007×, in 5 alternating
/// pairs; 196 had been 0.92–0.99×.
const TARGET_COLS: usize = 768;

/// One unit of work: group `group` of images `n0 .. n0+imgs`.
#[derive(Clone, Copy, Debug)]
struct Block {
    group: usize,
    n0: usize,
    imgs: usize,
}

/// How the images of a convolution are cut into blocks.
struct Plan {
    imgs: usize,
    blocks: usize,
    groups: usize,
    n: usize,
    threads: usize,
}

impl Plan {
    fn new(g: &ConvGeom) -> Self {
        let threads = rayon::current_num_threads().max(1);
        let mut blocks = g.n.div_ceil(TARGET_COLS.div_ceil(g.p()).min(g.n));
        if blocks * g.groups < threads {
            blocks = threads.div_ceil(g.groups).min(g.n);
        }
        let imgs = g.n.div_ceil(blocks);
        Plan {
            imgs,
            blocks: g.n.div_ceil(imgs),
            groups: g.groups,
            n: g.n,
            threads,
        }
    }

    fn tasks(&self) -> usize {
        self.blocks * self.groups
    }

    /// Task `t` = image run `t / groups`, group `t % groups`.
    fn block(&self, t: usize) -> Block {
        let n0 = t / self.groups * self.imgs;
        Block {
            group: t % self.groups,
            n0,
            imgs: self.imgs.min(self.n - n0),
        }
    }

    /// Runs `f` on every task: in parallel with single-threaded GEMMs when there are enough tasks,
    /// else sequentially with multi-threaded GEMMs.
    fn run(&self, f: impl Fn(Block, Parallelism) + Sync) {
        if self.tasks() >= self.threads {
            (0..self.tasks())
                .into_par_iter()
                .for_each(|t| f(self.block(t), Parallelism::None));
        } else {
            (0..self.tasks()).for_each(|t| f(self.block(t), Parallelism::Rayon(self.threads)));
        }
    }
}

/// An output slice that parallel tasks write through, each into regions no other task touches.
struct Shared<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: `Shared` only hands out sub-slices through `region`, whose contract makes concurrent
// users touch disjoint memory.
unsafe impl<T: Send> Send for Shared<'_, T> {}
unsafe impl<T: Send> Sync for Shared<'_, T> {}

impl<'a, T> Shared<'a, T> {
    fn new(data: &'a mut [T]) -> Self {
        Shared {
            ptr: data.as_mut_ptr(),
            len: data.len(),
            _borrow: PhantomData,
        }
    }

    /// `data[start .. start+len]`.
    ///
    /// # Safety
    /// No other live slice obtained from this `Shared` may overlap the range.
    #[allow(clippy::mut_from_ref)]
    unsafe fn region(&self, start: usize, len: usize) -> &mut [T] {
        assert!(
            start + len <= self.len,
            "region {start}+{len} outside {}",
            self.len
        );
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}

/// Offset of image `n`'s group `group` of `per_group` channel planes of `plane` values, in an
/// N×C×plane tensor with `per_group·groups` channels.
fn group_offset(n: usize, group: usize, per_group: usize, groups: usize, plane: usize) -> usize {
    (n * groups + group) * per_group * plane
}

/// The block's `per_group` channel rows of `data` (N×(per_group·groups)×plane) as a
/// `per_group × imgs·plane` matrix: a view when the block holds one image, else gathered into
/// `buf` (which then needs `per_group·imgs·plane` floats).
fn group_rows<'a>(
    data: &'a [f32],
    per_group: usize,
    groups: usize,
    plane: usize,
    b: Block,
    buf: &'a mut [f32],
) -> MatRef<'a> {
    let cols = b.imgs * plane;
    if b.imgs == 1 {
        let off = group_offset(b.n0, b.group, per_group, groups, plane);
        return MatRef::rows(&data[off..off + per_group * plane], per_group, cols, plane);
    }
    for i in 0..b.imgs {
        let off = group_offset(b.n0 + i, b.group, per_group, groups, plane);
        copy_planes_to_rows(
            &data[off..off + per_group * plane],
            plane,
            buf,
            cols,
            i * plane,
        );
    }
    MatRef::rows(buf, per_group, cols, cols)
}

/// Floats of scratch [`input_columns`] needs for block `b`.
fn columns_len(g: &ConvGeom, b: Block) -> usize {
    if g.is_pointwise() && b.imgs == 1 {
        0
    } else {
        g.k() * b.imgs * g.p()
    }
}

/// The block's im2col matrix (`k × imgs·p`), built in `buf` unless it is a view of `x`.
fn input_columns<'a>(g: &ConvGeom, x: &'a [f32], b: Block, buf: &'a mut [f32]) -> MatRef<'a> {
    if g.is_pointwise() {
        return group_rows(x, g.cin_g(), g.groups, g.p(), b, buf);
    }
    let cols = b.imgs * g.p();
    let per_image = g.cin_g() * g.hw();
    for i in 0..b.imgs {
        let off = group_offset(b.n0 + i, b.group, g.cin_g(), g.groups, g.hw());
        im2col_image(g, &x[off..off + per_image], buf, cols, i * g.p());
    }
    MatRef::rows(buf, g.k(), cols, cols)
}

/// Floats of scratch [`group_rows`] needs for a block of `per_group` channels.
fn rows_len(per_group: usize, plane: usize, b: Block) -> usize {
    if b.imgs == 1 {
        0
    } else {
        per_group * b.imgs * plane
    }
}

/// The group's weights as a `cout_g × k` matrix.
pub(crate) fn group_weight<'a>(g: &ConvGeom, w: &'a [f32], group: usize) -> MatRef<'a> {
    let len = g.cout_g() * g.k();
    MatRef::rows(&w[group * len..(group + 1) * len], g.cout_g(), g.k(), g.k())
}

/// What [`forward`] applies to every output value, in the same task right after the block's GEMM
/// (the direct kernel: as it writes its output): `+ bias[output channel]` (when given), then
/// `+ residual[same index]` (when given), then `max(·, 0)` (when `relu`). The sums run in that
/// order, so the fused result has the bits of the separate ops (conv + bias, then
/// [`crate::add_relu`]).
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    /// A tensor of the output's shape and layout.
    pub residual: Option<&'a [f32]>,
    pub relu: bool,
}

impl<'a> Epilogue<'a> {
    /// The plain convolution: values left as the GEMM wrote them.
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        residual: None,
        relu: false,
    };

    /// The epilogue for output values from index `at` on: the residual read from there.
    pub(crate) fn shifted(self, at: usize) -> Epilogue<'a> {
        Epilogue {
            residual: self.residual.map(|r| &r[at..]),
            ..self
        }
    }

    /// Applies the epilogue to `planes`: consecutive output planes of `p` values for channels
    /// `c0, c0+1, …`, and the residual's values from its start (see [`Epilogue::shifted`]).
    pub(crate) fn apply(&self, planes: &mut [f32], c0: usize, p: usize) {
        if self.is_none() {
            return;
        }
        assert!(self.residual.is_none_or(|r| r.len() >= planes.len()));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let (out, channels) = (planes.as_mut_ptr(), planes.len() / p);
            // SAFETY: AVX-512 F was just detected; source and destination are the `channels`
            // planes of `planes` (in place), and the residual is long enough (asserted).
            return unsafe { self.planes_avx512((out, p), out, channels, c0, p) };
        }
        self.apply_scalar(planes, c0, p);
    }

    /// Writes columns `col0 .. col0+p` of successive rows of `src` (row stride `cols`) into the
    /// consecutive planes of `p` values of `planes`, with the epilogue applied as [`Epilogue::apply`]
    /// does: [`copy_rows_to_planes`] and `apply` in one pass over the values, same bits.
    pub(crate) fn apply_from_rows(
        &self,
        (src, cols, col0): (&[f32], usize, usize),
        planes: &mut [MaybeUninit<f32>],
        c0: usize,
        p: usize,
    ) {
        let channels = planes.len() / p;
        if self.is_none() {
            return copy_rows_to_planes(src, cols, col0, planes, p);
        }
        assert!(channels == 0 || (channels - 1) * cols + col0 + p <= src.len());
        assert!(self.residual.is_none_or(|r| r.len() >= planes.len()));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let src = src[col0..].as_ptr();
            // SAFETY: AVX-512 F was just detected; the `channels` source rows of `p` values from
            // `col0` are inside `src` and the residual is long enough (both asserted), and the
            // destination planes are `planes`.
            return unsafe {
                self.planes_avx512((src, cols), planes.as_mut_ptr().cast(), channels, c0, p)
            };
        }
        copy_rows_to_planes(src, cols, col0, planes, p);
        // SAFETY: the copy wrote every slot of `planes`.
        self.apply_scalar(unsafe { assume_init(planes) }, c0, p);
    }

    /// Whether the epilogue has no part: the GEMM's values are the output.
    fn is_none(&self) -> bool {
        self.bias.is_none() && self.residual.is_none() && !self.relu
    }

    /// [`Epilogue::apply`] one value at a time.
    fn apply_scalar(&self, planes: &mut [f32], c0: usize, p: usize) {
        for (c, plane) in planes.chunks_exact_mut(p).enumerate() {
            let b = self.bias.map_or(0.0, |b| b[c0 + c]);
            let residual = self.residual.map(|r| &r[c * p..(c + 1) * p]);
            for (i, v) in plane.iter_mut().enumerate() {
                *v += b;
                if let Some(r) = residual {
                    *v += r[i];
                }
                if self.relu {
                    *v = v.max(0.0);
                }
            }
        }
    }

    /// The epilogue of `channels` rows of `p` sums, row `c` at `src + c·stride`, written as
    /// consecutive planes from `out` (which may be `src` itself, with `stride` = `p`), in 16-lane
    /// vectors. Built for baseline x86-64, the scalar loop runs 4 lanes at a time plus three
    /// instructions per vector for `f32::max`'s NaN rule, and was bound by them rather than by
    /// memory: 6.8% of a 224 px forward's samples, 4.3% this way.
    ///
    /// # Safety
    /// AVX-512 F; the rows are readable and the planes writable, and either do not overlap or
    /// are the same values; the residual, when given, holds at least `channels·p` values.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn planes_avx512(
        &self,
        (src, stride): (*const f32, usize),
        out: *mut f32,
        channels: usize,
        c0: usize,
        p: usize,
    ) {
        use std::arch::x86_64::*;
        for c in 0..channels {
            let b = self.bias.map_or(0.0, |b| b[c0 + c]);
            for i in (0..p).step_by(LANES) {
                let m = lanes((p - i).min(LANES));
                let at = c * p + i;
                let sums = _mm512_maskz_loadu_ps(m, src.add(c * stride + i));
                let v = self.finish(sums, b, at, m);
                _mm512_mask_storeu_ps(out.add(at), m, v);
            }
        }
    }

    /// The epilogue on the sums `v` of output values `at ..` (the lanes of `m`), given their
    /// channel's bias `b` (0 without one): `(v + b) + residual`, then ReLU. A NaN sum becomes 0
    /// under the ReLU, as `f32::max` gives.
    ///
    /// # Safety
    /// AVX-512 F; the lanes of `m` from `at` on are inside the residual when there is one.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(crate) unsafe fn finish(
        &self,
        v: std::arch::x86_64::__m512,
        b: f32,
        at: usize,
        m: u16,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let mut v = _mm512_add_ps(v, _mm512_set1_ps(b));
        if let Some(r) = self.residual {
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, r.as_ptr().wrapping_add(at)));
        }
        if self.relu {
            // `max` returns its second operand when either is NaN: 0.
            v = _mm512_max_ps(v, _mm512_setzero_ps());
        }
        v
    }
}

/// AVX-512 lanes.
pub(crate) const LANES: usize = 16;

/// Mask of the first `len` (≤ 16) lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn lanes(len: usize) -> u16 {
    ((1u32 << len) - 1) as u16
}

/// Lanes `parity, parity + 2, …, parity + 30` of the 32 values `lo ‖ hi`: with `parity` 0 the
/// even-indexed values of 32 consecutive ones (a stride-2 read), with 1 the odd-indexed ones.
///
/// # Safety
/// AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn stride2_lanes(
    lo: std::arch::x86_64::__m512,
    hi: std::arch::x86_64::__m512,
    parity: i32,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let index = _mm512_add_epi32(even, _mm512_set1_epi32(parity));
    _mm512_permutex2var_ps(lo, index, hi)
}

/// `y = epilogue(conv(x, w))`, writing every slot of `y`. Slices are contiguous NCHW `x`, OIHW
/// `w`, NCHW `y` of `g`'s sizes; a bias holds `cout` values.
pub(crate) fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [MaybeUninit<f32>],
) {
    assert_eq!(
        (x.len(), w.len(), y.len()),
        (g.x_len(), g.w_len(), g.y_len()),
        "forward sizes"
    );
    assert!(
        epilogue.bias.is_none_or(|b| b.len() == g.cout),
        "forward bias size"
    );
    if g.channels_major {
        return match g.as_one_image() {
            Some(flat) => forward(&flat, x, w, epilogue, y),
            None => channels_major::forward(g, x, w, epilogue, y),
        };
    }
    if direct::applies(g, g.compute == Compute::F32 || g.cout_g() < MIN_ROWS) {
        return direct::forward(g, x, w, epilogue, y);
    }
    let (p, cout_g) = (g.p(), g.cout_g());
    let y = Shared::new(y);
    Plan::new(g).run(|b, par| {
        if b.imgs == 1 && !g.is_pointwise() && g.k() * p > RUN_VALUES {
            let at = group_offset(b.n0, b.group, cout_g, g.groups, p);
            // SAFETY: (image, group) regions are disjoint and each belongs to one block.
            let out = unsafe { y.region(at, cout_g * p) };
            forward_row_runs(g, x, w, b, par, out);
            // SAFETY: the runs wrote the whole region (`cout_g` planes of `p`).
            let out = unsafe { assume_init(out) };
            return epilogue.shifted(at).apply(out, b.group * cout_g, p);
        }
        let cols = b.imgs * p;
        let col_len = columns_len(g, b);
        let out_len = rows_len(cout_g, p, b);
        with_scratch(col_len + out_len, |buf| {
            let (col_buf, out_buf) = buf.split_at_mut(col_len);
            let rhs = input_columns(g, x, b, col_buf);
            let lhs = group_weight(g, w, b.group);
            let region = |i: usize| {
                let off = group_offset(b.n0 + i, b.group, cout_g, g.groups, p);
                // SAFETY: (image, group) regions are disjoint and each belongs to one block.
                unsafe { y.region(off, cout_g * p) }
            };
            let c0 = b.group * cout_g;
            if b.imgs == 1 {
                let at = group_offset(b.n0, b.group, cout_g, g.groups, p);
                let out = region(0);
                let dst = MatMut::uninit(out, cout_g, cols, p);
                matmul(dst, false, lhs, rhs, par, g.compute);
                // SAFETY: the GEMM wrote the whole region (`cout_g` rows of `p` = `cols`).
                epilogue
                    .shifted(at)
                    .apply(unsafe { assume_init(out) }, c0, p);
            } else {
                matmul(
                    MatMut::rows(out_buf, cout_g, cols, cols),
                    false,
                    lhs,
                    rhs,
                    par,
                    g.compute,
                );
                for i in 0..b.imgs {
                    let at = group_offset(b.n0 + i, b.group, cout_g, g.groups, p);
                    let rows = (&out_buf[..], cols, i * p);
                    epilogue.shifted(at).apply_from_rows(rows, region(i), c0, p);
                }
            }
        })
    });
}

/// A one-image block whose im2col matrix holds more values than this builds it and multiplies
/// it a run of output rows at a time, each run's matrix at most this size ([`forward_row_runs`]):
/// 512 KiB, inside a core's L2 on recent Xeons and EPYCs. The stem's matrix (7.4 MB per image)
/// then runs as 16 runs of 7 rows; of 2¹⁶, 2¹⁷, 2¹⁸ and 2²⁰ values, 2¹⁷ and 2¹⁸ were fastest.
const RUN_VALUES: usize = 1 << 17;

/// The product of block `b` (one image of one group) into its output planes `out`, before the
/// epilogue: its im2col matrix built and multiplied a run of output rows at a time, so that each
/// run is read from the cache rather than from memory ([`im2col_row_runs`]).
fn forward_row_runs(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    b: Block,
    par: Parallelism,
    out: &mut [MaybeUninit<f32>],
) {
    let (p, k, cout_g) = (g.p(), g.k(), g.cout_g());
    let rows = (RUN_VALUES / (k * g.wo)).max(1);
    let at = group_offset(b.n0, b.group, g.cin_g(), g.groups, g.hw());
    let xg = &x[at..at + g.cin_g() * g.hw()];
    let lhs = group_weight(g, w, b.group);
    with_scratch(k * rows * g.wo, |col| {
        im2col_row_runs(g, xg, rows, col, |oys, m| {
            let n = oys.len() * g.wo;
            let dst = MatMut::uninit(&mut out[oys.start * g.wo..], cout_g, n, p);
            matmul(dst, false, lhs, MatRef::rows(m, k, n, n), par, g.compute);
        })
    });
}

/// `dx` = gradient w.r.t. the input, given `dy` (NCHW, output sizes) and `w`, writing every slot
/// of `dx`.
pub(crate) fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    assert_eq!(
        (dy.len(), w.len(), dx.len()),
        (g.y_len(), g.w_len(), g.x_len()),
        "bwd-input sizes"
    );
    if g.channels_major {
        return match g.as_one_image() {
            Some(flat) => backward_input(&flat, dy, w, dx),
            None => channels_major::backward_input(g, dy, w, dx),
        };
    }
    let (p, hw, cin_g, cout_g) = (g.p(), g.hw(), g.cin_g(), g.cout_g());
    let dx = Shared::new(dx);
    Plan::new(g).run(|b, par| {
        let cols = b.imgs * p;
        let region = |i: usize| {
            let off = group_offset(b.n0 + i, b.group, cin_g, g.groups, hw);
            // SAFETY: (image, group) regions are disjoint and each belongs to one block.
            unsafe { dx.region(off, cin_g * hw) }
        };
        let direct = g.is_pointwise() && b.imgs == 1;
        let dy_len = rows_len(cout_g, p, b);
        let col_len = if direct { 0 } else { g.k() * cols };
        with_scratch(dy_len + col_len, |buf| {
            let (dy_buf, col_buf) = buf.split_at_mut(dy_len);
            let rhs = group_rows(dy, cout_g, g.groups, p, b, dy_buf);
            let lhs = group_weight(g, w, b.group).t();
            if direct {
                matmul(
                    MatMut::uninit(region(0), cin_g, cols, p),
                    false,
                    lhs,
                    rhs,
                    par,
                    g.compute,
                );
            } else {
                matmul(
                    MatMut::rows(col_buf, g.k(), cols, cols),
                    false,
                    lhs,
                    rhs,
                    par,
                    g.compute,
                );
                for i in 0..b.imgs {
                    col2im_image(g, col_buf, cols, i * p, zeroed(region(i)));
                }
            }
        })
    });
}

/// `dw` = gradient w.r.t. the weight, given `x` and `dy`.
///
/// Parallel over groups when there are enough of them; otherwise over runs of images, each thread
/// summing its own partial gradient, the partials added at the end.
pub(crate) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    assert_eq!(
        (x.len(), dy.len(), dw.len()),
        (g.x_len(), g.y_len(), g.w_len()),
        "bwd-weight sizes"
    );
    if g.channels_major {
        return match g.as_one_image() {
            Some(flat) => backward_weight(&flat, x, dy, dw),
            None => channels_major::backward_weight(g, x, dy, dw),
        };
    }
    let plan = Plan::new(g);
    let per_group = g.cout_g() * g.k();
    // Adds (or, for the first block of a group, writes) block `b`'s contribution to `dwg`.
    let block = |b: Block, first: bool, dwg: &mut [f32], par: Parallelism| {
        let col_len = columns_len(g, b);
        with_scratch(col_len + rows_len(g.cout_g(), g.p(), b), |buf| {
            let (col_buf, dy_buf) = buf.split_at_mut(col_len);
            let cols = input_columns(g, x, b, col_buf);
            let grad = group_rows(dy, g.cout_g(), g.groups, g.p(), b, dy_buf);
            matmul(
                MatMut::rows(dwg, g.cout_g(), g.k(), g.k()),
                !first,
                grad,
                cols.t(),
                par,
                g.compute,
            );
        })
    };
    // All groups of image runs `runs`, into a full-size gradient.
    let runs_into = |runs: std::ops::Range<usize>, dst: &mut [f32], par: Parallelism| {
        for r in runs.clone() {
            for (group, dwg) in dst.chunks_mut(per_group).enumerate() {
                block(
                    plan.block(r * plan.groups + group),
                    r == runs.start,
                    dwg,
                    par,
                );
            }
        }
    };
    if plan.groups >= plan.threads {
        dw.par_chunks_mut(per_group)
            .enumerate()
            .for_each(|(group, dwg)| {
                for r in 0..plan.blocks {
                    block(
                        plan.block(r * plan.groups + group),
                        r == 0,
                        dwg,
                        Parallelism::None,
                    );
                }
            });
    } else if plan.blocks >= plan.threads {
        let parts = plan.threads;
        let mut extra = vec![vec![0.0f32; dw.len()]; parts - 1];
        let mut dsts: Vec<&mut [f32]> = std::iter::once(&mut *dw)
            .chain(extra.iter_mut().map(|v| v.as_mut_slice()))
            .collect();
        dsts.par_iter_mut().enumerate().for_each(|(i, dst)| {
            let runs = plan.blocks * i / parts..plan.blocks * (i + 1) / parts;
            runs_into(runs, dst, Parallelism::None);
        });
        for part in &extra {
            for (d, s) in dw.iter_mut().zip(part) {
                *d += *s;
            }
        }
    } else {
        runs_into(0..plan.blocks, dw, Parallelism::Rayon(plan.threads));
    }
}

/// Every combination of an epilogue's parts that the tests run, over `bias` and `residual`.
#[cfg(test)]
pub(crate) fn epilogues<'a>(bias: &'a [f32], residual: &'a [f32]) -> Vec<Epilogue<'a>> {
    let parts = [
        (false, false, false),
        (false, false, true),
        (true, false, false),
        (true, false, true),
        (false, true, false),
        (true, true, true),
    ];
    parts
        .into_iter()
        .map(|(with_bias, with_residual, relu)| Epilogue {
            bias: with_bias.then_some(bias),
            residual: with_residual.then_some(residual),
            relu,
        })
        .collect()
}

#[cfg(test)]
impl Epilogue<'_> {
    /// (bias, residual, ReLU): which parts are present, for test messages.
    pub(crate) fn parts(&self) -> (bool, bool, bool) {
        (self.bias.is_some(), self.residual.is_some(), self.relu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector epilogue gives the bits of the scalar one, on planes whose size is not a
    /// multiple of the vector width, with NaN, ±0 and infinite values among the sums, biases and
    /// shortcuts; with no part at all, the values are left as they are. Applied while copying the
    /// sums out of wider rows, it writes the same bits.
    #[test]
    fn vector_epilogue_has_the_scalar_bits() {
        let (p, channels, c0) = (49, 5, 3);
        let special = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY];
        let values = |len: usize, seed: u32| -> Vec<f32> {
            (0..len as u32)
                .map(|i| match i.wrapping_mul(2654435761) ^ seed {
                    h if h % 11 == 0 => special[(h / 11) as usize % special.len()],
                    h => (h % 2001) as f32 / 1000.0 - 1.0,
                })
                .collect()
        };
        let sums = values(p * channels, 1);
        let (bias, residual) = (values(c0 + channels, 2), values(p * channels, 3));
        for epilogue in epilogues(&bias, &residual) {
            let (mut vector, mut scalar) = (sums.clone(), sums.clone());
            epilogue.apply(&mut vector, c0, p);
            // Without any part, `apply` leaves the values as they are (−0 included).
            if epilogue.parts() != (false, false, false) {
                epilogue.apply_scalar(&mut scalar, c0, p);
            }
            // The same sums as columns 3 .. 3+p of rows 7 wider, the other columns −1.
            let (cols, col0) = (p + 7, 3);
            let mut rows = vec![-1.0; channels * cols];
            for (row, plane) in rows.chunks_mut(cols).zip(sums.chunks(p)) {
                row[col0..col0 + p].copy_from_slice(plane);
            }
            let mut copied = vec![MaybeUninit::uninit(); p * channels];
            epilogue.apply_from_rows((&rows, cols, col0), &mut copied, c0, p);
            // SAFETY: `apply_from_rows` writes every slot.
            let copied = unsafe { assume_init(&mut copied) };
            for (i, s) in scalar.iter().enumerate() {
                for v in [vector[i], copied[i]] {
                    assert!(
                        v.to_bits() == s.to_bits() || v.is_nan() && s.is_nan(),
                        "{:?} value {i}: {v} vs {s}",
                        epilogue.parts()
                    );
                }
            }
        }
    }
}
