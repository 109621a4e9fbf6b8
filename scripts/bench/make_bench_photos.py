"""Writes phone-sized JPEGs (4032x3024 and 3024x4032, quality 90) for the benchmarks.

Made from the CC0 photos in data-sample/imagenet, upscaled with added sensor-like noise so
that the files are as large and as costly to decode as real phone photos (3-5 MB).
"""
import os
import sys

import numpy as np
from PIL import Image

def main(src_dir, out_dir, count):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(7)
    sources = sorted(f for f in os.listdir(src_dir) if f.endswith(".jpg"))
    for i in range(count):
        path = os.path.join(out_dir, f"phone-{i:02d}.jpg")
        if os.path.exists(path):
            continue
        size = (4032, 3024) if i % 4 else (3024, 4032)
        im = Image.open(os.path.join(src_dir, sources[i % len(sources)])).convert("RGB").resize(size, Image.BICUBIC)
        a = np.asarray(im, dtype=np.float32) + rng.normal(0, 6, (size[1], size[0], 3))
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path + ".tmp", "JPEG", quality=90)
        os.replace(path + ".tmp", path)

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 32)
