"""Check converted models: feature-map shapes, and ImageNet top-1 where the model has logits."""
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

# file -> acceptable ImageNet class ids (see data-sample/imagenet/README.md)
EXPECTED = {"cat.jpg": {281, 282, 285}, "espresso.jpg": {967, 968}}
MODELS = {
    # name: (size, mean, std) as in the model cards
    "mobilenetv2": (224, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
    "efficientnet-lite0": (224, [127.0] * 3, [128.0] * 3),
    "efficientnet-lite2": (260, [127.0] * 3, [128.0] * 3),
}


def main(models_dir, photos_dir):
    failures = 0
    for name, (size, mean, std) in MODELS.items():
        path = os.path.join(models_dir, name + ".onnx")
        if not os.path.exists(path):
            continue
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in sess.get_outputs()]
        for photo, classes in EXPECTED.items():
            im = Image.open(os.path.join(photos_dir, photo)).convert("RGB").resize((size, size), Image.BILINEAR)
            x = ((np.asarray(im, dtype=np.float32) - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
            res = dict(zip(outputs, sess.run(None, {"input": x})))
            fm = res["feature_map"]
            assert fm.shape[:2] == (1, 1280) and fm.shape[2] == -(-size // 32), fm.shape
            if "logits" not in res:
                print(f"verify: {name:20s} {photo:14s} feature_map {tuple(fm.shape)} (no classifier in this checkpoint)")
                continue
            top = int(np.argmax(res["logits"][0]))
            ok = top in classes
            failures += not ok
            print(f"verify: {name:20s} {photo:14s} top-1 class {top:4d} {'ok' if ok else 'WRONG, expected ' + str(sorted(classes))}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
