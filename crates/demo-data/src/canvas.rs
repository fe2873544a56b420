//! Floating-point RGB canvas and the few drawing primitives the faces are made of: rotated
//! ellipses with anti-aliased or feathered edges, per-pixel colour functions (gradients,
//! shading) and blending of two canvases through a soft mask.

use image::RgbImage;

/// An RGB colour with channels nominally in `0.0..=1.0` (values outside are clamped on export).
pub type Rgb = [f32; 3];

/// Linear interpolation between two colours: `t = 0` gives `a`, `t = 1` gives `b`.
pub fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [0, 1, 2].map(|c| a[c] + (b[c] - a[c]) * t)
}

/// Multiplies every channel of `c` by `k`.
pub fn scale(c: Rgb, k: f32) -> Rgb {
    c.map(|v| v * k)
}

/// A rotated ellipse in pixel coordinates (pixel `(i, j)` has its centre at `(i + 0.5, j + 0.5)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ellipse {
    /// Centre, x.
    pub cx: f32,
    /// Centre, y (downwards).
    pub cy: f32,
    /// Semi-axis along the ellipse's own x direction, pixels (> 0).
    pub rx: f32,
    /// Semi-axis along the ellipse's own y direction, pixels (> 0).
    pub ry: f32,
    /// Rotation of the ellipse's x axis from the image x axis, radians (clockwise on screen).
    pub angle: f32,
}

impl Ellipse {
    /// Position of `(x, y)` in the ellipse frame, each axis divided by its semi-axis: the
    /// ellipse is the unit disc in these coordinates.
    pub fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (s, c) = self.angle.sin_cos();
        let (dx, dy) = (x - self.cx, y - self.cy);
        ((dx * c + dy * s) / self.rx, (-dx * s + dy * c) / self.ry)
    }

    /// Approximate signed distance in pixels from `(x, y)` to the outline, negative inside
    /// (first-order estimate, exact on circles and accurate near the outline).
    pub fn signed_distance(&self, x: f32, y: f32) -> f32 {
        let (u, v) = self.local(x, y);
        let d = (u * u + v * v).sqrt();
        if d < 1e-6 {
            return -self.rx.min(self.ry);
        }
        let grad = ((u / self.rx).powi(2) + (v / self.ry).powi(2)).sqrt() / d;
        (d - 1.0) / grad
    }

    /// Fraction of `(x, y)` covered: 1 inside, 0 outside, a linear ramp `feather` pixels wide
    /// centred on the outline (`feather = 1` is plain anti-aliasing; it is never below 1).
    pub fn coverage(&self, x: f32, y: f32, feather: f32) -> f32 {
        (0.5 - self.signed_distance(x, y) / feather.max(1.0)).clamp(0.0, 1.0)
    }

    /// Pixel index range `(x0, y0, x1, y1)` (end-exclusive, clamped to `width x height`) that
    /// contains every pixel within `margin` pixels of the ellipse.
    pub fn pixel_bounds(
        &self,
        margin: f32,
        width: usize,
        height: usize,
    ) -> (usize, usize, usize, usize) {
        let (s, c) = self.angle.sin_cos();
        let hw = ((self.rx * c).powi(2) + (self.ry * s).powi(2)).sqrt() + margin + 1.0;
        let hh = ((self.rx * s).powi(2) + (self.ry * c).powi(2)).sqrt() + margin + 1.0;
        let clamp = |v: f32, hi: usize| (v.max(0.0) as usize).min(hi);
        (
            clamp(self.cx - hw, width),
            clamp(self.cy - hh, height),
            clamp(self.cx + hw + 1.0, width),
            clamp(self.cy + hh + 1.0, height),
        )
    }

    /// The same ellipse with both semi-axes multiplied by `k` (same centre and angle).
    pub fn scaled(&self, k: f32) -> Ellipse {
        Ellipse {
            rx: self.rx * k,
            ry: self.ry * k,
            ..*self
        }
    }
}

/// A soft mask: one weight in `0.0..=1.0` per pixel.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    width: usize,
    height: usize,
    weights: Vec<f32>,
}

