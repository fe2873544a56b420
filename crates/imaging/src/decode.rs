//! Decoding bytes to RGB8, or a reason why not.

use std::io::Cursor;

use image::{
    error::LimitErrorKind, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader,
    Limits, RgbImage,
};

/// Why an input did not become an image. [`Reject::reason`] is a short machine-readable tag (for
/// `rejects.csv`), `Display` a one-line human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// Zero bytes.
    #[error("empty file (0 bytes)")]
    Empty,
    /// The content matches no known image signature.
    #[error("not an image (no known image signature in the first bytes)")]
    NotAnImage,
    /// A recognised image format that this pipeline does not accept (e.g. ICO, TGA, AVIF).
    #[error("unsupported image format {0} (accepted: JPEG, PNG, WebP, BMP, TIFF, GIF)")]
    UnsupportedFormat(String),
    /// The data ends before the image does.
    #[error("truncated image data: {0}")]
    Truncated(String),
    /// Corrupt or otherwise undecodable data.
    #[error("unreadable image: {0}")]
    Unreadable(String),
    /// The header declares more pixels than allowed (checked before decoding anything).
    #[error("too large: {width}x{height} pixels exceeds the limit of {max_pixels} pixels")]
    TooLarge {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
}

impl Reject {
    /// Stable machine-readable reason: `empty`, `not_an_image`, `unsupported_format`, `truncated`,
    /// `unreadable` or `too_large`.
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::Empty => "empty",
            Reject::NotAnImage => "not_an_image",
            Reject::UnsupportedFormat(_) => "unsupported_format",
            Reject::Truncated(_) => "truncated",
            Reject::Unreadable(_) => "unreadable",
            Reject::TooLarge { .. } => "too_large",
        }
    }
}

/// Decodes `bytes` to RGB8.
///
/// Contract:
/// - the format is sniffed from the content, never from a file name; JPEG, PNG, WebP, BMP, TIFF and
///   GIF (first frame) are accepted, anything else is [`Reject::UnsupportedFormat`] or
///   [`Reject::NotAnImage`];
/// - `width * height` from the header is checked against `max_pixels` before any pixel is decoded;
/// - the EXIF orientation (JPEG, PNG, WebP, TIFF) is applied, as `ImageOps.exif_transpose` would;
/// - every colour type becomes RGB8 the way Pillow's `convert("RGB")` does: alpha is dropped (not
///   composited), grey is replicated, palettes are expanded, CMYK is converted; 16-bit samples are
///   scaled to 8 bits with rounding (`round(v / 257)`);
/// - a JPEG without an end-of-image marker after its last scan, or a WebP shorter than its RIFF
///   header says, is [`Reject::Truncated`] (Pillow refuses those too, where some decoders would
///   silently fill the missing part with grey).
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, Reject> {
    if bytes.is_empty() {
        return Err(Reject::Empty);
    }
    let format = image::guess_format(bytes).map_err(|_| Reject::NotAnImage)?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Bmp
            | ImageFormat::Tiff
            | ImageFormat::Gif
    ) {
        return Err(Reject::UnsupportedFormat(
            format
                .extensions_str()
                .first()
                .unwrap_or(&"unknown")
                .to_string(),
        ));
    }
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        return Err(Reject::Truncated(
            "JPEG has no end-of-image marker after its last scan".into(),
        ));
    }
    if format == ImageFormat::WebP && riff_is_short(bytes) {
        return Err(Reject::Truncated(
            "WebP is shorter than its RIFF header declares".into(),
        ));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // Room for the largest allowed image at 16-bit RGBA, never less than image's own default.
    limits.max_alloc = Some(
        max_pixels
            .saturating_mul(8)
            .max(Limits::default().max_alloc.unwrap_or(0)),
    );
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(classify)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(Reject::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(Reject::Unreadable(format!(
            "header declares {width}x{height} pixels"
        )));
    }
    // A malformed EXIF block is no reason to lose the image: treat it as "no orientation".
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(classify)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// True when an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA). Inside
/// entropy-coded data every FF byte is stuffed (FF 00) or a restart marker, so FF D9 there can only
/// be the real end; an EXIF thumbnail's markers come before the main image's last scan.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_scan {
        Some(pos) => bytes[pos..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// True when a RIFF container (WebP) holds fewer bytes than its header's size field declares.
fn riff_is_short(bytes: &[u8]) -> bool {
    match bytes.get(4..8) {
        Some(size) => {
            let declared = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
            (bytes.len() as u64) < u64::from(declared) + 8
        }
        None => true,
    }
}

/// Maps a decoder error to a reject reason.
fn classify(err: ImageError) -> Reject {
    match &err {
        ImageError::Limits(l) => match l.kind() {
            LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory => {
                Reject::Unreadable(format!("over the decoder's memory limit: {err}"))
            }
            _ => Reject::Unreadable(err.to_string()),
        },
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Reject::Truncated(err.to_string())
        }
        _ => {
            let msg = err.to_string();
            let lower = msg.to_ascii_lowercase();
            let truncated = [
                "eof",
                "end of file",
                "unexpected end",
                "truncat",
                "not enough data",
                "no more data",
            ]
            .iter()
            .any(|k| lower.contains(k));
            if truncated {
                Reject::Truncated(msg)
            } else {
                Reject::Unreadable(msg)
            }
        }
    }
}
