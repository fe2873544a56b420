//! The trained model of a run, ready to score images: the frozen backbone and the heads of the
//! chosen folds, with Grad-CAM.
//!
//! Several folds (a cross-validation run) form an ensemble: P(fake) is the mean of the folds'
//! P(fake), and the heatmap the mean of the folds' Grad-CAM maps (each in [0, 1], so the mean is
//! too).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dfd_layout::checkpoint::{Checkpoint, CHECKPOINT_WEIGHTS};
use dfd_layout::config::ComputeType;
use dfd_layout::shards::trained_identity;
use dfd_layout::{PipelineConfig, RunDir};
use dfd_model::{
    resolve_weights, with_compute, Arch, Backbone, BnMode, Cut, Head, HeadSpec, Linear, ResLayer,
    Score, WeightsSource, NUM_OUTPUTS,
};

use crate::gradcam::{self, Explained};

/// A head read from a checkpoint, with the file it came from (for error messages).
pub struct LoadedHead {
    pub origin: PathBuf,
    pub head: Head,
    pub varmap: VarMap,
    /// The first feature directory the head was trained on (from `state.json`).
    pub trained_on: Option<PathBuf>,
}

impl LoadedHead {
    /// Reads `head.json` and `model.safetensors` from a checkpoint directory onto `device`,
    /// after checking them against the checksums in its `state.json` (`rebuild`: the command
    /// that retrains it, named when one fails).
    pub fn read(dir: &Path, device: &Device, rebuild: &str) -> Result<Self> {
        let checkpoint = Checkpoint::open(dir, rebuild)?;
        let spec: HeadSpec = checkpoint.head_spec()?;
        let origin = checkpoint.file(CHECKPOINT_WEIGHTS);
        let (head, varmap) = Head::load(&spec, &origin, device)?;
        let trained_on = checkpoint.state().sources.first().map(|s| s.dir.clone());
        Ok(Self {
            origin,
            head,
            varmap,
            trained_on,
        })
    }
}

/// Refuses a head trained on features of other backbone weights than `identity` (the weights
/// identity in its training features' `index.json`). When those features are gone the check
/// cannot be made: that is logged.
fn same_backbone(head: &LoadedHead, identity: &str) -> Result<()> {
    let Some(dir) = &head.trained_on else {
        return Ok(());
    };
    let Some(trained) = trained_identity(dir, &head.origin.display().to_string()) else {
        return Ok(());
    };
    if trained != identity {
        bail!(
            "the backbone weights now configured have identity {identity}, but {} was trained on \
             features of weights {trained} ({}): its scores would be meaningless. Restore the \
             weights the run was made with, or re-extract and retrain",
            head.origin.display(),
            dir.display()
        );
    }
    Ok(())
}

/// The `dfd-train` command that retrains the run at `run` (`<data>/runs/<pipeline>/<run-id>`),
/// assuming the pipeline file is `pipelines/<pipeline>.toml` as in this repository.
pub fn retrain_command(run: &Path) -> String {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned())
    };
    let pipeline = run.parent();
    let data = pipeline.and_then(Path::parent).and_then(Path::parent);
    format!(
        "dfd-train --config pipelines/{}.toml --data-dir {} --run-id {}",
        name(pipeline),
        data.map_or_else(|| "?".into(), |d| d.display().to_string()),
        name(Some(run))
    )
}

/// Per-image outputs of [`Predictor::explain`].
pub struct Explanation {
    /// P(fake) per image (the fold ensemble), or why the model could not score it.
    pub p_fake: Vec<Score>,
    /// One Grad-CAM map per image, row-major `size.0 × size.1`, values in [0, 1].
    pub cams: Vec<Vec<f32>>,
    /// (h, w) of the maps: the resolution of the explained activation.
    pub size: (usize, usize),
}

/// Backbone plus the folds' heads.
pub struct Predictor {
    backbone: Backbone,
    members: Members,
    /// The arithmetic of the backbone and of the heads (`extract.compute`, `train.compute`).
    compute: (ComputeType, ComputeType),
}

enum Members {
    /// `mlp` / `linear` heads over the backbone's features at `cut`.
    Classifier { cut: Cut, heads: Vec<Head> },
    /// `finetune_layer4` heads over layer3 maps, each kept as a frozen copy of its layer4 and fc.
    Finetune(Vec<FinetuneTail>),
}

