//! Command-line flags of `dfd-train`.

use std::time::Duration;

use clap::Parser;
use dfd_layout::cli::{CommonArgs, DeviceArg};
use dfd_layout::config::{AllFolds, FoldChoice};

/// Train a head (or fine-tune layer4) on cached feature shards.
///
/// Reads `features/<dataset>/<backbone>/s<S>-<cut>/train/a<k>/` and the manifest; writes
/// `runs/<pipeline>/<run-id>/{config.toml, fold<k>/…, cv_summary.json, stages/train.done}`.
/// Rerunning the same command after a kill resumes from the last checkpoint; on a finished run
/// it does nothing. The test split is never opened.
#[derive(Parser, Debug)]
#[command(name = "dfd-train", version)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Validate on this fold and train on the others (overrides `train.fold`).
    #[arg(long, conflicts_with = "folds")]
    pub fold: Option<u8>,
    /// `all`: k-fold cross-validation, a fresh model per fold (overrides `train.fold`).
    #[arg(long, value_parser = ["all"])]
    pub folds: Option<String>,
    /// Milliseconds to sleep after every step (for kill-and-resume tests).
    #[arg(long, default_value_t = 0, hide = true)]
    pub throttle_ms: u64,
}

impl Cli {
    /// The fold choice given on the command line, if any.
    pub fn fold_override(&self) -> Option<FoldChoice> {
        match (&self.fold, &self.folds) {
            (Some(k), _) => Some(FoldChoice::One(*k)),
            (None, Some(_)) => Some(FoldChoice::All(AllFolds::All)),
            (None, None) => None,
        }
    }

    /// This stage's command line for the same pipeline, data, run and folds: what a checkpoint
    /// that fails verification names as the way to rebuild it.
    pub fn command(&self) -> String {
        let mut line = self.common.command("dfd-train", true);
        if let Some(k) = self.fold {
            line.push_str(&format!(" --fold {k}"));
        }
        if self.folds.is_some() {
            line.push_str(" --folds all");
        }
        line
    }

    pub fn throttle(&self) -> Duration {
        Duration::from_millis(self.throttle_ms)
    }
}
