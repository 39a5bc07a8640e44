#!/usr/bin/env python3
"""Compares TensorProto files pairwise (actual vs expected), prints name, dtype,
shape and the max abs error of each pair, and exits 1 when any pair differs in
shape/dtype or beyond rtol/atol (numpy.allclose semantics). Usage:
    python scripts/compare_tensors.py ACTUAL EXPECTED [ACTUAL EXPECTED ...] [--rtol R] [--atol A]
"""
import argparse
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="ACTUAL EXPECTED pairs of TensorProto .pb files")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-4)
    args = p.parse_args()
    if len(args.files) % 2:
        raise SystemExit("expected ACTUAL EXPECTED pairs")
    ok = True
    for actual_path, expected_path in zip(args.files[::2], args.files[1::2]):
        actual = numpy_helper.to_array(onnx.load_tensor(actual_path))
        expected_proto = onnx.load_tensor(expected_path)
        expected = numpy_helper.to_array(expected_proto)
        head = f"{expected_proto.name or expected_path}: {expected.dtype} {list(expected.shape)}"
        if actual.shape != expected.shape or actual.dtype != expected.dtype:
            print(f"{head}: MISMATCH, got {actual.dtype} {list(actual.shape)} from {actual_path}")
            ok = False
            continue
        if actual.size == 0:
            print(f"{head}: empty, equal")
            continue
        a, e = actual.astype(np.float64), expected.astype(np.float64)
        err = float(np.max(np.abs(a - e)))
        good = bool(np.allclose(a, e, rtol=args.rtol, atol=args.atol, equal_nan=True))
        print(f"{head}: max abs error {err:.3g} ({'ok' if good else 'FAIL'}, rtol={args.rtol:g} atol={args.atol:g})")
        ok &= good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
