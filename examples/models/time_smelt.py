#!/usr/bin/env python3
"""Times smelt on the benchmark models: `smelt import` (to /dev/null) and,
unless --import-only, `smelt run` with the recorded inputs, comparing its
outputs with onnxruntime's (expected_<i>.pb). Build smelt first:
`cargo build --release -p smelt`.

Usage: python time_smelt.py [--smelt PATH] [--dir .cache/models] [--import-only]
                            [--rtol 1e-3] [--atol 1e-3] [NAME ...]
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def timed(cmd):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r, time.perf_counter() - t0


def last_lines(text, n=5):
    return "\n".join(text.strip().splitlines()[-n:])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="models to time (default: every folder in --dir)")
    p.add_argument("--smelt", default=os.path.join(REPO, "target", "release", "smelt"))
    p.add_argument("--dir", default=os.path.join(REPO, ".cache", "models"))
    p.add_argument("--import-only", action="store_true")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--atol", type=float, default=1e-3)
    args = p.parse_args()
    names = args.names or sorted(d for d in os.listdir(args.dir)
                                 if os.path.exists(os.path.join(args.dir, d, "model.onnx")))
    failed = False
    for name in names:
        d = os.path.join(args.dir, name)
        model = os.path.join(d, "model.onnx")
        r, secs = timed([args.smelt, "import", model, "-o", os.devnull])
        if r.returncode != 0:
            print(f"{name}: import FAILED after {secs:.2f}s: {last_lines(r.stderr)}")
            failed = True
            continue
        line = f"{name}: import {secs:.2f}s"
        if not args.import_only:
            inputs = sorted(glob.glob(os.path.join(d, "input_*.pb")))
            with tempfile.TemporaryDirectory() as out:
                cmd = [args.smelt, "run", model, "--output-dir", out]
                for i in inputs:
                    cmd += ["--input", i]
                r, secs = timed(cmd)
                if r.returncode != 0:
                    print(f"{line}, run FAILED after {secs:.2f}s: {last_lines(r.stderr)}")
                    failed = True
                    continue
                line += f", run {secs:.2f}s"
                for exp in sorted(glob.glob(os.path.join(d, "expected_*.pb"))):
                    got_path = os.path.join(out, "output_" + exp.rsplit("_", 1)[1])
                    want = numpy_helper.to_array(onnx.load_tensor(exp))
                    got = numpy_helper.to_array(onnx.load_tensor(got_path))
                    if got.shape != want.shape:
                        line += f", output shape {list(got.shape)} != {list(want.shape)}"
                        failed = True
                        continue
                    err = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
                    ok = np.allclose(got, want, rtol=args.rtol, atol=args.atol)
                    failed |= not ok
                    line += f", max abs err vs onnxruntime {err:.3g} ({'ok' if ok else 'MISMATCH'})"
        print(line, flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
