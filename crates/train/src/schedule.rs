//! Learning-rate schedules: constant, step decay, cosine; linear warm-up for step and cosine.

use std::f64::consts::PI;

use dfd_layout::config::{ScheduleKind, TrainConfig};

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
    /// The schedule of `train` for a run of `total_steps` optimiser steps. `train` is a validated
    /// config's (`PipelineConfig::validate` makes `step_epochs` positive for the step schedule).
    pub fn new(train: &TrainConfig, total_steps: usize) -> Self {
        let kind = match train.schedule {
            ScheduleKind::None => Kind::None,
            ScheduleKind::Step => Kind::Step {
                every_epochs: train.step_epochs,
                gamma: train.gamma,
            },
            ScheduleKind::Cosine => Kind::Cosine,
        };
        Self {
            base: train.lr,
            kind,
            warmup_steps: train.warmup_steps,
            total_steps,
        }
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

    fn schedule(kind: ScheduleKind, warmup: usize) -> LrSchedule {
        let train = TrainConfig {
            lr: 0.1,
            schedule: kind,
            warmup_steps: warmup,
            step_epochs: 2,
            gamma: 0.5,
            ..TrainConfig::default()
        };
        LrSchedule::new(&train, 10)
    }

    #[test]
    fn constant_ignores_warmup() {
        assert_eq!(schedule(ScheduleKind::None, 5).lr(0, 0), 0.1);
    }

    #[test]
    fn step_decays_per_epochs_after_warmup() {
        let s = schedule(ScheduleKind::Step, 2);
        assert!((s.lr(0, 0) - 0.05).abs() < 1e-12);
        assert!((s.lr(1, 0) - 0.1).abs() < 1e-12);
        assert!((s.lr(5, 1) - 0.1).abs() < 1e-12);
        assert!((s.lr(6, 2) - 0.05).abs() < 1e-12);
        assert!((s.lr(9, 4) - 0.025).abs() < 1e-12);
    }

    #[test]
    fn cosine_matches_the_formula() {
        let s = schedule(ScheduleKind::Cosine, 0);
        assert!((s.lr(0, 0) - 0.1).abs() < 1e-12);
        // Halfway: 0.1 · ½ · (1 + cos(π/2)) = 0.05.
        assert!((s.lr(5, 0) - 0.05).abs() < 1e-12);
        assert!(s.lr(9, 0) < 0.003);
    }
}
