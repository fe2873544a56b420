#!/usr/bin/env python3
"""Reference fixtures for dfd-imaging, made with Pillow (pip install pillow numpy).

Writes under crates/imaging/tests/fixtures/:

resize/<name>_<W>x<H>_s<S>.png
    Pillow's torchvision-equivalent `Resize(S)` (shorter side to S, longer side
    `int(S * long / short)`, Image.BILINEAR) then `CenterCrop(S)` (offsets
    `int(round((dim - S) / 2.0))`, Python's round-half-to-even) of a synthetic
    photo-like input. The inputs are NOT stored: `synthetic()` below is integer
    arithmetic that the Rust tests reproduce bit for bit (tests/common/mod.rs).

colour/<name>.<ext> + colour/<name>.expected.png
    Small images in every colour type / container, and what Pillow's
    `convert("RGB")` (after `ImageOps.exif_transpose` for the orientation cases)
    makes of them. 16-bit PNGs are expected as round(v / 257) (Pillow clips
    16-bit grey to 255 instead of scaling; we scale, see decode.rs).

bad/*    one file per reject reason (empty, not an image, truncated, a bomb PNG claiming 100000x100000).

Run from the repository root:  python3 scripts/make_resize_fixtures.py
"""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

OUT = Path("crates/imaging/tests/fixtures")


