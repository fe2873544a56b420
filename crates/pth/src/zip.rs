//! The zip format of `torch.save` (PyTorch >= 1.6).
//!
//! An archive whose entries all sit in one top folder `<dir>` (torch names it after the file):
//! `<dir>/data.pkl` (the pickle), `<dir>/data/<key>` (the raw little-endian bytes of storage
//! `<key>`), an optional `<dir>/byteorder` (`little` or `big`) and bookkeeping entries that are
//! not needed here (`version`, `.format_version`, `.storage_alignment`, `.data/serialization_id`).
//! Entries are normally stored; deflated ones are read too.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use ::zip::ZipArchive;

use crate::{assemble, entries, pickle, Error, Format, StateDict};

/// Reads a zip-format `.pth` held in `bytes`; `path` names it in errors.
pub(crate) fn read(bytes: &[u8], path: &Path) -> Result<StateDict, Error> {
    let corrupt = |detail: String| Error::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let mut archive = ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| corrupt(format!("not a readable zip archive ({e})")))?;
    let dir = top_folder(&archive).map_err(corrupt)?;

    let byteorder = format!("{dir}/byteorder");
    if archive.index_for_name(&byteorder).is_some() {
        match read_entry(&mut archive, &byteorder, 16)
            .map_err(corrupt)?
            .as_slice()
        {
            b"little" => {}
            b"big" => {
                return Err(Error::BigEndian {
                    path: path.to_owned(),
                })
            }
            other => {
                return Err(corrupt(format!(
                    "`{byteorder}` says {:?}, not `little` or `big`",
                    String::from_utf8_lossy(other)
                )))
            }
        }
    }

    let part = format!("{dir}/data.pkl");
    let pickle = read_entry(&mut archive, &part, bytes.len()).map_err(corrupt)?;
    let unpickled = pickle::unpickle(&pickle)
        .map_err(|fault| Error::from_fault(path, &format!("zip entry `{part}`"), fault))?;
    let entries = entries(path, &unpickled)?;

    // Only the storages the state_dict uses (a checkpoint's other entries may hold more).
    let mut storages: HashMap<Rc<str>, Vec<u8>> = HashMap::new();
    for (_, view) in &entries {
        let storage = &view.storage;
        if storages.contains_key(&storage.key) {
            continue;
        }
        let name = format!("{dir}/data/{}", storage.key);
        let len = storage
            .numel
            .checked_mul(storage.dtype.size_in_bytes())
            .filter(|&len| len <= bytes.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "storage `{}` claims {} elements of {}, more than the file holds",
                    storage.key, storage.numel, storage.dtype
                ))
            })?;
        let data = read_entry(&mut archive, &name, len).map_err(corrupt)?;
        if data.len() != len {
            return Err(corrupt(format!(
                "`{name}` holds {} bytes, not the {len} of {} {} elements",
                data.len(),
                storage.numel,
                storage.dtype
            )));
        }
        storages.insert(storage.key.clone(), data);
    }
    assemble(path, Format::Zip, entries, |key| {
        storages.get(key).map(Vec::as_slice)
    })
}

/// The one folder `<dir>` such that `<dir>/data.pkl` is an entry.
fn top_folder(archive: &ZipArchive<Cursor<&[u8]>>) -> Result<String, String> {
    let mut found = archive.file_names_raw().filter_map(|name| {
        let dir = std::str::from_utf8(name.strip_suffix(b"/data.pkl")?).ok()?;
        (!dir.is_empty() && !dir.contains('/')).then(|| dir.to_owned())
    });
    match (found.next(), found.next()) {
        (Some(dir), None) => Ok(dir),
        (None, _) => Err(
            "the zip archive has no `<folder>/data.pkl` entry, so it was not written by \
             torch.save"
                .to_owned(),
        ),
        (Some(a), Some(b)) => Err(format!(
            "the zip archive has both `{a}/data.pkl` and `{b}/data.pkl`"
        )),
    }
}

/// The bytes of entry `name`, reading at most `limit + 1` of them (so a size mismatch shows
/// without inflating an arbitrarily large entry).
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let entry = archive
        .by_name(name)
        .map_err(|e| format!("cannot open zip entry `{name}` ({e})"))?;
    let mut out = Vec::with_capacity(usize::try_from(entry.size()).map_or(limit, |n| n.min(limit)));
    let limit = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    entry
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read zip entry `{name}` ({e})"))?;
    Ok(out)
}
