#!/usr/bin/env python3
"""Convert a torchvision ResNet/ResNeXt `.pth` state_dict into a `.safetensors` file for dfd-model.

Keys are kept as they are (torchvision names: conv1, bn1, layer1.0.conv2, layer2.0.downsample.0,
fc, ...), except that a `module.` prefix (DataParallel) is stripped and `num_batches_tracked`
buffers are dropped. Tensors are written contiguous, in float32 unless --keep-dtype.

Usage:
  python3 scripts/convert_torchvision.py resnext50_32x4d-7cdf4587.pth resnext50_32x4d.safetensors
  # then: --weights resnext50_32x4d.safetensors
Needs: torch, safetensors (pip install torch safetensors).
"""

import argparse
import sys

import torch
from safetensors.torch import save_file


def load_state_dict(path: str) -> dict:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        sys.exit(f"{path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    return obj


def convert(state: dict, keep_dtype: bool) -> dict:
    out = {}
    for key, value in state.items():
        if not torch.is_tensor(value) or key.endswith("num_batches_tracked"):
            continue
        key = key[len("module."):] if key.startswith("module.") else key
        tensor = value if keep_dtype else value.float()
        out[key] = tensor.contiguous()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", help="torchvision .pth state_dict")
    parser.add_argument("output", help="output .safetensors")
    parser.add_argument("--keep-dtype", action="store_true", help="do not convert tensors to float32")
    args = parser.parse_args()
    tensors = convert(load_state_dict(args.input), args.keep_dtype)
    if "conv1.weight" not in tensors or "fc.weight" not in tensors:
        sys.exit(f"{args.input}: no conv1.weight/fc.weight: not a torchvision ResNet state_dict")
    save_file(tensors, args.output, metadata={"format": "pt", "source": args.input})
    print(f"wrote {len(tensors)} tensors to {args.output}")


if __name__ == "__main__":
    main()
