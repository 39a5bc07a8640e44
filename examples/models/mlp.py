#!/usr/bin/env python3
"""Builds an MLP the way exporters write one: MatMul + Add (bias) + Relu per
hidden layer (batch 64, 1024 -> 4096 -> 4096 -> 1024, fp32, random weights
from a fixed seed, ~25M params). The third benchmark shape beside ResNet-50
and BERT-base: pure GEMM plus epilogues.

Usage: python mlp.py [OUT_DIR]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Builder, default_out, save  # noqa: E402

BATCH = 64
SIZES = [1024, 4096, 4096, 1024]


def build(seed=0):
    b = Builder(seed)
    x = "x"
    for i, (cin, cout) in enumerate(zip(SIZES, SIZES[1:])):
        w = b.normal((cin, cout), np.sqrt(2.0 / cin))
        y = b.node("MatMul", [x, b.const("w", w)])
        y = b.node("Add", [y, b.const("b", b.normal((cout,), 0.1))])
        x = y if i == len(SIZES) - 2 else b.relu(y)
    b.nodes[-1].output[0] = "y"
    model = b.model("mlp", [("x", [BATCH, SIZES[0]])], [("y", [BATCH, SIZES[-1]])])
    feeds = {"x": b.rng.standard_normal((BATCH, SIZES[0]), dtype=np.float32)}
    return model, feeds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", nargs="?", default=default_out("mlp"))
    a = p.parse_args()
    model, feeds = build()
    save(a.out_dir, model, feeds)


if __name__ == "__main__":
    main()
