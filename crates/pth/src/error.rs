//! The error type: every message names the file and says what to do about it.

use std::path::PathBuf;

use crate::pickle::{Fault, FaultKind};

/// Why a `.pth` file could not be read. Each message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read from disk.
    #[error("cannot read `{path}`: {source}; check that the file exists and is readable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Neither a zip archive nor a legacy `torch.save` pickle.
    #[error(
        "`{path}` is not a PyTorch checkpoint: it is neither a zip archive (torch.save since \
         PyTorch 1.6) nor a legacy torch.save pickle ({detail}); pass a .pth/.pt file written by \
         torch.save(model.state_dict(), path)"
    )]
    UnknownFormat { path: PathBuf, detail: String },

    /// The container (zip archive or legacy storage section) is damaged.
    #[error("`{path}` is corrupt or truncated: {detail}; download or save it again")]
    Corrupt { path: PathBuf, detail: String },

    /// The pickle holds an opcode this reader does not interpret.
    #[error(
        "`{path}`: unsupported pickle opcode 0x{opcode:02x} at byte {offset} of {part}: the file \
         is corrupt or holds more than a state_dict; save model.state_dict() with torch.save \
         instead"
    )]
    UnknownOpcode {
        path: PathBuf,
        part: String,
        opcode: u8,
        offset: usize,
    },

    /// The pickle is malformed or truncated.
    #[error(
        "`{path}`: malformed pickle at byte {offset} of {part}: {detail}; the file is corrupt or \
         not a torch.save state_dict — download or save it again"
    )]
    Pickle {
        path: PathBuf,
        part: String,
        offset: usize,
        detail: String,
    },

    /// The pickle names a global outside the allow-list: loading it with
    /// `torch.load(weights_only=False)` would import (and typically run) that code.
    #[error(
        "`{path}`: refusing global `{module}.{name}`: {}",
        forbidden_hint(module)
    )]
    ForbiddenGlobal {
        path: PathBuf,
        module: String,
        name: String,
    },

    /// A legitimate torch feature this reader does not handle (e.g. complex or quantized
    /// tensors, storage views of torch < 0.4, expanded views).
    #[error(
        "`{path}`: {detail} is not supported; this reader takes dense tensors of bool, uint8, \
         int8, int16, int32, int64, float16, bfloat16, float32 or float64 — convert the tensors \
         (e.g. `.float().contiguous()`) and save the state_dict again"
    )]
    Unsupported { path: PathBuf, detail: String },

    /// Saved by a big-endian machine.
    #[error(
        "`{path}` was saved on a big-endian machine; load it with PyTorch on that kind of machine \
         and save it again on a little-endian one"
    )]
    BigEndian { path: PathBuf },

    /// The saved object is not a state_dict.
    #[error(
        "`{path}`: the saved object is {found}, not a state_dict (a dict of tensors, or a \
         checkpoint dict with one `state_dict` or `model` entry); save model.state_dict() with \
         torch.save instead"
    )]
    NotAStateDict { path: PathBuf, found: String },
}

/// What a forbidden global tells about the file.
fn forbidden_hint(module: &str) -> &'static str {
    let within = |package: &str| {
        module == package
            || module
                .strip_prefix(package)
                .is_some_and(|rest| rest.starts_with('.'))
    };
    if within("torchvision.models") || within("torch.nn") {
        "this is a pickled model, not a state_dict: save model.state_dict() instead"
    } else if within("__torch__") {
        "this is a TorchScript archive (torch.jit.save), not a state_dict: save \
         model.state_dict() with torch.save instead"
    } else {
        "a state_dict needs only tensors, storages and OrderedDict; this file would run code \
         under torch.load(weights_only=False) — do not load it"
    }
}

impl Error {
    /// The error for a [`Fault`] at some byte of `part` (e.g. `archive/data.pkl`) of `path`.
    pub(crate) fn from_fault(path: &std::path::Path, part: &str, fault: Fault) -> Error {
        let path = path.to_owned();
        let part = part.to_owned();
        let offset = fault.offset;
        match fault.kind {
            FaultKind::UnknownOpcode(opcode) => Error::UnknownOpcode {
                path,
                part,
                opcode,
                offset,
            },
            FaultKind::Truncated => Error::Pickle {
                path,
                part,
                offset,
                detail: "the data ends inside the pickle".to_owned(),
            },
            FaultKind::Forbidden { module, name } => Error::ForbiddenGlobal { path, module, name },
            FaultKind::Unsupported(what) => Error::Unsupported {
                path,
                detail: format!("{what} (byte {offset} of {part})"),
            },
            FaultKind::Invalid(detail) => Error::Pickle {
                path,
                part,
                offset,
                detail,
            },
        }
    }
}
