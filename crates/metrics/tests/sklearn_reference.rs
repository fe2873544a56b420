//! Every metric against scikit-learn/numpy values committed in `fixtures/sklearn_reference.json`
//! (made by `scripts/make_metric_fixtures.py`).

use dfd_metrics::{
    average_precision, bootstrap, eer, log_loss, mean_std, percentile, roc_auc, roc_curve,
    BinaryReport, BootstrapConfig, Class, ConfusionMatrix, MetricsError,
};
use serde::Deserialize;

const TOL: f64 = 1e-12;

#[derive(Deserialize)]
struct Fixture {
    score_sets: std::collections::BTreeMap<String, ScoreSet>,
    summaries: Vec<Summary>,
}

#[derive(Deserialize)]
struct ScoreSet {
    labels: Vec<u8>,
    scores: Vec<f64>,
    threshold: f64,
    accuracy: f64,
    balanced_accuracy: f64,
    precision: f64,
    recall: f64,
    f1: f64,
    confusion: [[u64; 2]; 2],
    roc_fpr: Vec<f64>,
    roc_tpr: Vec<f64>,
    roc_thresholds: Vec<Option<f64>>,
    roc_auc: f64,
    average_precision: f64,
    log_loss: f64,
    eer: f64,
    eer_threshold: f64,
}

#[derive(Deserialize)]
struct Summary {
    values: Vec<f64>,
    mean: f64,
    std: f64,
    p2_5: f64,
    p97_5: f64,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/sklearn_reference.json");
    serde_json::from_str(text).expect("fixture parses")
}

#[track_caller]
fn close(name: &str, what: &str, got: f64, want: f64, tol: f64) {
    assert!(
        (got - want).abs() <= tol,
        "{name}: {what} = {got}, scikit-learn says {want}"
    );
}

#[track_caller]
fn close_all(name: &str, what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (g, w) in got.iter().zip(want) {
        close(name, what, *g, *w, TOL);
    }
}

#[test]
fn fixture_covers_the_required_score_sets() {
    let f = fixture();
    for name in [
        "random",
        "ties",
        "perfect",
        "inverted",
        "imbalanced",
        "saturated",
        "all_equal",
    ] {
        assert!(f.score_sets.contains_key(name), "missing score set {name}");
    }
}

#[test]
fn threshold_metrics_match_sklearn() {
    for (name, s) in fixture().score_sets {
        let m = ConfusionMatrix::at_threshold(&s.labels, &s.scores, s.threshold).unwrap();
        assert_eq!(<[[u64; 2]; 2]>::from(m), s.confusion, "{name}: confusion");
        close(&name, "accuracy", m.accuracy(), s.accuracy, TOL);
        close(
            &name,
            "balanced accuracy",
            m.balanced_accuracy(),
            s.balanced_accuracy,
            TOL,
        );
        close(&name, "precision", m.precision(), s.precision, TOL);
        close(&name, "recall", m.recall(), s.recall, TOL);
        close(&name, "f1", m.f1(), s.f1, TOL);
    }
}

#[test]
fn roc_curve_and_auc_match_sklearn() {
    for (name, s) in fixture().score_sets {
        let roc = roc_curve(&s.labels, &s.scores).unwrap();
        close_all(&name, "fpr", &roc.fpr, &s.roc_fpr);
        close_all(&name, "tpr", &roc.tpr, &s.roc_tpr);
        let want: Vec<f64> = s
            .roc_thresholds
            .iter()
            .map(|t| t.unwrap_or(f64::INFINITY))
            .collect();
        assert_eq!(roc.thresholds, want, "{name}: thresholds");
        close(
            &name,
            "ROC AUC",
            roc_auc(&s.labels, &s.scores).unwrap(),
            s.roc_auc,
            TOL,
        );
    }
}

#[test]
fn eer_matches_interpolated_reference() {
    for (name, s) in fixture().score_sets {
        let e = eer(&s.labels, &s.scores).unwrap();
        // brentq stops within ~1e-15 of the root; allow a little more.
        close(&name, "EER", e.rate, s.eer, 1e-9);
        assert_eq!(e.threshold, s.eer_threshold, "{name}: EER threshold");
    }
}

#[test]
fn average_precision_and_log_loss_match_sklearn() {
    for (name, s) in fixture().score_sets {
        let ap = average_precision(&s.labels, &s.scores).unwrap();
        close(&name, "average precision", ap, s.average_precision, TOL);
        let ll = log_loss(&s.labels, &s.scores).unwrap();
        close(&name, "log loss", ll, s.log_loss, TOL);
    }
}

#[test]
fn report_gathers_the_same_values() {
    for (name, s) in fixture().score_sets {
        let r = BinaryReport::compute(&s.labels, &s.scores, s.threshold, None).unwrap();
        assert_eq!(r.n, s.labels.len() as u64, "{name}");
        assert_eq!(
            r.n_fake,
            s.labels.iter().filter(|&&y| y == 1).count() as u64,
            "{name}"
        );
        assert_eq!(r.n_real + r.n_fake, r.n, "{name}");
        close(&name, "report accuracy", r.accuracy, s.accuracy, TOL);
        close(&name, "report AUC", r.roc_auc, s.roc_auc, TOL);
        close(
            &name,
            "report AP",
            r.average_precision,
            s.average_precision,
            TOL,
        );
        close(&name, "report log loss", r.log_loss, s.log_loss, TOL);
        close(&name, "report EER", r.eer.rate, s.eer, 1e-9);
        let json = serde_json::to_string(&r).unwrap();
        let back: BinaryReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r, "{name}: JSON round trip");
    }
}

