//! dfd-train: feature shards → a trained head (or fine-tuned layer4) per fold, with
//! checkpoints that resume bit for bit, `metrics.jsonl`, early stopping and a CV summary.
//!
//! Modules: [`data`] (mmap'd rows, fold selection, seeded shuffling), [`step`] (one optimiser
//! step, validation), [`loss`], [`optim`] (Adam/AdamW as torch.optim), [`schedule`],
//! [`monitor`], [`checkpoint`], [`fold`] (the loop), [`run`] (the stage), [`cli`].

pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod fold;
pub mod loss;
pub mod monitor;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod step;
