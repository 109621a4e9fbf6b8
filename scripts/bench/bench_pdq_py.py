"""PDQ hashing speed of the reference (PyPI pdqhash: Meta's C++ under Python bindings),
single thread, on the same decoded pixels as benches/pdq.rs. Prints JSON lines."""
import json
import os
import sys
import time

import numpy as np
import pdqhash
from PIL import Image


def main(seconds):
    for name, d, limit in [("phone-4032x3024", ".cache/bench-photos", 8), ("indoor-1280x720", "../shared/data/indoor-dev/images", 64)]:
        if not os.path.isdir(d):
            continue
        files = sorted(f for f in os.listdir(d) if f.endswith(".jpg"))[:limit]
        imgs = [np.ascontiguousarray(np.asarray(Image.open(os.path.join(d, f)).convert("RGB"))) for f in files]
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for im in imgs:
                pdqhash.compute(im)
                n += 1
        print(json.dumps({"bench": "pdq-hash", "impl": "python-cpp", "set": name, "images_per_s": round(n / (time.perf_counter() - t0), 2)}), flush=True)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)