#[test]
fn mean_std_and_percentiles_match_numpy() {
    for s in fixture().summaries {
        let ms = mean_std(&s.values).unwrap();
        assert_eq!(ms.n, s.values.len());
        close("summary", "mean", ms.mean, s.mean, TOL);
        close("summary", "std", ms.std.unwrap(), s.std, TOL);
        close(
            "summary",
            "p2.5",
            percentile(&s.values, 2.5).unwrap(),
            s.p2_5,
            TOL,
        );
        close(
            "summary",
            "p97.5",
            percentile(&s.values, 97.5).unwrap(),
            s.p97_5,
            TOL,
        );
    }
    assert_eq!(mean_std(&[0.7]).unwrap().std, None);
}

#[test]
fn single_class_is_a_clear_error() {
    let labels = [1u8, 1, 1];
    let scores = [0.2, 0.6, 0.9];
    let expected = |metric| MetricsError::SingleClass {
        metric,
        present: Class::Fake,
        count: 3,
    };
    assert_eq!(roc_auc(&labels, &scores), Err(expected("ROC AUC")));
    assert_eq!(eer(&labels, &scores), Err(expected("EER")));
    assert_eq!(
        average_precision(&labels, &scores),
        Err(expected("average precision"))
    );
    assert_eq!(roc_curve(&labels, &scores), Err(expected("ROC curve")));
    let err = BinaryReport::compute(&[0, 0], &[0.1, 0.2], 0.5, None).unwrap_err();
    assert!(err.to_string().contains("all 2 samples are real"), "{err}");
    // Threshold metrics and log loss stay defined on one class.
    assert!(log_loss(&labels, &scores).unwrap().is_finite());
}

#[test]
fn invalid_input_is_rejected() {
    assert_eq!(
        roc_auc(&[0, 1], &[0.5]),
        Err(MetricsError::LengthMismatch {
            labels: 2,
            scores: 1
        })
    );
    assert_eq!(
        roc_auc(&[], &[]),
        Err(MetricsError::Empty { metric: "ROC AUC" })
    );
    assert_eq!(
        roc_auc(&[0, 2], &[0.1, 0.2]),
        Err(MetricsError::InvalidLabel { index: 1, value: 2 })
    );
    assert!(matches!(
        roc_auc(&[0, 1], &[0.1, f64::NAN]),
        Err(MetricsError::NonFinite { index: 1, .. })
    ));
    assert_eq!(
        log_loss(&[0, 1], &[0.1, 1.5]),
        Err(MetricsError::NotAProbability {
            index: 1,
            value: 1.5
        })
    );
}

#[test]
fn bootstrap_is_reproducible_and_sane() {
    let s = fixture().score_sets.remove("random").unwrap();
    let config = BootstrapConfig {
        resamples: 500,
        seed: 42,
        ..Default::default()
    };
    let a = bootstrap(&s.labels, &s.scores, &config).unwrap();
    let b = bootstrap(&s.labels, &s.scores, &config).unwrap();
    assert_eq!(a, b, "same seed, same intervals");
    let c = bootstrap(
        &s.labels,
        &s.scores,
        &BootstrapConfig { seed: 43, ..config },
    )
    .unwrap();
    assert_ne!(a.roc_auc, c.roc_auc, "another seed gives other resamples");
    assert_eq!(a.used + a.skipped_single_class, 500);
    assert!(
        a.accuracy.contains(s.accuracy),
        "{:?} vs {}",
        a.accuracy,
        s.accuracy
    );
    assert!(
        a.roc_auc.contains(s.roc_auc),
        "{:?} vs {}",
        a.roc_auc,
        s.roc_auc
    );
    // 200 samples: the intervals are a few points wide, not degenerate nor everything.
    for iv in [a.accuracy, a.roc_auc] {
        let width = iv.upper - iv.lower;
        assert!((0.02..0.3).contains(&width), "width {width} of {iv:?}");
    }
}

#[test]
fn bootstrap_counts_single_class_resamples() {
    // One fake among 30: about (29/30)^30 ≈ 36 % of resamples miss it.
    let mut labels = vec![0u8; 29];
    labels.push(1);
    let scores: Vec<f64> = (0..30).map(|i| i as f64 / 30.0).collect();
    let config = BootstrapConfig {
        resamples: 400,
        seed: 1,
        ..Default::default()
    };
    let b = bootstrap(&labels, &scores, &config).unwrap();
    assert_eq!(b.used + b.skipped_single_class, 400);
    assert!(
        (100..190).contains(&b.skipped_single_class),
        "{}",
        b.skipped_single_class
    );
    // The lone fake scores highest: every usable resample ranks perfectly.
    assert_eq!((b.roc_auc.lower, b.roc_auc.upper), (1.0, 1.0));
}
