//! What the pickle of a `torch.save` state_dict means: the global allow-list, the rebuild
//! functions (interpreted as data, never called), torch's storage persistent ids, and the
//! extraction of `name → tensor` from the unpickled root object.

use std::collections::HashMap;
use std::rc::Rc;

use crate::pickle::{DictId, FaultKind, Heap, TupleId, Value};
use crate::DType;

/// The allow-listed callables; nothing else can be `REDUCE`d.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    /// `collections.OrderedDict`: called with no arguments, it makes an empty dict.
    OrderedDict,
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)` (torch < 0.4).
    RebuildTensor,
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`: an `nn.Parameter`.
    RebuildParameter,
}

impl Global {
    fn python_name(self) -> &'static str {
        match self {
            Global::OrderedDict => "collections.OrderedDict",
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2",
            Global::RebuildTensor => "torch._utils._rebuild_tensor",
            Global::RebuildParameter => "torch._utils._rebuild_parameter",
        }
    }
}

/// A reference to a torch storage: `numel` elements of `dtype`, whose bytes the format module
/// finds under `key` (`<archive>/data/<key>` in a zip, the storage section of a legacy file).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct StorageRef {
    pub(crate) key: Rc<str>,
    pub(crate) dtype: DType,
    pub(crate) numel: usize,
}

/// A strided view into a storage, in elements.
#[derive(Debug)]
pub(crate) struct TensorRef {
    pub(crate) storage: Rc<StorageRef>,
    pub(crate) offset: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) stride: Vec<usize>,
}

/// Resolves `GLOBAL module name` against the allow-list.
///
/// Known torch globals this reader does not support (other storage dtypes, quantized/sparse/...
/// rebuild functions) are [`FaultKind::Unsupported`]; everything else is
/// [`FaultKind::Forbidden`].
pub(crate) fn global(module: &str, name: &str) -> Result<Value, FaultKind> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", _) if name.ends_with("Storage") => {
            return storage_dtype(name)
                .map(Value::StorageType)
                .ok_or_else(|| FaultKind::Unsupported(format!("storage type `torch.{name}`")))
        }
        ("torch._utils", _) if name.starts_with("_rebuild_") => {
            return Err(FaultKind::Unsupported(format!(
                "`torch._utils.{name}` (rebuilds a quantized, sparse, nested, subclassed or \
                 new-dtype tensor, or a Parameter with extra state)"
            )))
        }
        _ => {
            return Err(FaultKind::Forbidden {
                module: module.to_owned(),
                name: name.to_owned(),
            })
        }
    };
    Ok(Value::Global(global))
}

/// The dtype of a legacy typed storage class (`torch.FloatStorage`, ...).
fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "BoolStorage" => DType::Bool,
        "ByteStorage" => DType::U8,
        "CharStorage" => DType::I8,
        "ShortStorage" => DType::I16,
        "IntStorage" => DType::I32,
        "LongStorage" => DType::I64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        _ => return None,
    })
}

/// `REDUCE` of an allow-listed global: builds the value it would return, calling nothing.
pub(crate) fn call(heap: &mut Heap, global: Global, args: TupleId) -> Result<Value, FaultKind> {
    let args = heap.tuple(args);
    let arity = |expected: &[usize]| {
        if expected.contains(&args.len()) {
            Ok(())
        } else {
            Err(FaultKind::Invalid(format!(
                "`{}` called with {} arguments",
                global.python_name(),
                args.len()
            )))
        }
    };
    match global {
        Global::OrderedDict => {
            arity(&[0])?;
            Ok(heap.new_dict())
        }
        Global::RebuildTensorV2 | Global::RebuildTensor => {
            // v2 adds requires_grad, backward hooks and an optional metadata dict: none of them
            // matter for the values.
            arity(if global == Global::RebuildTensor {
                &[4]
            } else {
                &[6, 7]
            })?;
            let Value::Storage(storage) = &args[0] else {
                return Err(FaultKind::Invalid(format!(
                    "a tensor rebuilt from {} instead of a storage",
                    args[0].describe()
                )));
            };
            let tensor = TensorRef {
                storage: storage.clone(),
                offset: to_usize(&args[1], "storage offset")?,
                shape: usizes(heap, &args[2], "size")?,
                stride: usizes(heap, &args[3], "stride")?,
            };
            if tensor.shape.len() != tensor.stride.len() {
                return Err(FaultKind::Invalid(format!(
                    "a tensor with {} sizes but {} strides",
                    tensor.shape.len(),
                    tensor.stride.len()
                )));
            }
            Ok(Value::Tensor(Rc::new(tensor)))
        }
        Global::RebuildParameter => {
            arity(&[3])?;
            match &args[0] {
                Value::Tensor(_) => Ok(args[0].clone()),
                other => Err(FaultKind::Invalid(format!(
                    "a Parameter wrapping {} instead of a tensor",
                    other.describe()
                ))),
            }
        }
    }
}

