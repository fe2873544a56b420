//! Moving one image's group of channel planes to and from the columns of a block matrix.
//!
//! A block covers `imgs` consecutive images of one group; its matrices have one column per output
//! pixel of those images (`cols = imgs·p`), image `i` owning columns `i·p .. (i+1)·p`.
//! im2col rows are ordered `(ci, ky, kx)`, matching the OIHW weight layout.

use crate::geometry::{valid_range, ConvGeom};

/// Writes the im2col rows of one image into columns `c0 .. c0+p` of `col` (`k` rows, row stride
/// `cols`). `xg` holds the image's `cin_g` input planes of the group.
pub(crate) fn im2col_image(g: &ConvGeom, xg: &[f32], col: &mut [f32], cols: usize, c0: usize) {
    let (p, hw) = (g.p(), g.hw());
    if g.is_pointwise() {
        copy_planes_to_rows(xg, p, col, cols, c0);
        return;
    }
    let mut rows = col.chunks_mut(cols);
    for plane in xg.chunks(hw).take(g.cin_g()) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &mut rows.next().expect("im2col matrix has k rows")[c0..c0 + p];
                fill_row(g, plane, ky, kx, row);
            }
        }
    }
}

/// Adds the im2col rows in columns `c0 .. c0+p` of `col` back onto one image's `cin_g` input
/// planes `dxg` of the group (the adjoint of [`im2col_image`]).
pub(crate) fn col2im_image(g: &ConvGeom, col: &[f32], cols: usize, c0: usize, dxg: &mut [f32]) {
    let (p, hw) = (g.p(), g.hw());
    let mut rows = col.chunks(cols);
    for plane in dxg.chunks_mut(hw).take(g.cin_g()) {
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = &rows.next().expect("im2col matrix has k rows")[c0..c0 + p];
                add_row(g, row, ky, kx, plane);
            }
        }
    }
}

/// Copies consecutive planes of `p` values into columns `c0 .. c0+p` of successive rows of `dst`
/// (row stride `cols`).
pub(crate) fn copy_planes_to_rows(src: &[f32], p: usize, dst: &mut [f32], cols: usize, c0: usize) {
    for (plane, row) in src.chunks_exact(p).zip(dst.chunks_mut(cols)) {
        row[c0..c0 + p].copy_from_slice(plane);
    }
}

/// Copies columns `c0 .. c0+p` of successive rows of `src` (row stride `cols`) into consecutive
/// planes of `p` values of `dst`: the inverse of [`copy_planes_to_rows`].
pub(crate) fn copy_rows_to_planes(src: &[f32], cols: usize, c0: usize, dst: &mut [f32], p: usize) {
    for (row, plane) in src.chunks(cols).zip(dst.chunks_exact_mut(p)) {
        plane.copy_from_slice(&row[c0..c0 + p]);
    }
}

/// One im2col row: `row[oy·wo + ox] = plane[oy·s + ky − pad][ox·s + kx − pad]`, 0 outside.
fn fill_row(g: &ConvGeom, plane: &[f32], ky: usize, kx: usize, row: &mut [f32]) {
    let ys = valid_range(g.ho, g.h, ky, g.stride, g.pad);
    let xs = valid_range(g.wo, g.w, kx, g.stride, g.pad);
    for (oy, out) in row.chunks_exact_mut(g.wo).enumerate() {
        if !ys.contains(&oy) || xs.is_empty() {
            out.fill(0.0);
            continue;
        }
        let src = &plane[(oy * g.stride + ky - g.pad) * g.w..][..g.w];
        out[..xs.start].fill(0.0);
        out[xs.end..].fill(0.0);
        let ix0 = xs.start * g.stride + kx - g.pad;
        let dst = &mut out[xs.clone()];
        if g.stride == 1 {
            dst.copy_from_slice(&src[ix0..ix0 + dst.len()]);
        } else {
            for (d, s) in dst.iter_mut().zip(src[ix0..].iter().step_by(g.stride)) {
                *d = *s;
            }
        }
    }
}

/// The adjoint of [`fill_row`]: adds `row` onto the input positions it was read from.
fn add_row(g: &ConvGeom, row: &[f32], ky: usize, kx: usize, plane: &mut [f32]) {
    let ys = valid_range(g.ho, g.h, ky, g.stride, g.pad);
    let xs = valid_range(g.wo, g.w, kx, g.stride, g.pad);
    if xs.is_empty() {
        return;
    }
    let ix0 = xs.start * g.stride + kx - g.pad;
    for oy in ys {
        let src = &row[oy * g.wo..][xs.clone()];
        let dst = &mut plane[(oy * g.stride + ky - g.pad) * g.w..][..g.w];
        if g.stride == 1 {
            for (d, s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                *d += *s;
            }
        } else {
            for (d, s) in dst[ix0..].iter_mut().step_by(g.stride).zip(src) {
                *d += *s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition of one im2col entry, for comparison.
    fn entry(g: &ConvGeom, xg: &[f32], r: usize, px: usize) -> f32 {
        let (ci, ky, kx) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let (oy, ox) = (px / g.wo, px % g.wo);
        let iy = (oy * g.stride + ky) as isize - g.pad as isize;
        let ix = (ox * g.stride + kx) as isize - g.pad as isize;
        if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
            0.0
        } else {
            xg[ci * g.hw() + iy as usize * g.w + ix as usize]
        }
    }

    fn geoms() -> Vec<ConvGeom> {
        let mut out = Vec::new();
        for (k, pad) in [(3, 1), (3, 0), (1, 0), (3, 2)] {
            for stride in [1, 2, 3] {
                for (h, w) in [(7, 7), (9, 5), (4, 6)] {
                    out.push(ConvGeom::new((1, 2, h, w), (2, 2, k, k), stride, pad, 1).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn im2col_matches_definition_and_col2im_is_its_adjoint() {
        for g in geoms() {
            let (k, p) = (g.k(), g.p());
            let xg: Vec<f32> = (0..g.cin_g() * g.hw())
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let cols = p + 3; // a wider matrix: the image sits at column offset 2
            let mut col = vec![f32::NAN; k * cols];
            im2col_image(&g, &xg, &mut col, cols, 2);
            for r in 0..k {
                for px in 0..p {
                    assert_eq!(
                        col[r * cols + 2 + px],
                        entry(&g, &xg, r, px),
                        "{g:?} r{r} px{px}"
                    );
                }
            }
            // <im2col(x), c> == <x, col2im(c)> for a random c.
            let c: Vec<f32> = (0..k * cols).map(|i| (i as f32 * 0.11).cos()).collect();
            let mut back = vec![0.0f32; xg.len()];
            col2im_image(&g, &c, cols, 2, &mut back);
            let lhs: f64 = (0..k)
                .flat_map(|r| (0..p).map(move |px| (r, px)))
                .map(|(r, px)| col[r * cols + 2 + px] as f64 * c[r * cols + 2 + px] as f64)
                .sum();
            let rhs: f64 = xg
                .iter()
                .zip(&back)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()),
                "{g:?}: {lhs} vs {rhs}"
            );
        }
    }
}
