//! What `best` and early stopping follow.

use std::str::FromStr;

use anyhow::{bail, Result};

use crate::step::Validation;

/// A validation metric and its direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    ValAuc,
    ValAccuracy,
    ValLoss,
}

impl FromStr for Monitor {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "val_auc" => Ok(Self::ValAuc),
            "val_accuracy" => Ok(Self::ValAccuracy),
            "val_loss" => Ok(Self::ValLoss),
            other => bail!(
                "train.monitor must be `val_auc`, `val_accuracy` or `val_loss`, got `{other}`"
            ),
        }
    }
}

impl Monitor {
    /// The monitored value (`None`: AUC of a single-class validation fold).
    pub fn value(self, v: &Validation) -> Option<f64> {
        match self {
            Self::ValAuc => v.auc,
            Self::ValAccuracy => Some(v.accuracy),
            Self::ValLoss => Some(v.loss),
        }
    }

    /// Whether `new` improves on the best so far (`None`: nothing yet, so anything improves;
    /// an undefined new value never improves on a defined one).
    pub fn improves(self, new: Option<f64>, best: Option<f64>) -> bool {
        match (new, best) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(n), Some(b)) => match self {
                Self::ValLoss => n < b,
                Self::ValAuc | Self::ValAccuracy => n > b,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions() {
        assert!(Monitor::ValLoss.improves(Some(0.1), Some(0.2)));
        assert!(!Monitor::ValLoss.improves(Some(0.2), Some(0.2)));
        assert!(Monitor::ValAuc.improves(Some(0.7), Some(0.6)));
        assert!(!Monitor::ValAccuracy.improves(Some(0.5), Some(0.6)));
        assert!(Monitor::ValAuc.improves(None, None));
        assert!(!Monitor::ValAuc.improves(None, Some(0.5)));
        assert!("val_f1".parse::<Monitor>().is_err());
    }
}