impl Mask {
    /// The union (pixel-wise maximum) of the coverages of `shapes`, each with edges `feather`
    /// pixels wide.
    pub fn union_of(width: usize, height: usize, shapes: &[Ellipse], feather: f32) -> Mask {
        let mut weights = vec![0.0f32; width * height];
        for shape in shapes {
            let (x0, y0, x1, y1) = shape.pixel_bounds(feather, width, height);
            for y in y0..y1 {
                for x in x0..x1 {
                    let w = shape.coverage(x as f32 + 0.5, y as f32 + 0.5, feather);
                    let slot = &mut weights[y * width + x];
                    *slot = slot.max(w);
                }
            }
        }
        Mask {
            width,
            height,
            weights,
        }
    }

    /// Weight of pixel `(x, y)`.
    pub fn at(&self, x: usize, y: usize) -> f32 {
        self.weights[y * self.width + x]
    }
}

/// A `width x height` RGB image of `f32` channels, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<Rgb>,
}

impl Canvas {
    /// A canvas whose pixel `(x, y)` is `colour(x + 0.5, y + 0.5)` (e.g. a gradient).
    pub fn from_fn(width: usize, height: usize, colour: impl Fn(f32, f32) -> Rgb) -> Canvas {
        let pixels = (0..width * height)
            .map(|i| colour((i % width) as f32 + 0.5, (i / width) as f32 + 0.5))
            .collect();
        Canvas {
            width,
            height,
            pixels,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Colour of pixel `(x, y)`.
    pub fn at(&self, x: usize, y: usize) -> Rgb {
        self.pixels[y * self.width + x]
    }

    /// Paints `shape` over the canvas: every pixel moves towards `colour(x, y)` by
    /// `opacity x coverage`, where coverage uses edges `feather` pixels wide and, when `clip` is
    /// given, is also limited to the (anti-aliased) inside of `clip`.
    pub fn paint(
        &mut self,
        shape: &Ellipse,
        feather: f32,
        clip: Option<&Ellipse>,
        opacity: f32,
        colour: impl Fn(f32, f32) -> Rgb,
    ) {
        let (x0, y0, x1, y1) = shape.pixel_bounds(feather, self.width, self.height);
        for y in y0..y1 {
            for x in x0..x1 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let mut cover = shape.coverage(px, py, feather);
                if let Some(clip) = clip {
                    cover = cover.min(clip.coverage(px, py, 1.0));
                }
                if cover > 0.0 {
                    let slot = &mut self.pixels[y * self.width + x];
                    *slot = mix(*slot, colour(px, py), cover * opacity);
                }
            }
        }
    }

    /// Replaces every pixel's colour `c` by `f(c)`, in row-major order (global colour
    /// operations, noise).
    pub fn map_pixels(&mut self, mut f: impl FnMut(Rgb) -> Rgb) {
        for px in &mut self.pixels {
            *px = f(*px);
        }
    }

    /// `self = self x (1 - mask) + other x mask`, pixel by pixel (both must match `mask` in size).
    pub fn blend_from(&mut self, other: &Canvas, mask: &Mask) {
        assert_eq!(
            (self.width, self.height),
            (other.width, other.height),
            "canvas sizes differ"
        );
        assert_eq!(
            (self.width, self.height),
            (mask.width, mask.height),
            "mask size differs"
        );
        for ((dst, src), &w) in self.pixels.iter_mut().zip(&other.pixels).zip(&mask.weights) {
            if w > 0.0 {
                *dst = mix(*dst, *src, w);
            }
        }
    }

    /// Separable Gaussian blur with standard deviation `sigma` pixels (edges clamped);
    /// `sigma <= 0` leaves the canvas unchanged.
    pub fn gaussian_blur(&mut self, sigma: f32) {
        if sigma <= 0.0 {
            return;
        }
        let radius = (sigma * 3.0).ceil() as isize;
        let raw: Vec<f32> = (-radius..=radius)
            .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
            .collect();
        let total: f32 = raw.iter().sum();
        let kernel: Vec<f32> = raw.iter().map(|k| k / total).collect();
        let (w, h) = (self.width as isize, self.height as isize);
        let pass = |src: &[Rgb], horizontal: bool| -> Vec<Rgb> {
            (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    let mut acc = [0.0f32; 3];
                    for (k, weight) in (-radius..=radius).zip(&kernel) {
                        let (sx, sy) = if horizontal {
                            ((x + k).clamp(0, w - 1), y)
                        } else {
                            (x, (y + k).clamp(0, h - 1))
                        };
                        let p = src[(sy * w + sx) as usize];
                        for c in 0..3 {
                            acc[c] += p[c] * weight;
                        }
                    }
                    acc
                })
                .collect()
        };
        let horizontal = pass(&self.pixels, true);
        self.pixels = pass(&horizontal, false);
    }

