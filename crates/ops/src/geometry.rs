//! Shape arithmetic of a 2-D convolution (OIHW weight, dilation 1) over NCHW or channels-major
//! (C×N×H×W) activations.

use crate::compute::Compute;

/// Every size of one convolution call. Built only through [`ConvGeom::new`], which checks that the
/// shapes agree, so the kernels can index without further checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub ho: usize,
    pub wo: usize,
    /// Whether input and output are channels-major (C×N×H×W) rather than NCHW.
    pub channels_major: bool,
    /// The GEMMs' arithmetic: the calling thread's choice when the geometry was built.
    pub compute: Compute,
}

/// Whether the GEMM kernels take a `kh×kw` kernel: 1×1, 3×3 and the stem's 7×7.
pub(crate) fn gemm_kernel(kh: usize, kw: usize) -> bool {
    matches!((kh, kw), (1, 1) | (3, 3) | (7, 7))
}

impl ConvGeom {
    /// Geometry of `x` (`n×cin×h×w`) convolved with `w` (`cout×cin/groups×kh×kw`), or `None` when
    /// the shapes are inconsistent or the output would be empty.
    pub fn new(
        x: (usize, usize, usize, usize),
        w: (usize, usize, usize, usize),
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Option<Self> {
        let (n, cin, h, wd) = x;
        let (cout, cin_g, kh, kw) = w;
        let consistent = stride > 0
            && groups > 0
            && cin % groups == 0
            && cout % groups == 0
            && cin / groups == cin_g
            && cin_g > 0
            && n > 0
            && h + 2 * pad >= kh
            && wd + 2 * pad >= kw;
        consistent.then(|| ConvGeom {
            n,
            cin,
            h,
            w: wd,
            cout,
            kh,
            kw,
            stride,
            pad,
            groups,
            ho: (h + 2 * pad - kh) / stride + 1,
            wo: (wd + 2 * pad - kw) / stride + 1,
            channels_major: false,
            compute: crate::compute::current(),
        })
    }

    /// The same convolution on channels-major (C×N×H×W) input and output.
    pub fn channels_major(self) -> Self {
        ConvGeom {
            channels_major: true,
            ..self
        }
    }

    /// A channels-major dense 1×1 convolution whose stride divides H, as the NCHW convolution of
    /// ONE image N·H pixels tall, which holds the same values in the same places: a single GEMM
    /// over the whole batch. `None` for anything else.
    pub fn as_one_image(&self) -> Option<ConvGeom> {
        let dense_pointwise = self.kh == 1 && self.kw == 1 && self.groups == 1 && self.pad == 0;
        if !(self.channels_major && dense_pointwise && self.h.is_multiple_of(self.stride)) {
            return None;
        }
        let weight = (self.cout, self.cin, 1, 1);
        let flat = ConvGeom::new(
            (1, self.cin, self.n * self.h, self.w),
            weight,
            self.stride,
            0,
            1,
        )?;
        Some(ConvGeom {
            compute: self.compute,
            ..flat
        })
    }

    /// Dimensions of an activation with `c` channels and `h×w` pixels, in this layout.
    fn dims(&self, c: usize, h: usize, w: usize) -> (usize, usize, usize, usize) {
        match self.channels_major {
            false => (self.n, c, h, w),
            true => (c, self.n, h, w),
        }
    }

    pub fn x_dims(&self) -> (usize, usize, usize, usize) {
        self.dims(self.cin, self.h, self.w)
    }

    pub fn y_dims(&self) -> (usize, usize, usize, usize) {
        self.dims(self.cout, self.ho, self.wo)
    }

    /// Input channels per group.
    pub fn cin_g(&self) -> usize {
        self.cin / self.groups
    }

    /// Output channels per group.
    pub fn cout_g(&self) -> usize {
        self.cout / self.groups
    }

    /// Rows of the im2col matrix of one group: `cin_g·kh·kw`.
    pub fn k(&self) -> usize {
        self.cin_g() * self.kh * self.kw
    }

    /// Output pixels per image.
    pub fn p(&self) -> usize {
        self.ho * self.wo
    }

    /// Input pixels per image.
    pub fn hw(&self) -> usize {
        self.h * self.w
    }

    /// True when im2col is the identity (1×1, stride 1, no padding): the input planes are the
    /// columns.
    /// Distance between one image's consecutive channel planes of the input: `h·w` in NCHW,
    /// `n·h·w` channels-major.
    pub fn plane_stride(&self) -> usize {
        match self.channels_major {
            false => self.hw(),
            true => self.n * self.hw(),
        }
    }

    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    pub fn x_len(&self) -> usize {
        self.n * self.cin * self.hw()
    }

    pub fn y_len(&self) -> usize {
        self.n * self.cout * self.p()
    }

    pub fn w_len(&self) -> usize {
        self.cout * self.k()
    }
}

/// The output positions `o` in `0..out_len` whose input position `o·stride + offset − pad` lies in
/// `0..in_len`, as a half-open range (empty when none does).
pub(crate) fn valid_range(
    out_len: usize,
    in_len: usize,
    offset: usize,
    stride: usize,
    pad: usize,
) -> std::ops::Range<usize> {
    let lo = pad.saturating_sub(offset).div_ceil(stride);
    let hi = if in_len + pad > offset {
        ((in_len - 1 + pad - offset) / stride + 1).min(out_len)
    } else {
        0
    };
    lo.min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_brute_force() {
        for out_len in 1..6 {
            for in_len in 1..9 {
                for offset in 0..4 {
                    for stride in 1..4 {
                        for pad in 0..3 {
                            let brute: Vec<usize> = (0..out_len)
                                .filter(|&o| {
                                    let i = (o * stride + offset) as isize - pad as isize;
                                    i >= 0 && i < in_len as isize
                                })
                                .collect();
                            let got: Vec<usize> =
                                valid_range(out_len, in_len, offset, stride, pad).collect();
                            assert_eq!(got, brute, "{out_len} {in_len} {offset} {stride} {pad}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn output_size_follows_the_convolution_formula() {
        let g = ConvGeom::new((2, 64, 14, 9), (128, 2, 3, 3), 2, 1, 32).unwrap();
        assert_eq!((g.ho, g.wo, g.k(), g.cout_g()), (7, 5, 18, 4));
        assert!(ConvGeom::new((2, 64, 14, 9), (128, 3, 3, 3), 2, 1, 32).is_none());
    }
}
