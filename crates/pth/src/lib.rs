//! dfd-pth: reads PyTorch `.pth` state_dicts without executing anything.
//!
//! [`read`] takes a file written by `torch.save(model.state_dict(), path)` — the zip format of
//! PyTorch >= 1.6 or the legacy format before it (`_use_new_zipfile_serialization=False`, e.g.
//! torchvision's `IMAGENET1K_V1` downloads) — and returns its tensors as plain bytes, in file
//! order.
//!
//! Safety contract: the pickle inside is interpreted by a small virtual machine of our own that
//! knows only the opcodes a state_dict uses and resolves globals through an allow-list
//! (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`,
//! `_rebuild_parameter` and the `torch.*Storage` types of the supported dtypes). Nothing is ever
//! imported or called: any other global is refused — [`Error::ForbiddenGlobal`], or
//! [`Error::Unsupported`] for the torch storages and rebuild functions of tensor kinds this reader
//! does not handle — so a file that would run code under `torch.load(weights_only=False)` is
//! refused as soon as its pickle names that code. Malformed or truncated input is an [`Error`],
//! never a panic.
//!
//! What is accepted as a state_dict: a dict (or `OrderedDict`) from str to tensors, or a
//! checkpoint dict holding one under exactly one of the keys `state_dict` and `model` (its other
//! entries are ignored). Names are returned as saved: a `DataParallel` model's names keep their
//! `module.` prefix until [`StateDict::strip_prefix`] removes it.
//!
//! Tested against files written by torch itself (`scripts/make_pth_fixtures.py` →
//! `tests/fixtures/`), compared with the same tensors saved as safetensors.

mod error;
mod legacy;
mod pickle;
mod torch;
mod view;
mod zip;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::rc::Rc;

pub use error::Error;

/// Element type of a tensor; the supported subset of torch dtypes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element (a bool is one byte, 0 or 1).
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }
}

/// The torch name of the dtype: `float32`, `bfloat16`, `int64`, `bool`, ...
impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::Bool => "bool",
            DType::U8 => "uint8",
            DType::I8 => "int8",
            DType::I16 => "int16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        })
    }
}

/// A dense tensor.
///
/// `data` holds the elements in contiguous row-major order, little-endian, exactly
/// `numel() * dtype.size_in_bytes()` bytes, whatever the strides and storage offset of the saved
/// tensor were. A 0-d tensor (such as a batch norm's `num_batches_tracked`) has an empty `shape`
/// and one element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Tensor {
    /// The number of elements: the product of `shape` (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The container format of a `.pth` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A zip archive (`<dir>/data.pkl` and `<dir>/data/<key>`): `torch.save` since PyTorch 1.6.
    Zip,
    /// Consecutive pickles followed by raw storages: `torch.save` before 1.6, or with
    /// `_use_new_zipfile_serialization=False`.
    Legacy,
}

/// A state_dict: uniquely named tensors in the order they were saved.
#[derive(Clone, Debug)]
pub struct StateDict {
    format: Format,
    tensors: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    fn new(format: Format, tensors: Vec<(String, Tensor)>) -> StateDict {
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        StateDict {
            format,
            tensors,
            index,
        }
    }

    /// The format the file was saved in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.tensors[i].1)
    }

    /// `(name, tensor)` in file order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.tensors.iter())
    }

    /// Removes `prefix` from every name if *every* name starts with it (the `module.` that
    /// `nn.DataParallel`/`DistributedDataParallel` adds), and returns whether it did; otherwise,
    /// or when empty, changes nothing and returns false. All-or-nothing keeps names unique.
    pub fn strip_prefix(&mut self, prefix: &str) -> bool {
        if self.is_empty() || !self.tensors.iter().all(|(n, _)| n.starts_with(prefix)) {
            return false;
        }
        let tensors = std::mem::take(&mut self.tensors)
            .into_iter()
            .map(|(name, t)| (name[prefix.len()..].to_owned(), t))
            .collect();
        *self = StateDict::new(self.format, tensors);
        true
    }
}

impl IntoIterator for StateDict {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;

    /// `(name, tensor)` in file order.
    fn into_iter(self) -> Self::IntoIter {
        self.tensors.into_iter()
    }
}

impl<'a> IntoIterator for &'a StateDict {
    type Item = (&'a str, &'a Tensor);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over `(name, tensor)` of a [`StateDict`], in file order.
#[derive(Clone, Debug)]
pub struct Iter<'a>(std::slice::Iter<'a, (String, Tensor)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Tensor);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(name, t)| (name.as_str(), t))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Reads the state_dict saved at `path` by `torch.save`.
///
/// The format is detected from the first bytes: `PK\x03\x04` is a zip archive, a pickle
/// `PROTO` opcode starts a legacy file (whose first pickle must then be torch's magic number).
/// The whole file is read into memory.
pub fn read(path: &Path) -> Result<StateDict, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// [`read`] for a file already in memory; `path` only names it in error messages.
pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<StateDict, Error> {
    if bytes.starts_with(b"PK\x03\x04") {
        zip::read(bytes, path)
    } else if bytes.first() == Some(&0x80) {
        legacy::read(bytes, path)
    } else {
        Err(Error::UnknownFormat {
            path: path.to_owned(),
            detail: match bytes.len() {
                0 => "the file is empty".to_owned(),
                _ => format!("it starts with {:02x?}", &bytes[..bytes.len().min(4)]),
            },
        })
    }
}

/// Copies the tensors out of their storages; `storage(key)` gives the bytes of storage `key`,
/// already checked to be exactly its `numel * dtype size` long.
fn assemble<'a>(
    path: &Path,
    format: Format,
    entries: Vec<(String, Rc<torch::TensorRef>)>,
    storage: impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<StateDict, Error> {
    let tensors = entries
        .into_iter()
        .map(|(name, view)| {
            let bytes = storage(&view.storage.key).ok_or_else(|| Error::Corrupt {
                path: path.to_owned(),
                detail: format!(
                    "tensor `{name}` refers to storage `{}`, which is missing",
                    view.storage.key
                ),
            })?;
            let data = view::materialize(&view, bytes).map_err(|fault| match fault {
                view::ViewFault::OutOfBounds(detail) => Error::Corrupt {
                    path: path.to_owned(),
                    detail: format!("tensor `{name}`: {detail}"),
                },
                view::ViewFault::Overlapping {
                    numel,
                    storage_numel,
                } => Error::Unsupported {
                    path: path.to_owned(),
                    detail: format!(
                        "tensor `{name}`, an expanded or overlapping view ({numel} elements over \
                         a storage of {storage_numel})"
                    ),
                },
            })?;
            let tensor = Tensor {
                dtype: view.storage.dtype,
                shape: view.shape.clone(),
                data,
            };
            Ok((name, tensor))
        })
        .collect::<Result<_, Error>>()?;
    Ok(StateDict::new(format, tensors))
}

/// The state_dict entries of one unpickled object, or [`Error::NotAStateDict`].
fn entries(
    path: &Path,
    unpickled: &pickle::Unpickled,
) -> Result<Vec<(String, Rc<torch::TensorRef>)>, Error> {
    torch::state_dict(&unpickled.heap, &unpickled.root).map_err(|found| Error::NotAStateDict {
        path: path.to_owned(),
        found,
    })
}
