//! dfd-imaging: everything the pipeline does to pixels, and nothing about files or stages.
//!
//! - [`decode`]: bytes of any supported format (JPEG, PNG, WebP, BMP, TIFF, GIF first frame) to an
//!   RGB8 image with EXIF orientation applied, or a [`Reject`] naming why not (decompression bombs are
//!   refused from the header, before any pixel is decoded).
//! - [`resize_center_crop`]: torchvision `Resize(S)` + `CenterCrop(S)` on a PIL image, matched to
//!   Pillow's antialiased bilinear filter (within 1 grey level, almost always exactly).
//! - [`augment`]: one seeded random augmentation of an image to S×S ([`AugmentParams`]).
//! - [`to_chw_u8`]: the planar 3×H×W layout the shards and the model use.
//!
//! All functions are pure (no global state) and can run on any number of rayon threads.

mod augment;
mod decode;
mod pixel_ops;
mod resize;

pub use augment::{augment, AugmentParams, InvalidAugmentParams};
pub use decode::{decode, Reject};
pub use image::RgbImage;
pub use resize::{center_crop_offsets, resize_center_crop, resize_region, resized_size};

/// Planar copy of `img`: all red values row by row, then green, then blue (3×H×W, the layout of the
/// `images` tensor in the shards and of a PyTorch `ToTensor()` before scaling).
pub fn to_chw_u8(img: &RgbImage) -> Vec<u8> {
    let plane = img.width() as usize * img.height() as usize;
    let mut out = vec![0u8; 3 * plane];
    let (r, gb) = out.split_at_mut(plane);
    let (g, b) = gb.split_at_mut(plane);
    for (i, px) in img.as_raw().chunks_exact(3).enumerate() {
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
    out
}
