//! The decision threshold on P(fake): the config's, a number, or the EER threshold that
//! dfd-evaluate stored for the run.

use std::str::FromStr;

use anyhow::{bail, Context, Result};
use dfd_layout::{PipelineConfig, RunDir};

/// evaluate's summary inside the run's `eval/` directory.
pub const EVAL_METRICS: &str = "metrics.json";
/// The top-level field of [`EVAL_METRICS`] holding the equal-error-rate threshold.
pub const EER_FIELD: &str = "eer_threshold";

/// `--threshold`: a probability, or `eer`.
#[derive(Clone, Debug, PartialEq)]
pub enum ThresholdArg {
    Value(f64),
    Eer,
}

impl FromStr for ThresholdArg {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("eer") {
            return Ok(Self::Eer);
        }
        let value: f64 = s
            .parse()
            .with_context(|| format!("threshold must be a number in [0, 1] or `eer`, got `{s}`"))?;
        if !(0.0..=1.0).contains(&value) {
            bail!("threshold must be in [0, 1], got {value}");
        }
        Ok(Self::Value(value))
    }
}

/// The threshold to use (an image is `fake` when P(fake) ≥ it) and a phrase saying where it came
/// from: `--threshold <x>`; by default the run config's `evaluate.threshold`; or for
/// `--threshold eer`, from `<run>/eval/metrics.json` (dfd-evaluate's output): its top-level
/// `eer_threshold` when present, otherwise the mean over `folds` of each fold's
/// `folds[i].metrics.eer.threshold` (evaluate's per-fold EER threshold, computed on the test
/// split). A missing file, fold or field is an error naming the file.
pub fn resolve(
    arg: Option<&ThresholdArg>,
    run: &RunDir,
    config: &PipelineConfig,
    folds: &[u8],
) -> Result<(f64, String)> {
    match arg {
        None => Ok((
            config.evaluate.threshold,
            "evaluate.threshold of the run's config".into(),
        )),
        Some(ThresholdArg::Value(v)) => Ok((*v, "--threshold".into())),
        Some(ThresholdArg::Eer) => {
            let path = run.eval().join(EVAL_METRICS);
            if !path.is_file() {
                bail!("--threshold eer reads {}, which does not exist: run dfd-evaluate on this run first", path.display());
            }
            let metrics: serde_json::Value = dfd_layout::atomic::read_json(&path)?;
            if let Some(t) = metrics.get(EER_FIELD).and_then(serde_json::Value::as_f64) {
                return Ok((t, format!("{EER_FIELD} of {}", path.display())));
            }
            let thresholds = folds
                .iter()
                .map(|&k| {
                    fold_eer_threshold(&metrics, k)
                        .with_context(|| format!("reading --threshold eer from {}", path.display()))
                })
                .collect::<Result<Vec<f64>>>()?;
            let mean = thresholds.iter().sum::<f64>() / thresholds.len() as f64;
            Ok((
                mean,
                format!(
                    "mean test-split EER threshold of fold(s) {folds:?} in {}",
                    path.display()
                ),
            ))
        }
    }
}

/// `metrics.eer.threshold` of the entry of `folds` whose `fold` is `k`.
fn fold_eer_threshold(metrics: &serde_json::Value, k: u8) -> Result<f64> {
    let entries = metrics.get("folds").and_then(serde_json::Value::as_array);
    let entry = entries
        .and_then(|folds| {
            folds
                .iter()
                .find(|f| f.get("fold").and_then(serde_json::Value::as_u64) == Some(u64::from(k)))
        })
        .with_context(|| format!("no `{EER_FIELD}` and no evaluation of fold {k}"))?;
    entry
        .pointer("/metrics/eer/threshold")
        .and_then(serde_json::Value::as_f64)
        .filter(|t| t.is_finite())
        .with_context(|| format!("fold {k} has no numeric metrics.eer.threshold"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_in_the_unit_interval_and_eer() {
        assert_eq!(
            "0.3".parse::<ThresholdArg>().unwrap(),
            ThresholdArg::Value(0.3)
        );
        assert_eq!("EER".parse::<ThresholdArg>().unwrap(), ThresholdArg::Eer);
        assert!("1.5".parse::<ThresholdArg>().is_err());
        assert!("NaN".parse::<ThresholdArg>().is_err());
        assert!("half".parse::<ThresholdArg>().is_err());
    }

    #[test]
    fn resolves_config_value_flag_and_eer_from_the_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut config = PipelineConfig::default();
        config.evaluate.threshold = 0.7;
        let eer = Some(&ThresholdArg::Eer);
        assert_eq!(resolve(None, &run, &config, &[0]).unwrap().0, 0.7);
        let flag = ThresholdArg::Value(0.2);
        assert_eq!(resolve(Some(&flag), &run, &config, &[0]).unwrap().0, 0.2);

        let err = resolve(eer, &run, &config, &[0]).unwrap_err();
        assert!(err.to_string().contains("dfd-evaluate"), "{err}");
        std::fs::create_dir_all(run.eval()).unwrap();
        let metrics = run.eval().join(EVAL_METRICS);
        // dfd-evaluate's layout: one entry per fold, each with metrics.eer.{rate, threshold}.
        let fold = |k: u8, t: f64| serde_json::json!({"fold": k, "metrics": {"eer": {"rate": 0.3, "threshold": t}}});
        let folds = [fold(0, 0.25), fold(1, 0.5), fold(2, 0.125)];
        let evaluated = serde_json::json!({"threshold": 0.5, "folds": folds});
        std::fs::write(&metrics, evaluated.to_string()).unwrap();
        assert_eq!(resolve(eer, &run, &config, &[1]).unwrap().0, 0.5);
        assert_eq!(
            resolve(eer, &run, &config, &[0, 1, 2]).unwrap().0,
            0.875 / 3.0
        );
        let err = resolve(eer, &run, &config, &[0, 3]).unwrap_err();
        assert!(format!("{err:#}").contains("fold 3"), "{err:#}");
        // A top-level eer_threshold takes precedence.
        std::fs::write(&metrics, r#"{"eer_threshold": 0.4375, "folds": []}"#).unwrap();
        assert_eq!(resolve(eer, &run, &config, &[0]).unwrap().0, 0.4375);
    }
}
