"""Lists the metadata an image file still carries, read by Pillow (an independent parser).

Prints one JSON object per file: {"file", "format", "found": [what was found]}; an empty
"found" means the file carries its pixels only (JFIF, ICC and Adobe's colour marker are not
reported: the store keeps them on purpose). Used by the privacy test in tests/api.rs.

  .cache/venv/bin/python scripts/dev/check_metadata.py FILE...
"""
import json
import sys

from PIL import Image

KEPT_APP = {("APP0", b"JFIF\0"), ("APP2", b"ICC_PROFILE\0"), ("APP14", b"Adobe")}
INFO_KEYS = ["exif", "xmp", "XML:com.adobe.xmp", "comment", "photoshop", "mp", "mpinfo", "iptc", "dpi_thumbnail", "jfif_thumbnail"]

for path in sys.argv[1:]:
    found = []
    with open(path, "rb") as f:
        raw = f.read()
    with Image.open(path) as im:
        fmt = im.format
        if fmt == "MPO" or getattr(im, "n_frames", 1) > 1:
            found.append(f"{getattr(im, 'n_frames', 1)} frames ({fmt})")
        if len(im.getexif()):
            found.append(f"EXIF with {len(im.getexif())} tags")
        for key in INFO_KEYS:
            if im.info.get(key):
                found.append(f"info[{key}]")
        # PNG text chunks and the like end up as other string entries of info.
        for key, value in im.info.items():
            if key not in INFO_KEYS and isinstance(value, (str, bytes)) and key not in ("icc_profile", "adobe_transform", "jfif", "jfif_version", "jfif_unit", "jfif_density", "adobe", "progression", "progressive"):
                found.append(f"info[{key}]")
        for marker, payload in getattr(im, "applist", []):
            if not any(marker == m and payload.startswith(p) for m, p in KEPT_APP):
                found.append(f"{marker} {payload[:12]!r}")
        if fmt in ("JPEG", "MPO"):
            # Pillow stops at the first end-of-image; whatever follows it is a trailer.
            im.load()
            end = raw.rfind(b"\xff\xd9")
            if end + 2 != len(raw) or raw.count(b"\xff\xd8\xff") > 1:
                found.append("data after the end of the image")
    print(json.dumps({"file": path, "format": fmt, "found": found}))
