//! PNG plots (pure: data in, PNG file out), drawn with plotters and the bundled DejaVu Sans.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use dfd_metrics::{ConfusionMatrix, RocCurve};
use image::ImageEncoder;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The font family every plot uses; [`register_font`] binds it to the bundled TTF.
const FONT: &str = "sans-serif";
/// DejaVu Sans 2.37 (Bitstream Vera licence, see `assets/DejaVuSans-LICENSE.txt`), bundled so
/// text renders on machines without system fonts.
static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Size of `curves.png` (loss and accuracy side by side).
pub const CURVES_SIZE: (u32, u32) = (1200, 450);
/// Size of `confusion.png`.
pub const CONFUSION_SIZE: (u32, u32) = (480, 440);
/// Size of `roc.png`.
pub const ROC_SIZE: (u32, u32) = (560, 520);

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Registers the bundled font for every style plotters may ask for. Idempotent; call before
/// drawing (the plot functions do).
pub fn register_font() -> Result<()> {
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font(FONT, style, DEJAVU_SANS)
            .map_err(|_| anyhow!("the bundled DejaVu Sans font is not a valid TTF"))?;
    }
    Ok(())
}

/// One logged point of a training curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub step: f64,
    /// Unweighted cross-entropy (training batches and validations alike).
    pub loss: f64,
    /// What the optimiser minimised (training batches; the loss itself for validations).
    pub objective: f64,
    pub accuracy: f64,
}

/// Reads one quantity (loss or accuracy) off a curve point.
type CurveValue = fn(&CurvePoint) -> f64;

/// The training log of one fold: batch points and validation points.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldCurves {
    pub fold: u8,
    pub train: Vec<CurvePoint>,
    pub val: Vec<CurvePoint>,
}

/// Draws `curves.png` by step, one colour per fold, training batches as thin lines and
/// validations as thick lines with dots, in three panels: the unweighted cross-entropy (training
/// and validation on one scale), the loss the optimiser minimised (class weights and L1 penalty
/// included; training only) and the accuracy. Empty logs draw empty axes.
pub fn training_curves(path: &Path, folds: &[FoldCurves]) -> Result<()> {
    draw(path, CURVES_SIZE, |root| {
        let panels = root.split_evenly((1, 3));
        let all = || folds.iter().flat_map(|f| f.train.iter().chain(&f.val));
        let max_step = all().map(|p| p.step).fold(1.0, f64::max);
        let top = |values: &mut dyn Iterator<Item = f64>| {
            values.filter(|l| l.is_finite()).fold(0.1, f64::max) * 1.05
        };
        let max_loss = top(&mut all().map(|p| p.loss));
        let max_objective = top(&mut folds.iter().flat_map(|f| &f.train).map(|p| p.objective));
        let panels_spec: [(&str, &str, f64, CurveValue, bool); 3] = [
            ("Cross-entropy", "unweighted CE", max_loss, |p| p.loss, true),
            (
                "Optimised loss",
                "CE (weighted) + L1",
                max_objective,
                |p| p.objective,
                false,
            ),
            ("Accuracy", "accuracy", 1.0, |p| p.accuracy, true),
        ];
        for (area, (title, y_desc, y_max, value, with_val)) in panels.iter().zip(panels_spec) {
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 22))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(0.0..max_step, 0.0..y_max)?;
            chart
                .configure_mesh()
                .x_desc("step")
                .y_desc(y_desc)
                .label_style((FONT, 14))
                .draw()?;
            for f in folds {
                let colour = Palette99::pick(usize::from(f.fold)).to_rgba();
                let train = f.train.iter().map(|p| (p.step, value(p)));
                chart
                    .draw_series(LineSeries::new(train, colour.stroke_width(1)))?
                    .label(format!("fold {} train", f.fold))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
                if !with_val {
                    continue;
                }
                let val: Vec<(f64, f64)> = f.val.iter().map(|p| (p.step, value(p))).collect();
                chart
                    .draw_series(LineSeries::new(val.clone(), colour.stroke_width(3)))?
                    .label(format!("fold {} val", f.fold))
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, colour.filled()));
                chart.draw_series(
                    val.into_iter()
                        .map(|xy| Circle::new(xy, 4, colour.filled())),
                )?;
            }
            if !folds.is_empty() {
                chart
                    .configure_series_labels()
                    .label_font((FONT, 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()?;
            }
        }
        Ok(())
    })
}

