//! The value `best` and early stopping follow: the config's typed `train.monitor` read off a
//! validation (its direction is [`Monitor::improves`]).

pub use dfd_layout::config::Monitor;

use crate::step::Validation;

/// The monitored value of `v` (`None`: AUC of a single-class validation fold).
pub fn value(monitor: Monitor, v: &Validation) -> Option<f64> {
    match monitor {
        Monitor::ValAuc => v.auc,
        Monitor::ValAccuracy => Some(v.accuracy),
        Monitor::ValLoss => Some(v.loss),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_named_metric() {
        let v = Validation {
            loss: 0.3,
            accuracy: 0.8,
            auc: None,
            eer_threshold: None,
        };
        assert_eq!(value(Monitor::ValLoss, &v), Some(0.3));
        assert_eq!(value(Monitor::ValAccuracy, &v), Some(0.8));
        assert_eq!(value(Monitor::ValAuc, &v), None);
    }
}
