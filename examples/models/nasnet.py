#!/usr/bin/env python3
"""Builds a NASNet-A-style network (the cells of tf-slim's NASNet-A Mobile)
with random weights from a fixed seed: 1x3x224x224 -> 1x1000.

Stem conv, two reduction "stem" cells (filters 11 and 22), then three stacks
of N normal cells (44, 88, 176 filters) separated by reduction cells. Each
cell reads the two previous cell outputs: the older one is brought to the
newer one's shape (Relu + 1x1 Conv + BN, or, across a stride, the factorised
reduction: two AveragePool k1 s2 paths, one shifted by Pad + Slice, each a
1x1 Conv, Concat, BN). Five blocks per cell each Add two ops drawn from:
separable conv 3x3/5x5/7x7 applied twice (Relu, depthwise Conv group=C,
pointwise 1x1 Conv, BN; x2), AveragePool / MaxPool 3x3 (padding not
counted, as TF's SAME pooling) and identity. Unused block outputs are
concatenated. Head: Relu, GlobalAveragePool, Flatten, Gemm.

N=2 (default): 584 nodes, 3.4M params. N=4: 914 nodes, 5.3M params, the size
of NASNet-A Mobile.
BN can be folded into the convs with --fold-bn.

Usage: python nasnet.py [--cells N] [--size 224] [--filters 44] [--fold-bn] [OUT_DIR]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import Builder, default_out, save  # noqa: E402

CLASSES = 1000
STEM_FILTERS = 32
# (op, hidden-state index) pairs, two per block, as in tf-slim's nasnet_utils.
NORMAL = dict(ops=["sep5", "sep3", "sep5", "sep3", "avg3", "none", "avg3", "avg3", "sep3", "none"],
              idx=[0, 1, 1, 1, 0, 1, 1, 1, 0, 0],
              used=[1, 0, 0, 0, 0, 0, 0])
REDUCTION = dict(ops=["sep5", "sep7", "max3", "sep7", "avg3", "sep5", "none", "avg3", "sep3", "max3"],
                 idx=[0, 1, 0, 1, 0, 1, 3, 2, 2, 0],
                 used=[1, 1, 1, 0, 0, 0, 0])


class NasNet(Builder):
    def conv_bn_1x1(self, x, cin, cout, stride=1):
        return self.conv_bn(self.relu(x), cin, cout, 1, stride, [0, 0, 0, 0])

    def separable(self, x, cin, cout, k, stride):
        # Stacked twice; only the first depthwise conv strides.
        for layer in range(2):
            x = self.relu(x)
            x = self.conv(x, cin, cin, k, stride, group=cin)
            # A smaller last gamma keeps each block's Add of two branches from
            # doubling the activations' scale cell after cell (random weights
            # have no training to hold it in check).
            gamma = (0.3, 0.7) if layer == 1 else (0.5, 1.5)
            x = self.conv_bn(x, cin, cout, 1, 1, [0, 0, 0, 0], scale_range=gamma)
            cin, stride = cout, 1
        return x

    def factorized_reduction(self, x, cin, cout):
        x = self.relu(x)
        half = cout // 2
        p1 = self.node("AveragePool", [x], kernel_shape=[1, 1], strides=[2, 2])
        p1 = self.conv(p1, cin, half, 1, 1, [0, 0, 0, 0])
        # The second path sees the input shifted by one pixel (pad bottom/right,
        # drop the first row and column), so the two halves sample different pixels.
        p2 = self.node("Pad", [x, self.ints("pads", [0, 0, 0, 0, 0, 0, 1, 1])], mode="constant")
        big = np.iinfo(np.int64).max
        p2 = self.node("Slice", [p2, self.ints("starts", [1, 1]), self.ints("ends", [big, big]),
                                 self.ints("axes", [2, 3])])
        p2 = self.node("AveragePool", [p2], kernel_shape=[1, 1], strides=[2, 2])
        p2 = self.conv(p2, cin, cout - half, 1, 1, [0, 0, 0, 0])
        return self.bn(self.node("Concat", [p1, p2], axis=1), cout)

    def apply(self, op, x, cin, f, stride):
        if op.startswith("sep"):
            return self.separable(x, cin, f, int(op[3]), stride)
        if op in ("avg3", "max3"):
            if op == "avg3":
                y = self.node("AveragePool", [x], kernel_shape=[3, 3], strides=[stride, stride],
                              pads=[1, 1, 1, 1], count_include_pad=0)
            else:
                y = self.node("MaxPool", [x], kernel_shape=[3, 3], strides=[stride, stride],
                              pads=[1, 1, 1, 1])
            return self.conv_bn_1x1(y, cin, f) if cin != f else y
        assert op == "none"
        if stride > 1 or cin != f:
            return self.conv_bn_1x1(x, cin, f, stride)
        return x

    def cell(self, spec, cur, prev, f, stride):
        """cur / prev: (name, channels, spatial size). Returns the cell output."""
        if prev is None:
            prev = cur
        pname, pc, ps = prev
        if ps != cur[2]:
            pname, pc = self.factorized_reduction(pname, pc, f), f
        elif pc != f:
            pname, pc = self.conv_bn_1x1(pname, pc, f), f
        x = self.conv_bn_1x1(cur[0], cur[1], f)
        hidden = [(x, f), (pname, pc)]
        ops, idx = spec["ops"], spec["idx"]
        for blk in range(5):
            outs = []
            for j in (2 * blk, 2 * blk + 1):
                h, hc = hidden[idx[j]]
                outs.append(self.apply(ops[j], h, hc, f, stride if idx[j] < 2 else 1))
            hidden.append((self.node("Add", outs), f))
        keep = [h for h, used in zip(hidden, spec["used"]) if not used]
        out = self.node("Concat", [h for h, _ in keep], axis=1)
        return out, sum(c for _, c in keep), cur[2] // stride


def build(cells=2, size=224, filters=44, fold_bn=False, seed=0):
    b = NasNet(seed, fold_bn)
    x = b.conv_bn("input", 3, STEM_FILTERS, 3, 2, [1, 1, 1, 1])
    outs = [None, (x, STEM_FILTERS, size // 2)]
    for scale in (0.25, 0.5):  # stem cells
        outs.append(b.cell(REDUCTION, outs[-1], outs[-2], int(filters * scale), 2))
    f = filters
    for stack in range(3):
        if stack > 0:
            f *= 2
            outs.append(b.cell(REDUCTION, outs[-1], outs[-2], f, 2))
        for _ in range(cells):
            outs.append(b.cell(NORMAL, outs[-1], outs[-2], f, 1))
    x, c, _ = outs[-1]
    b.classifier(b.relu(x), c, CLASSES)
    model = b.model("nasnet_a", [("input", [1, 3, size, size])], [("logits", [1, CLASSES])])
    feeds = {"input": np.random.default_rng(seed + 1).standard_normal((1, 3, size, size), dtype=np.float32)}
    return model, feeds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=2, help="normal cells per stack (Mobile: 4)")
    p.add_argument("--size", type=int, default=224, help="input height and width (multiple of 32)")
    p.add_argument("--filters", type=int, default=44, help="filters of the first stack")
    p.add_argument("--fold-bn", action="store_true")
    p.add_argument("out_dir", nargs="?", default=default_out("nasnet"))
    args = p.parse_args()
    if args.size % 32:
        p.error("--size must be a multiple of 32")
    model, feeds = build(args.cells, args.size, args.filters, args.fold_bn)
    save(args.out_dir, model, feeds, {"config": {"cells": args.cells, "size": args.size,
                                                 "filters": args.filters, "fold_bn": args.fold_bn}})


if __name__ == "__main__":
    main()
