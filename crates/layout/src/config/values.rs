//! The typed values of the pipeline's enum-valued keys.
//!
//! Each key whose value comes from a fixed list (`extract.arch`, `extract.cut`, `extract.dtype`,
//! `extract.compute`, `train.compute`, `train.head`, `train.optimizer`, `train.schedule`, `train.monitor`) is a plain enum, and the
//! two free-form keys (`extract.weights`, `extract.device`) are validated types that check only
//! the syntax (whether the file or the GPU exists is up to the stages that use them). Every type
//! reads and writes exactly the strings the config has always used, so pinned `config.toml` files,
//! feature directory names and hashes do not change. A bad value fails at parse with a
//! [`BadValue`] that names the key, the value and what is accepted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value a config key does not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: invalid value {value:?}; accepted values: {accepted}")]
pub struct BadValue {
    /// The key, e.g. `train.optimizer`.
    pub key: &'static str,
    /// The value as written.
    pub value: String,
    /// What the key accepts, in words.
    pub accepted: String,
}

/// Serde glue shared by every type here: written as its text form, read through `FromStr`.
macro_rules! text_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer)?
                    .parse()
                    .map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                self.as_str()
            }
        }
    };
}

/// An enum whose variants are the accepted names of one config key.
macro_rules! named_values {
    (
        $(#[$meta:meta])*
        pub enum $name:ident = $key:literal {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The config key this type is the value of.
            pub const KEY: &'static str = $key;
            /// Every accepted value, in the order the README lists them.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The name as written in a pipeline file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = BadValue;

            fn from_str(s: &str) -> Result<Self, BadValue> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| BadValue {
                    key: Self::KEY,
                    value: s.to_owned(),
                    accepted: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }

        text_serde!($name);
    };
}

named_values! {
    /// `extract.arch`: the torchvision backbone preset.
    pub enum ArchName = "extract.arch" {
        /// ResNeXt-50 32x4d (the default).
        ResNeXt50 = "resnext50_32x4d",
        ResNet50 = "resnet50",
        /// ResNeXt-101 32x8d.
        ResNeXt101 = "resnext101_32x8d",
    }
}

named_values! {
    /// `extract.cut`: where the backbone is cut, in network order.
    pub enum CutName = "extract.cut" {
        Stem = "stem",
        Layer1 = "layer1",
        Layer2 = "layer2",
        Layer3 = "layer3",
        Layer4 = "layer4",
        /// Global average pool of layer4 (a 2048-d vector for the presets).
        Pooled = "pooled",
        Logits = "logits",
    }
}

named_values! {
    /// `extract.dtype`: how feature values are stored.
    pub enum StorageDtype = "extract.dtype" {
        /// f32 for the pooled (or logits) vectors, f16 for spatial maps.
        Auto = "auto",
        F16 = "f16",
        F32 = "f32",
    }
}

named_values! {
    /// `extract.compute` and `train.compute`: the arithmetic of the model's matrix products
    /// (convolutions and linear layers). Storage is `extract.dtype`'s business.
    pub enum ComputeType = "extract.compute or train.compute" {
        /// f32 operands and sums (the default).
        F32 = "f32",
        /// Operands rounded to bf16, products summed in f32: a CPU with AVX512-BF16 only.
        Bf16 = "bf16",
    }
}

impl ComputeType {
    /// Whether this is the default, `f32` (left out of written configs, so their hashes stay).
    pub fn is_f32(&self) -> bool {
        *self == Self::F32
    }
}

named_values! {
    /// `train.head`: what is trained on the cached features.
    pub enum HeadKind = "train.head" {
        /// Hidden layers (`train.hidden`) on the flattened features.
        Mlp = "mlp",
        /// One linear layer on the flattened features.
        Linear = "linear",
        /// layer4 of the backbone (initialised from `extract.weights`), pooled, then a linear
        /// layer; needs `extract.cut = "layer3"`.
        FinetuneLayer4 = "finetune-layer4",
    }
}

named_values! {
    /// `train.optimizer`: which weight-decay flavour of Adam.
    pub enum OptimizerKind = "train.optimizer" {
        /// L2 added to the gradient (PyTorch `Adam(weight_decay=…)`).
        Adam = "adam",
        /// Decoupled weight decay (PyTorch `AdamW`).
        AdamW = "adamw",
    }
}

named_values! {
    /// `train.schedule`: how the learning rate moves over the run.
    pub enum ScheduleKind = "train.schedule" {
        /// Constant rate (no warm-up).
        None = "none",
        /// Multiply by `train.gamma` every `train.step_epochs` epochs, after warm-up.
        Step = "step",
        /// Half a cosine down to 0 at the last step, after warm-up.
        Cosine = "cosine",
    }
}

named_values! {
    /// `train.monitor`: the validation metric `best` and early stopping follow.
    pub enum Monitor = "train.monitor" {
        ValAuc = "val_auc",
        ValAccuracy = "val_accuracy",
        ValLoss = "val_loss",
    }
}

impl Monitor {
    /// Whether `new` improves on the best so far (`None` best: nothing yet, so anything
    /// improves; an undefined new value, e.g. the AUC of a one-class fold, never improves on a
    /// defined one). Loss improves downwards, the others upwards.
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

/// `extract.weights`, syntax-checked: `hf:<owner>/<name>[@<revision>][/<file>]`,
/// `torchvision:<arch>`, `random:<seed>` (not pretrained), or any other non-empty text as a local
/// `.safetensors` or `.pth` path (relative to the layout root). Kept as written, so
/// it serialises (and names feature directories) exactly as given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WeightsSpec(String);

impl WeightsSpec {
    /// What `extract.weights` accepts, in words.
    pub const ACCEPTED: &'static str =
        "hf:<owner>/<name>[@<revision>][/<file>], torchvision:<arch>, random:<seed> (an unsigned \
         integer), or a local .safetensors/.pth path";

    /// The text as written in the pipeline file.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The architecture named by `torchvision:<arch>`, if that is the source.
    pub fn torchvision_arch(&self) -> Option<&str> {
        self.0.strip_prefix("torchvision:")
    }
}

/// The torchvision IMAGENET1K_V1 weights of resnext50_32x4d, as published by timm.
impl Default for WeightsSpec {
    fn default() -> Self {
        Self("hf:timm/resnext50_32x4d.tv_in1k".into())
    }
}

impl FromStr for WeightsSpec {
    type Err = BadValue;

    fn from_str(s: &str) -> Result<Self, BadValue> {
        let ok = if let Some(repo) = s.strip_prefix("hf:") {
            let mut parts = repo.splitn(3, '/');
            matches!((parts.next(), parts.next()), (Some(owner), Some(name))
                if !owner.is_empty() && !name.is_empty() && !name.starts_with('@') && !name.ends_with('@'))
        } else if let Some(arch) = s.strip_prefix("torchvision:") {
            !arch.is_empty()
        } else if let Some(seed) = s.strip_prefix("random:") {
            seed.parse::<u64>().is_ok()
        } else {
            !s.is_empty()
        };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadValue {
                key: "extract.weights",
                value: s.to_owned(),
                accepted: Self::ACCEPTED.into(),
            })
        }
    }
}

text_serde!(WeightsSpec);

/// `extract.device` (and the stages' `--device`), syntax-checked: `cpu`, `cuda` (GPU 0) or
/// `cuda:N`. Whether that GPU exists, and whether the build has the `cuda` feature, is checked by
/// the stages that run the model, when they open it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeviceSpec(String);

impl DeviceSpec {
    /// What `extract.device` accepts, in words.
    pub const ACCEPTED: &'static str = "cpu, cuda, cuda:N (N a GPU number)";

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `cpu`.
impl Default for DeviceSpec {
    fn default() -> Self {
        Self("cpu".into())
    }
}

impl FromStr for DeviceSpec {
    type Err = BadValue;

    fn from_str(s: &str) -> Result<Self, BadValue> {
        let ok = match s.strip_prefix("cuda:") {
            Some(n) => n.parse::<usize>().is_ok(),
            None => s == "cpu" || s == "cuda",
        };
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadValue {
                key: "extract.device",
                value: s.to_owned(),
                accepted: Self::ACCEPTED.into(),
            })
        }
    }
}

