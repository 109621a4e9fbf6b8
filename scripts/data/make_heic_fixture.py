"""Writes tests/fixtures/heic/lonestar-gps.heic: data-sample's Lone Star query photo as an
iPhone would save it (HEIC), carrying EXIF with GPS coordinates and a camera model. The
tests check that it decodes, matches like the JPEG, and that no stored or served copy keeps
its GPS.
Needs pillow-heif (PyPI): `.cache/venv/bin/pip install pillow-heif`, then from the repository
root `.cache/venv/bin/python scripts/data/make_heic_fixture.py`."""
from PIL import Image
import pillow_heif

pillow_heif.register_heif_opener()
src = Image.open("data-sample/queries/h-lonestar-query.jpg").convert("RGB")
exif = Image.Exif()
exif[0x0110] = "iPhone 15 Pro"  # Model
gps = {1: "N", 2: (39.0, 44.0, 30.5), 3: "W", 4: (104.0, 59.0, 12.25)}
exif[0x8825] = gps
heif = pillow_heif.from_pillow(src)
heif.info["exif"] = exif.tobytes()
heif.save("tests/fixtures/heic/lonestar-gps.heic", quality=80)
print("wrote tests/fixtures/heic/lonestar-gps.heic", src.size)
