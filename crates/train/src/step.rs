//! One optimiser step on a batch, and a validation pass.

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use dfd_model::Head;
use rand::Rng;

use crate::data::FeatureSet;
use crate::loss::{accuracy, cross_entropy};
use crate::optim::Optimizer;

/// What a training step needs besides the batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSettings {
    /// Factor of `Σ|θ|` in the loss.
    pub l1: f32,
    /// Global gradient-norm bound (0 = no clipping).
    pub clip_grad_norm: f64,
    /// `[w_real, w_fake]` of the cross-entropy, or unweighted.
    pub class_weights: Option<[f32; 2]>,
}

/// Losses and accuracy of a training batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutput {
    /// Unweighted mean cross-entropy (what validation reports as its loss).
    pub loss: f64,
    /// What the optimiser minimised: the (class-weighted, when set) cross-entropy plus
    /// `l1_penalty`.
    pub objective: f64,
    /// `l1 · Σ|θ|` over the trainable parameters.
    pub l1_penalty: f64,
    pub accuracy: f64,
}

/// Raised when the loss is NaN or infinite: nothing was updated.
#[derive(Debug)]
pub struct NonFiniteLoss(pub f64);

impl std::fmt::Display for NonFiniteLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the training loss is {} (not finite)", self.0)
    }
}

impl std::error::Error for NonFiniteLoss {}

/// The head's trainable variables with their VarMap names, in the head's order.
pub fn named_trainable(head: &Head, varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    head.trainable_vars()
        .into_iter()
        .map(|var| {
            let id = var.as_tensor().id();
            data.iter()
                .find(|(_, v)| v.as_tensor().id() == id)
                .map(|(name, _)| (name.clone(), var.clone()))
                .context("a trainable variable of the head is not in its VarMap")
        })
        .collect()
}

/// Forward in train mode (dropout from `rng`, BN batch statistics), backward, L1, clipping and
/// one optimiser step at rate `lr`. A non-finite loss returns [`NonFiniteLoss`] before any
/// parameter is changed.
pub fn train_step(
    head: &Head,
    opt: &mut Optimizer,
    x: &Tensor,
    y: &Tensor,
    settings: &StepSettings,
    lr: f64,
    rng: &mut impl Rng,
) -> Result<StepOutput> {
    let forward = head
        .forward_train(x, rng)
        .context("training forward pass")?;
    let logits = forward.logits.clone();
    let ce = cross_entropy(&logits, y, settings.class_weights)?;
    let grads = forward.backward(&ce).context("backward pass")?;
    // Σ|θ| only matters (to the loss and its gradient) when the penalty is on.
    let abs_sum = if settings.l1 == 0.0 {
        0.0
    } else {
        opt.abs_sum()?
    };
    let ce_value = f64::from(ce.to_scalar::<f32>().context("reading the loss")?);
    let l1_penalty = f64::from(settings.l1) * abs_sum;
    let objective = ce_value + l1_penalty;
    if !objective.is_finite() {
        return Err(NonFiniteLoss(objective).into());
    }
    opt.step(&grads, settings.l1, settings.clip_grad_norm, lr)?;
    let loss = match settings.class_weights {
        None => ce_value,
        Some(_) => f64::from(cross_entropy(&logits, y, None)?.to_scalar::<f32>()?),
    };
    Ok(StepOutput {
        loss,
        objective,
        l1_penalty,
        accuracy: accuracy(&logits, y)?,
    })
}

/// Loss, accuracy, ROC AUC and equal-error-rate threshold over a validation set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Validation {
    /// Unweighted mean cross-entropy.
    pub loss: f64,
    /// Fraction with (P(fake) ≥ ½) = label.
    pub accuracy: f64,
    /// `None` when the set holds a single class.
    pub auc: Option<f64>,
    /// The P(fake) threshold at which the false-positive and false-negative rates are equal
    /// ([`dfd_metrics::eer`]); `None` when the set holds a single class.
    pub eer_threshold: Option<f64>,
}

/// Runs the head in eval mode over every row of `set`, `batch_size` rows at a time.
pub fn validate(
    head: &Head,
    set: &FeatureSet,
    batch_size: usize,
    device: &Device,
) -> Result<Validation> {
    let mut scores = Vec::with_capacity(set.len());
    let mut nll_sum = 0.0;
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(batch_size) {
        let (x, y) = set.batch(chunk, device)?;
        let logits = head.forward(&x).context("validation forward pass")?;
        let n = chunk.len() as f64;
        nll_sum += n * f64::from(cross_entropy(&logits, &y, None)?.to_scalar::<f32>()?);
        for (i, score) in dfd_model::p_fake(&logits)
            .context("validation probabilities")?
            .into_iter()
            .enumerate()
        {
            let row = chunk[i];
            scores.push(score.map_err(|e| {
                anyhow::anyhow!("validation row {row} (manifest id {}): {e}", set.ids()[row])
            })?);
        }
    }
    let labels = set.labels();
    let correct = labels
        .iter()
        .zip(&scores)
        .filter(|(&l, &s)| (s >= 0.5) == (l == 1))
        .count();
    let auc = unless_single_class(dfd_metrics::roc_auc(labels, &scores), "validation AUC")?;
    let eer = unless_single_class(dfd_metrics::eer(labels, &scores), "validation EER")?;
    Ok(Validation {
        loss: nll_sum / set.len() as f64,
        accuracy: correct as f64 / set.len() as f64,
        auc,
        eer_threshold: eer.map(|e| e.threshold),
    })
}

/// `None` for a [`dfd_metrics::MetricsError::SingleClass`] error, the value otherwise; other
/// errors are reported as failures of `what`.
fn unless_single_class<T>(result: dfd_metrics::Result<T>, what: &str) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(dfd_metrics::MetricsError::SingleClass { .. }) => Ok(None),
        Err(e) => bail!("{what}: {e}"),
    }
}
