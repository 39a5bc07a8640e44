#!/usr/bin/env python3
"""Builds a small ResNet-style CNN (fixed seed) and records onnxruntime's output.

Writes model.onnx, input_0.pb and expected_0.pb into OUT_DIR (default: this
folder). With --variant shape the Flatten before the Gemm is replaced by
Shape -> Gather -> Concat -> Reshape, so an importer or optimizer has to fold
a run-time shape computation to get static shapes. Usage:
    python make.py [--variant flatten|shape] [OUT_DIR]
"""
import argparse
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from _fixture import save  # noqa: E402

OPSET = 17
BATCH = 2
CLASSES = 10


class Builder:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, prefix, array):
        n = self.name(prefix)
        self.inits.append(numpy_helper.from_array(array, n))
        return n

    def node(self, op, inputs, prefix=None, **attrs):
        out = self.name(prefix or op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out + "_node", **attrs))
        return out

    def conv(self, x, cin, cout, k, stride=1):
        # He initialisation keeps activations O(1) through the network, so the
        # reference output is neither tiny nor saturated.
        std = np.sqrt(2.0 / (cin * k * k))
        w = (self.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)
        pad = k // 2
        return self.node(
            "Conv",
            [x, self.const("conv_w", w)],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def bn(self, x, c, scale_range=(0.5, 1.5)):
        scale = self.rng.uniform(*scale_range, c).astype(np.float32)
        bias = (self.rng.standard_normal(c) * 0.1).astype(np.float32)
        mean = (self.rng.standard_normal(c) * 0.1).astype(np.float32)
        var = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        ins = [x] + [self.const(p, a) for p, a in
                     (("bn_scale", scale), ("bn_bias", bias), ("bn_mean", mean), ("bn_var", var))]
        return self.node("BatchNormalization", ins, epsilon=1e-5)

    def relu(self, x):
        return self.node("Relu", [x])

    def basic_block(self, x, cin, cout, stride):
        y = self.relu(self.bn(self.conv(x, cin, cout, 3, stride), cout))
        y = self.bn(self.conv(y, cout, cout, 3), cout)
        if stride != 1 or cin != cout:
            skip = self.bn(self.conv(x, cin, cout, 1, stride), cout)
        else:
            skip = x
        return self.relu(self.node("Add", [y, skip]))


def build(variant, seed=0):
    b = Builder(seed)
    x = b.relu(b.bn(b.conv("input", 3, 16, 3), 16))
    x = b.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])  # 32 -> 16
    x = b.basic_block(x, 16, 16, 1)  # identity skip
    x = b.basic_block(x, 16, 32, 2)  # 1x1 projection skip, 16 -> 8
    x = b.node("GlobalAveragePool", [x])  # [N, 32, 1, 1]
    if variant == "flatten":
        x = b.node("Flatten", [x], axis=1)
    else:
        shape = b.node("Shape", [x])
        batch = b.node("Gather", [shape, b.const("idx", np.array([0], np.int64))], axis=0)
        target = b.node("Concat", [batch, b.const("minus_one", np.array([-1], np.int64))], axis=0)
        x = b.node("Reshape", [x, target])
    w = (b.rng.standard_normal((CLASSES, 32)) / np.sqrt(32)).astype(np.float32)
    bias = (b.rng.standard_normal(CLASSES) * 0.1).astype(np.float32)
    b.node("Gemm", [x, b.const("fc_w", w), b.const("fc_b", bias)], transB=1)
    b.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        b.nodes,
        f"resnet_mini_{variant}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [BATCH, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [BATCH, CLASSES])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="smelt-examples")
    model.ir_version = 8
    x = np.random.default_rng(seed + 1).standard_normal((BATCH, 3, 32, 32)).astype(np.float32)
    return model, {"input": x}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=["flatten", "shape"], default="flatten")
    p.add_argument("out_dir", nargs="?", default=os.path.dirname(os.path.abspath(__file__)))
    args = p.parse_args()
    model, feeds = build(args.variant)
    save(args.out_dir, model, feeds)


if __name__ == "__main__":
    main()
