//! Learning-rate schedules: constant, step decay, cosine; linear warm-up for step and cosine.

use std::f64::consts::PI;

use anyhow::{bail, Result};
use dfd_layout::config::TrainConfig;

/// The rate at each optimiser step.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    base: f64,
    kind: Kind,
    warmup_steps: usize,
    total_steps: usize,
}

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    None,
    /// Multiply by `gamma` every `every_epochs` epochs.
    Step {
        every_epochs: usize,
        gamma: f64,
    },
    /// Half a cosine from the base rate (after warm-up) down to 0 at the last step.
    Cosine,
}

impl LrSchedule {
    /// The schedule of `train` for a run of `total_steps` optimiser steps.
    pub fn new(train: &TrainConfig, total_steps: usize) -> Result<Self> {
        let kind = match train.schedule.as_str() {
            "none" => Kind::None,
            "step" if train.step_epochs == 0 => bail!("train.step_epochs must be positive"),
            "step" => Kind::Step {
                every_epochs: train.step_epochs,
                gamma: train.gamma,
            },
            "cosine" => Kind::Cosine,
            other => bail!("train.schedule must be `none`, `step` or `cosine`, got `{other}`"),
        };
        Ok(Self {
            base: train.lr,
            kind,
            warmup_steps: train.warmup_steps,
            total_steps,
        })
    }

    /// The rate for optimiser step `step` (0-based) taken during `epoch` (0-based).
    pub fn lr(&self, step: usize, epoch: usize) -> f64 {
        if matches!(self.kind, Kind::None) {
            return self.base;
        }
        if step < self.warmup_steps {
            return self.base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            Kind::None => self.base,
            Kind::Step {
                every_epochs,
                gamma,
            } => self.base * gamma.powi((epoch / every_epochs) as i32),
            Kind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = (step - self.warmup_steps) as f64 / span as f64;
                self.base * 0.5 * (1.0 + (PI * progress.min(1.0)).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: &str, warmup: usize) -> LrSchedule {
        let train = TrainConfig {
            lr: 0.1,
            schedule: kind.into(),
            warmup_steps: warmup,
            step_epochs: 2,
            gamma: 0.5,
            ..TrainConfig::default()
        };
        LrSchedule::new(&train, 10).unwrap()
    }

    #[test]
    fn constant_ignores_warmup() {
        assert_eq!(schedule("none", 5).lr(0, 0), 0.1);
    }

    #[test]
    fn step_decays_per_epochs_after_warmup() {
        let s = schedule("step", 2);
        assert!((s.lr(0, 0) - 0.05).abs() < 1e-12);
        assert!((s.lr(1, 0) - 0.1).abs() < 1e-12);
        assert!((s.lr(5, 1) - 0.1).abs() < 1e-12);
        assert!((s.lr(6, 2) - 0.05).abs() < 1e-12);
        assert!((s.lr(9, 4) - 0.025).abs() < 1e-12);
    }

    #[test]
    fn cosine_matches_the_formula() {
        let s = schedule("cosine", 0);
        assert!((s.lr(0, 0) - 0.1).abs() < 1e-12);
        // Halfway: 0.1 · ½ · (1 + cos(π/2)) = 0.05.
        assert!((s.lr(5, 0) - 0.05).abs() < 1e-12);
        assert!(s.lr(9, 0) < 0.003);
    }

    #[test]
    fn unknown_schedule_is_named() {
        let train = TrainConfig {
            schedule: "linear".into(),
            ..TrainConfig::default()
        };
        let err = LrSchedule::new(&train, 1).unwrap_err().to_string();
        assert!(err.contains("linear"), "{err}");
    }
}
