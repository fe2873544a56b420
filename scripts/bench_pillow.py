#!/usr/bin/env python3
"""Peer benchmark for dfd-preprocess: Pillow decode + torchvision-style Resize(224)+CenterCrop(224).

  python3 scripts/bench_pillow.py make DIR [N]   # write N (default 300) photo-like 600x600 JPEGs (q90)
  python3 scripts/bench_pillow.py run DIR [S]    # one core: decode + resize every *.jpg, print img/s

The Rust side of the comparison is
  cargo run --release -p dfd-imaging --example bench_decode_resize -- DIR [S]
which times the same work on 1 thread and on every core.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make(out: Path, n: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:600, 0:600].astype(np.float32)
    for i in range(n):
        cx, cy, r = rng.uniform(150, 450), rng.uniform(150, 450), rng.uniform(80, 220)
        face = ((x - cx) ** 2 + (y - cy) ** 2 < r * r).astype(np.float32)
        img = np.stack(
            [
                x / 600 * rng.uniform(80, 200) + face * rng.uniform(20, 60),
                y / 600 * rng.uniform(80, 200) + face * rng.uniform(10, 50),
                (x + y) / 1200 * rng.uniform(50, 150) + np.sin(x / rng.uniform(5, 30)) * 20,
            ],
            axis=2,
        )
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(out / f"img_{i:04d}.jpg", quality=90)


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def run(folder: Path, size: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    files = sorted(folder.glob("*.jpg"))
    data = [f.read_bytes() for f in files]  # time decoding, not the disk
    import io

    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for b in data:
            img = Image.open(io.BytesIO(b)).convert("RGB")
            resize_center_crop(img, size).tobytes()
        best = max(best, len(data) / (time.perf_counter() - t))
    print(f"pillow {Image.__version__}: {len(data)} images {size}px, 1 core: {best:.1f} img/s (best of 3)")


if __name__ == "__main__":
    cmd, folder = sys.argv[1], Path(sys.argv[2])
    if cmd == "make":
        make(folder, int(sys.argv[3]) if len(sys.argv) > 3 else 300)
    else:
        run(folder, int(sys.argv[3]) if len(sys.argv) > 3 else 224)
