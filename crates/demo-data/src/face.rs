//! A procedural face: random geometry (pose, feature placement and sizes) and appearance
//! (skin, hair, iris and lip colours, lighting, background), drawn onto a [`Canvas`], plus the
//! image-space outline of each region a composite may replace.
//!
//! Feature positions are in *head units*: x divided by the head's horizontal semi-axis `R`,
//! y by its vertical semi-axis, origin at the head centre, y downwards, so the head outline is
//! the unit circle and the chin is at y = 1. Feature sizes are in multiples of `R`.

use crate::canvas::{mix, scale, Canvas, Ellipse, Rgb};
use crate::plan::Region;
use rand::Rng;

const WHITE: Rgb = [1.0, 1.0, 1.0];
const SCLERA: Rgb = [0.93, 0.92, 0.89];
const PUPIL: Rgb = [0.03, 0.03, 0.035];
const MOUTH_INSIDE: Rgb = [0.28, 0.09, 0.09];
const TEETH: Rgb = [0.92, 0.9, 0.84];
/// Skin tones are drawn between these two ends.
const SKIN_LIGHT: Rgb = [0.96, 0.80, 0.69];
const SKIN_DARK: Rgb = [0.42, 0.27, 0.18];
const LIP_RED: Rgb = [0.72, 0.24, 0.27];
const HAIR_COLOURS: [Rgb; 6] = [
    [0.07, 0.05, 0.04],
    [0.22, 0.13, 0.07],
    [0.42, 0.28, 0.16],
    [0.82, 0.67, 0.42],
    [0.58, 0.24, 0.10],
    [0.62, 0.61, 0.60],
];
const IRIS_COLOURS: [Rgb; 6] = [
    [0.30, 0.50, 0.75],
    [0.33, 0.52, 0.30],
    [0.42, 0.26, 0.12],
    [0.20, 0.12, 0.07],
    [0.50, 0.55, 0.60],
    [0.52, 0.42, 0.20],
];

/// Uniform sample in `lo..hi`.
fn uniform(rng: &mut impl Rng, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.random::<f32>()
}

/// `colour` with each channel moved by up to `amount`, uniformly.
fn jitter_colour(rng: &mut impl Rng, colour: Rgb, amount: f32) -> Rgb {
    colour.map(|c| (c + uniform(rng, -amount, amount)).clamp(0.0, 1.0))
}

/// Head pose and the placement and size of every feature.
#[derive(Clone, Debug, PartialEq)]
pub struct Geometry {
    /// Head outline in pixels; its `rx` is the unit `R` of feature sizes.
    pub head: Ellipse,
    eye_dx: f32,
    eye_y: f32,
    eye_w: f32,
    eye_h: f32,
    iris: f32,
    gaze: (f32, f32),
    brow_y: f32,
    brow_w: f32,
    brow_h: f32,
    brow_tilt: f32,
    nose_y: f32,
    nose_w: f32,
    mouth_y: f32,
    mouth_w: f32,
    mouth_h: f32,
    mouth_open: f32,
    ear_y: f32,
    neck_w: f32,
    hair: Option<HairStyle>,
}

/// Shape of the hair, if any.
#[derive(Clone, Copy, Debug, PartialEq)]
struct HairStyle {
    /// Whether it falls to the shoulders.
    long: bool,
    /// Head-unit depth of the fringe's lowest point above the head centre.
    fringe: f32,
    /// Tilt of the fringe, radians.
    tilt: f32,
    /// Angular frequency of the strand texture, radians per pixel.
    strands: f32,
}