def synthetic(w: int, h: int, variant: int) -> np.ndarray:
    """Photo-like RGB8 image: gradients, hard-edged discs, stripes and hash noise (u32 wrapping)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.uint32)
    out = np.zeros((h, w, 3), dtype=np.uint32)
    v = np.uint32(variant)
    with np.errstate(over="ignore"):
        _fill(out, x, y, w, h, v, variant)
    return out.astype(np.uint8)


def _fill(out, x, y, w, h, v, variant):
    for c in range(3):
        cc = np.uint32(c)
        hsh = (x * np.uint32(0x9E3779B1)) ^ (y * np.uint32(0x85EBCA77)) ^ ((cc + v * np.uint32(3) + np.uint32(1)) * np.uint32(0xC2B2AE3D))
        hsh ^= hsh >> np.uint32(15)
        hsh *= np.uint32(0x2C1B3C6D)
        hsh ^= hsh >> np.uint32(12)
        noise = (hsh >> np.uint32(24)) & np.uint32(15)
        base = ((x * np.uint32(255)) // np.uint32(w - 1) * (np.uint32(3) - cc) + (y * np.uint32(255)) // np.uint32(h - 1) * (cc + np.uint32(1))) // np.uint32(4)
        stripe = ((x // np.uint32(7 + variant) + y // np.uint32(11) + cc * np.uint32(3)) % np.uint32(16)) * np.uint32(3)
        cx, cy, r = np.uint32(w // 3 + 17 * variant), np.uint32(h // 2), np.uint32(min(w, h) // 4)
        dx = np.where(x > cx, x - cx, cx - x)
        dy = np.where(y > cy, y - cy, cy - y)
        disc = np.where(dx * dx + dy * dy < r * r, np.uint32(70 + 20 * c), np.uint32(0))
        out[:, :, c] = np.minimum(base * np.uint32(5) // np.uint32(8) + noise + stripe + disc, np.uint32(255))


def torchvision_resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((new_w, new_h), Image.BILINEAR)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


RESIZE_CASES = [
    # (name, w, h, variant, sizes)
    ("sq600a", 600, 600, 0, [224, 128]),
    ("sq600b", 600, 600, 1, [400]),
    ("land640", 640, 427, 2, [224]),
    ("port333", 333, 500, 3, [128]),
    ("odd601", 601, 457, 4, [224]),
    ("up150", 150, 190, 5, [224]),
]


def make_resize():
    d = OUT / "resize"
    d.mkdir(parents=True, exist_ok=True)
    for name, w, h, variant, sizes in RESIZE_CASES:
        src = Image.fromarray(synthetic(w, h, variant), "RGB")
        for s in sizes:
            torchvision_resize_center_crop(src, s).save(d / f"{name}_{w}x{h}_v{variant}_s{s}.png", optimize=True)


def exif_with_orientation(o: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = o
    return ex.tobytes()


def make_colour():
    d = OUT / "colour"
    d.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(synthetic(40, 30, 5), "RGB")
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(synthetic(40, 30, 6)[:, :, 0], "L"))
    grey = rgb.convert("L")
    la = rgba.convert("LA")
    pal = rgb.convert("P", palette=Image.ADAPTIVE, colors=32)
    pal_t = pal.copy()
    pal_t.info["transparency"] = 3
    cases = {
        "rgb.png": (rgb, {}),
        "rgba.png": (rgba, {}),
        "grey.png": (grey, {}),
        "grey_alpha.png": (la, {}),
        "palette.png": (pal, {}),
        "palette_transparent.png": (pal_t, {"transparency": 3}),
        "rgb.bmp": (rgb, {}),
        "palette.bmp": (pal, {}),
        "rgb.tif": (rgb, {}),
        "rgba.tif": (rgba, {}),
        "grey.tif": (grey, {}),
        "palette.gif": (pal, {}),
        "rgb_lossless.webp": (rgb, {"lossless": True}),
        "rgba_lossless.webp": (rgba, {"lossless": True}),
        "grey.jpg": (grey, {"quality": 95}),
        "rgb.jpg": (rgb, {"quality": 95}),
        "cmyk.jpg": (rgb.convert("CMYK"), {"quality": 95}),
        "rgb.webp": (rgb, {"quality": 90}),
    }
    for fname, (img, kw) in cases.items():
        p = d / fname
        img.save(p, **kw)
        expected = Image.open(p)
        expected.load()
        expected.convert("RGB").save(d / (fname + ".expected.png"))
    # Orientation: lossless PNG (exact) and JPEG (decoder tolerance) carrying EXIF orientation.
    for o in (3, 6, 8):
        for ext, kw in (("png", {}), ("jpg", {"quality": 95})):
            p = d / f"orient{o}.{ext}"
            rgb.save(p, exif=exif_with_orientation(o), **kw)
            ImageOps.exif_transpose(Image.open(p)).convert("RGB").save(d / f"orient{o}.{ext}.expected.png")
    # 16-bit: Pillow cannot write 16-bit RGB PNGs portably, so build them by hand; expected = round(v/257).
    a16 = (synthetic(24, 16, 7).astype(np.uint32) * 257 + (synthetic(24, 16, 8).astype(np.uint32) % 200)).astype(np.uint16)
    write_png16(d / "rgb16.png", a16, colour_type=2)
    write_png16(d / "grey16.png", a16[:, :, 0], colour_type=0)
    exp = np.floor(a16.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    Image.fromarray(exp, "RGB").save(d / "rgb16.png.expected.png")
    Image.fromarray(np.repeat(exp[:, :, :1], 3, axis=2), "RGB").save(d / "grey16.png.expected.png")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png16(path: Path, a: np.ndarray, colour_type: int):
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[r].astype(">u2").tobytes() for r in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def make_bad():
    d = OUT / "bad"
    d.mkdir(parents=True, exist_ok=True)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_bytes(b"this is a text file, not an image\n")
    src = Image.fromarray(synthetic(64, 48, 9), "RGB")
    for fmt, ext in (("JPEG", "jpg"), ("PNG", "png"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tif"), ("WEBP", "webp")):
        buf = io.BytesIO()
        src.save(buf, fmt)
        data = buf.getvalue()
        (d / f"truncated.{ext}").write_bytes(data[: len(data) * 6 // 10])
    # Decompression bomb: a valid PNG header claiming 100000 x 100000 pixels, then one tiny IDAT.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    (d / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""))


if __name__ == "__main__":
    make_resize()
    make_colour()
    make_bad()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"fixtures written under {OUT}: {total / 1024:.0f} KiB")
