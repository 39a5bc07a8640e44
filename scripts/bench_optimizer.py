#!/usr/bin/env python3
"""Runs `smelt explain MODEL --target T --json` on the benchmark graphs and
prints the BENCHMARKS.md "Optimizer" table: optimize time, e-graph size,
iterations and stop reason per pass, cost before/after.

Usage: python scripts/bench_optimizer.py [--smelt PATH] [--models DIR]
                                         [--targets cpu,maia100] [NAME ...]
"""
import argparse
import json
import os
import subprocess
import sys

MODELS = ["bert_base", "resnet50", "inception", "nasnet"]


def explain(smelt, model, target):
    out = subprocess.run(
        [smelt, "explain", model, "--target", target, "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def row(name, target, r):
    passes = r["passes"]
    # The last stage of a pass holds the largest e-graph (stages only add).
    sizes = " / ".join(f'{p["stages"][-1]["final_nodes"]}/{p["stages"][-1]["final_classes"]}' for p in passes)
    stops = " / ".join(
        "+".join(f'{len(s["iterations"])} {s["stop_reason"]}' for s in p["stages"]) for p in passes)
    sat = sum(s["seconds"] for p in passes for s in p["stages"])
    before, after = r["cost_before"], r["cost_after"]
    red = 100.0 * (before - after) / before if before else 0.0
    return (f'| {name} | {target} | {r["seconds"]:.3f} | {sat:.3f} | {sizes} | {stops} '
            f'| {before * 1e3:.3f} | {after * 1e3:.3f} | {red:.1f}% |')


def main():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smelt", default=os.path.join(here, "target", "release", "smelt"))
    p.add_argument("--models", default=os.path.join(here, ".cache", "models"))
    p.add_argument("--targets", default="cpu,maia100")
    p.add_argument("names", nargs="*", default=MODELS)
    a = p.parse_args()
    if not os.path.exists(a.smelt):
        sys.exit(f"no smelt binary at {a.smelt}: build it (cargo build --release -p smelt) or pass --smelt")
    header = False
    for name in a.names:
        model = os.path.join(a.models, name, "model.onnx")
        if not os.path.exists(model):
            sys.exit(f"no {model}: run `python examples/models/make_all.py` or pass --models")
        for t in a.targets.split(","):
            r = explain(a.smelt, model, t)
            if not header:
                order = " / ".join(p["pass"] for p in r["passes"])
                print(f"| model | target | optimize s | saturation s | e-graph nodes/classes ({order}) "
                      f"| iterations, stop ({order}) | cost before ms | cost after ms | reduction |")
                print("|---|---|---|---|---|---|---|---|---|")
                header = True
            print(row(name, t, r), flush=True)


if __name__ == "__main__":
    main()