impl Geometry {
    /// A random pose and face shape for a `size x size` image.
    fn random(rng: &mut impl Rng, size: f32) -> Geometry {
        let r = size * uniform(rng, 0.27, 0.33);
        let head = Ellipse {
            cx: size * (0.5 + uniform(rng, -0.07, 0.07)),
            cy: size * (0.47 + uniform(rng, -0.05, 0.05)),
            rx: r,
            ry: r * uniform(rng, 1.2, 1.34),
            angle: uniform(rng, -0.15, 0.15),
        };
        let eye_y = uniform(rng, -0.12, 0.0);
        let hair = (rng.random::<f32>() < 0.92).then(|| HairStyle {
            long: rng.random::<f32>() < 0.45,
            fringe: uniform(rng, 0.32, 0.55),
            tilt: uniform(rng, -0.2, 0.2),
            strands: uniform(rng, 1.2, 2.4) * 160.0 / size,
        });
        Geometry {
            head,
            eye_dx: uniform(rng, 0.36, 0.44),
            eye_y,
            eye_w: uniform(rng, 0.15, 0.2),
            eye_h: uniform(rng, 0.06, 0.09),
            iris: uniform(rng, 0.065, 0.085),
            gaze: (uniform(rng, -0.4, 0.4), uniform(rng, -0.2, 0.2)),
            brow_y: eye_y - uniform(rng, 0.17, 0.24),
            brow_w: uniform(rng, 0.17, 0.23),
            brow_h: uniform(rng, 0.025, 0.05),
            brow_tilt: uniform(rng, -0.15, 0.15),
            nose_y: uniform(rng, 0.25, 0.35),
            nose_w: uniform(rng, 0.11, 0.16),
            mouth_y: uniform(rng, 0.56, 0.66),
            mouth_w: uniform(rng, 0.22, 0.32),
            mouth_h: uniform(rng, 0.05, 0.08),
            mouth_open: if rng.random::<bool>() {
                0.0
            } else {
                uniform(rng, 0.02, 0.06)
            },
            ear_y: uniform(rng, -0.05, 0.1),
            neck_w: uniform(rng, 0.42, 0.55),
            hair,
        }
    }

    /// The same head with every feature moved and resized by up to `amount` head units (a
    /// donor face whose features do not quite line up with the original's).
    pub fn jittered(&self, rng: &mut impl Rng, amount: f32) -> Geometry {
        let mut shift = |v: f32| v + uniform(rng, -amount, amount);
        Geometry {
            eye_dx: shift(self.eye_dx),
            eye_y: shift(self.eye_y),
            eye_w: shift(self.eye_w).max(0.1),
            eye_h: shift(self.eye_h).max(0.04),
            brow_y: shift(self.brow_y),
            nose_y: shift(self.nose_y),
            nose_w: shift(self.nose_w).max(0.08),
            mouth_y: shift(self.mouth_y),
            mouth_w: shift(self.mouth_w).max(0.15),
            gaze: (shift(self.gaze.0), shift(self.gaze.1)),
            ..self.clone()
        }
    }

    /// Head radius `R` in pixels.
    fn unit(&self) -> f32 {
        self.head.rx
    }

    /// A feature ellipse centred at head-unit position `(x, y)`, semi-axes `(rx, ry)` in
    /// multiples of `R`, tilted by `tilt` relative to the head.
    fn feature(&self, x: f32, y: f32, rx: f32, ry: f32, tilt: f32) -> Ellipse {
        let h = &self.head;
        let (s, c) = h.angle.sin_cos();
        let (dx, dy) = (x * h.rx, y * h.ry);
        Ellipse {
            cx: h.cx + dx * c - dy * s,
            cy: h.cy + dx * s + dy * c,
            rx: rx * h.rx,
            ry: ry * h.rx,
            angle: h.angle + tilt,
        }
    }

    /// A vertical offset of `k x R` expressed in head units.
    fn dy(&self, k: f32) -> f32 {
        k * self.head.rx / self.head.ry
    }

    /// Outline of the area a composite replaces for `region`, in pixels. Eye regions include
    /// the lids and the lower part of the brow.
    pub fn region(&self, region: Region) -> Ellipse {
        match region {
            Region::LeftEye | Region::RightEye => {
                let side = if region == Region::LeftEye { -1.0 } else { 1.0 };
                let top = self.brow_y + self.dy(self.brow_h * 0.5);
                let bottom = self.eye_y + self.dy(self.eye_h * 1.8);
                self.feature(
                    side * self.eye_dx,
                    (top + bottom) / 2.0,
                    self.eye_w * 1.55,
                    self.half_r(top, bottom),
                    0.0,
                )
            }
            Region::Nose => {
                let (top, bottom) = (self.eye_y + 0.06, self.nose_y + self.dy(self.nose_w * 0.9));
                self.feature(
                    0.0,
                    (top + bottom) / 2.0,
                    self.nose_w * 1.5,
                    self.half_r(top, bottom),
                    0.0,
                )
            }
            Region::Mouth => {
                let half = (self.mouth_h * 1.2 + self.mouth_open) * 1.5;
                self.feature(0.0, self.mouth_y, self.mouth_w * 1.35, half, 0.0)
            }
        }
    }

    /// Outline of the inner face (brows to below the mouth) that a whole-face composite replaces.
    pub fn whole_face(&self) -> Ellipse {
        let (top, bottom) = (self.brow_y - 0.08, self.mouth_y + self.dy(0.2));
        self.feature(
            0.0,
            (top + bottom) / 2.0,
            0.82,
            self.half_r(top, bottom),
            0.0,
        )
    }

