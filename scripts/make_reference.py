#!/usr/bin/env python3
"""Reference fixtures for dfd-model, computed with torchvision's own ResNet classes.

Writes crates/model/tests/fixtures/reference.{safetensors,json}:
  * eval mode: a torchvision ResNeXt (`ResNet(Bottleneck, BLOCKS, groups=32, width_per_group=4)`)
    run on u8 images at 128 and 224 px; the activation at every cut (normalised input, stem,
    layer1..layer4, pooled, logits);
  * train mode: one forward + backward of the fine-tune block (layer4 + avgpool + flatten +
    dropout(p=0) + Linear(2048->2)) on layer3-shaped maps with cross-entropy loss: logits, loss,
    the gradient of every parameter and the updated BN running statistics.

Weights are NOT stored (one ResNeXt stage alone is several MB): every parameter and running
statistic is a pure function of its torchvision name (see `det_uniform` / `det_param`), which the
Rust tests reproduce bit for bit. BN weights/biases/running stats are randomised so eval-mode BN is
not an identity. Large tensors are stored as a random sample of positions (`.idx` + `.val`) plus
whole-tensor statistics (`.stats` = absmax, mean, rms, in float64 then cast); small ones whole.

Usage: python3 scripts/make_reference.py [--out crates/model/tests/fixtures]
Needs: torch, torchvision, numpy, safetensors (pip install torch torchvision numpy safetensors).
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file
from torchvision.models.resnet import Bottleneck, ResNet

# One block per stage exercises every downsample/stride; two in layer4 also covers the identity
# shortcut, in eval and in the train-mode fine-tune step. Widths are resnext50_32x4d's.
BLOCKS = [1, 1, 1, 2]
GROUPS = 32
WIDTH_PER_GROUP = 4
NUM_CLASSES = 10
SIZES = {128: 2, 224: 1}  # image side -> batch
TRAIN_BATCH, TRAIN_SIDE = 4, 8  # layer3 maps of 128 px images
TRAIN_LABELS = [0, 1, 1, 0]
MAX_SAMPLES = 8192
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]

M64 = (1 << 64) - 1


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for byte in text.encode():
        h = ((h ^ byte) * 0x100000001B3) & M64
    return h


def det_uniform(name: str, count: int) -> np.ndarray:
    """float32 in [0, 1) with 24 random bits: splitmix64 over fnv1a64(name) + (i+1)*golden."""
    with np.errstate(over="ignore"):
        x = np.uint64(fnv1a64(name)) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * np.uint64(
            0x9E3779B97F4A7C15
        )
        z = x
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)


def det_affine(name: str, shape) -> tuple:
    """(a, b) of `u * a + b` for the parameter `name` of `shape` (a, b rounded to float32)."""
    leaf = name.rsplit(".", 1)[-1]
    if name.startswith("input."):
        return 2.0, 0.0  # non-negative, like post-ReLU layer3 maps
    if len(shape) == 4:  # conv: Kaiming uniform bound sqrt(6 / fan_in)
        bound = math.sqrt(6.0 / (shape[1] * shape[2] * shape[3]))
        return 2.0 * bound, -bound
    if name.startswith("fc."):  # nn.Linear bound 1 / sqrt(fan_in), fan_in = 2048 for every fc here
        bound = 1.0 / math.sqrt(2048)
        return 2.0 * bound, -bound
    if leaf in ("weight", "running_var"):
        return 1.0, 0.5
    if leaf in ("bias", "running_mean"):
        return 0.4, -0.2
    raise ValueError(f"no rule for {name}")


def det_param(name: str, shape) -> np.ndarray:
    a, b = det_affine(name, shape)
    u = det_uniform(name, int(np.prod(shape)))
    return (u * np.float32(a) + np.float32(b)).astype(np.float32).reshape(shape)


def fill(module: torch.nn.Module) -> list:
    """Sets every parameter/buffer (but num_batches_tracked) from det_param; returns names+shapes."""
    names = []
    state = module.state_dict()
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        shape = list(tensor.shape)
        tensor.copy_(torch.from_numpy(det_param(name, shape)))
        names.append([name, shape])
    return names


class Store:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.tensors = {}

    def put(self, key: str, t: torch.Tensor):
        a = t.detach().to(torch.float64).numpy()
        flat = a.reshape(-1)
        self.tensors[f"{key}.shape"] = np.array(a.shape, dtype=np.int64)
        self.tensors[f"{key}.stats"] = np.array(
            [np.abs(flat).max(), flat.mean(), math.sqrt((flat**2).mean())], dtype=np.float32
        )
        if flat.size > MAX_SAMPLES:
            idx = np.sort(self.rng.choice(flat.size, MAX_SAMPLES, replace=False)).astype(np.int64)
            self.tensors[f"{key}.idx"] = idx
            self.tensors[f"{key}.val"] = flat[idx].astype(np.float32)
        else:
            self.tensors[f"{key}.val"] = flat.astype(np.float32)


def eval_fixtures(store: Store, rng: np.random.Generator) -> list:
    model = ResNet(Bottleneck, BLOCKS, num_classes=NUM_CLASSES, groups=GROUPS, width_per_group=WIDTH_PER_GROUP)
    names = fill(model)
    model.eval()
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        for size, batch in SIZES.items():
            images = rng.integers(0, 256, size=(batch, 3, size, size), dtype=np.uint8)
            store.tensors[f"s{size}.images"] = images
            x = (torch.from_numpy(images).float() / 255.0 - mean) / std
            store.put(f"s{size}.input", x)
            x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
            store.put(f"s{size}.stem", x)
            for i in range(1, 5):
                x = getattr(model, f"layer{i}")(x)
                store.put(f"s{size}.layer{i}", x)
            x = torch.flatten(model.avgpool(x), 1)
            store.put(f"s{size}.pooled", x)
            store.put(f"s{size}.logits", model.fc(x))
    return names


def train_fixtures(store: Store) -> list:
    model = ResNet(Bottleneck, BLOCKS, num_classes=NUM_CLASSES, groups=GROUPS, width_per_group=WIDTH_PER_GROUP)
    block = torch.nn.Module()
    block.layer4 = model.layer4
    block.fc = torch.nn.Linear(2048, 2)
    names = fill(block)
    seq = torch.nn.Sequential(
        block.layer4, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Dropout(0.0), block.fc
    )
    seq.train()
    shape = [TRAIN_BATCH, 1024, TRAIN_SIDE, TRAIN_SIDE]
    x = torch.from_numpy(det_param("input.layer3", shape))
    logits = seq(x)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(TRAIN_LABELS))
    loss.backward()
    store.put("train.logits", logits)
    store.put("train.loss", loss.reshape(1))
    for name, param in block.named_parameters():
        store.put(f"train.grad.{name}", param.grad)
    for name, buf in block.named_buffers():
        if not name.endswith("num_batches_tracked"):
            store.put(f"train.buffer.{name}", buf)
    return names


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="crates/model/tests/fixtures")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(20261130)
    store = Store(rng)
    eval_names = eval_fixtures(store, rng)
    train_names = train_fixtures(store)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(store.tensors, str(out / "reference.safetensors"))
    meta = {
        "arch": {"blocks": BLOCKS, "groups": GROUPS, "width_per_group": WIDTH_PER_GROUP, "num_classes": NUM_CLASSES},
        "sizes": {str(k): v for k, v in SIZES.items()},
        "train": {"batch": TRAIN_BATCH, "side": TRAIN_SIDE, "labels": TRAIN_LABELS},
        "state_dict": eval_names,
        "finetune_state_dict": train_names,
        "torch": torch.__version__,
    }
    (out / "reference.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out}/reference.safetensors ({(out / 'reference.safetensors').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
