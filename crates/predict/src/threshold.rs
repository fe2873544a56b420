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
/// from: `--threshold <x>`, `--threshold eer` (field `eer_threshold` of `<run>/eval/metrics.json`,
/// an error naming the file when it or the field is missing), or by default the run config's
/// `evaluate.threshold`.
pub fn resolve(
    arg: Option<&ThresholdArg>,
    run: &RunDir,
    config: &PipelineConfig,
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
            match metrics.get(EER_FIELD).and_then(serde_json::Value::as_f64) {
                Some(t) if t.is_finite() => Ok((t, format!("{EER_FIELD} of {}", path.display()))),
                _ => bail!("{} has no numeric top-level `{EER_FIELD}`", path.display()),
            }
        }
    }
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
        assert_eq!(resolve(None, &run, &config).unwrap().0, 0.7);
        assert_eq!(
            resolve(Some(&ThresholdArg::Value(0.2)), &run, &config)
                .unwrap()
                .0,
            0.2
        );

        let err = resolve(Some(&ThresholdArg::Eer), &run, &config).unwrap_err();
        assert!(err.to_string().contains("dfd-evaluate"), "{err}");
        std::fs::create_dir_all(run.eval()).unwrap();
        let metrics = run.eval().join(EVAL_METRICS);
        std::fs::write(&metrics, r#"{"auc": 0.9}"#).unwrap();
        let err = resolve(Some(&ThresholdArg::Eer), &run, &config).unwrap_err();
        assert!(err.to_string().contains(EER_FIELD), "{err}");
        std::fs::write(&metrics, r#"{"auc": 0.9, "eer_threshold": 0.4375}"#).unwrap();
        assert_eq!(
            resolve(Some(&ThresholdArg::Eer), &run, &config).unwrap().0,
            0.4375
        );
    }
}