    /// Half the distance between head-unit heights `top` and `bottom`, in multiples of `R`.
    fn half_r(&self, top: f32, bottom: f32) -> f32 {
        (bottom - top) / 2.0 * self.head.ry / self.head.rx
    }
}

/// Colours and lighting.
#[derive(Clone, Debug, PartialEq)]
pub struct Appearance {
    skin: Rgb,
    lips: Rgb,
    hair: Rgb,
    iris: Rgb,
    clothes: Rgb,
    background: (Rgb, Rgb),
    /// Soft background blobs: shape, colour, opacity.
    blobs: Vec<(Ellipse, Rgb, f32)>,
    /// Unit vector towards the light (x right, y down, z towards the camera).
    light: [f32; 3],
    /// Brightness of surfaces facing away from the light, 0..1.
    ambient: f32,
}

impl Appearance {
    /// Random colours and lighting for a `size x size` image.
    fn random(rng: &mut impl Rng, size: f32) -> Appearance {
        let skin_tone = uniform(rng, 0.0, 1.0);
        let skin = jitter_colour(rng, mix(SKIN_LIGHT, SKIN_DARK, skin_tone), 0.03);
        let lips = mix(skin, LIP_RED, uniform(rng, 0.2, 0.6));
        let hair = HAIR_COLOURS[rng.random_range(0..HAIR_COLOURS.len())];
        let hair = jitter_colour(rng, hair, 0.04);
        let iris = IRIS_COLOURS[rng.random_range(0..IRIS_COLOURS.len())];
        let iris = jitter_colour(rng, iris, 0.06);
        let clothes = [0; 3].map(|_| uniform(rng, 0.05, 0.9));
        let background = (
            [0; 3].map(|_| uniform(rng, 0.1, 0.97)),
            [0; 3].map(|_| uniform(rng, 0.05, 0.9)),
        );
        let blobs = (0..rng.random_range(2..7))
            .map(|_| {
                let r = size * uniform(rng, 0.08, 0.35);
                let shape = Ellipse {
                    cx: size * uniform(rng, 0.0, 1.0),
                    cy: size * uniform(rng, 0.0, 1.0),
                    rx: r,
                    ry: r * uniform(rng, 0.6, 1.4),
                    angle: uniform(rng, 0.0, std::f32::consts::PI),
                };
                (
                    shape,
                    [0; 3].map(|_| uniform(rng, 0.05, 0.95)),
                    uniform(rng, 0.2, 0.7),
                )
            })
            .collect();
        let light = normalise([uniform(rng, -0.7, 0.7), uniform(rng, -0.6, 0.3), 1.0]);
        Appearance {
            skin,
            lips,
            hair,
            iris,
            clothes,
            background,
            blobs,
            light,
            ambient: uniform(rng, 0.35, 0.6),
        }
    }

    /// This appearance moved a fraction `t` towards `other`'s skin, lips, hair and lighting,
    /// with `other`'s iris colour (a donor face for a composite; background and clothes stay).
    pub fn towards(&self, other: &Appearance, t: f32) -> Appearance {
        let light = [0, 1, 2].map(|c| self.light[c] + (other.light[c] - self.light[c]) * t);
        Appearance {
            skin: mix(self.skin, other.skin, t),
            lips: mix(self.lips, other.lips, t),
            hair: mix(self.hair, other.hair, t),
            iris: other.iris,
            light: normalise(light),
            ambient: self.ambient + (other.ambient - self.ambient) * t,
            ..self.clone()
        }
    }
}

fn normalise(v: [f32; 3]) -> [f32; 3] {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    v.map(|c| c / n)
}

/// A complete face: what it looks like and where everything is.
#[derive(Clone, Debug, PartialEq)]
pub struct Face {
    /// Pose and feature placement.
    pub geometry: Geometry,
    /// Colours and lighting.
    pub appearance: Appearance,
}

impl Face {
    /// A random face for a `size x size` image.
    pub fn random(rng: &mut impl Rng, size: u32) -> Face {
        let geometry = Geometry::random(rng, size as f32);
        let appearance = Appearance::random(rng, size as f32);
        Face {
            geometry,
            appearance,
        }
    }

    /// A random appearance for a face of this image size (used to pick a donor's colours).
    pub fn random_appearance(rng: &mut impl Rng, size: u32) -> Appearance {
        Appearance::random(rng, size as f32)
    }

