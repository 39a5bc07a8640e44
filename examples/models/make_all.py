#!/usr/bin/env python3
"""Builds every benchmark model into OUT/<name>/ (default: .cache/models/),
in the layout described in _common.py, and prints a summary table.

Usage: python make_all.py [OUT] [--only NAME ...]
"""
import argparse
import gc
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402
import bert_base  # noqa: E402
import inception  # noqa: E402
import mlp  # noqa: E402
import nasnet  # noqa: E402
import resnet50  # noqa: E402

MODELS = {
    "bert_base": lambda: bert_base.build(),
    "resnet50": lambda: resnet50.build(),
    "inception": lambda: inception.build(),
    "nasnet": lambda: nasnet.build(),
    "mlp": lambda: mlp.build(),
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?", default=os.path.dirname(_common.default_out("x")))
    p.add_argument("--only", nargs="+", choices=sorted(MODELS), help="build just these")
    args = p.parse_args()
    rows = []
    for name in args.only or MODELS:
        t0 = time.perf_counter()
        model, feeds = MODELS[name]()
        info = _common.save(os.path.join(args.out, name), model, feeds)
        del model, feeds
        gc.collect()  # BERT's weights should be gone before the next model is built
        rows.append((name, info["nodes"], info["params"], info["weights_bin_bytes"],
                     time.perf_counter() - t0))
    print(f"\n{'model':<10} {'nodes':>6} {'params':>12} {'weights MB':>11} {'build s':>8}")
    for name, nodes, params, wbytes, secs in rows:
        print(f"{name:<10} {nodes:>6} {params:>12,} {wbytes / 1e6:>11.1f} {secs:>8.1f}")


if __name__ == "__main__":
    main()
