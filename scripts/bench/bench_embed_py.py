"""The same embedding job in Python, for a side-by-side benchmark with benches/embed.rs.

onnxruntime + Pillow, with Pillow's reduced-scale JPEG decoding (`draft`), the same input
geometry as hotelmatch (aspect kept, ~224x224 pixels, sides multiples of 32), ImageNet
normalisation, global average pooling and L2 normalisation in numpy.
Prints JSON lines: {"impl": "python", "batch": B, "images_per_s": X}.
"""
import io
import json
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def target(w, h, base=224, stride=32):
    aspect = min(max(w / h, 1 / 3), 3)
    area = base * base
    r = lambda v: max(1, round(v / stride)) * stride
    return r(math.sqrt(area * aspect)), r(math.sqrt(area / aspect))


def preprocess(data):
    im = Image.open(io.BytesIO(data))
    tw, th = target(*im.size)
    im.draft("RGB", (tw, th))  # as hotelmatch asks its decoder: just large enough
    im = im.convert("RGB")
    im = im.resize((tw, th), Image.BILINEAR)
    return ((np.asarray(im, dtype=np.float32) - MEAN) / STD).transpose(2, 0, 1)


def embed(sess, batch):
    xs = [preprocess(d) for d in batch]
    out = []
    # one inference per shape, as hotelmatch does
    shapes = {}
    for i, x in enumerate(xs):
        shapes.setdefault(x.shape, []).append(i)
    for idx in shapes.values():
        fm = sess.run(["feature_map"], {"input": np.stack([xs[i] for i in idx])})[0]
        v = fm.mean(axis=(2, 3))
        out.extend(v / np.linalg.norm(v, axis=1, keepdims=True))
    return out


def main(model, photos_dir, seconds=8.0, threads=0):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count()
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    files = sorted(os.path.join(photos_dir, f) for f in os.listdir(photos_dir) if f.endswith(".jpg"))
    data = [open(f, "rb").read() for f in files]
    for batch in (1, 16):
        embed(sess, data[:batch])  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for i in range(0, len(data), batch):
                embed(sess, data[i:i + batch])
                n += len(data[i:i + batch])
        print(json.dumps({"impl": "python", "batch": batch, "images_per_s": round(n / (time.perf_counter() - t0), 2)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 8.0)