    /// Draws the face on a `size x size` canvas: background, hair, shoulders, neck, ears, head,
    /// then the features front to back.
    pub fn draw(&self, size: u32) -> Canvas {
        let n = size as usize;
        let a = &self.appearance;
        let (top, bottom) = a.background;
        let mut canvas = Canvas::from_fn(n, n, |_, y| mix(top, bottom, y / size as f32));
        for (shape, colour, opacity) in &a.blobs {
            canvas.paint(shape, shape.rx * 0.8, None, *opacity, |_, _| *colour);
        }
        self.draw_body(&mut canvas);
        self.draw_eyes(&mut canvas);
        self.draw_nose(&mut canvas);
        self.draw_mouth(&mut canvas);
        canvas
    }

    /// Brightness of a surface shaped like the dome over `shape` at `(x, y)` under the light.
    fn shade(&self, shape: &Ellipse, x: f32, y: f32) -> f32 {
        let (u, v) = shape.local(x, y);
        let (u, v) = (u.clamp(-1.0, 1.0), v.clamp(-1.0, 1.0));
        let z = (1.0 - (u * u + v * v).min(1.0)).sqrt();
        let (s, c) = shape.angle.sin_cos();
        let normal = [u * c - v * s, u * s + v * c, z];
        let l = self.appearance.light;
        let lambert = (normal[0] * l[0] + normal[1] * l[1] + normal[2] * l[2]).max(0.0);
        self.appearance.ambient + (1.0 - self.appearance.ambient) * lambert
    }

