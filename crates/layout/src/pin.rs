//! Pinning a run's config: `runs/<pipeline>/<run-id>/config.toml` records the resolved config the
//! run was made with, so a run directory never mixes two experiments.
//!
//! A stage pins only once the config has passed validation and the stage's own checks, so a
//! config that failed never blocks its corrected rerun. An existing pin is compared as a *parsed*
//! config (keys it lacks take their defaults), its documentation-only `[study]` section ignored: a
//! run pinned before a key with a default existed, or before its pipeline gained (or changed) its
//! `[study]` notes, is re-pinned with the current text, not refused.

use anyhow::{bail, Context, Result};

use crate::atomic::write_atomic;
use crate::config::PipelineConfig;
use crate::paths::RunDir;

/// What [`RunDir::pin_config`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    /// There was no `config.toml`: it was written.
    Written,
    /// `config.toml` already held exactly this text.
    Unchanged,
    /// `config.toml` held the same config in another text (e.g. written before a key with a
    /// default existed, or with other `[study]` notes): it was rewritten with the current
    /// resolved text.
    Repinned,
}

impl RunDir {
    /// Writes the run's `config.toml` (the resolved `config`), or checks an existing one: equal
    /// once parsed, `[study]` aside ([`PipelineConfig::settings`]) → kept (rewritten if its text
    /// differs); different → an error naming the file and the ways out. Call it only after
    /// everything that can fail on config grounds.
    pub fn pin_config(&self, config: &PipelineConfig) -> Result<Pinned> {
        let path = self.config();
        let resolved = config.to_toml()?;
        if !path.exists() {
            write_atomic(&path, resolved.as_bytes())?;
            return Ok(Pinned::Written);
        }
        let existing = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        if existing == resolved {
            return Ok(Pinned::Unchanged);
        }
        let pinned = PipelineConfig::from_toml(&existing, &path.display().to_string())
            .with_context(|| {
                format!(
                    "the run's pinned config cannot be compared with this one: use another --run-id, \
                     or delete {} to start over",
                    self.path().display()
                )
            })?;
        if pinned.settings().to_toml()? != config.settings().to_toml()? {
            bail!(
                "{} was made with a different resolved config (another pipeline file, --fold/--folds, or edited \
                 settings); refusing to mix experiments: use another --run-id, or delete {} to start over",
                path.display(),
                self.path().display()
            );
        }
        write_atomic(&path, resolved.as_bytes())?;
        tracing::info!(
            path = %path.display(),
            "re-pinned the run's config: same settings, written out with every current key and \
             the current [study] notes"
        );
        Ok(Pinned::Repinned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_dir() -> (tempfile::TempDir, RunDir) {
        let tmp = tempfile::tempdir().unwrap();
        let run = RunDir::new(tmp.path().join("runs/p/main"));
        (tmp, run)
    }

    #[test]
    fn writes_then_keeps_the_same_config() {
        let (_tmp, run) = run_dir();
        let cfg = PipelineConfig::default();
        assert_eq!(run.pin_config(&cfg).unwrap(), Pinned::Written);
        let text = std::fs::read_to_string(run.config()).unwrap();
        assert_eq!(text, cfg.to_toml().unwrap());
        assert_eq!(run.pin_config(&cfg).unwrap(), Pinned::Unchanged);
    }

    #[test]
    fn an_old_pin_without_a_defaulted_key_is_repinned() {
        let (_tmp, run) = run_dir();
        let cfg = PipelineConfig::default();
        let resolved = cfg.to_toml().unwrap();
        // As written by a version that did not know `train.monitor` (its default applies).
        let old: String = resolved
            .lines()
            .filter(|l| !l.starts_with("monitor = "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(old, resolved);
        write_atomic(&run.config(), old.as_bytes()).unwrap();
        assert_eq!(run.pin_config(&cfg).unwrap(), Pinned::Repinned);
        assert_eq!(std::fs::read_to_string(run.config()).unwrap(), resolved);
    }

    fn with_study(accuracy: f64) -> PipelineConfig {
        let mut cfg = PipelineConfig::default();
        cfg.study.experiment = Some("exp. 2".into());
        cfg.study.test_accuracy = Some(accuracy);
        cfg
    }

    #[test]
    fn a_pin_from_before_the_study_notes_is_repinned_with_them() {
        let (_tmp, run) = run_dir();
        run.pin_config(&PipelineConfig::default()).unwrap();
        let cfg = with_study(0.677);
        assert_eq!(run.pin_config(&cfg).unwrap(), Pinned::Repinned);
        let text = std::fs::read_to_string(run.config()).unwrap();
        assert_eq!(text, cfg.to_toml().unwrap());
        assert!(text.contains("[study]"), "{text}");
        assert_eq!(run.pin_config(&cfg).unwrap(), Pinned::Unchanged);
    }

    #[test]
    fn other_study_notes_or_none_never_refuse_a_run() {
        let (_tmp, run) = run_dir();
        run.pin_config(&with_study(0.677)).unwrap();
        assert_eq!(
            run.pin_config(&with_study(0.653)).unwrap(),
            Pinned::Repinned
        );
        let cfg = PipelineConfig::default();
        assert_eq!(run.pin_config(&cfg).unwrap(), Pinned::Repinned);
        assert_eq!(
            std::fs::read_to_string(run.config()).unwrap(),
            cfg.to_toml().unwrap()
        );
        let mut other = with_study(0.677);
        other.train.lr = 0.5;
        let err = format!("{:#}", run.pin_config(&other).unwrap_err());
        assert!(err.contains("different resolved config"), "{err}");
    }

    #[test]
    fn a_different_config_is_refused_and_left_alone() {
        let (_tmp, run) = run_dir();
        let cfg = PipelineConfig::default();
        run.pin_config(&cfg).unwrap();
        let before = std::fs::read_to_string(run.config()).unwrap();
        let mut other = cfg.clone();
        other.train.lr = 0.5;
        let err = format!("{:#}", run.pin_config(&other).unwrap_err());
        assert!(err.contains("different resolved config"), "{err}");
        assert!(err.contains("--run-id"), "{err}");
        assert_eq!(std::fs::read_to_string(run.config()).unwrap(), before);
    }

    #[test]
    fn another_device_is_the_same_experiment() {
        let (_tmp, run) = run_dir();
        let cfg = PipelineConfig::default();
        run.pin_config(&cfg).unwrap();
        let mut on_gpu = cfg.clone();
        on_gpu.extract.device = "cuda:1".parse().unwrap();
        assert_eq!(run.pin_config(&on_gpu).unwrap(), Pinned::Repinned);
        assert_eq!(on_gpu.settings(), cfg.settings());
    }

    #[test]
    fn an_unreadable_pin_is_refused_with_the_way_out() {
        let (_tmp, run) = run_dir();
        write_atomic(&run.config(), b"[train]\noptimizer = \"sgd\"\n").unwrap();
        let err = format!(
            "{:#}",
            run.pin_config(&PipelineConfig::default()).unwrap_err()
        );
        assert!(err.contains("train.optimizer"), "{err}");
        assert!(err.contains("--run-id"), "{err}");
    }

    #[test]
    fn a_config_that_fails_validation_never_pins() {
        let (tmp, run) = run_dir();
        let bad = tmp.path().join("p.toml");
        std::fs::write(&bad, "[train]\noptimizer = \"sgd\"\n").unwrap();
        let args = crate::cli::CommonArgs {
            config: bad,
            data_dir: tmp.path().to_path_buf(),
            run_id: "main".into(),
        };
        assert!(args.load().is_err());
        assert!(!run.config().exists());
        assert!(!run.path().exists());
    }
}
