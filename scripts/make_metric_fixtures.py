#!/usr/bin/env python3
"""Reference values for the dfd-metrics tests, computed independently with scikit-learn/numpy/scipy.

Writes crates/metrics/tests/fixtures/sklearn_reference.json. Run from the repository root:

    pip install scikit-learn numpy scipy
    python3 scripts/make_metric_fixtures.py

Conventions shared with dfd-metrics (label 1 = fake = positive, scores = P(fake)):
- a sample is predicted fake when score >= threshold;
- ROC points are sklearn's roc_curve(drop_intermediate=False); its leading +inf threshold is
  written as JSON null;
- EER is the usual brentq root of 1 - x = tpr(x) with tpr linearly interpolated in fpr, and its
  threshold is that of the (non-sentinel) ROC point minimising |fnr - fpr| (first one on ties);
- percentiles use numpy's default (linear) method; std is the sample std (ddof=1).
"""

import json
import pathlib

import numpy as np
import scipy
import sklearn
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/metrics/tests/fixtures/sklearn_reference.json"
THRESHOLD = 0.5


def score_sets():
    rng = np.random.default_rng(20261130)
    sets = {}

    labels = rng.integers(0, 2, 200)
    scores = np.clip(0.5 + 0.18 * (labels - 0.5) + rng.normal(0, 0.25, 200), 0, 1)
    sets["random"] = (labels, scores)

    labels = rng.integers(0, 2, 120)
    scores = np.round(np.clip(0.45 + 0.2 * labels + rng.normal(0, 0.2, 120), 0, 1), 1)
    sets["ties"] = (labels, scores)

    labels = np.array([0] * 30 + [1] * 25)
    scores = np.concatenate([rng.uniform(0.0, 0.45, 30), rng.uniform(0.55, 1.0, 25)])
    perm = rng.permutation(len(labels))
    sets["perfect"] = (labels[perm], scores[perm])

    sets["inverted"] = (labels[perm], 1.0 - scores[perm])

    labels = np.array([0] * 180 + [1] * 20)
    scores = np.concatenate([rng.beta(2, 5, 180), rng.beta(4, 3, 20)])
    perm = rng.permutation(len(labels))
    sets["imbalanced"] = (labels[perm], scores[perm])

    # Saturated probabilities (log-loss clipping), exact-threshold scores (>= rule), all-equal runs.
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0])
    scores = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 1e-300, 1 - 1e-17, 0.25, 0.75, 0.5, 0.5])
    sets["saturated"] = (labels, scores)

    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.full(6, 0.3)
    sets["all_equal"] = (labels, scores)
    return sets


def eer(fpr, tpr, thresholds):
    value = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0, xtol=1e-15, rtol=8.9e-16)
    fnr = 1.0 - tpr
    idx = 1 + int(np.nanargmin(np.abs(fnr[1:] - fpr[1:])))
    return float(value), float(thresholds[idx])


def reference(labels, scores):
    y_pred = (scores >= THRESHOLD).astype(int)
    fpr, tpr, thr = metrics.roc_curve(labels, scores, drop_intermediate=False)
    eer_value, eer_threshold = eer(fpr, tpr, thr)
    return {
        "labels": labels.astype(int).tolist(),
        "scores": scores.astype(float).tolist(),
        "threshold": THRESHOLD,
        "accuracy": metrics.accuracy_score(labels, y_pred),
        "balanced_accuracy": metrics.balanced_accuracy_score(labels, y_pred),
        "precision": metrics.precision_score(labels, y_pred, zero_division=0),
        "recall": metrics.recall_score(labels, y_pred, zero_division=0),
        "f1": metrics.f1_score(labels, y_pred, zero_division=0),
        "confusion": metrics.confusion_matrix(labels, y_pred, labels=[0, 1]).tolist(),
        "roc_fpr": fpr.tolist(),
        "roc_tpr": tpr.tolist(),
        "roc_thresholds": [None if np.isinf(t) else float(t) for t in thr],
        "roc_auc": metrics.roc_auc_score(labels, scores),
        "average_precision": metrics.average_precision_score(labels, scores),
        "log_loss": metrics.log_loss(labels, scores, labels=[0, 1]),
        "eer": eer_value,
        "eer_threshold": eer_threshold,
    }


def summaries():
    rng = np.random.default_rng(7)
    out = []
    for n in (2, 5, 11, 400):
        values = rng.normal(0.6, 0.1, n)
        out.append(
            {
                "values": values.tolist(),
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)),
                "p2_5": float(np.percentile(values, 2.5)),
                "p97_5": float(np.percentile(values, 97.5)),
            }
        )
    return out


def main():
    doc = {
        "generator": "scripts/make_metric_fixtures.py",
        "versions": {"sklearn": sklearn.__version__, "numpy": np.__version__, "scipy": scipy.__version__},
        "score_sets": {name: reference(*pair) for name, pair in score_sets().items()},
        "summaries": summaries(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
