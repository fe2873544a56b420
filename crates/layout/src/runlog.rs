//! `metrics.jsonl`: the training log of one fold, one JSON object per line, written by train and
//! read by evaluate (curves). Each line has a `kind`: `train` (a batch) or `val` (a validation).
//!
//! ```json
//! {"kind":"train","epoch":0,"step":10,"loss":0.69,"accuracy":0.52,"lr":0.0001,"time_s":1.5}
//! {"kind":"val","epoch":0,"step":26,"loss":0.68,"accuracy":0.55,"auc":0.58,"time_s":3.1}
//! ```

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LogRecord {
    /// Loss and accuracy of one training batch (the batch that ends `step`).
    Train {
        epoch: usize,
        step: usize,
        /// Unweighted mean cross-entropy: comparable with the validation `loss`.
        loss: f64,
        /// The loss the optimiser minimised: the cross-entropy, class-weighted when
        /// `train.class_weights` is set, plus `l1_penalty` (`None` in logs of older versions,
        /// whose `loss` was this value).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        objective: Option<f64>,
        /// `train.l1 · Σ|θ|` over the trainable parameters (`None` in logs of older versions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        l1_penalty: Option<f64>,
        accuracy: f64,
        lr: f64,
        /// Seconds since the fold's training started (summed over resumed sessions).
        time_s: f64,
    },
    /// Loss, accuracy and ROC AUC on the validation fold after `step`.
    Val {
        epoch: usize,
        step: usize,
        loss: f64,
        accuracy: f64,
        /// `None` when the validation fold holds a single class.
        auc: Option<f64>,
        time_s: f64,
    },
}

/// Appends records to a log, one line each, flushed.
pub fn append(path: &Path, records: &[LogRecord]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} to append", path.display()))?;
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).expect("log records serialise");
        buf.push(b'\n');
    }
    file.write_all(&buf)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("appending to {}", path.display()))
}

/// Reads a whole log; a torn last line (a kill mid-write) is ignored.
pub fn read(path: &Path) -> Result<Vec<LogRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(r) => out.push(r),
            Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => break,
            Err(e) => {
                return Err(e).with_context(|| format!("{}: bad line {}", path.display(), i + 1))
            }
        }
    }
    Ok(out)
}

/// Keeps the first `n` records of a log (resuming from a checkpoint drops what came after it).
pub fn truncate(path: &Path, n: usize) -> Result<()> {
    let records = if path.exists() {
        read(path)?
    } else {
        Vec::new()
    };
    let mut bytes = Vec::new();
    for r in records.iter().take(n) {
        serde_json::to_writer(&mut bytes, r).expect("log records serialise");
        bytes.push(b'\n');
    }
    crate::atomic::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_train_record_reads_without_objective_and_penalty() {
        let old = r#"{"kind":"train","epoch":0,"step":5,"loss":40.2,"accuracy":0.5,"lr":0.001,"time_s":1.0}"#;
        match serde_json::from_str::<LogRecord>(old).unwrap() {
            LogRecord::Train {
                loss,
                objective,
                l1_penalty,
                ..
            } => assert_eq!((loss, objective, l1_penalty), (40.2, None, None)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn append_read_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.jsonl");
        let t = LogRecord::Train {
            epoch: 0,
            step: 1,
            loss: 0.5,
            objective: Some(0.75),
            l1_penalty: Some(0.25),
            accuracy: 1.0,
            lr: 1e-3,
            time_s: 0.1,
        };
        let v = LogRecord::Val {
            epoch: 0,
            step: 1,
            loss: 0.4,
            accuracy: 0.75,
            auc: None,
            time_s: 0.2,
        };
        append(&p, &[t.clone(), v.clone()]).unwrap();
        append(&p, std::slice::from_ref(&t)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"{\"kind\":\"tr")
            .unwrap();
        assert_eq!(read(&p).unwrap(), vec![t.clone(), v.clone(), t.clone()]);
        truncate(&p, 2).unwrap();
        assert_eq!(read(&p).unwrap(), vec![t, v]);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("{\"kind\":\"train\",\"epoch\":0,\"step\":1,"),
            "{text}"
        );
    }
}
