"""Writes the bad-input corpus into tests/fixtures/bad/ (small files, committed) and its
manifest, expected.csv: file,field,expect — `reject` (a JSON 4xx, nothing stored),
`accept` (odd but valid: it must be handled, not refused) or `flat` (too little of a room:
refused as an upload, searched but never "strong"). tests/api.rs sends each one.

  .cache/venv/bin/python scripts/data/make_bad_fixtures.py
"""
import io
import struct
import zlib
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/bad"
OUT.mkdir(parents=True, exist_ok=True)
rows = []


def put(name, data, field="photo", expect="reject"):
    (OUT / name).write_bytes(data)
    rows.append((name, field, expect))


def encoded(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


room = Image.new("RGB", (96, 64))
for x in range(96):
    for y in range(64):
        room.putpixel((x, y), ((x * 5) % 256, (y * 7) % 256, ((x + y) * 3) % 256))
jpeg = encoded(room, "JPEG", quality=90)
png = encoded(room, "PNG")

put("empty.jpg", b"")
put("text.jpg", b"this is not an image at all\n" * 4)
put("truncated.jpg", jpeg[: len(jpeg) // 2])
put("jpeg-header-only.jpg", jpeg[:200])
put("corrupt-scan.jpg", jpeg[:300] + bytes(b ^ 0x5A for b in jpeg[300:600]) + jpeg[600:])
put("truncated.png", png[: len(png) // 2])
put("png-bad-crc.png", png[:40] + bytes([png[40] ^ 0xFF]) + png[41:])
# A PNG whose header declares 100000 x 100000 pixels: refused from the header, never allocated.
ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
put("huge-declared.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))
# A JPEG whose SOF declares 65000 x 65000.
sof = jpeg.find(b"\xff\xc0")
put("huge-declared.jpg", jpeg[: sof + 5] + struct.pack(">HH", 65000, 65000) + jpeg[sof + 9 :])
put("zero-size.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)) + png_chunk(b"IEND", b""))
# Polyglots: a JPEG with a ZIP appended, and HTML wearing a GIF header.
put("jpeg-zip-polyglot.jpg", jpeg + b"PK\x03\x04" + b"\0" * 26 + b"payload", expect="accept")
put("gif-html-polyglot.gif", b"GIF89a<script>alert(1)</script>")
# Odd but valid: animated GIF (first frame), 16-bit PNG, CMYK JPEG, greyscale, 1x1.
frames = [Image.new("RGB", (64, 48), c) for c in ((200, 30, 30), (30, 200, 30))]
for f, dx in zip(frames, (0, 20)):
    for x in range(10 + dx, 30 + dx):
        for y in range(10, 30):
            f.putpixel((x, y), (250, 250, 250))
b = io.BytesIO()
frames[0].save(b, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
put("animated.gif", b.getvalue(), expect="accept")
put("sixteen-bit.png", encoded(room.convert("L").convert("I").point(lambda v: v * 256).convert("I;16"), "PNG"), expect="accept")
put("cmyk.jpg", encoded(room.convert("CMYK"), "JPEG"), expect="accept")
put("one-pixel.png", encoded(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), expect="flat")
# EXIF that is malformed: an IFD pointing past the end, and a wrong byte order mark.
def with_app1(payload):
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


put("exif-ifd-past-end.jpg", with_app1(b"Exif\0\0II*\0" + struct.pack("<I", 0xFFFFFF00)), expect="accept")
put("exif-bad-byte-order.jpg", with_app1(b"Exif\0\0XX*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0"), expect="accept")
# Masks: wrong aspect ratio (a JSON 400), and a mask that covers everything.
put("mask-wrong-shape.png", encoded(Image.new("L", (64, 64), 255), "PNG"), field="mask")
put("mask-everything.png", encoded(Image.new("L", (96, 64), 255), "PNG"), field="mask")
put("mask-not-an-image.png", b"nope", field="mask")
# Text fields: invalid UTF-8 in `room`.
put("room-invalid-utf8.txt", b"10\xff\xfe1", field="room")

with open(OUT / "expected.csv", "w") as f:
    f.write("file,field,expect\n")
    for r in rows:
        f.write(",".join(r) + "\n")
print(f"{len(rows)} files in {OUT}")