/// Draws `confusion.png`: the 2×2 matrix (rows = true class, columns = predicted), each cell
/// with its count and its share of the row, shaded by count.
pub fn confusion_matrix(path: &Path, m: &ConfusionMatrix, title: &str) -> Result<()> {
    draw(path, CONFUSION_SIZE, |root| {
        let (x0, y0, cell) = (150, 90, 140);
        fn text(size: u32, colour: &RGBColor) -> TextStyle<'_> {
            let centre = Pos::new(HPos::Center, VPos::Center);
            TextStyle::from((FONT, size).into_font())
                .color(colour)
                .pos(centre)
        }
        root.draw(&Text::new(
            title.to_string(),
            (x0 + cell, 25),
            text(20, &BLACK),
        ))?;
        root.draw(&Text::new("predicted", (x0 + cell, 55), text(15, &BLACK)))?;
        let rows = [("real", [m.tn, m.fp]), ("fake", [m.fn_, m.tp])];
        let max = rows.iter().flat_map(|(_, r)| *r).max().unwrap_or(0).max(1);
        for (i, name) in ["real", "fake"].into_iter().enumerate() {
            let offset = cell * i as i32 + cell / 2;
            root.draw(&Text::new(name, (x0 + offset, 75), text(15, &BLACK)))?;
            root.draw(&Text::new(
                format!("true {name}"),
                (x0 - 50, y0 + offset),
                text(15, &BLACK),
            ))?;
        }
        for (r, (_, counts)) in rows.iter().enumerate() {
            let row_total = counts.iter().sum::<u64>().max(1);
            for (c, &count) in counts.iter().enumerate() {
                let shade = count as f64 / max as f64;
                let fill = RGBColor(
                    (235.0 - 200.0 * shade) as u8,
                    (242.0 - 150.0 * shade) as u8,
                    (250.0 - 80.0 * shade) as u8,
                );
                let ink = if shade > 0.55 { WHITE } else { BLACK };
                let (x, y) = (x0 + cell * c as i32, y0 + cell * r as i32);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    fill.filled(),
                ))?;
                root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK))?;
                let (cx, cy) = (x + cell / 2, y + cell / 2);
                root.draw(&Text::new(count.to_string(), (cx, cy - 12), text(30, &ink)))?;
                let share = format!("{:.1}%", 100.0 * count as f64 / row_total as f64);
                root.draw(&Text::new(share, (cx, cy + 22), text(14, &ink)))?;
            }
        }
        Ok(())
    })
}

/// One ROC curve to draw, with its legend text.
pub struct RocLine<'a> {
    pub label: String,
    pub curve: &'a RocCurve,
}

/// Draws `roc.png`: each curve (fpr, tpr) in its own colour with its legend (put the AUC in it)
/// and the chance diagonal.
pub fn roc_curves(path: &Path, lines: &[RocLine<'_>], title: &str) -> Result<()> {
    draw(path, ROC_SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..1.0f64, 0.0..1.0f64)?;
        chart
            .configure_mesh()
            .x_desc("false positive rate (real called fake)")
            .y_desc("true positive rate (fakes caught)")
            .label_style((FONT, 14))
            .draw()?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.4)))?;
        for (i, line) in lines.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let points = line
                .curve
                .fpr
                .iter()
                .copied()
                .zip(line.curve.tpr.iter().copied());
            chart
                .draw_series(LineSeries::new(points, colour.stroke_width(2)))?
                .label(line.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], colour.stroke_width(2))
                });
        }
        if !lines.is_empty() {
            chart
                .configure_series_labels()
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()?;
        }
        Ok(())
    })
}

/// Renders `body` on a white `size` canvas in memory and writes the PNG atomically
/// ([`dfd_layout::atomic::write_atomic`]).
fn draw(
    path: &Path,
    size: (u32, u32),
    body: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> Result<()> {
    register_font()?;
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        let drawn: DrawResult = (|| {
            root.fill(&WHITE)?;
            body(&root)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, size.0, size.1, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("encoding {}", path.display()))?;
    dfd_layout::atomic::write_atomic(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes the PNG, checks its size, and returns how many distinct colours it holds.
    fn decode(path: &Path, size: (u32, u32)) -> usize {
        let img = image::open(path).expect("decodes as an image").to_rgb8();
        assert_eq!(img.dimensions(), size, "{}", path.display());
        let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        colours.sort_unstable();
        colours.dedup();
        colours.len()
    }

    fn curve(points: &[(f64, f64)]) -> RocCurve {
        RocCurve {
            fpr: points.iter().map(|p| p.0).collect(),
            tpr: points.iter().map(|p| p.1).collect(),
            thresholds: vec![0.5; points.len()],
        }
    }

    #[test]
    fn confusion_png_has_expected_size_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.png");
        let m = ConfusionMatrix::from([[125, 67], [140, 77]]);
        confusion_matrix(&path, &m, "Confusion matrix").unwrap();
        // Four shades, black ink, white background, anti-aliased text: many colours.
        assert!(decode(&path, CONFUSION_SIZE) > 20);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn roc_png_has_expected_size_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roc.png");
        let a = curve(&[(0.0, 0.0), (0.1, 0.6), (0.4, 0.9), (1.0, 1.0)]);
        let b = curve(&[(0.0, 0.0), (0.3, 0.5), (1.0, 1.0)]);
        let lines = [
            RocLine {
                label: "fold 0 (AUC 0.850)".into(),
                curve: &a,
            },
            RocLine {
                label: "fold 1 (AUC 0.600)".into(),
                curve: &b,
            },
        ];
        roc_curves(&path, &lines, "ROC").unwrap();
        assert!(decode(&path, ROC_SIZE) > 20);
    }

    #[test]
    fn curves_png_has_expected_size_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let point = |step: f64, loss: f64, accuracy: f64| CurvePoint {
            step,
            loss,
            objective: 40.0 * loss,
            accuracy,
        };
        let folds: Vec<FoldCurves> = (0..3)
            .map(|k| FoldCurves {
                fold: k,
                train: (1..=20)
                    .map(|s| point(s as f64, 0.7 / s as f64, 0.5 + 0.02 * s as f64))
                    .collect(),
                val: (1..=4)
                    .map(|s| point(5.0 * s as f64, 0.6, 0.55 + 0.05 * s as f64))
                    .collect(),
            })
            .collect();
        training_curves(&path, &folds).unwrap();
        assert!(decode(&path, CURVES_SIZE) > 20);
    }

    #[test]
    fn a_blank_canvas_would_be_detected() {
        // The "not blank" check above is meaningful: an untouched canvas is one colour.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank.png");
        draw(&path, (64, 32), |_| Ok(())).unwrap();
        assert_eq!(decode(&path, (64, 32)), 1);
    }
}