    /// `colour` shaded as a dome over `shape`.
    fn shaded(&self, shape: &Ellipse, colour: Rgb) -> impl Fn(f32, f32) -> Rgb + '_ {
        let shape = *shape;
        move |x, y| scale(colour, self.shade(&shape, x, y))
    }

    /// Hair colour with strand texture, shaded as a dome over the head.
    fn hair_at(&self, style: HairStyle, x: f32, y: f32) -> Rgb {
        let strands =
            0.86 + 0.14 * (style.strands * x + 2.5 * (y * style.strands * 0.12).sin()).sin();
        scale(
            self.appearance.hair,
            strands * (0.55 + 0.5 * self.shade(&self.geometry.head, x, y)),
        )
    }

    fn draw_body(&self, canvas: &mut Canvas) {
        let g = &self.geometry;
        let a = &self.appearance;
        let aa = 1.0;
        if let Some(style) = g.hair.filter(|s| s.long) {
            let back = g.feature(0.0, 0.3, 1.3, 1.75, 0.0);
            canvas.paint(&back, aa, None, 1.0, |x, y| self.hair_at(style, x, y));
        }
        let shoulders = g.feature(0.0, 1.55, 1.9, 0.6, -g.head.angle * 0.7);
        canvas.paint(
            &shoulders,
            aa,
            None,
            1.0,
            self.shaded(&shoulders, a.clothes),
        );
        let neck = g.feature(0.0, 0.95, g.neck_w, 0.65, 0.0);
        canvas.paint(
            &neck,
            aa,
            None,
            1.0,
            self.shaded(&neck, scale(a.skin, 0.82)),
        );
        for side in [-1.0, 1.0] {
            let ear = g.feature(side * 0.97, g.ear_y, 0.15, 0.26, side * 0.15);
            canvas.paint(
                &ear,
                aa,
                None,
                1.0,
                self.shaded(&g.head, scale(a.skin, 0.92)),
            );
        }
        canvas.paint(&g.head, aa, None, 1.0, self.shaded(&g.head, a.skin));
        let blush = mix(a.skin, LIP_RED, 0.35);
        for side in [-1.0, 1.0] {
            let cheek = g.feature(side * 0.5, 0.35, 0.22, 0.15, 0.0);
            canvas.paint(
                &cheek,
                g.unit() * 0.2,
                None,
                0.25,
                self.shaded(&g.head, blush),
            );
        }
        if let Some(style) = g.hair {
            let centre = -0.88;
            let cap = g.feature(
                0.0,
                centre,
                1.1,
                g.half_r(2.0 * centre + style.fringe, -style.fringe),
                style.tilt,
            );
            canvas.paint(&cap, aa, None, 1.0, |x, y| self.hair_at(style, x, y));
        }
        for side in [-1.0, 1.0] {
            let brow = g.feature(
                side * g.eye_dx,
                g.brow_y,
                g.brow_w,
                g.brow_h,
                side * g.brow_tilt,
            );
            canvas.paint(&brow, 1.5, None, 0.9, |_, _| scale(a.hair, 0.8));
        }
    }

    fn draw_eyes(&self, canvas: &mut Canvas) {
        let g = &self.geometry;
        let a = &self.appearance;
        let r = g.unit();
        for side in [-1.0, 1.0] {
            let (x, y) = (side * g.eye_dx, g.eye_y);
            let socket = g.feature(x, y - 0.02, g.eye_w * 1.5, g.eye_h * 2.2, 0.0);
            canvas.paint(&socket, r * 0.12, None, 0.35, |_, _| scale(a.skin, 0.75));
            let sclera = g.feature(x, y, g.eye_w, g.eye_h, 0.0);
            canvas.paint(&sclera.scaled(1.15), 1.0, None, 0.9, |_, _| {
                scale(a.hair, 0.45)
            });
            canvas.paint(&sclera, 1.0, None, 1.0, self.shaded(&sclera, SCLERA));
            let iris = g.feature(
                x + g.gaze.0 * g.eye_w * 0.35,
                y + g.dy(g.gaze.1 * g.eye_h),
                g.iris,
                g.iris,
                0.0,
            );
            canvas.paint(&iris, 1.0, Some(&sclera), 1.0, |px, py| {
                let (u, v) = iris.local(px, py);
                mix(a.iris, scale(a.iris, 0.45), (u * u + v * v).min(1.0))
            });
            canvas.paint(&iris.scaled(0.45), 1.0, Some(&sclera), 1.0, |_, _| PUPIL);
            let l = a.light;
            let glint = Ellipse {
                cx: iris.cx + l[0] * iris.rx * 0.5,
                cy: iris.cy + l[1] * iris.rx * 0.5 - iris.rx * 0.25,
                ..iris.scaled(0.25)
            };
            canvas.paint(&glint, 1.0, Some(&sclera), 0.85, |_, _| WHITE);
        }
    }

    fn draw_nose(&self, canvas: &mut Canvas) {
        let g = &self.geometry;
        let a = &self.appearance;
        let r = g.unit();
        let shadow_side = if a.light[0] > 0.0 { -1.0 } else { 1.0 };
        let bridge = g.feature(
            shadow_side * g.nose_w * 0.55,
            g.nose_y - 0.18,
            0.045,
            0.2,
            0.0,
        );
        canvas.paint(&bridge, r * 0.06, None, 0.5, |_, _| scale(a.skin, 0.72));
        let wings = g.feature(0.0, g.nose_y + 0.02, g.nose_w, g.nose_w * 0.55, 0.0);
        canvas.paint(&wings, r * 0.05, None, 0.45, |_, _| scale(a.skin, 0.85));
        let tip = g.feature(0.0, g.nose_y - 0.02, g.nose_w * 0.45, g.nose_w * 0.35, 0.0);
        canvas.paint(&tip, r * 0.05, None, 0.5, |_, _| mix(a.skin, WHITE, 0.35));
        for side in [-1.0, 1.0] {
            let nostril = g.feature(
                side * g.nose_w * 0.45,
                g.nose_y + 0.07,
                g.nose_w * 0.22,
                g.nose_w * 0.12,
                side * 0.3,
            );
            canvas.paint(&nostril, 1.2, None, 0.85, |_, _| scale(a.skin, 0.35));
        }
    }

    fn draw_mouth(&self, canvas: &mut Canvas) {
        let g = &self.geometry;
        let a = &self.appearance;
        let (w, h, open) = (g.mouth_w, g.mouth_h, g.mouth_open);
        if open > 0.0 {
            let inside = g.feature(0.0, g.mouth_y, w * 0.85, open + h * 0.2, 0.0);
            canvas.paint(&inside, 1.0, None, 1.0, |_, _| MOUTH_INSIDE);
            let teeth = g.feature(
                0.0,
                g.mouth_y - g.dy(open * 0.45),
                w * 0.75,
                open * 0.7,
                0.0,
            );
            canvas.paint(&teeth, 1.0, Some(&inside), 1.0, |_, _| TEETH);
        }
        let upper = g.feature(0.0, g.mouth_y - g.dy(open + h * 0.4), w, h * 0.5, 0.0);
        canvas.paint(
            &upper,
            1.0,
            None,
            1.0,
            self.shaded(&upper, scale(a.lips, 0.85)),
        );
        let lower = g.feature(0.0, g.mouth_y + g.dy(open + h * 0.5), w * 0.8, h * 0.6, 0.0);
        canvas.paint(&lower, 1.0, None, 1.0, self.shaded(&lower, a.lips));
        let line = g.feature(0.0, g.mouth_y, w * 0.9, 0.012 + open * 0.5, 0.0);
        canvas.paint(&line, 1.0, None, 0.8, |_, _| scale(a.lips, 0.4));
    }
}
