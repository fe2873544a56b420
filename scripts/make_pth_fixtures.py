#!/usr/bin/env python3
"""Fixtures for the dfd-pth tests: one tiny state_dict saved by torch in every layout dfd-pth reads,
its reference values as safetensors, and files that dfd-pth must refuse.

Writes into crates/pth/tests/fixtures/ (about 40 KB in all). Run from the repository root:

    pip install torch numpy safetensors
    python3 scripts/make_pth_fixtures.py

Needs torch (any 2.x; the committed files were made with the version printed on the last line).
The output is deterministic: fixed seed, and the legacy format's storage keys (the C pointers
torch writes there) are renamed 0, 1, 2, ... in the order torch lists them.

Files:
  tiny.safetensors   the reference: every tensor contiguous, same names/dtypes/shapes/values
  tiny-zip.pth       torch.save(sd)                                      (zip, PyTorch >= 1.6)
  tiny-legacy.pth    torch.save(sd, _use_new_zipfile_serialization=False) (pre-1.6 layout)
  tiny-module.pth    names prefixed `module.`, as nn.DataParallel saves them (zip)
  tiny-wrapped.pth   {"epoch": 3, "state_dict": sd, "best_acc1": 0.5, "arch": "tiny"} (zip)
  tiny-model.pth     torch.save(nn.Linear(2, 2)): a pickled model, not a state_dict (zip)
  evil.pth           an object whose __reduce__ is os.system("touch /tmp/dfd-pth-evil-marker") (zip)
  evil-legacy.pth    the same in the legacy format
The state_dict `sd` covers: conv/bn/fc tensors of a real module (an OrderedDict with `_metadata`),
a 0-d int64 `num_batches_tracked`, float16 and bfloat16, an nn.Parameter, a transposed
(non-contiguous) tensor, two views with offsets into one shared storage, a strided slice, and one
tensor of each remaining dtype (bool, uint8, int8, int16, int32, float64).
"""

import collections
import io
import os
import pathlib
import pickle
import pickletools

import torch
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/pth/tests/fixtures"
MARKER = "/tmp/dfd-pth-evil-marker"


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(8, 2)


def state_dict():
    torch.manual_seed(20260427)
    g = torch.Generator().manual_seed(20260427)
    model = Tiny()
    with torch.no_grad():
        model.bn1.weight.copy_(torch.rand(4, generator=g) + 0.5)
        model.bn1.bias.copy_(torch.randn(4, generator=g))
        model.bn1.running_mean.copy_(torch.randn(4, generator=g))
        model.bn1.running_var.copy_(torch.rand(4, generator=g) + 0.5)
        model.bn1.num_batches_tracked.fill_(7)
    sd = model.state_dict()  # an OrderedDict with `_metadata`, as real checkpoints have
    sd["fc.weight"] = sd["fc.weight"].half()
    sd["fc.bias"] = torch.nn.Parameter(sd["fc.bias"])  # pickled via _rebuild_parameter

    sd["proj.weight"] = torch.randn(5, 3, generator=g).t()  # [3, 5], strides (1, 3)
    sd["emb.weight"] = torch.randn(3, 4, generator=g).to(torch.bfloat16)
    shared = torch.randn(10, generator=g)
    sd["shared.a"] = shared[2:6].view(2, 2)  # offset 2 into the storage of `shared.b`
    sd["shared.b"] = shared[6:]  # offset 6
    sd["strided"] = torch.randn(4, 6, generator=g)[1:3, ::2]  # offset 6, strides (6, 2)
    sd["mask"] = torch.tensor([True, False, True, True, False])
    sd["u8"] = torch.tensor([0, 1, 128, 255], dtype=torch.uint8)
    sd["i8"] = torch.tensor([-128, -1, 0, 127], dtype=torch.int8)
    sd["i16"] = torch.tensor([-32768, -2, 3, 32767], dtype=torch.int16)
    sd["i32"] = torch.tensor([-(2**31), 5, 2**31 - 1], dtype=torch.int32)
    sd["f64"] = torch.randn(2, generator=g, dtype=torch.float64)
    assert not sd["proj.weight"].is_contiguous() and not sd["strided"].is_contiguous()
    assert sd["shared.a"].untyped_storage().data_ptr() == sd["shared.b"].untyped_storage().data_ptr()
    return sd


