//! Content hashes: blake3, written as lowercase hex.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

/// Hex blake3 of a byte slice.
pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Hex blake3 of a file's contents, streamed.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("opening {} to hash it", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {} to hash it", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Hex blake3 of a value's JSON form: the identity of a config section or an input list.
///
/// Struct fields serialise in declaration order and maps in key order (`BTreeMap`), so equal
/// values give equal hashes.
pub fn hash_json<T: Serialize + ?Sized>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("config values always serialise to JSON");
    hash_bytes(&json)
}
