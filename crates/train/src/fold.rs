//! Training one fold: a fresh seeded head, the epoch loop, logging, validation, checkpoints,
//! early stopping, resume.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use dfd_layout::atomic::{read_json, write_json_atomic};
use dfd_layout::checkpoint::{Best, Checkpoint, TrainState};
use dfd_layout::config::{ArchName, HeadKind, TrainConfig};
use dfd_layout::runlog::{self, LogRecord};
use dfd_layout::{FoldDir, PipelineConfig};
use dfd_model::{init_layer4_from, Arch, Cut, Head, HeadSpec, ResolvedWeights};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Found};
use crate::data::FoldData;
use crate::loss::class_weights;
use crate::monitor::{self, Monitor};
use crate::optim::{AdamConfig, Optimizer};
use crate::schedule::LrSchedule;
use crate::step::{named_trainable, train_step, validate, NonFiniteLoss, StepSettings, Validation};

/// What `complete.json` of a finished fold holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FoldSummary {
    pub fold: u8,
    pub best: Option<Best>,
    pub steps: usize,
    pub stopped_early: bool,
    pub elapsed_s: f64,
}

/// The head `train.head` describes for feature rows of `row_shape` (of a backbone `arch`).
pub fn head_spec(train: &TrainConfig, arch: ArchName, row_shape: &[usize]) -> Result<HeadSpec> {
    let input: usize = row_shape.iter().product();
    let dropout = train.dropout as f32;
    Ok(match train.head {
        HeadKind::Mlp => HeadSpec::Mlp {
            input,
            hidden: train.hidden.clone(),
            dropout,
        },
        HeadKind::Linear => HeadSpec::Linear { input, dropout },
        HeadKind::FinetuneLayer4 => {
            let arch: Arch = arch.as_str().parse()?;
            let channels = arch.channels(Cut::Layer3);
            ensure!(
                row_shape.len() == 3 && row_shape[0] == channels,
                "train.head = \"finetune-layer4\" needs layer3 maps ({channels}×H×W; extract.cut = \"layer3\"), \
                 but the features have rows of shape {row_shape:?}"
            );
            HeadSpec::FinetuneLayer4 { arch, dropout }
        }
    })
}

/// The head every fold of a run trains, settled before the run is pinned: its spec and, for
/// `finetune-layer4`, the backbone weights (`extract.weights`) its layer4 starts from.
pub struct HeadPlan {
    spec: HeadSpec,
    layer4: Option<ResolvedWeights>,
}

impl HeadPlan {
    /// The head of `cfg` for feature rows of `row_shape`; a `finetune-layer4` head keeps the
    /// backbone `weights` its layer4 starts from.
    pub fn new(
        cfg: &PipelineConfig,
        row_shape: &[usize],
        weights: ResolvedWeights,
    ) -> Result<Self> {
        let spec = head_spec(&cfg.train, cfg.extract.arch, row_shape)?;
        let layer4 = match spec {
            HeadSpec::FinetuneLayer4 { .. } => Some(weights),
            _ => None,
        };
        Ok(Self { spec, layer4 })
    }
}

/// A freshly initialised head: Linear layers from `stream(seed, "init", [fold])`, layer4 (for
/// `finetune-layer4`) from the plan's backbone weights. Returns the head, its VarMap and the
/// identity of the layer4 weights.
pub fn init_head(
    cfg: &PipelineConfig,
    plan: &HeadPlan,
    fold: u8,
    device: &Device,
) -> Result<(Head, VarMap, Option<String>)> {
    let spec = &plan.spec;
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
    let seed: u64 = dfd_layout::rng::stream(cfg.seed, "init", &[u64::from(fold)]).random();
    let head = Head::new_seeded(spec, vb, seed).with_context(|| format!("building head {spec}"))?;
    let identity = match (spec, &plan.layer4) {
        (HeadSpec::FinetuneLayer4 { arch, .. }, Some(weights)) => {
            init_layer4_from(&varmap, weights, arch)?;
            Some(weights.identity.clone())
        }
        _ => None,
    };
    Ok((head, varmap, identity))
}

/// The optimiser `train` describes.
pub fn adam_config(train: &TrainConfig) -> AdamConfig {
    AdamConfig {
        kind: train.optimizer,
        betas: train.betas,
        eps: train.eps,
        weight_decay: train.weight_decay,
    }
}

