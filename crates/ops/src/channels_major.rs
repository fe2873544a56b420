//! Convolution forward and backward on channels-major (C×N×H×W) activations.
//!
//! In this layout the values of one channel for every image are contiguous, so a group's output
//! channels are one contiguous region and the rows of a GEMM over several images need no gather:
//! row `c` of a block of images `n0 .. n0+imgs` is `imgs·p` consecutive values, `n·p` apart from
//! the next channel's. Only the im2col matrix is built. Work is split by group (each group writes
//! its own region); within a group, runs of images make one GEMM each.

use crate::buffers::{assume_init, zeroed};
use crate::columns::{col2im_image, im2col_image};
use crate::geometry::ConvGeom;
use crate::kernels::{group_weight, Epilogue};
use crate::matmul::{matmul, MatMut, MatRef};
use crate::scratch::with_scratch;
use gemm::Parallelism;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Aim for at least this many GEMM columns (output pixels) per run of images.
const TARGET_COLS: usize = 512;

/// Images per GEMM.
fn run_len(g: &ConvGeom) -> usize {
    TARGET_COLS.div_ceil(g.p()).min(g.n)
}

/// Runs `f(group, region)` on each group's `len`-value region of `data`: in parallel with
/// single-threaded GEMMs when there are enough groups for every thread, else one group after
/// another with multi-threaded GEMMs.
fn per_group<T: Send>(data: &mut [T], len: usize, f: impl Fn(usize, &mut [T], Parallelism) + Sync) {
    let threads = rayon::current_num_threads().max(1);
    if data.len() / len >= threads {
        data.par_chunks_mut(len)
            .enumerate()
            .for_each(|(gi, r)| f(gi, r, Parallelism::None));
    } else {
        data.chunks_mut(len)
            .enumerate()
            .for_each(|(gi, r)| f(gi, r, Parallelism::Rayon(threads)));
    }
}

/// The im2col matrix (`k × imgs·p`) of images `n0 .. n0+imgs` of group `group`, built in `buf`.
fn columns<'a>(
    g: &ConvGeom,
    x: &[f32],
    group: usize,
    n0: usize,
    imgs: usize,
    buf: &'a mut [f32],
) -> MatRef<'a> {
    let (cols, hw) = (imgs * g.p(), g.hw());
    let xg = &x[group * g.cin_g() * g.plane_stride()..];
    for i in 0..imgs {
        im2col_image(g, &xg[(n0 + i) * hw..], buf, cols, i * g.p());
    }
    MatRef::rows(buf, g.k(), cols, cols)
}

/// Image runs `(n0, imgs)` covering the batch.
fn runs(g: &ConvGeom) -> impl Iterator<Item = (usize, usize)> + '_ {
    let len = run_len(g);
    (0..g.n).step_by(len).map(move |n0| (n0, len.min(g.n - n0)))
}

/// `y = epilogue(conv(x, w))` with channels-major `x`, `y` and OIHW `w`, writing every slot of
/// `y`.
pub(crate) fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    epilogue: Epilogue,
    y: &mut [MaybeUninit<f32>],
) {
    let (np, cout_g) = (g.n * g.p(), g.cout_g());
    per_group(y, cout_g * np, |group, yg, par| {
        with_scratch(g.k() * run_len(g) * g.p(), |buf| {
            for (n0, imgs) in runs(g) {
                let cols = columns(g, x, group, n0, imgs, buf);
                let out = MatMut::uninit(&mut yg[n0 * g.p()..], cout_g, imgs * g.p(), np);
                matmul(out, false, group_weight(g, w, group), cols, par, g.compute);
            }
        });
        // SAFETY: the runs cover every image, so the GEMMs wrote all `cout_g` rows of `np`.
        let planes = unsafe { assume_init(yg) };
        epilogue
            .shifted(group * cout_g * np)
            .apply(planes, group * cout_g, np);
    });
}

/// `dx` = gradient w.r.t. the channels-major input, given `dy` and `w`, writing every slot of
/// `dx`.
pub(crate) fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    let (np, hw, p) = (g.n * g.p(), g.hw(), g.p());
    per_group(dx, g.cin_g() * g.plane_stride(), |group, dxg, par| {
        let dxg = zeroed(dxg);
        let dyg = &dy[group * g.cout_g() * np..];
        with_scratch(g.k() * run_len(g) * p, |buf| {
            for (n0, imgs) in runs(g) {
                let cols = imgs * p;
                let grad = MatRef::rows(&dyg[n0 * p..], g.cout_g(), cols, np);
                let col = &mut buf[..g.k() * cols];
                let lhs = group_weight(g, w, group).t();
                let col_dst = MatMut::rows(col, g.k(), cols, cols);
                matmul(col_dst, false, lhs, grad, par, g.compute);
                for i in 0..imgs {
                    col2im_image(g, col, cols, i * p, &mut dxg[(n0 + i) * hw..]);
                }
            }
        });
    });
}

/// `dw` = gradient w.r.t. the weight, given channels-major `x` and `dy`.
pub(crate) fn backward_weight(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (np, p) = (g.n * g.p(), g.p());
    per_group(dw, g.cout_g() * g.k(), |group, dwg, par| {
        let dyg = &dy[group * g.cout_g() * np..];
        with_scratch(g.k() * run_len(g) * p, |buf| {
            for (n0, imgs) in runs(g) {
                let cols = columns(g, x, group, n0, imgs, buf);
                let grad = MatRef::rows(&dyg[n0 * p..], g.cout_g(), imgs * p, np);
                let dst = MatMut::rows(dwg, g.cout_g(), g.k(), g.k());
                matmul(dst, n0 > 0, grad, cols.t(), par, g.compute);
            }
        });
    });
}
