#!/usr/bin/env python3
"""PyTorch peer benchmarks for the Rust stages, printing one JSON line each.

  extract: u8 images (a generated numpy array, read batch by batch) -> ImageNet normalisation ->
           torchvision resnext50_32x4d (random weights, eval, no grad) to `pooled` (2048-d) or
           `layer3` maps -> features stored like dfd-extract's `auto` dtype (f32 pooled, f16
           maps) and written to a safetensors file at the end. Model construction is not timed.
  train:   one optimiser step per batch, train mode:
           `mlp`      Dropout .5, Linear 2048->1024, ReLU, Dropout .5, Linear 1024->512, ReLU,
                      Dropout .5, Linear 512->2 on 2048-d features, AdamW;
           `finetune` layer4 + avgpool + Dropout .5 + Linear 2048->2 on 1024 x map x map inputs,
                      AdamW.

  python3 scripts/bench_torch.py extract --size 224 --cut pooled --batch 32 --images 128
  python3 scripts/bench_torch.py train --head finetune --batch 64 --map 14 --steps 5

`--compute bf16` runs the model under `torch.autocast(dtype=torch.bfloat16)` (oneDNN's bf16
kernels, AMX where the CPU has it), the peer of `extract.compute`/`train.compute = "bf16"`; the
default is f32. Threads default to 2 (`--threads`), like the Rust side on the reference machine. `--device cuda`
runs on the GPU (TF32 as PyTorch's defaults have it; every timing synchronises first), with the
same stored output; scripts/gpu-check.sh uses it next to dfd-gpu-check.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def forward_to(model, x, cut):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer3(model.layer2(model.layer1(x)))
    if cut == "layer3":
        return x
    x = model.layer4(x)
    if cut == "layer4":
        return x
    return torch.flatten(model.avgpool(x), 1)


def autocast(args):
    """The arithmetic `--compute` asks for: bf16 autocast, or nothing (f32)."""
    device = torch.device(args.device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.compute == "bf16")


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_extract(args):
    device = torch.device(args.device)
    model = torchvision.models.resnext50_32x4d(weights=None).eval().to(device)
    mean, std = MEAN.to(device), STD.to(device)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 3, args.size, args.size), dtype=np.uint8)
    store = np.float32 if args.cut == "pooled" else np.float16
    start = time.perf_counter()
    features = []
    with torch.inference_mode():
        for i in range(0, args.images, args.batch):
            x = torch.from_numpy(images[i : i + args.batch]).to(device).float().div_(255.0)
            x = (x - mean) / std
            with autocast(args):
                y = forward_to(model, x, args.cut)
            features.append(y.float().cpu().numpy().astype(store))
    out = np.concatenate(features)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "features.safetensors")
        try:
            from safetensors.numpy import save_file

            save_file({"features": out}, path)
        except ImportError:
            np.save(path, out)
    seconds = time.perf_counter() - start
    return {
        "bench": "extract",
        "device": args.device,
        "impl": "pytorch",
        "compute": args.compute,
        "size": args.size,
        "cut": args.cut,
        "batch": args.batch,
        "images": args.images,
        "feature_shape": list(out.shape[1:]),
        "seconds": round(seconds, 3),
        "img_per_s": round(args.images / seconds, 3),
    }


def bench_train(args):
    torch.manual_seed(0)
    if args.head == "mlp":
        model = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(2048, 1024), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(1024, 512), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(512, 2),
        )
        shape = (args.batch, 2048)
    else:
        backbone = torchvision.models.resnext50_32x4d(weights=None)
        model = nn.Sequential(
            backbone.layer4, backbone.avgpool, nn.Flatten(), nn.Dropout(0.5), nn.Linear(2048, 2)
        )
        shape = (args.batch, 1024, args.map, args.map)
    device = torch.device(args.device)
    model.train().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(shape).to(device)
    y = torch.randint(0, 2, (args.batch,)).to(device)
    # One untimed warm-up step, as bench_train takes: the allocator's first touch, cuDNN's choice of
    # algorithms, oneDNN's compilation of its bf16 kernels, and AdamW's state.
    with autocast(args):
        loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        opt.zero_grad(set_to_none=True)
        with autocast(args):
            loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "bench": "train",
        "device": args.device,
        "impl": "pytorch",
        "compute": args.compute,
        "head": args.head,
        "batch": args.batch,
        "map": args.map if args.head == "finetune" else None,
        "steps": args.steps,
        "seconds": round(seconds, 3),
        "samples_per_s": round(args.steps * args.batch / seconds, 3),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--compute", choices=["f32", "bf16"], default="f32", help="f32 (default), or bf16 autocast")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="image shards -> backbone -> features")
    e.add_argument("--size", type=int, default=224)
    e.add_argument("--cut", choices=["pooled", "layer3", "layer4"], default="pooled")
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--images", type=int, default=128)
    t = sub.add_parser("train", help="one training step per batch of a head")
    t.add_argument("--head", choices=["mlp", "finetune"], default="mlp")
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--map", type=int, choices=[14, 8], default=14, help="layer3 map side (finetune)")
    t.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = bench_extract(args) if args.command == "extract" else bench_train(args)
    result.update(threads=args.threads, torch=torch.__version__)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