/// The inference form of a fine-tuned layer4 head: BatchNorm folded, no variables.
struct FinetuneTail {
    layer4: ResLayer,
    fc: Linear,
}

impl FinetuneTail {
    /// Rebuilds layer4 (eval-mode BatchNorm) and fc from the head's variables.
    fn from_varmap(varmap: &VarMap, arch: &Arch, device: &Device) -> Result<Self> {
        let tensors = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("head VarMap lock poisoned"))?
            .iter()
            .map(|(name, var)| (name.clone(), var.as_detached_tensor()))
            .collect();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let layer4 = ResLayer::new(&vb.pp("layer4"), arch, 3, BnMode::Frozen)?;
        let channels = arch.channels(Cut::Pooled);
        // The training head's own Linear (`dfd_ops::linear`), so the scores are computed as
        // evaluate computes them, in `train.compute`.
        let fc = Linear::new(
            vb.get((NUM_OUTPUTS, channels), "fc.weight")?,
            vb.get(NUM_OUTPUTS, "fc.bias")?,
        );
        Ok(Self { layer4, fc })
    }

    /// Logits from this head's layer4 output: average pool, then fc.
    fn logits(&self, layer4: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(&layer4.mean((2, 3))?)
    }
}

impl Predictor {
    /// Loads the run's backbone (`extract.arch`, `extract.weights`) and, for each fold of `folds`,
    /// the verified head in `fold<k>/checkpoints/<checkpoint>/` (see [`LoadedHead::read`]).
    pub fn load(
        run: &RunDir,
        config: &PipelineConfig,
        folds: &[u8],
        checkpoint: &str,
        device: &Device,
    ) -> Result<Self> {
        let rebuild = retrain_command(run.path());
        let extract = &config.extract;
        let arch: Arch = extract
            .arch
            .as_str()
            .parse()
            .context("reading extract.arch of the run's config")?;
        let cut: Cut = extract
            .cut
            .as_str()
            .parse()
            .context("reading extract.cut of the run's config")?;
        let source = WeightsSource::from_config(extract.weights.as_str(), run.data_root())
            .context("reading the run's config")?;
        let weights = resolve_weights(&source, &arch)
            .with_context(|| format!("finding backbone weights {source}"))?;
        let backbone = Backbone::load(&arch, &weights, device, DType::F32)
            .with_context(|| format!("loading backbone {} from {source}", extract.arch))?;
        let heads = folds
            .iter()
            .map(|&k| {
                let dir = run.fold(k).checkpoint(checkpoint);
                LoadedHead::read(&dir, device, &rebuild)
                    .with_context(|| format!("loading fold {k}'s head from {}", dir.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        for head in &heads {
            same_backbone(head, &weights.identity)?;
        }
        let predictor = Self::new(
            backbone,
            cut,
            config.preprocess.size as usize,
            heads,
            device,
        )?;
        Ok(predictor.computing(config.extract.compute, config.train.compute))
    }

    /// This predictor with its backbone computing in `backbone` and its heads in `heads` (both
    /// `f32` unless set; a bundle records no compute type, so it predicts in f32).
    pub fn computing(self, backbone: ComputeType, heads: ComputeType) -> Self {
        Self {
            compute: (backbone, heads),
            ..self
        }
    }

    /// The model of a dfd-export file (`path`, read into `bundle`): its backbone and the head of
    /// `fold` (or of every fold it holds).
    pub fn from_bundle(
        bundle: dfd_model::Bundle,
        path: &Path,
        fold: Option<u8>,
        device: &Device,
    ) -> Result<Self> {
        let meta = &bundle.meta;
        let arch = meta.arch()?;
        let cut: Cut = meta.cut.parse()?;
        if let Some(k) = fold.filter(|k| !meta.folds.contains(k)) {
            bail!(
                "{} holds fold(s) {}, not fold {k}",
                path.display(),
                dfd_layout::cli::list(&meta.folds)
            );
        }
        let backbone = Backbone::load(&arch, &bundle.weights, device, DType::F32)
            .with_context(|| format!("loading the backbone of {}", path.display()))?;
        let heads = bundle
            .heads
            .into_iter()
            .filter(|(k, _, _)| fold.is_none_or(|f| f == *k))
            .map(|(k, head, varmap)| LoadedHead {
                origin: PathBuf::from(format!("{} (fold {k})", path.display())),
                head,
                varmap,
                trained_on: None,
            })
            .collect();
        Self::new(backbone, cut, meta.input_size, heads, device)
    }

    /// Checks that every head fits the backbone's features (`cut` of `size`-pixel images) and that
    /// all heads are of one kind.
    pub fn new(
        backbone: Backbone,
        cut: Cut,
        size: usize,
        heads: Vec<LoadedHead>,
        device: &Device,
    ) -> Result<Self> {
        let Some(first) = heads.first() else {
            bail!("no head to predict with")
        };
        let members = match first.head.spec() {
            HeadSpec::FinetuneLayer4 { .. } => {
                if cut != Cut::Layer3 {
                    bail!("a finetune_layer4 head runs on layer3 maps, but the run's extract.cut is `{cut}`");
                }
                let tails = heads
                    .iter()
                    .map(|h| match h.head.spec() {
                        HeadSpec::FinetuneLayer4 { arch, .. } if arch == backbone.arch() => {
                            FinetuneTail::from_varmap(&h.varmap, arch, device).with_context(|| {
                                format!("rebuilding layer4 from {}", h.origin.display())
                            })
                        }
                        HeadSpec::FinetuneLayer4 { arch, .. } => bail!(
                            "head {} fine-tunes layer4 of {arch}, but the backbone is {}",
                            h.origin.display(),
                            backbone.arch()
                        ),
                        other => bail!(
                            "heads of one run must be of one kind: {} is {other}",
                            h.origin.display()
                        ),
                    })
                    .collect::<Result<_>>()?;
                Members::Finetune(tails)
            }
            HeadSpec::Mlp { .. } | HeadSpec::Linear { .. } => {
                let features: usize = cut.feature_shape(backbone.arch(), size).iter().product();
                for h in &heads {
                    match h.head.spec() {
                        HeadSpec::Mlp { input, .. } | HeadSpec::Linear { input, .. } if *input == features => {}
                        HeadSpec::Mlp { input, .. } | HeadSpec::Linear { input, .. } => bail!(
                            "head {} takes {input} inputs, but the backbone's `{cut}` features of {size}-px images have {features}",
                            h.origin.display()
                        ),
                        other => bail!("heads of one run must be of one kind: {} is {other}", h.origin.display()),
                    }
                }
                Members::Classifier {
                    cut,
                    heads: heads.into_iter().map(|h| h.head).collect(),
                }
            }
        };
        Ok(Self {
            backbone,
            members,
            compute: (ComputeType::F32, ComputeType::F32),
        })
    }

    /// The activation Grad-CAM explains: layer4 for pooled features and fine-tuned layer4 heads
    /// (the head's own layer4), otherwise the feature maps the head reads (e.g. layer3 for a
    /// linear head on flattened layer3). An error for features that are not maps (`logits`).
    pub fn heatmap_layer(&self) -> Result<Cut> {
        match &self.members {
            Members::Finetune(_)
            | Members::Classifier {
                cut: Cut::Pooled, ..
            } => Ok(Cut::Layer4),
            Members::Classifier {
                cut: Cut::Logits, ..
            } => {
                bail!("--heatmaps needs convolutional features; this run's heads read the backbone's logits")
            }
            Members::Classifier { cut, .. } => Ok(*cut),
        }
    }

    /// P(fake) per image of a normalised batch N×3×S×S: the fold ensemble
    /// ([`dfd_model::ensemble`] of each head's [`dfd_model::p_fake`]: [`Head::p_fake`] for
    /// classifier heads).
    pub fn p_fake(&self, x: &Tensor) -> Result<Vec<Score>> {
        let (backbone, heads) = self.compute;
        let per_head = match &self.members {
            Members::Classifier {
                cut,
                heads: members,
            } => {
                let features = with_compute(backbone, || self.backbone.forward_to(x, *cut))?;
                with_compute(heads, || {
                    members
                        .iter()
                        .map(|h| h.p_fake(&features))
                        .collect::<candle_core::Result<Vec<_>>>()
                })?
            }
            Members::Finetune(tails) => {
                let layer3 = with_compute(backbone, || self.backbone.forward_to(x, Cut::Layer3))?;
                with_compute(heads, || {
                    tails
                        .iter()
                        .map(|t| {
                            dfd_model::p_fake(&t.logits(&t.layer4.forward_t(&layer3, false)?)?)
                        })
                        .collect::<candle_core::Result<Vec<_>>>()
                })?
            }
        };
        Ok(dfd_model::ensemble(&per_head))
    }

    /// P(fake) as [`Predictor::p_fake`] gives it, and a Grad-CAM map per image over
    /// [`Predictor::heatmap_layer`].
    pub fn explain(&self, x: &Tensor) -> Result<Explanation> {
        let (backbone, heads) = self.compute;
        let per_head: Vec<Explained> = match &self.members {
            Members::Classifier {
                cut,
                heads: members,
            } => {
                let layer = self.heatmap_layer()?;
                let maps = with_compute(backbone, || self.backbone.forward_to(x, layer))?;
                let pooled = *cut == Cut::Pooled;
                with_compute(heads, || {
                    members
                        .iter()
                        .map(|h| {
                            gradcam::explain(&maps, |a| {
                                h.forward(&if pooled { a.mean((2, 3))? } else { a.clone() })
                            })
                        })
                        .collect::<candle_core::Result<_>>()
                })?
            }
            Members::Finetune(tails) => {
                let layer3 = with_compute(backbone, || self.backbone.forward_to(x, Cut::Layer3))?;
                with_compute(heads, || {
                    tails
                        .iter()
                        .map(|t| {
                            gradcam::explain(&t.layer4.forward_t(&layer3, false)?, |a| t.logits(a))
                        })
                        .collect::<candle_core::Result<_>>()
                })?
            }
        };
        let p_fake = dfd_model::ensemble(
            &per_head
                .iter()
                .map(|e| dfd_model::p_fake(&e.logits))
                .collect::<candle_core::Result<Vec<_>>>()?,
        );
        let cam = mean(&per_head.iter().map(|e| e.cam.clone()).collect::<Vec<_>>())?;
        let (_, h, w) = cam.dims3()?;
        let cams = cam.flatten_from(1)?.to_vec2()?;
        Ok(Explanation {
            p_fake,
            cams,
            size: (h, w),
        })
    }
}

/// Element-wise mean of equally shaped tensors.
fn mean(tensors: &[Tensor]) -> candle_core::Result<Tensor> {
    Tensor::stack(tensors, 0)?.mean(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfd_model::{init_layer4_from, ResolvedWeights};

    const SIZE: usize = 64;

    fn small_arch() -> Arch {
        Arch {
            blocks: [1, 1, 1, 1],
            groups: 8,
            width_per_group: 4,
            num_classes: 5,
        }
    }

    fn backbone(seed: u64) -> Backbone {
        let weights = ResolvedWeights::random(seed);
        Backbone::load(&small_arch(), &weights, &Device::Cpu, DType::F32).unwrap()
    }

    fn head(spec: &HeadSpec, seed: u64) -> LoadedHead {
        let varmap = VarMap::new();
        let head = Head::new_seeded(
            spec,
            VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
            seed,
        )
        .unwrap();
        if let HeadSpec::FinetuneLayer4 { arch, .. } = spec {
            let weights = ResolvedWeights::random(seed + 100);
            init_layer4_from(&varmap, &weights, arch).unwrap();
        }
        LoadedHead {
            origin: PathBuf::from(format!("head-{seed}")),
            head,
            varmap,
            trained_on: None,
        }
    }

    fn images(n: usize) -> Tensor {
        let values: Vec<f32> = (0..n * 3 * SIZE * SIZE)
            .map(|i| ((i * 7919) % 997) as f32 / 400.0 - 1.2)
            .collect();
        Tensor::from_vec(values, (n, 3, SIZE, SIZE), &Device::Cpu).unwrap()
    }

    /// A model file written from a backbone and heads scores exactly as they do, for every head
    /// kind and for a fold ensemble.
    #[test]
    fn a_model_file_scores_as_the_run_it_was_exported_from() {
        let pooled = HeadSpec::Mlp {
            input: 2048,
            hidden: vec![16],
            dropout: 0.5,
        };
        let linear = HeadSpec::Linear {
            input: 1024 * 4 * 4,
            dropout: 0.5,
        };
        let finetune = HeadSpec::FinetuneLayer4 {
            arch: small_arch(),
            dropout: 0.5,
        };
        let dir = tempfile::tempdir().unwrap();
        let x = images(3);
        let cases = [
            (Cut::Pooled, vec![(0, &pooled, 1), (1, &pooled, 2)]),
            (Cut::Layer3, vec![(0, &linear, 4)]),
            (Cut::Layer3, vec![(2, &finetune, 3)]),
        ];
        for (n, (cut, heads)) in cases.into_iter().enumerate() {
            let loaded: Vec<LoadedHead> = heads.iter().map(|(_, s, seed)| head(s, *seed)).collect();
            let meta = dfd_model::BundleMeta {
                arch: serde_json::to_string(&small_arch()).unwrap(),
                cut: cut.to_string(),
                input_size: SIZE,
                folds: heads.iter().map(|(k, _, _)| *k).collect(),
                heads: heads.iter().map(|(_, s, _)| (*s).clone()).collect(),
                threshold: 0.5,
                eer_thresholds: vec![Some(0.4); heads.len()],
                weights_identity: "random:7".into(),
                pretrained: false,
                pipeline: String::new(),
                checkpoint: "best".into(),
            };
            let path = dir.path().join(format!("model-{n}.safetensors"));
            let varmaps: Vec<&VarMap> = loaded.iter().map(|h| &h.varmap).collect();
            dfd_model::write_bundle(
                &path,
                &small_arch(),
                &ResolvedWeights::random(7),
                &varmaps,
                &meta,
            )
            .unwrap();
            let want = Predictor::new(backbone(7), cut, SIZE, loaded, &Device::Cpu)
                .unwrap()
                .p_fake(&x)
                .unwrap();
            let bundle = dfd_model::read_bundle(&path, &Device::Cpu).unwrap();
            assert_eq!(bundle.meta, meta);
            let got = Predictor::from_bundle(bundle, &path, None, &Device::Cpu)
                .unwrap()
                .p_fake(&x)
                .unwrap();
            assert_eq!(
                scores(&got),
                scores(&want),
                "{cut}, {} head(s)",
                heads.len()
            );
        }
    }

    #[test]
    fn a_head_trained_on_another_backbone_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let features = dir.path().join("features/train/a0");
        std::fs::create_dir_all(&features).unwrap();
        std::fs::write(
            features.join("index.json"),
            r#"{"input_hash":"x","rows":0,"shards":[],"meta":{"weights":"blake3:aaa"}}"#,
        )
        .unwrap();
        let spec = HeadSpec::Linear {
            input: 4,
            dropout: 0.0,
        };
        let mut trained = head(&spec, 1);
        trained.trained_on = Some(features);
        same_backbone(&trained, "blake3:aaa").unwrap();
        let err = same_backbone(&trained, "blake3:bbb")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("identity blake3:bbb") && err.contains("weights blake3:aaa"),
            "{err}"
        );
        // Training features that are gone cannot be compared: not an error.
        trained.trained_on = Some(dir.path().join("gone"));
        same_backbone(&trained, "blake3:bbb").unwrap();
    }

    /// The scores as f32, every one finite.
    fn scores(s: &[Score]) -> Vec<f32> {
        s.iter().map(|p| p.unwrap() as f32).collect()
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "index {i}: {x} vs {y}");
        }
    }

    fn assert_unit_maps(e: &Explanation, n: usize, side: usize) {
        assert_eq!(e.size, (side, side));
        assert_eq!(e.cams.len(), n);
        for cam in &e.cams {
            assert_eq!(cam.len(), side * side);
            assert!(
                cam.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "{cam:?}"
            );
        }
    }

    #[test]
    fn pooled_heads_average_over_folds_and_explain_agrees_with_scoring() {
        let spec = HeadSpec::Mlp {
            input: 2048,
            hidden: vec![16],
            dropout: 0.5,
        };
        let heads = vec![head(&spec, 1), head(&spec, 2)];
        let x = images(3);
        // Reference: each head on the backbone's pooled features, softmax, mean.
        let reference_backbone = backbone(7);
        let pooled = reference_backbone.forward_to(&x, Cut::Pooled).unwrap();
        let per_head: Vec<Vec<f32>> = heads
            .iter()
            .map(|h| {
                let logits = h.head.forward(&pooled).unwrap().to_vec2::<f32>().unwrap();
                logits
                    .iter()
                    .map(|l| 1.0 / (1.0 + (l[0] - l[1]).exp()))
                    .collect()
            })
            .collect();
        let expected: Vec<f32> = (0..3)
            .map(|i| (per_head[0][i] + per_head[1][i]) / 2.0)
            .collect();

        let predictor =
            Predictor::new(backbone(7), Cut::Pooled, SIZE, heads, &Device::Cpu).unwrap();
        assert_eq!(predictor.heatmap_layer().unwrap(), Cut::Layer4);
        assert_close(&scores(&predictor.p_fake(&x).unwrap()), &expected, 1e-6);
        let explained = predictor.explain(&x).unwrap();
        assert_close(&scores(&explained.p_fake), &expected, 1e-6);
        assert_unit_maps(&explained, 3, 2);
    }

    #[test]
    fn finetune_heads_match_the_trainable_head_in_eval_mode() {
        let spec = HeadSpec::FinetuneLayer4 {
            arch: small_arch(),
            dropout: 0.5,
        };
        let loaded = head(&spec, 3);
        let x = images(2);
        let layer3 = backbone(7).forward_to(&x, Cut::Layer3).unwrap();
        let logits = loaded
            .head
            .forward(&layer3)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let expected: Vec<f32> = logits
            .iter()
            .map(|l| 1.0 / (1.0 + (l[0] - l[1]).exp()))
            .collect();

        let predictor =
            Predictor::new(backbone(7), Cut::Layer3, SIZE, vec![loaded], &Device::Cpu).unwrap();
        assert_eq!(predictor.heatmap_layer().unwrap(), Cut::Layer4);
        assert_close(&scores(&predictor.p_fake(&x).unwrap()), &expected, 1e-5);
        let explained = predictor.explain(&x).unwrap();
        assert_close(&scores(&explained.p_fake), &expected, 1e-5);
        assert_unit_maps(&explained, 2, 2);
    }

    #[test]
    fn linear_heads_on_layer3_maps_are_explained_over_layer3() {
        let spec = HeadSpec::Linear {
            input: 1024 * 4 * 4,
            dropout: 0.5,
        };
        let predictor = Predictor::new(
            backbone(7),
            Cut::Layer3,
            SIZE,
            vec![head(&spec, 4)],
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(predictor.heatmap_layer().unwrap(), Cut::Layer3);
        let x = images(2);
        let explained = predictor.explain(&x).unwrap();
        assert_close(
            &scores(&explained.p_fake),
            &scores(&predictor.p_fake(&x).unwrap()),
            1e-6,
        );
        assert_unit_maps(&explained, 2, 4);
    }

    /// A head whose weights hold a NaN (a corrupt checkpoint that still has its checksum, or an
    /// overflow) scores nothing: every image is a `NonFinite`, alone or in a fold ensemble.
    #[test]
    fn a_head_with_nan_weights_gives_no_score() {
        let spec = HeadSpec::Mlp {
            input: 2048,
            hidden: vec![16],
            dropout: 0.5,
        };
        let bad = head(&spec, 5);
        for (name, var) in bad.varmap.data().lock().unwrap().iter() {
            if name.ends_with("bias") {
                let nan = Tensor::full(f32::NAN, var.shape(), &Device::Cpu).unwrap();
                var.set(&nan).unwrap();
            }
        }
        let x = images(2);
        let predictor = Predictor::new(
            backbone(7),
            Cut::Pooled,
            SIZE,
            vec![head(&spec, 1), bad],
            &Device::Cpu,
        )
        .unwrap();
        let scored = predictor.p_fake(&x).unwrap();
        assert_eq!(scored.len(), 2);
        assert!(scored.iter().all(Result::is_err), "{scored:?}");
        let explained = predictor.explain(&x).unwrap();
        assert!(explained.p_fake.iter().all(Result::is_err));
    }

    #[test]
    fn heads_that_do_not_fit_the_features_are_refused() {
        let wrong = HeadSpec::Linear {
            input: 1000,
            dropout: 0.0,
        };
        let err = Predictor::new(
            backbone(7),
            Cut::Pooled,
            SIZE,
            vec![head(&wrong, 1)],
            &Device::Cpu,
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("takes 1000 inputs") && err.to_string().contains("2048"),
            "{err}"
        );

        let finetune = HeadSpec::FinetuneLayer4 {
            arch: small_arch(),
            dropout: 0.0,
        };
        let err = Predictor::new(
            backbone(7),
            Cut::Pooled,
            SIZE,
            vec![head(&finetune, 1)],
            &Device::Cpu,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("layer3"), "{err}");

        let mixed = vec![
            head(&finetune, 1),
            head(
                &HeadSpec::Linear {
                    input: 1024 * 16,
                    dropout: 0.0,
                },
                2,
            ),
        ];
        let err = Predictor::new(backbone(7), Cut::Layer3, SIZE, mixed, &Device::Cpu)
            .err()
            .unwrap();
        assert!(err.to_string().contains("one kind"), "{err}");
    }
}