/// Reads a finished fold's summary, if `complete.json` exists and the checkpoints it vouches
/// for pass verification (`last`, and `best` when the summary has one): a fold whose checkpoint
/// fails is not complete, and is retrained (`rebuild` is this stage's command, for the log).
pub fn completed(dir: &FoldDir, rebuild: &str) -> Result<Option<FoldSummary>> {
    let path = dir.complete_marker();
    if !path.exists() {
        return Ok(None);
    }
    let summary: FoldSummary = read_json(&path)?;
    let mut tags = vec!["last"];
    if summary.best.is_some() {
        tags.push("best");
    }
    for tag in tags {
        match checkpoint::inspect(dir, tag, rebuild) {
            Found::Intact(_) => {}
            Found::Missing => {
                tracing::warn!(
                    "{} is marked complete but has no checkpoint `{tag}`: retraining it",
                    dir.path().display()
                );
                return Ok(None);
            }
            Found::Failed(e) => {
                tracing::warn!("fold marked complete, but {e:#}: retraining it");
                return Ok(None);
            }
        }
    }
    Ok(Some(summary))
}

/// One fold's training job.
pub struct FoldJob<'a> {
    pub cfg: &'a PipelineConfig,
    pub dir: FoldDir,
    pub data: FoldData,
    pub head: &'a HeadPlan,
    pub device: Device,
    /// Sleep after each step (tests use it to kill a run mid-training).
    pub throttle: Duration,
    /// The command that retrains this fold, named when a checkpoint fails verification.
    pub rebuild: String,
}

/// The model and optimiser being trained, with everything fixed for the fold.
struct Trainer<'a> {
    job: &'a FoldJob<'a>,
    spec: HeadSpec,
    head: Head,
    varmap: VarMap,
    opt: Optimizer,
    schedule: LrSchedule,
    monitor: Monitor,
    settings: StepSettings,
    batches_per_epoch: usize,
    total_steps: usize,
}

