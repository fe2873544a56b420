//! The legacy format of `torch.save` (PyTorch < 1.6, or `_use_new_zipfile_serialization=False`).
//!
//! Five consecutive pickles — the magic number `0x1950a86a20f9469cfc6c`, the protocol version
//! 1001, a `sys_info` dict (`little_endian`, type sizes), the object itself, and the list of
//! storage keys — followed, for each key in that list's order, by a u64 little-endian element
//! count and the storage's raw bytes.

use std::collections::HashMap;
use std::path::Path;

use crate::pickle::{self, Unpickled, Value};
use crate::{assemble, entries, Error, Format, StateDict};

const MAGIC_NUMBER: i128 = 0x1950a86a20f9469cfc6c;
const PROTOCOL_VERSION: i128 = 1001;

/// Reads a legacy-format `.pth` held in `bytes`; `path` names it in errors.
pub(crate) fn read(bytes: &[u8], path: &Path) -> Result<StateDict, Error> {
    let mut rest = bytes;
    let mut next = |part: &str| -> Result<Unpickled, Error> {
        let unpickled = pickle::unpickle(rest).map_err(|fault| {
            let start = bytes.len() - rest.len();
            Error::from_fault(
                path,
                &format!("{part}, which starts at byte {start}"),
                fault,
            )
        })?;
        rest = &rest[unpickled.end..];
        Ok(unpickled)
    };
    let magic = next("the magic-number pickle")?;
    if !matches!(magic.root, Value::Int(MAGIC_NUMBER)) {
        return Err(Error::UnknownFormat {
            path: path.to_owned(),
            detail: format!(
                "it is a pickle of {}, not torch's magic number",
                magic.root.describe()
            ),
        });
    }
    let version = next("the protocol-version pickle")?;
    match version.root {
        Value::Int(PROTOCOL_VERSION) => {}
        Value::Int(other) => {
            return Err(Error::Unsupported {
                path: path.to_owned(),
                detail: format!(
                    "legacy protocol version {other} (torch only ever wrote {PROTOCOL_VERSION})"
                ),
            })
        }
        other => {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                detail: format!("the protocol version is {}", other.describe()),
            })
        }
    }
    let sys_info = next("the sys_info pickle")?;
    if let Value::Dict(id) = sys_info.root {
        if let Some(Value::Bool(false)) = sys_info.heap.dict(id).get_str("little_endian") {
            return Err(Error::BigEndian {
                path: path.to_owned(),
            });
        }
    }
    let main = next("the main pickle")?;
    let entries = entries(path, &main)?;
    let keys = next("the storage-key pickle")?;

    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let Value::List(list) = keys.root else {
        return Err(corrupt(format!(
            "the storage keys are {}, not a list",
            keys.root.describe()
        )));
    };
    let mut storages: HashMap<&str, &[u8]> = HashMap::new();
    for key in keys.heap.list(list) {
        let Value::Str(key) = key else {
            return Err(corrupt(format!("a storage key is {}", key.describe())));
        };
        let storage = main.storages.get(key).ok_or_else(|| {
            corrupt(format!(
                "storage `{key}` is listed but no tensor refers to it"
            ))
        })?;
        let (count, tail) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt(format!("the file ends before storage `{key}`")))?;
        let count = u64::from_le_bytes(*count);
        if usize::try_from(count) != Ok(storage.numel) {
            return Err(corrupt(format!(
                "storage `{key}` holds {count} elements but was saved with {}",
                storage.numel
            )));
        }
        let len = storage
            .numel
            .checked_mul(storage.dtype.size_in_bytes())
            .filter(|&len| len <= tail.len())
            .ok_or_else(|| corrupt(format!("the file ends inside storage `{key}`")))?;
        let (data, tail) = tail.split_at(len);
        storages.insert(&*storage.key, data);
        rest = tail;
    }
    assemble(path, Format::Legacy, entries, |key| {
        storages.get(key).copied()
    })
}
