#!/usr/bin/env python3
"""Builds an Inception-v3 (torchvision's topology, no aux head) with random
weights from a fixed seed: 1x3x299x299 -> 1x1000, ~24M params.

Stem (3x3 convs, max pools), 3 Inception-A (1x1 / 1x1->5x5 / 1x1->3x3->3x3 /
avgpool->1x1), Inception-B reduction, 4 Inception-C (factorised 1x7 / 7x1
chains), Inception-D reduction, 2 Inception-E (a 1x1 feeding sibling 1x3 and
3x1 convs whose outputs are concatenated), GlobalAveragePool, Flatten, Gemm.
Every conv is BasicConv2d: Conv without bias + BatchNormalization + Relu, as
PyTorch exports it (--fold-bn: Conv with bias + Relu, as exported with
constant folding). Many sibling convs read the same tensor (three or four
1x1s per block input, the 1x3/3x1 pairs in E), so parallel-branch merging
has work to do. AveragePool counts padding (count_include_pad=1), like
torch's avg_pool2d default.

Usage: python inception.py [--size 299] [--fold-bn] [OUT_DIR]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Builder, default_out, save  # noqa: E402

CLASSES = 1000


class Inception(Builder):
    def basic(self, x, cin, cout, kernel, stride=1, pads=None):
        if pads is None:
            pads = [0, 0, 0, 0]
        return self.relu(self.conv_bn(x, cin, cout, kernel, stride, pads))

    def same(self, x, cin, cout, kh, kw):
        # Stride-1 conv that keeps the spatial size.
        return self.basic(x, cin, cout, (kh, kw), 1, [kh // 2, kw // 2, kh // 2, kw // 2])

    def avg3(self, x):
        return self.node("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1],
                         pads=[1, 1, 1, 1], count_include_pad=1)

    def max3s2(self, x):
        return self.node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])

    def concat(self, xs):
        return self.node("Concat", xs, axis=1)

    def block_a(self, x, cin, pool_features):
        b1 = self.same(x, cin, 64, 1, 1)
        b5 = self.same(self.same(x, cin, 48, 1, 1), 48, 64, 5, 5)
        b3 = self.same(x, cin, 64, 1, 1)
        b3 = self.same(self.same(b3, 64, 96, 3, 3), 96, 96, 3, 3)
        bp = self.same(self.avg3(x), cin, pool_features, 1, 1)
        return self.concat([b1, b5, b3, bp]), 64 + 64 + 96 + pool_features

    def block_b(self, x, cin):
        b3 = self.basic(x, cin, 384, 3, 2)
        bd = self.same(self.same(x, cin, 64, 1, 1), 64, 96, 3, 3)
        bd = self.basic(bd, 96, 96, 3, 2)
        return self.concat([b3, bd, self.max3s2(x)]), 384 + 96 + cin

    def block_c(self, x, cin, c7):
        b1 = self.same(x, cin, 192, 1, 1)
        b7 = self.same(x, cin, c7, 1, 1)
        b7 = self.same(self.same(b7, c7, c7, 1, 7), c7, 192, 7, 1)
        bd = self.same(x, cin, c7, 1, 1)
        bd = self.same(self.same(bd, c7, c7, 7, 1), c7, c7, 1, 7)
        bd = self.same(self.same(bd, c7, c7, 7, 1), c7, 192, 1, 7)
        bp = self.same(self.avg3(x), cin, 192, 1, 1)
        return self.concat([b1, b7, bd, bp]), 768

    def block_d(self, x, cin):
        b3 = self.basic(self.same(x, cin, 192, 1, 1), 192, 320, 3, 2)
        b7 = self.same(x, cin, 192, 1, 1)
        b7 = self.same(self.same(b7, 192, 192, 1, 7), 192, 192, 7, 1)
        b7 = self.basic(b7, 192, 192, 3, 2)
        return self.concat([b3, b7, self.max3s2(x)]), 320 + 192 + cin

    def block_e(self, x, cin):
        b1 = self.same(x, cin, 320, 1, 1)
        b3 = self.same(x, cin, 384, 1, 1)
        b3 = self.concat([self.same(b3, 384, 384, 1, 3), self.same(b3, 384, 384, 3, 1)])
        bd = self.same(self.same(x, cin, 448, 1, 1), 448, 384, 3, 3)
        bd = self.concat([self.same(bd, 384, 384, 1, 3), self.same(bd, 384, 384, 3, 1)])
        bp = self.same(self.avg3(x), cin, 192, 1, 1)
        return self.concat([b1, b3, bd, bp]), 320 + 768 + 768 + 192


def build(size=299, fold_bn=False, seed=0):
    b = Inception(seed, fold_bn)
    x = b.basic("input", 3, 32, 3, 2)
    x = b.basic(x, 32, 32, 3)
    x = b.same(x, 32, 64, 3, 3)
    x = b.max3s2(x)
    x = b.basic(x, 64, 80, 1)
    x = b.basic(x, 80, 192, 3)
    x = b.max3s2(x)
    c = 192
    for pf in (32, 64, 64):
        x, c = b.block_a(x, c, pf)
    x, c = b.block_b(x, c)
    for c7 in (128, 160, 160, 192):
        x, c = b.block_c(x, c, c7)
    x, c = b.block_d(x, c)
    for _ in range(2):
        x, c = b.block_e(x, c)
    b.classifier(x, c, CLASSES)
    model = b.model("inception_v3", [("input", [1, 3, size, size])], [("logits", [1, CLASSES])])
    feeds = {"input": np.random.default_rng(seed + 1).standard_normal((1, 3, size, size), dtype=np.float32)}
    return model, feeds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=299, help="input height and width (>= 75)")
    p.add_argument("--fold-bn", action="store_true")
    p.add_argument("out_dir", nargs="?", default=default_out("inception"))
    args = p.parse_args()
    model, feeds = build(args.size, args.fold_bn)
    save(args.out_dir, model, feeds, {"config": {"size": args.size, "fold_bn": args.fold_bn}})


if __name__ == "__main__":
    main()