def renumber_legacy_keys(data: bytes) -> bytes:
    """Makes a legacy file deterministic: torch names its storages str(C pointer) and writes them
    in the sorted order of those names. Renames them "0", "1", ... in the order the object pickle
    first refers to them, and writes the key list and the storages in sorted order of the new names.

    The file is five pickles (magic number, protocol version, sys_info, the object, the key list),
    then per key a u64 element count and the raw bytes.
    """
    stream = io.BytesIO(data)
    bounds = []
    for _ in range(5):
        start = stream.tell()
        for _ in pickletools.genops(stream):
            pass
        bounds.append((start, stream.tell()))

    # Which storages the object pickle refers to, in order, and their element sizes; nothing is
    # rebuilt (every other global becomes a function returning None).
    seen = {}

    class Scan(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "collections" and name == "OrderedDict":
                return collections.OrderedDict
            if module == "torch" and name.endswith("Storage"):
                return name
            return lambda *args: None

        def persistent_load(self, pid):
            _, storage_type, key, _, _, _ = pid
            element_size = torch.empty((), dtype=getattr(torch, storage_type).dtype).element_size()
            seen.setdefault(key, element_size)

    Scan(io.BytesIO(data[slice(*bounds[3])])).load()
    rename = {key: str(i) for i, key in enumerate(seen)}

    old_keys = pickle.loads(data[slice(*bounds[4])])
    storages, pos = {}, bounds[4][1]
    for key in old_keys:
        count = int.from_bytes(data[pos : pos + 8], "little")
        end = pos + 8 + count * seen[key]
        storages[rename[key]] = data[pos:end]
        pos = end
    assert pos == len(data)

    start, end = bounds[3]
    main = bytearray()
    ops = list(pickletools.genops(data[start:end]))
    for i, (op, arg, at) in enumerate(ops):
        stop = ops[i + 1][2] if i + 1 < len(ops) else end - start
        if op.name == "BINUNICODE" and arg in rename:
            new = rename[arg].encode()
            main += b"X" + len(new).to_bytes(4, "little") + new
        else:
            main += data[start + at : start + stop]
    new_keys = sorted(storages)
    return (
        data[:start]
        + bytes(main)
        + pickle.dumps(new_keys, protocol=2)
        + b"".join(storages[key] for key in new_keys)
    )


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


def check_same(path, reference):
    loaded = torch.load(path, weights_only=True)
    if "state_dict" in loaded:
        loaded = loaded["state_dict"]
    loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
    assert list(loaded) == list(reference), path
    for k, v in reference.items():
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, (path, k)
        assert torch.equal(loaded[k], v), (path, k)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    sd = state_dict()
    # safetensors wants contiguous tensors that share no memory.
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, OUT / "tiny.safetensors")

    torch.save(sd, OUT / "tiny-zip.pth")
    buf = io.BytesIO()
    torch.save(sd, buf, _use_new_zipfile_serialization=False)
    (OUT / "tiny-legacy.pth").write_bytes(renumber_legacy_keys(buf.getvalue()))
    module = type(sd)(("module." + k, v) for k, v in sd.items())
    torch.save(module, OUT / "tiny-module.pth")
    torch.save({"epoch": 3, "state_dict": sd, "best_acc1": 0.5, "arch": "tiny"}, OUT / "tiny-wrapped.pth")
    torch.manual_seed(0)
    torch.save(torch.nn.Linear(2, 2), OUT / "tiny-model.pth")
    torch.save(Evil(), OUT / "evil.pth")
    torch.save(Evil(), OUT / "evil-legacy.pth", _use_new_zipfile_serialization=False)

    for name in ["tiny-zip.pth", "tiny-legacy.pth", "tiny-module.pth", "tiny-wrapped.pth"]:
        check_same(OUT / name, sd)
    total = 0
    for path in sorted(OUT.iterdir()):
        total += path.stat().st_size
        print(f"{path.stat().st_size:6d}  {path.relative_to(OUT.parent.parent.parent.parent)}")
    print(f"{total:6d}  bytes in all; torch {torch.__version__}")


if __name__ == "__main__":
    main()
