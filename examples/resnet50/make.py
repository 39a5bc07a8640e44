#!/usr/bin/env python3
"""Builds a ResNet-50 (v1.5 topology: bottleneck blocks 3-4-6-3, stride on the
3x3 conv, 1x3x224x224 input, 1000 classes) with random weights from a fixed
seed, plus an input and onnxruntime's output. ~100 MB, so it is generated into
.cache/resnet50/ (OUT_DIR) and never committed; it feeds the interpreter's
timing check. Usage: python make.py [--cross-check] [OUT_DIR]
"""
import argparse
import importlib.util
import os
import sys

import numpy as np
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from _fixture import save  # noqa: E402

# The conv / batch-norm builder is the one resnet_mini uses.
_spec = importlib.util.spec_from_file_location("resnet_mini_make", os.path.join(HERE, "..", "resnet_mini", "make.py"))
_mini = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mini)

OPSET = 17
CLASSES = 1000
STAGES = [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]  # (width, blocks, stride)
EXPANSION = 4


def bottleneck(b, x, cin, width, stride):
    cout = width * EXPANSION
    y = b.relu(b.bn(b.conv(x, cin, width, 1), width))
    y = b.relu(b.bn(b.conv(y, width, width, 3, stride), width))
    # A small last gamma (torchvision zero-initialises it) keeps the residual
    # stream from growing block after block with random weights.
    y = b.bn(b.conv(y, width, cout, 1), cout, scale_range=(0.1, 0.3))
    if stride != 1 or cin != cout:
        skip = b.bn(b.conv(x, cin, cout, 1, stride), cout)
    else:
        skip = x
    return b.relu(b.node("Add", [y, skip]))


def build(seed=0):
    b = _mini.Builder(seed)
    x = b.relu(b.bn(b.conv("input", 3, 64, 7, 2), 64))  # 224 -> 112
    x = b.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # -> 56
    cin = 64
    for width, blocks, stride in STAGES:
        for i in range(blocks):
            x = bottleneck(b, x, cin, width, stride if i == 0 else 1)
            cin = width * EXPANSION
    x = b.node("GlobalAveragePool", [x])
    x = b.node("Flatten", [x], axis=1)
    w = (b.rng.standard_normal((CLASSES, cin)) / np.sqrt(cin)).astype(np.float32)
    bias = (b.rng.standard_normal(CLASSES) * 0.1).astype(np.float32)
    b.node("Gemm", [x, b.const("fc_w", w), b.const("fc_b", bias)], transB=1)
    b.nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        b.nodes,
        "resnet50",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CLASSES])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="smelt-examples")
    model.ir_version = 8
    x = np.random.default_rng(seed + 1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    return model, {"input": x}


def main():
    repo = os.path.abspath(os.path.join(HERE, "..", ".."))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cross-check", action="store_true",
                   help="also compare with onnx.reference (slow: minutes)")
    p.add_argument("out_dir", nargs="?", default=os.path.join(repo, ".cache", "resnet50"))
    args = p.parse_args()
    model, feeds = build()
    save(args.out_dir, model, feeds, cross_check=args.cross_check)


if __name__ == "__main__":
    main()
