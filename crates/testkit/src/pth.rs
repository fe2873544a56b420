//! Writes PyTorch zip-format `.pth` state_dicts, as `torch.save(state_dict, path)` does, so tests
//! can make full-architecture `.pth` files without Python. The pickle is what torch writes:
//! an `OrderedDict` of `torch._utils._rebuild_tensor_v2(<persistent storage>, 0, size, stride,
//! False, OrderedDict())`, storages under `archive/data/<key>`.

use std::io::Write;
use std::path::Path;

/// One tensor: name, safetensors-style dtype (`f32`, `f16`, `bf16`, `f64`, `i64`, `u8`),
/// shape, and contiguous little-endian bytes.
pub struct PthTensor<'a> {
    pub name: &'a str,
    pub dtype: &'a str,
    pub shape: &'a [usize],
    pub bytes: &'a [u8],
}

/// Writes `tensors` as a zip-format `.pth` at `path`.
pub fn write_zip(path: &Path, tensors: &[PthTensor<'_>]) -> std::io::Result<()> {
    let mut pickle = Pickle::default();
    pickle.bytes.extend([0x80, 2]); // PROTO 2
    pickle.global("collections", "OrderedDict");
    pickle.bytes.extend([b')', b'R']); // EMPTY_TUPLE, REDUCE
    pickle.bytes.push(b'(');
    for (key, t) in tensors.iter().enumerate() {
        pickle.unicode(t.name);
        pickle.global("torch._utils", "_rebuild_tensor_v2");
        pickle.bytes.push(b'(');
        pickle.bytes.push(b'(');
        pickle.unicode("storage");
        pickle.global("torch", storage_type(t.dtype));
        pickle.unicode(&key.to_string());
        pickle.unicode("cpu");
        pickle.int(t.shape.iter().product());
        pickle.bytes.extend([b't', b'Q']); // TUPLE, BINPERSID
        pickle.int(0);
        pickle.tuple(t.shape);
        pickle.tuple(&strides(t.shape));
        pickle.bytes.push(0x89); // NEWFALSE
        pickle.global("collections", "OrderedDict");
        pickle.bytes.extend([b')', b'R', b't', b'R']); // (), REDUCE, TUPLE, REDUCE
    }
    pickle.bytes.extend([b'u', b'.']); // SETITEMS, STOP

    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut entry = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        zip.start_file(format!("archive/{name}"), stored)
            .map_err(std::io::Error::other)?;
        zip.write_all(bytes)
    };
    entry("data.pkl", &pickle.bytes)?;
    entry("byteorder", b"little")?;
    for (key, t) in tensors.iter().enumerate() {
        entry(&format!("data/{key}"), t.bytes)?;
    }
    entry("version", b"3\n")?;
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}

fn storage_type(dtype: &str) -> &'static str {
    match dtype {
        "f32" => "FloatStorage",
        "f16" => "HalfStorage",
        "bf16" => "BFloat16Storage",
        "f64" => "DoubleStorage",
        "i64" => "LongStorage",
        "u8" => "ByteStorage",
        other => panic!("no torch storage type for dtype {other}"),
    }
}

/// Row-major strides of a contiguous tensor.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

#[derive(Default)]
struct Pickle {
    bytes: Vec<u8>,
}

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.bytes.push(b'c');
        self.bytes.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn unicode(&mut self, text: &str) {
        self.bytes.push(b'X');
        self.bytes.extend((text.len() as u32).to_le_bytes());
        self.bytes.extend(text.as_bytes());
    }

    fn int(&mut self, value: usize) {
        self.bytes.push(b'J'); // BININT
        self.bytes
            .extend(i32::try_from(value).expect("fits BININT").to_le_bytes());
    }

    fn tuple(&mut self, values: &[usize]) {
        self.bytes.push(b'(');
        for &v in values {
            self.int(v);
        }
        self.bytes.push(b't');
    }
}
