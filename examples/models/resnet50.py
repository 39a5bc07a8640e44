#!/usr/bin/env python3
"""ResNet-50 for the benchmark set: a thin wrapper around
examples/resnet50/make.py (same graph, same seed: bottlenecks 3-4-6-3, Conv
without bias + BatchNormalization + Relu as PyTorch exports it, MaxPool, Add,
GlobalAveragePool, Flatten, Gemm; 1x3x224x224 -> 1x1000) that writes it in
the benchmark layout (weights as external data, info.json).

Usage: python resnet50.py [OUT_DIR]
"""
import argparse
import importlib.util
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import default_out, save  # noqa: E402


def load_generator():
    path = os.path.join(HERE, "..", "resnet50", "make.py")
    spec = importlib.util.spec_from_file_location("resnet50_make", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build(seed=0):
    return load_generator().build(seed)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", nargs="?", default=default_out("resnet50"))
    args = p.parse_args()
    model, feeds = build()
    save(args.out_dir, model, feeds, {"config": {"source": "examples/resnet50/make.py", "seed": 0}})


if __name__ == "__main__":
    main()