impl FoldJob<'_> {
    /// Trains the fold to the end (or early stop), resuming from `checkpoints/last` if present,
    /// and writes `complete.json`.
    pub fn run(&self) -> Result<FoldSummary> {
        let train = &self.cfg.train;
        let fold = self.data.fold;
        let spec = self.head.spec.clone();
        let (head, mut varmap, weights_identity) =
            init_head(self.cfg, self.head, fold, &self.device)?;
        let mut opt = Optimizer::new(adam_config(train), named_trainable(&head, &varmap)?)?;
        let batches_per_epoch = self.data.batches_per_epoch(train.batch_size);
        let total_steps = train.epochs * batches_per_epoch;
        let log = self.dir.metrics();
        let state = match self.resume_point()? {
            Some(last) => {
                self.check_resumable(last.state(), &weights_identity)?;
                checkpoint::restore(&last, &mut varmap, &mut opt)?;
                let state = last.into_state();
                tracing::info!(
                    fold,
                    step = state.step,
                    epoch = state.epoch,
                    "resuming from checkpoints/last"
                );
                state
            }
            None => TrainState::start(fold, self.data.sources.clone(), weights_identity),
        };
        std::fs::create_dir_all(self.dir.path())
            .with_context(|| format!("creating {}", self.dir.path().display()))?;
        runlog::truncate(&log, state.records)?;
        tracing::info!(
            fold,
            train_rows = self.data.train.len(),
            val_rows = self.data.val.len(),
            steps = total_steps,
            head = %spec,
            "training"
        );
        let mut trainer = Trainer {
            job: self,
            settings: StepSettings {
                l1: train.l1 as f32,
                clip_grad_norm: train.clip_grad_norm,
                class_weights: class_weights(&train.class_weights, self.data.train.labels())?,
            },
            schedule: LrSchedule::new(train, total_steps),
            monitor: train.monitor,
            spec,
            head,
            varmap,
            opt,
            batches_per_epoch,
            total_steps,
        };
        let state = trainer.train(state, &log)?;
        let summary = FoldSummary {
            fold,
            stopped_early: trainer.stopped_early(&state),
            best: state.best,
            steps: state.step,
            elapsed_s: state.elapsed_s,
        };
        write_json_atomic(&self.dir.complete_marker(), &summary)?;
        Ok(summary)
    }

    /// The verified `last` checkpoint to resume from (`None`: train from scratch), after
    /// repairing what fails verification so that the fold still ends bit-identical to an
    /// uninterrupted run. Every save of `best` is followed by a save of `last` from the same state,
    /// so a checkpoint of either tag at step s holds the bytes the other held (or would have held)
    /// at step s:
    /// - `last` failed or missing, `best` intact: `best` is copied to `last`, and training resumes
    ///   from there (a resume from any saved step replays the rest exactly);
    /// - `last` intact, `best` failed or missing although `last` records one: if that best is
    ///   `last`'s own step, `last` is copied to `best`; otherwise nothing on disk holds those
    ///   weights, and the fold is retrained from scratch;
    /// - `best` failed and `last` records no best yet: `best` was written after `last` and will be
    ///   written again, so it is removed;
    /// - both failed: retrained from scratch.
    fn resume_point(&self) -> Result<Option<Checkpoint>> {
        for tag in ["last", "best"] {
            checkpoint::recover(&self.dir, tag)?;
        }
        let last = checkpoint::inspect(&self.dir, "last", &self.rebuild);
        let best = checkpoint::inspect(&self.dir, "best", &self.rebuild);
        match (last, best) {
            (Found::Intact(last), Found::Intact(_)) => Ok(Some(last)),
            (Found::Missing, Found::Missing) => Ok(None),
            (Found::Intact(last), best) => self.repair_best(last, best),
            (last, Found::Intact(best)) => {
                if let Found::Failed(e) = last {
                    tracing::warn!("{e:#}: resuming from `best`, saved at a step `last` also held");
                }
                checkpoint::copy(&self.dir, &best, "last")?;
                Checkpoint::open(&self.dir.checkpoint("last"), &self.rebuild).map(Some)
            }
            (Found::Failed(e), _) | (_, Found::Failed(e)) => {
                tracing::warn!("{e:#}: no intact checkpoint to resume from; retraining the fold");
                self.start_over()
            }
        }
    }

    /// [`FoldJob::resume_point`] when `last` is intact and `best` is missing or failed.
    fn repair_best(&self, last: Checkpoint, best: Found) -> Result<Option<Checkpoint>> {
        let best_dir = self.dir.checkpoint("best");
        let problem = match best {
            Found::Failed(e) => format!("{e:#}"),
            _ => match &last.state().best {
                None => return Ok(Some(last)),
                Some(_) => format!(
                    "{} is missing although {} records a best step",
                    best_dir.display(),
                    last.dir().display()
                ),
            },
        };
        match &last.state().best {
            None => {
                tracing::warn!("{problem}: removing it (it is saved again when reached)");
                remove_dir(&best_dir)?;
                Ok(Some(last))
            }
            Some(b) if b.step == last.state().step => {
                tracing::warn!("{problem}: restoring it from `last`, saved at the same step");
                checkpoint::copy(&self.dir, &last, "best")?;
                Ok(Some(last))
            }
            Some(_) => {
                tracing::warn!("{problem}: its weights are held nowhere else; retraining the fold");
                self.start_over()
            }
        }
    }

    /// Removes both checkpoints and the completion marker: the fold trains from step 0 (the log
    /// is truncated to no records).
    fn start_over(&self) -> Result<Option<Checkpoint>> {
        for tag in ["last", "best"] {
            remove_dir(&self.dir.checkpoint(tag))?;
        }
        let marker = self.dir.complete_marker();
        if marker.exists() {
            std::fs::remove_file(&marker)
                .with_context(|| format!("removing {}", marker.display()))?;
        }
        Ok(None)
    }

    /// Refuses to resume a checkpoint made from other features or other layer4 weights.
    fn check_resumable(&self, state: &TrainState, weights_identity: &Option<String>) -> Result<()> {
        ensure!(
            state.sources == self.data.sources && &state.weights_identity == weights_identity,
            "{} was made from other features or weights ({:?}, {:?}) than now ({:?}, {:?}); \
             refusing to resume: delete {} or use another --run-id",
            self.dir.checkpoint("last").display(),
            state.sources,
            state.weights_identity,
            self.data.sources,
            weights_identity,
            self.dir.path().display()
        );
        Ok(())
    }
}

/// Removes directory `dir` if it exists.
fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

