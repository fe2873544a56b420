//! The threshold sweep shared by the ROC and precision-recall metrics.

/// Cumulative counts when predicting fake for every sample with `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct OperatingPoint {
    pub threshold: f64,
    /// Weighted count of real samples scored `>= threshold`.
    pub fp: u64,
    /// Weighted count of fake samples scored `>= threshold`.
    pub tp: u64,
}

/// The point `(0, 0)` at threshold `+inf` that starts every ROC curve.
pub(crate) const SENTINEL: OperatingPoint = OperatingPoint {
    threshold: f64::INFINITY,
    fp: 0,
    tp: 0,
};

/// Indices of `scores` ordered by decreasing score (stable, so equal scores keep input order).
pub(crate) fn descending_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// One operating point per distinct score, from the highest score down, like sklearn's
/// `_binary_clf_curve`: tied scores enter together. `weight(i)` is how many times sample `i`
/// counts (1 normally, its multiplicity in a bootstrap resample); zero-weight samples are
/// skipped entirely. `0.0` and `-0.0` are one score.
pub(crate) fn operating_points(
    order: &[usize],
    labels: &[u8],
    scores: &[f64],
    weight: impl Fn(usize) -> u64,
) -> Vec<OperatingPoint> {
    let mut points: Vec<OperatingPoint> = Vec::new();
    let (mut fp, mut tp) = (0, 0);
    for &i in order {
        let w = weight(i);
        if w == 0 {
            continue;
        }
        if points.last().is_none_or(|last| last.threshold != scores[i]) {
            points.push(OperatingPoint {
                threshold: scores[i],
                fp,
                tp,
            });
        }
        if labels[i] == 1 {
            tp += w;
        } else {
            fp += w;
        }
        let last = points.last_mut().expect("a point was pushed above");
        (last.fp, last.tp) = (fp, tp);
    }
    points
}

/// Area under the ROC curve through `(0, 0)` and `points`, by the trapezoid rule, computed
/// exactly in integers (`Σ Δfp · (tp + tp_prev)`) and divided once by `2 · negatives · positives`.
/// Equals the Mann-Whitney U statistic with ties counted one half.
pub(crate) fn trapezoid_auc(points: &[OperatingPoint], negatives: u64, positives: u64) -> f64 {
    let (mut prev_fp, mut prev_tp, mut twice_area) = (0u64, 0u64, 0u128);
    for p in points {
        twice_area += u128::from(p.fp - prev_fp) * u128::from(p.tp + prev_tp);
        (prev_fp, prev_tp) = (p.fp, p.tp);
    }
    twice_area as f64 / (2.0 * negatives as f64 * positives as f64)
}
