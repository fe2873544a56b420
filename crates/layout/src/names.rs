//! File names as text: how a path that may not be valid UTF-8 is written in `manifest.csv`,
//! `rejects.csv` and predict's output, and found again from that text.
//!
//! Only three kinds of bytes are percent-escaped as `%XX` (upper-case hex): bytes that are not
//! part of valid UTF-8, `%` itself, and the bytes of control characters (U+0000–U+001F,
//! U+007F–U+009F). Every other name is written unchanged, so the files written before this form
//! existed stay byte-identical. Decoding is Python's
//! `os.fsdecode(urllib.parse.unquote_to_bytes(p))`.

use std::ffi::{OsStr, OsString};
use std::fmt::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The text form of a name or relative path (`/` separators kept as they are); [`unescape`]
/// gives back exactly the same bytes.
pub fn escape(name: &(impl AsRef<OsStr> + ?Sized)) -> String {
    let bytes = name.as_ref().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' || c.is_control() {
                let mut buf = [0; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .for_each(|b| push_escaped(&mut out, b));
            } else {
                out.push(c);
            }
        }
        chunk
            .invalid()
            .iter()
            .for_each(|&b| push_escaped(&mut out, b));
    }
    out
}

/// The path written as `escaped` by [`escape`]. A `%` that is not followed by two hex digits
/// (which [`escape`] never writes) is kept as it is.
pub fn unescape(escaped: &str) -> PathBuf {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i..] {
            [b'%', high, low, ..] => hex_digit(high).zip(hex_digit(low)),
            _ => None,
        };
        match decoded {
            Some((high, low)) => {
                out.push((high << 4) | low);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

fn push_escaped(out: &mut String, byte: u8) {
    // Writing to a String cannot fail.
    let _ = write!(out, "%{byte:02X}");
}

fn hex_digit(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn ordinary_names_are_unchanged() {
        for name in [
            "real/img_001.jpg",
            "fake/a, b \"q\".png",
            "été/ü 日本.jpg",
            "",
        ] {
            assert_eq!(escape(name), name);
            assert_eq!(unescape(name), Path::new(name));
        }
    }

    #[test]
    fn invalid_bytes_percent_and_controls_are_escaped() {
        assert_eq!(escape(OsStr::from_bytes(b"caf\xe9.jpg")), "caf%E9.jpg");
        assert_eq!(escape("100%.jpg"), "100%25.jpg");
        assert_eq!(escape("a\nb\t\u{7f}\u{85}.jpg"), "a%0Ab%09%7F%C2%85.jpg");
        assert_eq!(escape(OsStr::from_bytes(b"\xff\xfe/%41")), "%FF%FE/%2541");
        assert_eq!(
            unescape("caf%e9.jpg").as_os_str().as_bytes(),
            b"caf\xe9.jpg"
        );
        assert_eq!(unescape("50%.jpg%4"), Path::new("50%.jpg%4"));
        assert_eq!(unescape("%zz%"), Path::new("%zz%"));
    }

    #[test]
    fn random_byte_strings_round_trip() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        // Bytes drawn mostly from the interesting ones: '%', hex digits, controls, UTF-8 lead and
        // continuation bytes, '/', and some of everything.
        let pool: Vec<u8> =
            b"%%%AaF9/.\x00\x1f\x7f\xc2\x85\xe9\xff\xe2\x82\xac\xf0\x9f\x98\x80".to_vec();
        for _ in 0..4000 {
            let len = rng.random_range(0..24);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_bool(0.7) {
                        pool[rng.random_range(0..pool.len())]
                    } else {
                        rng.random()
                    }
                })
                .collect();
            let escaped = escape(OsStr::from_bytes(&bytes));
            assert!(!escaped.chars().any(char::is_control), "{escaped:?}");
            assert_eq!(
                unescape(&escaped).as_os_str().as_bytes(),
                bytes,
                "{escaped:?}"
            );
        }
    }
}