impl Trainer<'_> {
    fn stopped_early(&self, state: &TrainState) -> bool {
        let patience = self.job.cfg.train.patience;
        patience > 0 && state.bad_validations >= patience
    }

    /// The epoch loop from `state` to the end; returns the final state.
    fn train(&mut self, mut state: TrainState, log: &Path) -> Result<TrainState> {
        let job = self.job;
        let train = &job.cfg.train;
        let (seed, fold) = (job.cfg.seed, job.data.fold);
        let bar = dfd_layout::cli::progress(self.total_steps as u64, "step");
        bar.set_message(format!("fold {fold}"));
        bar.set_position(state.step as u64);
        let session = Instant::now();
        let elapsed_before = state.elapsed_s;
        while state.step < self.total_steps && !self.stopped_early(&state) {
            let epoch = state.step / self.batches_per_epoch;
            let batches = job.data.epoch_batches(seed, epoch, train.batch_size);
            for batch in &batches[state.step % self.batches_per_epoch..] {
                let lr = self.schedule.lr(state.step, epoch);
                let (x, y) = job.data.train.batch(batch, &job.device)?;
                let mut rng =
                    dfd_layout::rng::stream(seed, "dropout", &[u64::from(fold), state.step as u64]);
                let out = train_step(&self.head, &mut self.opt, &x, &y, &self.settings, lr, &mut rng)
                    .map_err(|e| match e.downcast_ref::<NonFiniteLoss>() {
                        Some(bad) => anyhow::anyhow!(
                            "fold {fold}: {bad} at epoch {epoch}, step {}; stopping. The last good checkpoint \
                             is kept in {} (try a lower train.lr or set train.clip_grad_norm)",
                            state.step + 1,
                            job.dir.checkpoint("last").display()
                        ),
                        None => e,
                    })?;
                state.step += 1;
                state.elapsed_s = elapsed_before + session.elapsed().as_secs_f64();
                if train.log_every > 0 && state.step.is_multiple_of(train.log_every) {
                    let record = LogRecord::Train {
                        epoch,
                        step: state.step,
                        loss: out.loss,
                        objective: Some(out.objective),
                        l1_penalty: Some(out.l1_penalty),
                        accuracy: out.accuracy,
                        lr,
                        time_s: state.elapsed_s,
                    };
                    self.append(log, &mut state, record)?;
                    bar.set_message(format!("fold {fold} loss {:.4}", out.loss));
                }
                let end_of_epoch = state.step.is_multiple_of(self.batches_per_epoch);
                let validate_now = match train.eval_every {
                    0 => end_of_epoch,
                    n => state.step.is_multiple_of(n) || state.step == self.total_steps,
                };
                state.epoch = state.step / self.batches_per_epoch;
                if validate_now {
                    self.validate(log, &mut state, epoch)?;
                }
                if validate_now || end_of_epoch {
                    self.save("last", &state)?;
                }
                bar.set_position(state.step as u64);
                if !job.throttle.is_zero() {
                    std::thread::sleep(job.throttle);
                }
                if self.stopped_early(&state) {
                    tracing::info!(
                        fold,
                        step = state.step,
                        "early stop: no improvement in {} validations",
                        train.patience
                    );
                    break;
                }
            }
        }
        bar.finish_and_clear();
        Ok(state)
    }

    /// Validates, logs, and updates `best` (saving its checkpoint) and the patience counter.
    fn validate(&mut self, log: &Path, state: &mut TrainState, epoch: usize) -> Result<()> {
        let job = self.job;
        let v: Validation = validate(
            &self.head,
            &job.data.val,
            job.cfg.train.batch_size,
            &job.device,
        )?;
        let record = LogRecord::Val {
            epoch,
            step: state.step,
            loss: v.loss,
            accuracy: v.accuracy,
            auc: v.auc,
            time_s: state.elapsed_s,
        };
        self.append(log, state, record)?;
        tracing::info!(fold = job.data.fold, epoch, step = state.step, val_loss = v.loss, val_accuracy = v.accuracy, val_auc = %dfd_layout::cli::plain(v.auc), "validation");
        let best_value = state.best.as_ref().map(|b| {
            monitor::value(
                self.monitor,
                &Validation {
                    loss: b.val_loss,
                    accuracy: b.val_accuracy,
                    auc: b.val_auc,
                    eer_threshold: b.val_eer_threshold,
                },
            )
        });
        if self
            .monitor
            .improves(monitor::value(self.monitor, &v), best_value.flatten())
        {
            state.best = Some(Best {
                epoch,
                step: state.step,
                val_loss: v.loss,
                val_accuracy: v.accuracy,
                val_auc: v.auc,
                val_eer_threshold: v.eer_threshold,
            });
            state.bad_validations = 0;
            self.save("best", state)?;
        } else {
            state.bad_validations += 1;
        }
        Ok(())
    }

    fn append(&self, log: &Path, state: &mut TrainState, record: LogRecord) -> Result<()> {
        runlog::append(log, &[record])?;
        state.records += 1;
        Ok(())
    }

    fn save(&self, tag: &str, state: &TrainState) -> Result<()> {
        checkpoint::save(
            &self.job.dir,
            tag,
            &self.varmap,
            &self.spec,
            &self.opt,
            state,
        )
    }
}
