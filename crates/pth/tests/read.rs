//! dfd-pth against the fixtures of `scripts/make_pth_fixtures.py` (no Python needed here).

use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};

use dfd_pth::{DType, Error, Format, StateDict, Tensor};
use safetensors::{Dtype, SafeTensors};

/// The tensor names in the order the script saves them.
const NAMES: [&str; 19] = [
    "conv1.weight",
    "bn1.weight",
    "bn1.bias",
    "bn1.running_mean",
    "bn1.running_var",
    "bn1.num_batches_tracked",
    "fc.weight",
    "fc.bias",
    "proj.weight",
    "emb.weight",
    "shared.a",
    "shared.b",
    "strided",
    "mask",
    "u8",
    "i8",
    "i16",
    "i32",
    "f64",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn dtype(dtype: Dtype) -> DType {
    match dtype {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::I16 => DType::I16,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        other => panic!("unexpected dtype {other:?} in tiny.safetensors"),
    }
}

/// Asserts that `sd` holds exactly the tensors of `tiny.safetensors`, in the saved order.
fn assert_matches_reference(sd: &StateDict) {
    let bytes = std::fs::read(fixture("tiny.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<&str> = sd.iter().map(|(name, _)| name).collect();
    assert_eq!(names, NAMES);
    assert_eq!(sd.len(), reference.len());
    for (name, expected) in reference.tensors() {
        let tensor = sd.get(&name).unwrap_or_else(|| panic!("no `{name}`"));
        assert_eq!(tensor.dtype, dtype(expected.dtype()), "{name}");
        assert_eq!(tensor.shape, expected.shape(), "{name}");
        assert_eq!(tensor.data, expected.data(), "{name}");
        assert_eq!(
            tensor.data.len(),
            tensor.numel() * tensor.dtype.size_in_bytes()
        );
    }
}

fn read(name: &str) -> StateDict {
    dfd_pth::read(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn zip_matches_safetensors() {
    let sd = read("tiny-zip.pth");
    assert_eq!(sd.format(), Format::Zip);
    assert_matches_reference(&sd);
}

#[test]
fn legacy_matches_safetensors() {
    let sd = read("tiny-legacy.pth");
    assert_eq!(sd.format(), Format::Legacy);
    assert_matches_reference(&sd);
}

#[test]
fn scalars_views_and_dtypes() {
    let sd = read("tiny-zip.pth");
    let tracked = sd.get("bn1.num_batches_tracked").unwrap();
    assert_eq!(
        tracked,
        &Tensor {
            dtype: DType::I64,
            shape: vec![],
            data: 7i64.to_le_bytes().to_vec()
        }
    );
    assert_eq!(tracked.numel(), 1);
    // Saved as the transpose of a [5, 3] matrix: strides (1, 3).
    assert_eq!(sd.get("proj.weight").unwrap().shape, [3, 5]);
    assert_eq!(sd.get("fc.weight").unwrap().dtype, DType::F16);
    assert_eq!(sd.get("emb.weight").unwrap().dtype.to_string(), "bfloat16");
    assert_eq!(sd.get("mask").unwrap().data, [1, 0, 1, 1, 0]);
    let i8s: Vec<i8> = sd
        .get("i8")
        .unwrap()
        .data
        .iter()
        .map(|&b| b as i8)
        .collect();
    assert_eq!(i8s, [-128, -1, 0, 127]);
    // Two views with offsets 2 and 6 into one 10-element storage.
    assert_eq!(sd.get("shared.a").unwrap().shape, [2, 2]);
    assert_eq!(sd.get("shared.b").unwrap().shape, [4]);
    assert!(sd.get("missing").is_none());
    let owned: Vec<(String, Tensor)> = sd.clone().into_iter().collect();
    assert_eq!(owned.len(), NAMES.len());
    assert_eq!((&sd).into_iter().len(), NAMES.len());
}

/// `tiny-zip.pth` rewritten with every entry `compression`, and `byteorder` set to `byteorder`.
fn repack(compression: zip::CompressionMethod, byteorder: &[u8]) -> Vec<u8> {
    let original = std::fs::read(fixture("tiny-zip.pth")).unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(&original[..])).unwrap();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(compression);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let name = entry.name().unwrap().into_owned();
        writer.start_file(name.as_str(), options).unwrap();
        if name.ends_with("/byteorder") {
            assert_eq!(data, b"little");
            data = byteorder.to_vec();
        }
        writer.write_all(&data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn deflated_entries_are_read() {
    let repacked = repack(zip::CompressionMethod::Deflated, b"little");
    let mut archive = zip::ZipArchive::new(Cursor::new(&repacked[..])).unwrap();
    let pickle = archive.by_name("tiny-zip/data.pkl").unwrap();
    assert_eq!(pickle.compression(), zip::CompressionMethod::Deflated);
    drop(pickle);
    let sd = dfd_pth::from_bytes(&repacked, Path::new("repacked.pth")).unwrap();
    assert_matches_reference(&sd);
}

#[test]
fn big_endian_archives_are_refused() {
    let repacked = repack(zip::CompressionMethod::Stored, b"big");
    let err = dfd_pth::from_bytes(&repacked, Path::new("big.pth")).unwrap_err();
    assert!(matches!(err, Error::BigEndian { .. }), "{err}");
    let repacked = repack(zip::CompressionMethod::Stored, b"middle");
    let err = dfd_pth::from_bytes(&repacked, Path::new("odd.pth")).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn module_prefix_is_kept_until_stripped() {
    let mut sd = read("tiny-module.pth");
    assert!(sd.iter().all(|(name, _)| name.starts_with("module.")));
    assert!(sd.get("module.conv1.weight").is_some());
    assert!(!sd.strip_prefix("conv1."));
    assert!(sd.strip_prefix("module."));
    assert_matches_reference(&sd);
    // Not every name starts with `conv1.`: nothing changes.
    assert!(!sd.strip_prefix("conv1."));
    assert_matches_reference(&sd);
}

#[test]
fn checkpoint_wrapping_a_state_dict_is_unwrapped() {
    assert_matches_reference(&read("tiny-wrapped.pth"));
}

fn expect_forbidden(err: Error, path: &Path, module: &str, name: &str) -> String {
    let message = err.to_string();
    match err {
        Error::ForbiddenGlobal {
            module: m, name: n, ..
        } => assert_eq!((m.as_str(), n.as_str()), (module, name), "{message}"),
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains(&format!("`{module}.{name}`")), "{message}");
    message
}

#[test]
fn evil_pickles_are_refused_without_side_effects() {
    // The payload is os.system("touch /tmp/dfd-pth-evil-marker"); the pickle names it
    // `posix.system` (os.system's real module on Unix).
    let marker = Path::new("/tmp/dfd-pth-evil-marker");
    let _ = std::fs::remove_file(marker);
    for name in ["evil.pth", "evil-legacy.pth"] {
        let path = fixture(name);
        let err = dfd_pth::read(&path).unwrap_err();
        let message = expect_forbidden(err, &path, "posix", "system");
        assert!(message.contains("do not load it"), "{message}");
        assert!(!marker.exists(), "reading {name} ran its payload");
    }
}

#[test]
fn pickled_model_is_refused_as_such() {
    let path = fixture("tiny-model.pth");
    let err = dfd_pth::read(&path).unwrap_err();
    let message = expect_forbidden(err, &path, "torch.nn.modules.linear", "Linear");
    assert!(
        message.contains("a pickled model, not a state_dict: save model.state_dict() instead"),
        "{message}"
    );
}

// ---- hand-written legacy files -------------------------------------------------------------

/// A legacy file around `main` (a pickle), with the storage-key pickle `keys` and storage
/// section `storages`.
fn legacy(main: &[u8], keys: &[u8], storages: &[u8]) -> Vec<u8> {
    let mut file = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    file.extend_from_slice(b"\x80\x02M\xe9\x03.");
    file.extend_from_slice(b"\x80\x02}X\x0d\x00\x00\x00little_endian\x88s.");
    file.extend_from_slice(main);
    file.extend_from_slice(keys);
    file.extend_from_slice(storages);
    file
}

fn parse(bytes: &[u8]) -> Result<StateDict, Error> {
    dfd_pth::from_bytes(bytes, Path::new("hand-written.pth"))
}

/// `{'w': <rebuild>(storage('0', FloatStorage, numel 3, view), <args>)}` and its storage.
fn one_tensor(rebuild: &str, args: &[u8], view: &[u8]) -> Vec<u8> {
    let mut main = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n".to_vec();
    main.extend_from_slice(rebuild.as_bytes());
    main.extend_from_slice(
        b"\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x03",
    );
    main.extend_from_slice(view);
    main.extend_from_slice(b"tQ");
    main.extend_from_slice(args);
    main.extend_from_slice(b"tRs.");
    let mut storages = 3u64.to_le_bytes().to_vec();
    for v in [1.0f32, 2.0, 3.0] {
        storages.extend_from_slice(&v.to_le_bytes());
    }
    legacy(&main, b"\x80\x02]X\x01\x00\x00\x000a.", &storages)
}

#[test]
fn hand_written_legacy_tensors() {
    let values: Vec<u8> = [2.0f32, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    // _rebuild_tensor_v2(storage, 1, (2,), (1,), False, OrderedDict())
    let v2 = one_tensor(
        "_rebuild_tensor_v2",
        b"K\x01K\x02\x85K\x01\x85\x89ccollections\nOrderedDict\n)R",
        b"N",
    );
    // _rebuild_tensor(storage, 1, (2,), (1,)), torch < 0.4
    let v1 = one_tensor("_rebuild_tensor", b"K\x01K\x02\x85K\x01\x85", b"N");
    for file in [v2, v1] {
        let sd = parse(&file).unwrap();
        assert_eq!(sd.format(), Format::Legacy);
        let w = sd.get("w").unwrap();
        assert_eq!((w.dtype, w.shape.as_slice()), (DType::F32, &[2][..]));
        assert_eq!(w.data, values);
    }

    let view = one_tensor(
        "_rebuild_tensor",
        b"K\x01K\x02\x85K\x01\x85",
        b"X\x01\x00\x00\x001K\x00K\x03\x87",
    );
    let err = parse(&view).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("view_metadata"), "{err}");

    // Beyond the storage: offset 2 + 2 elements in a storage of 3.
    let beyond = one_tensor("_rebuild_tensor", b"K\x02K\x02\x85K\x01\x85", b"N");
    assert!(matches!(parse(&beyond), Err(Error::Corrupt { .. })));

    let other = one_tensor("_rebuild_qtensor", b"K\x01K\x02\x85K\x01\x85", b"N");
    assert!(matches!(parse(&other), Err(Error::Unsupported { .. })));
}

#[test]
fn hand_written_forbidden_globals() {
    let path = Path::new("hand-written.pth");
    let keys = b"\x80\x02].";
    // GLOBAL builtins.eval, called on a string.
    let global = legacy(
        b"\x80\x02cbuiltins\neval\nX\x02\x00\x00\x0041\x85R.",
        keys,
        b"",
    );
    expect_forbidden(parse(&global).unwrap_err(), path, "builtins", "eval");
    // The same through STACK_GLOBAL (protocol 4), inside a dict next to ordinary entries.
    let stack_global = legacy(
        b"\x80\x04\x95\x30\x00\x00\x00\x00\x00\x00\x00}(\x8c\x01aK\x01\x8c\x01b\
          \x8c\x08builtins\x94\x8c\x04exec\x94\x93\x94\x8c\x02 1\x85Ru.",
        keys,
        b"",
    );
    expect_forbidden(parse(&stack_global).unwrap_err(), path, "builtins", "exec");
    // A forbidden global in a checkpoint's sibling entry refuses the whole file.
    let sibling = legacy(
        b"\x80\x02}(X\x0a\x00\x00\x00state_dict}X\x03\x00\x00\x00optcos\nsystem\nu.",
        keys,
        b"",
    );
    expect_forbidden(parse(&sibling).unwrap_err(), path, "os", "system");
    // A torch global outside the allow-list is still refused.
    let unknown_torch = legacy(b"\x80\x02ctorch\nload\n.", keys, b"");
    expect_forbidden(parse(&unknown_torch).unwrap_err(), path, "torch", "load");
}

#[test]
fn not_a_state_dict() {
    let keys = b"\x80\x02].";
    let cases: [(&[u8], &str); 4] = [
        (b"\x80\x02]q\x00.", "a list"),
        (
            b"\x80\x02}X\x05\x00\x00\x00epochK\x03s.",
            "entry `epoch` is an int",
        ),
        (b"\x80\x02}K\x01Ns.", "a dict with an int key"),
        (
            b"\x80\x02}(X\x0a\x00\x00\x00state_dict}X\x05\x00\x00\x00model}u.",
            "both a `state_dict` and a `model`",
        ),
    ];
    for (main, expected) in cases {
        let err = parse(&legacy(main, keys, b"")).unwrap_err();
        assert!(matches!(err, Error::NotAStateDict { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("hand-written.pth"), "{message}");
        assert!(message.contains("save model.state_dict()"), "{message}");
    }
    // An empty dict is an empty state_dict.
    assert!(parse(&legacy(b"\x80\x02}.", keys, b"")).unwrap().is_empty());
}

#[test]
fn unknown_opcode_names_byte_and_offset() {
    // POP (`0`) right after PROTO and BININT1: at byte 4 of the main pickle.
    let file = legacy(b"\x80\x02K\x010.", b"", b"");
    let main_at = file.len() - 6;
    match parse(&file).unwrap_err() {
        Error::UnknownOpcode {
            opcode,
            offset,
            part,
            ..
        } => {
            assert_eq!((opcode, offset), (b'0', 4));
            assert_eq!(
                part,
                format!("the main pickle, which starts at byte {main_at}")
            );
        }
        other => panic!("expected UnknownOpcode, got {other:?}"),
    }
    let message = parse(&file).unwrap_err().to_string();
    assert!(
        message.contains("0x30") && message.contains("hand-written.pth"),
        "{message}"
    );
}

#[test]
fn not_a_checkpoint_and_missing_file() {
    for bytes in [&b""[..], b"hello", b"PK\x05\x06", b"\x80\x02K\x01."] {
        let err = parse(bytes).unwrap_err();
        assert!(
            matches!(err, Error::UnknownFormat { .. } | Error::Pickle { .. }),
            "{err}"
        );
    }
    let missing = Path::new("/nonexistent/dfd-pth/missing.pth");
    let err = dfd_pth::read(missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/dfd-pth/missing.pth"));
}

#[test]
fn big_endian_files_are_refused() {
    let mut file = legacy(b"\x80\x02}.", b"\x80\x02].", b"");
    let at = file
        .windows(13)
        .position(|w| w == b"little_endian")
        .unwrap();
    file[at + 13] = 0x89; // NEWTRUE → NEWFALSE
    assert!(matches!(parse(&file), Err(Error::BigEndian { .. })));
}

// ---- robustness ----------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*).
fn junk(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

#[test]
fn truncated_files_are_errors_not_panics() {
    for name in [
        "tiny-zip.pth",
        "tiny-legacy.pth",
        "evil.pth",
        "tiny-wrapped.pth",
    ] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for len in 0..bytes.len() {
            assert!(parse(&bytes[..len]).is_err(), "{name} cut at {len} bytes");
        }
    }
}

#[test]
fn junk_and_corrupted_files_never_panic() {
    for seed in 0..200u64 {
        let len = (seed as usize * 37) % 3000;
        for prefix in [&b""[..], b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95"] {
            let mut bytes = prefix.to_vec();
            bytes.extend(junk(seed, len));
            assert!(parse(&bytes).is_err());
        }
    }
    // Every single-byte corruption of the legacy fixture (no checksums there, so the pickle VM
    // and the storage section see it): any result but a panic is fine.
    let bytes = std::fs::read(fixture("tiny-legacy.pth")).unwrap();
    for at in 0..bytes.len() {
        for value in [0x00, 0xff, bytes[at] ^ 0x01, b'(', b'.', b'R'] {
            let mut corrupted = bytes.clone();
            corrupted[at] = value;
            let _ = parse(&corrupted);
        }
    }
    // Random splices of the legacy fixture's own bytes.
    for seed in 0..500u64 {
        let noise = junk(seed, 8);
        let a = usize::from(noise[0]) * bytes.len() / 256;
        let b = usize::from(noise[1]) * bytes.len() / 256;
        let mut spliced = bytes[..a.max(b)].to_vec();
        spliced.extend_from_slice(&bytes[a.min(b)..]);
        let _ = parse(&spliced);
    }
}
