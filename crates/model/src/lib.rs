//! dfd-model: torchvision's ResNet/ResNeXt family in candle, the trainable heads, and weight
//! loading (Hugging Face hub, torchvision's downloads, local safetensors or `.pth`, or seeded
//! random weights).
//!
//! Knows nothing of the on-disk layout. Every convolution goes through [`dfd_ops::conv2d`].
//! Parameter names are exactly torchvision's state_dict names, so torchvision/timm checkpoints
//! load unchanged (`num_batches_tracked` is ignored).

mod arch;
mod backbone;
mod blocks;
mod bundle;
mod classifier_tape;
mod device;
mod head;
mod memory_format;
mod norm;
mod random;
mod score;
mod weights;

pub use arch::{Arch, Cut};
pub use backbone::Backbone;
pub use blocks::{global_avg_pool, Linear, Network, ResLayer};
pub use bundle::{read_bundle, write_bundle, Bundle, BundleMeta, BUNDLE_FORMAT, RESIZE_RULE};
pub use candle_core::{DType, Device, Tensor};
pub use device::{
    imagenet_normalize, parse_device, parse_dtype, with_compute, IMAGENET_MEAN, IMAGENET_STD,
};
pub use head::{dropout, init_layer4_from, Head, HeadSpec, TrainForward, NUM_OUTPUTS};
pub use memory_format::MemoryFormat;
pub use norm::{BatchNorm, BnMode, BN_EPS, BN_MOMENTUM};
pub use score::{ensemble, p_fake, NonFinite, Score};
pub use weights::{
    resolve_weights, torchvision_file, ResolvedWeights, WeightsFile, WeightsSource,
    DEFAULT_HUB_FILE, DEFAULT_WEIGHTS, TORCH_HOME_VAR,
};
