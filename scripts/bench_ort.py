#!/usr/bin/env python3
"""The onnxruntime side of `smelt bench`: times MODEL on the given inputs
with a fixed thread count (intra-op threads, sequential execution, all graph
optimizations on) and writes its outputs for smelt to compare against.
Prints one JSON object: {"median_ms", "min_ms", "iters", "threads",
"version"}.

Usage: python bench_ort.py MODEL --threads N --iters N --warmup N
                           --out DIR INPUT.pb ...
"""
import argparse
import json
import os
import statistics
import time

import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("inputs", nargs="*")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    feeds = {}
    for meta, path in zip(sess.get_inputs(), a.inputs):
        t = onnx.TensorProto()
        with open(path, "rb") as f:
            t.ParseFromString(f.read())
        feeds[meta.name] = numpy_helper.to_array(t)
    for _ in range(a.warmup):
        outs = sess.run(None, feeds)
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        outs = sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    os.makedirs(a.out, exist_ok=True)
    for i, (meta, o) in enumerate(zip(sess.get_outputs(), outs)):
        with open(os.path.join(a.out, f"output_{i}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(o, meta.name).SerializeToString())
    print(json.dumps({
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "iters": a.iters,
        "threads": a.threads,
        "version": ort.__version__,
    }))


if __name__ == "__main__":
    main()