fn to_usize(value: &Value, what: &str) -> Result<usize, FaultKind> {
    match value {
        Value::Int(i) => usize::try_from(*i)
            .map_err(|_| FaultKind::Invalid(format!("{what} {i} is negative or too large"))),
        other => Err(FaultKind::Invalid(format!(
            "{what} is {} instead of an int",
            other.describe()
        ))),
    }
}

fn usizes(heap: &Heap, value: &Value, what: &str) -> Result<Vec<usize>, FaultKind> {
    match value {
        Value::Tuple(id) => heap.tuple(*id).iter().map(|v| to_usize(v, what)).collect(),
        other => Err(FaultKind::Invalid(format!(
            "tensor {what} is {} instead of a tuple",
            other.describe()
        ))),
    }
}

/// `BINPERSID`: torch's storage reference
/// `('storage', storage_type, key, location, numel[, view_metadata])` — five items in zip
/// archives, six in legacy files, where `view_metadata` must be `None`. The location (`cpu`,
/// `cuda:0`, ...) is ignored: the bytes are the same.
///
/// Each key is recorded once in `storages`; a key seen again must agree on dtype and size.
pub(crate) fn persistent_load(
    heap: &Heap,
    pid: &Value,
    storages: &mut HashMap<Rc<str>, Rc<StorageRef>>,
) -> Result<Value, FaultKind> {
    let invalid = || FaultKind::Invalid(format!("persistent id {}", describe_pid(heap, pid)));
    let Value::Tuple(id) = pid else {
        return Err(invalid());
    };
    let items = heap.tuple(*id);
    let ([Value::Str(tag), Value::StorageType(dtype), Value::Str(key), Value::Str(_), numel]
    | [Value::Str(tag), Value::StorageType(dtype), Value::Str(key), Value::Str(_), numel, _]) =
        items
    else {
        return Err(invalid());
    };
    if &**tag != "storage" {
        return Err(invalid());
    }
    if let Some(view) = items.get(5).filter(|v| !matches!(v, Value::None)) {
        return Err(FaultKind::Unsupported(format!(
            "a storage view (view_metadata {} of storage `{key}`, written by torch < 0.4)",
            view.describe()
        )));
    }
    let storage = StorageRef {
        key: key.clone(),
        dtype: *dtype,
        numel: to_usize(numel, "storage size")?,
    };
    let storage = match storages.get(key) {
        Some(seen) if **seen == storage => seen.clone(),
        Some(seen) => {
            return Err(FaultKind::Invalid(format!(
                "storage `{key}` referenced as {} {} and as {} {}",
                seen.numel, seen.dtype, storage.numel, storage.dtype
            )))
        }
        None => {
            let storage = Rc::new(storage);
            storages.insert(key.clone(), storage.clone());
            storage
        }
    };
    Ok(Value::Storage(storage))
}

fn describe_pid(heap: &Heap, pid: &Value) -> String {
    match pid {
        Value::Tuple(id) => {
            let items: Vec<_> = heap.tuple(*id).iter().map(Value::describe).collect();
            format!("({}) is not a torch storage reference", items.join(", "))
        }
        other => format!("is {}, not a torch storage reference", other.describe()),
    }
}

/// The `(name, tensor)` entries of the state_dict that `root` is, in insertion order.
///
/// `root` must be a dict from str to tensors, or a checkpoint dict holding such a dict under
/// exactly one of the keys `state_dict` and `model` (its other entries are ignored). The error is
/// a description of what `root` is instead.
pub(crate) fn state_dict(
    heap: &Heap,
    root: &Value,
) -> Result<Vec<(String, Rc<TensorRef>)>, String> {
    let Value::Dict(id) = root else {
        return Err(root.describe().to_owned());
    };
    let outer = heap.dict(*id);
    let why = match tensors(heap, *id) {
        Ok(entries) => return Ok(entries),
        Err(why) => why,
    };
    let wrapped: Vec<_> = ["state_dict", "model"]
        .into_iter()
        .filter_map(|key| match outer.get_str(key) {
            Some(Value::Dict(inner)) => Some((key, *inner)),
            _ => None,
        })
        .collect();
    match wrapped[..] {
        [(key, inner)] => tensors(heap, inner)
            .map_err(|inner_why| format!("a checkpoint whose `{key}` entry is {inner_why}")),
        [] => Err(why),
        _ => Err("a checkpoint with both a `state_dict` and a `model` dict".to_owned()),
    }
}

/// The entries of the dict `id` if all keys are str and all values tensors.
fn tensors(heap: &Heap, id: DictId) -> Result<Vec<(String, Rc<TensorRef>)>, String> {
    heap.dict(id)
        .entries()
        .iter()
        .map(|(key, value)| match (key, value) {
            (Value::Str(name), Value::Tensor(tensor)) => Ok((name.to_string(), tensor.clone())),
            (Value::Str(name), other) => Err(format!(
                "a dict whose entry `{name}` is {}, not a tensor",
                other.describe()
            )),
            (other, _) => Err(format!("a dict with {} key", other.describe())),
        })
        .collect()
}
