//! The decision threshold on P(fake): the config's, a number, or the equal-error-rate threshold
//! dfd-train measured on each fold's validation split.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use dfd_layout::{PipelineConfig, RunDir};

/// The loop state dfd-train writes into every checkpoint directory.
pub const CHECKPOINT_STATE: &str = "state.json";
/// JSON pointer, inside [`CHECKPOINT_STATE`], to the best model's validation EER threshold.
pub const VAL_EER_POINTER: &str = "/best/val_eer_threshold";

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
/// `--threshold eer`, one threshold for the whole fold ensemble: the mean over `folds` of each
/// fold's validation EER threshold, `best.val_eer_threshold` in
/// `<run>/fold<k>/checkpoints/<tag>/state.json` (written by dfd-train; the test split is never
/// looked at). A missing file or value is an error naming the file.
pub fn resolve(
    arg: Option<&ThresholdArg>,
    run: &RunDir,
    config: &PipelineConfig,
    folds: &[u8],
    tag: &str,
) -> Result<(f64, String)> {
    match arg {
        None => Ok((
            config.evaluate.threshold,
            "evaluate.threshold of the run's config".into(),
        )),
        Some(ThresholdArg::Value(v)) => Ok((*v, "--threshold".into())),
        Some(ThresholdArg::Eer) => {
            let thresholds = folds
                .iter()
                .map(|&k| val_eer_threshold(&run.fold(k).checkpoint(tag).join(CHECKPOINT_STATE)))
                .collect::<Result<Vec<f64>>>()?;
            if thresholds.is_empty() {
                bail!("--threshold eer needs at least one fold");
            }
            let mean = thresholds.iter().sum::<f64>() / thresholds.len() as f64;
            Ok((
                mean,
                format!("mean validation EER threshold of fold(s) {folds:?}, checkpoint `{tag}`"),
            ))
        }
    }
}

/// [`VAL_EER_POINTER`] of the checkpoint state at `path`.
fn val_eer_threshold(path: &Path) -> Result<f64> {
    if !path.is_file() {
        bail!(
            "--threshold eer reads {}, which does not exist: train this fold first",
            path.display()
        );
    }
    let state: serde_json::Value = dfd_layout::atomic::read_json(path).with_context(|| {
        format!(
            "reading the validation EER threshold from {}",
            path.display()
        )
    })?;
    state
        .pointer(VAL_EER_POINTER)
        .and_then(serde_json::Value::as_f64)
        .filter(|t| t.is_finite())
        .with_context(|| {
            format!(
                "{} has no numeric best.val_eer_threshold: train this run with a version that \
                 records it, or the fold's validation split holds a single class",
                path.display()
            )
        })
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

    /// Writes `state` as fold `k`'s checkpoint `tag` state.json.
    fn write_state(run: &RunDir, k: u8, tag: &str, state: &serde_json::Value) {
        let dir = run.fold(k).checkpoint(tag);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CHECKPOINT_STATE), state.to_string()).unwrap();
    }

    #[test]
    fn resolves_config_value_flag_and_eer_from_the_validation() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut config = PipelineConfig::default();
        config.evaluate.threshold = 0.7;
        let eer = Some(&ThresholdArg::Eer);
        assert_eq!(resolve(None, &run, &config, &[0], "best").unwrap().0, 0.7);
        let flag = ThresholdArg::Value(0.2);
        let flagged = resolve(Some(&flag), &run, &config, &[0], "best").unwrap();
        assert_eq!(flagged.0, 0.2);

        let err = resolve(eer, &run, &config, &[0], "best").unwrap_err();
        assert!(format!("{err:#}").contains("state.json"), "{err:#}");
        // dfd-train's layout: the loop state with `best` (val_* of the best validation).
        let best = |t: f64| serde_json::json!({"step": 9, "best": {"epoch": 1, "val_auc": 0.8, "val_eer_threshold": t}});
        write_state(&run, 0, "best", &best(0.25));
        write_state(&run, 1, "best", &best(0.5));
        write_state(&run, 2, "best", &best(0.125));
        write_state(&run, 1, "last", &best(0.75));
        assert_eq!(resolve(eer, &run, &config, &[1], "best").unwrap().0, 0.5);
        assert_eq!(resolve(eer, &run, &config, &[1], "last").unwrap().0, 0.75);
        let mean = resolve(eer, &run, &config, &[0, 1, 2], "best").unwrap().0;
        assert_eq!(mean, 0.875 / 3.0);
        let err = resolve(eer, &run, &config, &[0, 3], "best").unwrap_err();
        assert!(format!("{err:#}").contains("fold3"), "{err:#}");

        // Written before the threshold was recorded, or a single-class validation fold.
        write_state(
            &run,
            3,
            "best",
            &serde_json::json!({"best": {"val_eer_threshold": null}}),
        );
        let err = resolve(eer, &run, &config, &[0, 3], "best").unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("fold3") && message.contains("val_eer_threshold"),
            "{message}"
        );
        write_state(&run, 4, "best", &serde_json::json!({"best": null}));
        assert!(resolve(eer, &run, &config, &[4], "best").is_err());
    }
}