    /// Quantises to 8-bit RGB (clamped to `0..=1`, rounded to nearest).
    pub fn to_rgb8(&self) -> RgbImage {
        let raw = self
            .pixels
            .iter()
            .flat_map(|p| p.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8))
            .collect();
        RgbImage::from_raw(self.width as u32, self.height as u32, raw)
            .expect("buffer length is width x height x 3 by construction")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circle_signed_distance_is_exact() {
        let e = Ellipse {
            cx: 10.0,
            cy: 20.0,
            rx: 5.0,
            ry: 5.0,
            angle: 0.3,
        };
        assert!((e.signed_distance(18.0, 20.0) - 3.0).abs() < 1e-4);
        assert!((e.signed_distance(10.0, 17.0) + 2.0).abs() < 1e-4);
    }

    #[test]
    fn rotated_ellipse_local_frame() {
        // A quarter turn maps the ellipse's x axis onto the image y axis.
        let e = Ellipse {
            cx: 0.0,
            cy: 0.0,
            rx: 4.0,
            ry: 2.0,
            angle: std::f32::consts::FRAC_PI_2,
        };
        let (u, v) = e.local(0.0, 4.0);
        assert!((u - 1.0).abs() < 1e-5 && v.abs() < 1e-5);
        let (u, v) = e.local(-2.0, 0.0);
        assert!(u.abs() < 1e-5 && (v - 1.0).abs() < 1e-5);
    }

    #[test]
    fn painted_area_matches_ellipse_area() {
        let e = Ellipse {
            cx: 32.0,
            cy: 30.0,
            rx: 20.0,
            ry: 9.0,
            angle: 0.7,
        };
        let mut canvas = Canvas::from_fn(64, 64, |_, _| [0.0; 3]);
        canvas.paint(&e, 1.0, None, 1.0, |_, _| [1.0, 0.0, 0.0]);
        let area: f32 = (0..64)
            .flat_map(|y| (0..64).map(move |x| (x, y)))
            .map(|(x, y)| canvas.at(x, y)[0])
            .sum();
        let exact = std::f32::consts::PI * 20.0 * 9.0;
        assert!(
            (area - exact).abs() / exact < 0.01,
            "area {area} vs {exact}"
        );
    }

    #[test]
    fn blur_preserves_mean_and_constant_images() {
        let mut flat = Canvas::from_fn(9, 7, |_, _| [0.25, 0.5, 0.75]);
        let before = flat.clone();
        flat.gaussian_blur(1.3);
        for y in 0..7 {
            for x in 0..9 {
                for c in 0..3 {
                    assert!((flat.at(x, y)[c] - before.at(x, y)[c]).abs() < 1e-5);
                }
            }
        }
        // An impulse spreads symmetrically and keeps its mass; the peak is the square of the
        // normalised 1-D centre weight 1 / (1 + 2(e^-0.5 + e^-2 + e^-4.5)) = 0.39905.
        let mut dot = Canvas::from_fn(21, 21, |x, y| {
            if x == 10.5 && y == 10.5 {
                [1.0; 3]
            } else {
                [0.0; 3]
            }
        });
        dot.gaussian_blur(1.0);
        let mass: f32 = (0..21)
            .flat_map(|y| (0..21).map(move |x| (x, y)))
            .map(|(x, y)| dot.at(x, y)[1])
            .sum();
        assert!((mass - 1.0).abs() < 1e-4);
        assert_eq!(dot.at(9, 10), dot.at(11, 10));
        assert!(
            (dot.at(10, 10)[0] - 0.15924).abs() < 1e-4,
            "peak {}",
            dot.at(10, 10)[0]
        );
    }

    #[test]
    fn blend_follows_mask() {
        let shape = Ellipse {
            cx: 8.0,
            cy: 8.0,
            rx: 4.0,
            ry: 4.0,
            angle: 0.0,
        };
        let mask = Mask::union_of(16, 16, &[shape], 1.0);
        let mut a = Canvas::from_fn(16, 16, |_, _| [0.0; 3]);
        let b = Canvas::from_fn(16, 16, |_, _| [1.0; 3]);
        a.blend_from(&b, &mask);
        assert_eq!(a.at(8, 8), [1.0; 3]);
        assert_eq!(a.at(0, 0), [0.0; 3]);
        assert_eq!(a.at(3, 7)[0], mask.at(3, 7));
    }
}
