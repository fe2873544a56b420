//! The decision threshold on P(fake): the config's, a number, or the equal-error-rate threshold
//! dfd-train measured on each fold's validation split.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_STATE};
use dfd_layout::{PipelineConfig, RunDir};
use dfd_model::BundleMeta;

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

/// [`resolve`] for a model file of dfd-export: its recorded `threshold` by default, or for `eer`
/// the mean of the recorded validation EER thresholds of the folds used (`fold`, or all).
pub fn from_model(
    arg: Option<&ThresholdArg>,
    meta: &BundleMeta,
    fold: Option<u8>,
) -> Result<(f64, String)> {
    match arg {
        None => Ok((
            meta.threshold,
            "evaluate.threshold recorded in the model file".into(),
        )),
        Some(ThresholdArg::Value(v)) => Ok((*v, "--threshold".into())),
        Some(ThresholdArg::Eer) => {
            let thresholds = meta
                .folds
                .iter()
                .zip(&meta.eer_thresholds)
                .filter(|(k, _)| fold.is_none_or(|f| f == **k))
                .map(|(k, t)| {
                    t.with_context(|| {
                        format!("the model file records no validation EER threshold for fold {k}")
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            Ok((
                mean_of(&thresholds)?,
                "mean validation EER threshold recorded in the model file".into(),
            ))
        }
    }
}

/// The one threshold of a fold ensemble: the mean of its folds' EER thresholds.
fn mean_of(thresholds: &[f64]) -> Result<f64> {
    if thresholds.is_empty() {
        bail!("--threshold eer needs at least one fold");
    }
    Ok(thresholds.iter().sum::<f64>() / thresholds.len() as f64)
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
                .map(|&k| val_eer_threshold(&run.fold(k).checkpoint(tag)))
                .collect::<Result<Vec<f64>>>()?;
            Ok((
                mean_of(&thresholds)?,
                format!(
                    "mean validation EER threshold of fold(s) {}, checkpoint `{tag}`",
                    dfd_layout::cli::list(folds)
                ),
            ))
        }
    }
}

/// `best.val_eer_threshold` of the state of the checkpoint in `dir`.
fn val_eer_threshold(dir: &Path) -> Result<f64> {
    let path = dir.join(CHECKPOINT_STATE);
    let checkpoint = Checkpoint::read(dir)
        .with_context(|| {
            format!(
                "reading the validation EER threshold from {}",
                path.display()
            )
        })?
        .with_context(|| {
            format!(
                "--threshold eer reads {}, which does not exist: train this fold first",
                path.display()
            )
        })?;
    checkpoint
        .state()
        .best
        .as_ref()
        .and_then(|b| b.val_eer_threshold)
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
    use dfd_layout::checkpoint::{Best, TrainState, CHECKPOINT_HEAD, CHECKPOINT_WEIGHTS};

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

    /// Writes fold `k`'s checkpoint `tag` state.json, with `best` of threshold `eer` (none: no
    /// best; NaN: no threshold recorded).
    fn write_state(run: &RunDir, k: u8, tag: &str, eer: Option<f64>) {
        let dir = run.fold(k).checkpoint(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let state = TrainState {
            best: eer.map(|t| Best {
                epoch: 1,
                step: 9,
                val_loss: 0.5,
                val_accuracy: 0.7,
                val_auc: Some(0.8),
                val_eer_threshold: (!t.is_nan()).then_some(t),
            }),
            ..TrainState::start(k, Vec::new(), None)
        };
        std::fs::write(dir.join(CHECKPOINT_WEIGHTS), b"w").unwrap();
        std::fs::write(dir.join(CHECKPOINT_HEAD), b"{}").unwrap();
        dfd_layout::checkpoint::write_state(&dir, &state).unwrap();
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
        write_state(&run, 0, "best", Some(0.25));
        write_state(&run, 1, "best", Some(0.5));
        write_state(&run, 2, "best", Some(0.125));
        write_state(&run, 1, "last", Some(0.75));
        assert_eq!(resolve(eer, &run, &config, &[1], "best").unwrap().0, 0.5);
        assert_eq!(resolve(eer, &run, &config, &[1], "last").unwrap().0, 0.75);
        let mean = resolve(eer, &run, &config, &[0, 1, 2], "best").unwrap().0;
        assert_eq!(mean, 0.875 / 3.0);
        let err = resolve(eer, &run, &config, &[0, 3], "best").unwrap_err();
        assert!(format!("{err:#}").contains("fold3"), "{err:#}");

        // Written before the threshold was recorded, or a single-class validation fold.
        write_state(&run, 3, "best", Some(f64::NAN));
        let err = resolve(eer, &run, &config, &[0, 3], "best").unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("fold3") && message.contains("val_eer_threshold"),
            "{message}"
        );
        write_state(&run, 4, "best", None);
        assert!(resolve(eer, &run, &config, &[4], "best").is_err());
    }
}
