//! Threshold-free ranking metrics: ROC curve, ROC AUC, equal error rate, average precision.

use serde::{Deserialize, Serialize};

use crate::curve::{descending_order, operating_points, trapezoid_auc, OperatingPoint, SENTINEL};
use crate::input::{validate, ClassCounts};
use crate::Result;

/// Points of the ROC curve, as sklearn's `roc_curve(labels, scores, drop_intermediate=False)`:
/// one point per distinct score in decreasing order, preceded by the point `(0, 0)` whose
/// threshold is `+inf`. `fpr[i]`/`tpr[i]` are the rates when predicting fake for
/// `score >= thresholds[i]`. Unlike sklearn's default, collinear intermediate points are **not**
/// dropped (the area and the EER are unaffected).
///
/// In JSON the leading `+inf` threshold is written as `null` (JSON has no infinity) and read back
/// as `+inf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    pub fpr: Vec<f64>,
    pub tpr: Vec<f64>,
    #[serde(with = "infinite_as_null")]
    pub thresholds: Vec<f64>,
}

/// The equal error rate: where the false-positive rate equals the false-negative rate (1 − tpr).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eer {
    /// The common error rate at the crossing of `fpr` and `fnr`, with both rates linearly
    /// interpolated between the two ROC points that bracket the crossing (the usual
    /// `brentq(lambda x: 1 - x - interp1d(fpr, tpr)(x), 0, 1)` definition).
    pub rate: f64,
    /// Threshold of the ROC point (excluding the `+inf` sentinel) that minimises
    /// `|fnr − fpr|`, the first such point on ties; use it as `score >= threshold`.
    pub threshold: f64,
}

/// Validates, requires both classes, and sweeps the thresholds.
fn sweep(
    metric: &'static str,
    labels: &[u8],
    scores: &[f64],
) -> Result<(ClassCounts, Vec<OperatingPoint>)> {
    let counts = validate(metric, labels, scores)?.require_both(metric)?;
    let points = operating_points(&descending_order(scores), labels, scores, |_| 1);
    Ok((counts, points))
}

/// The ROC curve (see [`RocCurve`]). Errors on invalid input or a single class.
pub fn roc_curve(labels: &[u8], scores: &[f64]) -> Result<RocCurve> {
    let (counts, points) = sweep("ROC curve", labels, scores)?;
    let (neg, pos) = (counts.real as f64, counts.fake as f64);
    let all = std::iter::once(SENTINEL).chain(points);
    let (mut fpr, mut tpr, mut thresholds) = (Vec::new(), Vec::new(), Vec::new());
    for p in all {
        fpr.push(p.fp as f64 / neg);
        tpr.push(p.tp as f64 / pos);
        thresholds.push(p.threshold);
    }
    Ok(RocCurve {
        fpr,
        tpr,
        thresholds,
    })
}

/// Area under the ROC curve (trapezoid rule; equal to the Mann-Whitney probability that a fake
/// scores above a real, ties counted 1/2). Errors on invalid input or a single class.
pub fn roc_auc(labels: &[u8], scores: &[f64]) -> Result<f64> {
    let (counts, points) = sweep("ROC AUC", labels, scores)?;
    Ok(trapezoid_auc(&points, counts.real, counts.fake))
}

/// The equal error rate and its threshold (see [`Eer`]). Errors on invalid input or a single
/// class.
pub fn eer(labels: &[u8], scores: &[f64]) -> Result<Eer> {
    let (counts, points) = sweep("EER", labels, scores)?;
    let (neg, pos) = (counts.real as f64, counts.fake as f64);
    let rates = |p: &OperatingPoint| (p.fp as f64 / neg, 1.0 - p.tp as f64 / pos);
    // gap = fnr − fpr falls from 1 at the sentinel (0, 0) to −1 at the last point (1, 1).
    let gap = |p: &OperatingPoint| {
        let (fpr, fnr) = rates(p);
        fnr - fpr
    };
    let best = points
        .iter()
        .min_by(|a, b| gap(a).abs().total_cmp(&gap(b).abs()))
        .expect("two classes give at least one point");
    let crossing = points
        .iter()
        .position(|p| gap(p) <= 0.0)
        .expect("the last point has gap -1");
    let before = if crossing == 0 {
        &SENTINEL
    } else {
        &points[crossing - 1]
    };
    let after = &points[crossing];
    let (g0, g1) = (gap(before), gap(after));
    let t = if g0 == g1 { 0.0 } else { g0 / (g0 - g1) };
    let ((fpr0, _), (fpr1, _)) = (rates(before), rates(after));
    Ok(Eer {
        rate: fpr0 + t * (fpr1 - fpr0),
        threshold: best.threshold,
    })
}

/// Average precision, sklearn's step-wise `Σ (Rₙ − Rₙ₋₁) Pₙ` over the distinct thresholds (not
/// the trapezoid area under the precision-recall curve). Errors on invalid input or a single
/// class.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Result<f64> {
    let (counts, points) = sweep("average precision", labels, scores)?;
    let mut prev_tp = 0;
    let mut sum = 0.0;
    for p in &points {
        let precision = p.tp as f64 / (p.tp + p.fp) as f64;
        sum += (p.tp - prev_tp) as f64 * precision;
        prev_tp = p.tp;
    }
    Ok(sum / counts.fake as f64)
}

/// Serde adapter: non-finite floats ↔ JSON `null` (read back as `+inf`).
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let opt: Vec<Option<f64>> = values.iter().map(|v| v.is_finite().then_some(*v)).collect();
        opt.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let opt = Vec::<Option<f64>>::deserialize(d)?;
        Ok(opt
            .into_iter()
            .map(|v| v.unwrap_or(f64::INFINITY))
            .collect())
    }
}
