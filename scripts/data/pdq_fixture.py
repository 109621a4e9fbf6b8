"""Regenerates tests/fixtures/pdq_reference.csv: PDQ hashes from Meta's C++ reference
(PyPI `pdqhash`, Python bindings of ThreatExchange's pdq/cpp) for >= 200 varied images.

Images: data-sample/imagenet, every other photo of ../shared/data/indoor-dev (real
phone-like JPEGs), and synthetic edge cases written to tests/fixtures/pdq/ by this script
(tiny, huge, flat, alpha, greyscale, 16-bit, EXIF-rotated, CMYK, WebP/GIF/BMP, noise).
Pixels are prepared as hotelmatch's decoder does (EXIF orientation applied, alpha
composited on mid-grey, greyscale repeated to RGB) so that only hashing is compared.

    .cache/venv/bin/pip install pdqhash==0.2.8 && .cache/venv/bin/python scripts/data/pdq_fixture.py
"""
import csv
import io
import os
import struct
import sys

import numpy as np
import pdqhash
from PIL import Image, ImageOps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SYN = os.path.join(ROOT, "tests/fixtures/pdq")
SHARED = os.path.join(ROOT, "..", "shared", "data", "indoor-dev")
NAMES = ["original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flipplus1", "flipminus1"]


def exif_orientation_jpeg(img, orientation):
    """A JPEG whose pixels are stored sideways, with the EXIF tag that puts them upright."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    data = buf.getvalue()
    tiff = b"II*\x00\x08\x00\x00\x00\x01\x00" + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00\x00\x00\x00"
    app1 = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def synthetic():
    """(file name, bytes) of the edge cases, deterministic."""
    rng = np.random.default_rng(20261122)
    cat = Image.open(os.path.join(ROOT, "data-sample/imagenet/cat.jpg")).convert("RGB")
    cup = Image.open(os.path.join(ROOT, "data-sample/imagenet/espresso.jpg")).convert("RGB")
    yy, xx = np.mgrid[0:480, 0:640]
    smooth = (128 + 60 * np.sin(xx / 40.0 + yy / 90.0) + 50 * np.cos(yy / 30.0)).clip(0, 255).astype(np.uint8)
    out = []

    def png(name, im):
        b = io.BytesIO()
        im.save(b, "PNG")
        out.append((name, b.getvalue()))

    def enc(name, im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        out.append((name, b.getvalue()))

    for w, h in [(1, 1), (4, 4), (5, 5), (7, 3), (5, 9), (8, 8), (63, 64), (64, 64), (65, 65), (2000, 20), (20, 2000)]:
        png(f"tiny-or-thin-{w}x{h}.png", cat.resize((w, h), Image.BILINEAR))
    for rgb in [(0, 0, 0), (255, 255, 255), (200, 30, 60)]:
        png("flat-%02x%02x%02x.png" % rgb, Image.new("RGB", (320, 240), rgb))
    png("gradient.png", Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (200, 1))).convert("RGB"))
    png("smooth-grey.png", Image.fromarray(smooth, "L"))
    enc("smooth-grey.jpg", Image.fromarray(smooth, "L"), "JPEG", quality=90)
    png("noise.png", Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)))
    rgba = cat.convert("RGBA")
    a = np.asarray(rgba).copy()
    a[:, : a.shape[1] // 3, 3] = 0
    a[a.shape[0] // 2 :, :, 3] = 128
    png("alpha-cat.png", Image.fromarray(a, "RGBA"))
    png("alpha-la.png", Image.fromarray(smooth, "L").convert("LA"))
    arr16 = np.asarray(cup.resize((300, 200))).astype(np.uint16) * 257
    png("sixteen-bit.png", Image.fromarray(np.ascontiguousarray(arr16[:, :, 0])))
    for o, rot in [(3, 180), (6, 90), (8, 270)]:
        out.append((f"exif-orientation-{o}.jpg", exif_orientation_jpeg(cup.rotate(rot, expand=True), o)))
    thumb = cat.resize((225, 150), Image.BILINEAR)
    enc("cat.webp", thumb, "WEBP", lossless=True)
    enc("cat.gif", thumb, "GIF")
    enc("cat.bmp", thumb, "BMP")
    enc("cmyk.jpg", cup.convert("CMYK"), "JPEG", quality=92)
    big = Image.fromarray(np.tile(smooth, (10, 10))[:4500, :6000], "L").convert("RGB")
    enc("huge-6000x4500.jpg", big, "JPEG", quality=60)
    enc("cat-small-q30.jpg", cat.resize((160, 106)), "JPEG", quality=30)
    return out


def reference_pixels(data):
    """RGB uint8 pixels prepared as hotelmatch's decoder prepares them."""
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint32)
        alpha = rgba[:, :, 3:4]
        rgb = (rgba[:, :, :3] * alpha + 128 * (255 - alpha) + 127) // 255
        return rgb.astype(np.uint8)
    if im.mode == "I;16":
        v = np.asarray(im).astype(np.uint32)
        g = ((v + 128) // 257).astype(np.uint8)
        return np.stack([g, g, g], axis=2)
    return np.asarray(im.convert("RGB"))


def to_hex(bits):
    bits = [int(b) for b in bits]
    return "".join("%x" % int("".join(map(str, bits[i : i + 4])), 2) for i in range(0, 256, 4))


def main():
    os.makedirs(SYN, exist_ok=True)
    rows = []
    items = []
    for name, data in synthetic():
        with open(os.path.join(SYN, name), "wb") as f:
            f.write(data)
        items.append(("repo", f"tests/fixtures/pdq/{name}", data))
    for name in sorted(os.listdir(os.path.join(ROOT, "data-sample/imagenet"))):
        if name.endswith(".jpg"):
            p = f"data-sample/imagenet/{name}"
            items.append(("repo", p, open(os.path.join(ROOT, p), "rb").read()))
    shared = sorted(os.listdir(os.path.join(SHARED, "images")))[::2][:190]
    for name in shared:
        items.append(("shared", f"images/{name}", open(os.path.join(SHARED, "images", name), "rb").read()))
    for source, path, data in items:
        pixels = np.ascontiguousarray(reference_pixels(data))
        if min(pixels.shape[:2]) < 5:
            hashes, quality = [[0] * 256] * 8, 0  # the reference's rule for tiny images
        else:
            hashes, quality = pdqhash.compute_dihedral(pixels)
        rows.append([source, path, quality] + [to_hex(h) for h in hashes])
    out = os.path.join(ROOT, "tests/fixtures/pdq_reference.csv")
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "path", "quality"] + NAMES)
        w.writerows(rows)
    print(f"{out}: {len(rows)} images", file=sys.stderr)


if __name__ == "__main__":
    main()
