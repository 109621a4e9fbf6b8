"""Geometric verification of the top candidates on listings-dev: SIFT keypoints (the query's
mask excluded), Lowe's ratio test, RANSAC fundamental matrix between the query and each of
the SSCD top-K gallery photos; the photo's score becomes similarity + beta * min(inliers, cap) / cap.

  .cache/venv/bin/pip install opencv-python-headless==5.0.0.93
  [FEATURES=orb] .cache/venv/bin/python scripts/eval/experiments/geometric.py ../shared/data/listings-dev
"""
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from rerank import fmt, hotel_ranks, load  # noqa: E402

SET = Path(sys.argv[1])
K = 30
# FEATURES=sift (default) or orb (binary, as a Rust port with FAST + BRIEF would be).
KIND = os.environ.get("FEATURES", "sift")
sift = cv2.SIFT_create(nfeatures=1500) if KIND == "sift" else cv2.ORB_create(nfeatures=1500)
NORM = cv2.NORM_L2 if KIND == "sift" else cv2.NORM_HAMMING
cache = {}


def feat(path, mask=None):
    key = (str(path), str(mask))
    if key not in cache:
        im = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        s = 640 / max(im.shape)
        im = cv2.resize(im, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        m = None
        if mask is not None:
            m = cv2.resize(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE), (im.shape[1], im.shape[0]))
            m = np.where(m > 127, 0, 255).astype(np.uint8)
        k, d = sift.detectAndCompute(im, m)
        cache[key] = (np.float32([x.pt for x in k]), d)
    return cache[key]


def inliers(a, b):
    (ka, da), (kb, db) = a, b
    if da is None or db is None or len(da) < 8 or len(db) < 8:
        return 0
    m = cv2.BFMatcher(NORM).knnMatch(da, db, k=2)
    good = [x[0] for x in m if len(x) == 2 and x[0].distance < 0.8 * x[1].distance]
    if len(good) < 8:
        return 0
    pa = ka[[x.queryIdx for x in good]]
    pb = kb[[x.trainIdx for x in good]]
    F, mask = cv2.findFundamentalMat(pa, pb, cv2.FM_RANSAC, 3.0, 0.99)
    return int(mask.sum()) if mask is not None else 0


gp, gh, sets, G, Q = load(SET, ["sscd-distilled"])
g = G["sscd-distilled"]
for name, (paths, masks, qh) in sets.items():
    q = Q[("sscd-distilled", name)]
    S = q @ g.T
    t = time.time()
    inl = np.zeros_like(S)
    for i in range(len(paths)):
        fq = feat(paths[i], masks[i] if masks else None)
        for j in np.argsort(-S[i])[:K]:
            inl[i, j] = inliers(fq, feat(gp[j]))
    ms = (time.time() - t) / len(paths) * 1000
    print(f"== {name}  ({ms:.0f} ms per query for {K} verifications, gallery features cached)")
    print(f"{'baseline':28}", fmt(hotel_ranks(S, gh, qh)))
    for cap in [15, 30, 60]:
        for beta in [0.1, 0.2, 0.4]:
            print(f"{f'inliers cap {cap} beta {beta}':28}", fmt(hotel_ranks(S + beta * np.minimum(inl, cap) / cap, gh, qh)))