text_serde!(DeviceSpec);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_explained() {
        for v in OptimizerKind::ALL {
            assert_eq!(v.as_str().parse::<OptimizerKind>().unwrap(), *v);
        }
        let err = "sgd".parse::<OptimizerKind>().unwrap_err().to_string();
        assert_eq!(
            err,
            "train.optimizer: invalid value \"sgd\"; accepted values: adam, adamw"
        );
        assert_eq!(HeadKind::FinetuneLayer4.to_string(), "finetune-layer4");
    }

    #[test]
    fn monitor_directions() {
        assert!(Monitor::ValLoss.improves(Some(0.1), Some(0.2)));
        assert!(!Monitor::ValLoss.improves(Some(0.2), Some(0.2)));
        assert!(Monitor::ValAuc.improves(Some(0.7), Some(0.6)));
        assert!(!Monitor::ValAccuracy.improves(Some(0.5), Some(0.6)));
        assert!(Monitor::ValAuc.improves(None, None));
        assert!(!Monitor::ValAuc.improves(None, Some(0.5)));
    }

    #[test]
    fn weights_syntax() {
        for good in [
            "hf:timm/resnext50_32x4d.tv_in1k",
            "hf:a/b/weights.safetensors",
            "hf:a/b/",
            "random:0",
            "random:18446744073709551615",
            "/w/my weights.safetensors",
            "relative/w.safetensors",
        ] {
            let spec: WeightsSpec = good.parse().unwrap();
            assert_eq!(spec.as_str(), good, "kept as written");
        }
        for bad in [
            "",
            "hf:nope",
            "hf:/b",
            "hf:a/",
            "random:",
            "random:-1",
            "random:x",
        ] {
            let err = bad.parse::<WeightsSpec>().unwrap_err();
            assert_eq!(err.key, "extract.weights");
            assert_eq!(err.value, bad);
        }
    }

    #[test]
    fn device_syntax() {
        for good in ["cpu", "cuda", "cuda:0", "cuda:3"] {
            assert_eq!(good.parse::<DeviceSpec>().unwrap().as_str(), good);
        }
        for bad in ["gpu", "", "CPU", "cuda:", "cuda:x", "cuda:-1", " cpu"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err().to_string();
            assert!(err.starts_with("extract.device: invalid value"), "{err}");
            assert!(err.contains("cuda:N"), "{err}");
        }
    }
}
